"""`grid sweep`: --vary parsing, bad input, and a real (small) sweep on Ray that resumes from its cache."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from grid.bench.runner import ray_session
from grid.capacity.cli import add_sweep_parser
from grid.capacity.sweep import sweep
from grid.capacity.sweep_plots import knee_index
from grid.capacity.variations import Variation, parse_vary
from grid.errors import GridInputError

SMALL = str(Path(__file__).with_name("small.yaml"))


def test_ranges_are_inclusive_and_typed():
    assert parse_vary("zones.frankfurt-1.replicas=4..16:4") == Variation("zones.frankfurt-1.replicas", (4, 8, 12, 16))
    assert parse_vary("demand.scale=0.5..1.5:0.25").values == (0.5, 0.75, 1.0, 1.25, 1.5)
    assert parse_vary("zones.a.replicas=2..4").values == (2, 3, 4)  # step defaults to 1
    assert parse_vary("demand.scale=0.1..0.3:0.1").values == (0.1, 0.2, 0.3)  # no float drift at the end
    assert parse_vary("x.y=5..5:2").values == (5,)


def test_lists_are_read_as_yaml():
    assert parse_vary("routing.policy=nearest,p2c").values == ("nearest", "p2c")
    assert parse_vary("demand.scale= 0.5, 1 ,2").values == (0.5, 1, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zones.a.replicas=16..4:4", "the range 16..4:4 is empty"),
        ("zones.a.replicas=4..16:0", "the step must be > 0"),
        ("zones.a.replicas=4..x", "the end 'x' is not a number"),
        ("zones.a.replicas=", "expected FIELD.PATH=A..B:STEP"),
        ("zones.a.replicas", "expected FIELD.PATH=A..B:STEP"),
        ("demand.scale=1,,2", "an empty value"),
        ("demand.scale=1,1", "a value repeats"),
    ],
)
def test_bad_vary_specs(text, message):
    with pytest.raises(GridInputError, match=message):
        parse_vary(text)


def test_a_path_that_does_not_exist_is_named_with_what_exists(tmp_path):
    with pytest.raises(GridInputError) as err:
        sweep(SMALL, [parse_vary("zones.north-1.replicas=1,2")], tmp_path)
    message = str(err.value)
    assert "--vary zones.north-1.replicas" in message
    assert "no field zones.north-1" in message and "known here: east-1, west-1" in message
    with pytest.raises(GridInputError, match=r"no field zones.east-1.replica \(known here: gpu, region, replicas"):
        sweep(SMALL, [parse_vary("zones.east-1.replica=1,2")], tmp_path)


def test_defaulted_fields_can_be_varied_and_bad_values_name_the_point(tmp_path):
    with pytest.raises(GridInputError, match=r"--vary zones.east-1.max_queue=-1.*greater than or equal to 0"):
        sweep(SMALL, [parse_vary("zones.east-1.max_queue=-1,10")], tmp_path)  # a default, not in the file


def test_sweep_writes_table_and_plots_and_resumes(tmp_path):
    with ray_session():  # one Ray start for the sweeps
        _sweep_writes_table_and_plots_and_resumes(tmp_path / "sweep")


def _sweep_writes_table_and_plots_and_resumes(out):
    variations = [parse_vary("zones.east-1.replicas=2,4"), parse_vary("demand.scale=0.5..1.5:0.5")]
    first = sweep(SMALL, variations, out, seeds=1, duration_s=15.0)
    assert (first.computed, first.cached) == (6, 0)
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert [(r["zones.east-1.replicas"], r["demand.scale"]) for r in rows] == [
        ("2", "0.5"), ("2", "1.0"), ("2", "1.5"), ("4", "0.5"), ("4", "1.0"), ("4", "1.5"),
    ]  # fmt: skip
    assert all(0 <= float(r["slo_attainment"]) <= 1 and float(r["ttft_p99_s"]) > 0 for r in rows)
    loads = [float(r["offered_load"]) for r in rows]
    assert loads[0] < loads[1] < loads[2]  # demand.scale took effect
    data = json.loads((out / "points.json").read_text())
    assert len(data["runs"]) == 6 and data["meta"]["vary"]["demand.scale"] == [0.5, 1.0, 1.5]
    for png in ("heatmap.png", "latency_vs_load.png"):
        assert (out / png).stat().st_size > 5000
    # A rerun computes nothing; widening a range computes only the new points.
    again = sweep(SMALL, variations, out, seeds=1, duration_s=15.0, plots=False)
    assert (again.computed, again.cached) == (0, 6)
    assert again.points == first.points
    wider = sweep(SMALL, [parse_vary("zones.east-1.replicas=2,4,6"), variations[1]], out, seeds=1, duration_s=15.0,
                  plots=False)  # fmt: skip
    assert (wider.computed, wider.cached) == (3, 6)
    # Seeds alone (no --vary): one point, its seeds run in parallel and averaged
    seeds = sweep(SMALL, [], out.with_name("seeds"), seeds=2, duration_s=15.0)
    assert (seeds.computed, len(seeds.points), seeds.points[0]["seeds"]) == (2, 1, 2)
    with pytest.raises(GridInputError, match="--vary"):
        sweep(SMALL, [], out.with_name("none"), seeds=1)


def test_the_cli_parser_reports_bad_input_before_ray(tmp_path):
    from grid.capacity.cli import sweep_main

    parser = argparse.ArgumentParser(prog="grid")
    add_sweep_parser(parser.add_subparsers(dest="command"))
    vary = ["--vary", "zones.east-1.replicas=8..4"]
    args = parser.parse_args(["sweep", "--scenario", SMALL, *vary, "--out", str(tmp_path)])
    with pytest.raises(GridInputError, match="is empty"):
        sweep_main(args)
    args = parser.parse_args(["sweep", "--scenario", SMALL, "--out", str(tmp_path)])
    with pytest.raises(GridInputError, match="at least one"):
        sweep_main(args)


def test_knee_is_where_latency_starts_to_climb():
    x = [0.2, 0.4, 0.6, 0.8, 0.9, 1.0]
    y = [0.10, 0.11, 0.12, 0.15, 0.4, 2.0]
    assert knee_index(x, y) == 3
    assert knee_index([0.1, 0.2], [1, 2]) is None
    assert knee_index([0.1, 0.2, 0.3], [1, 1, 1]) is None
