"""`grid bench` end to end on real Ray (small: 2 policies incl. a user's, 2 seeds, 20 s), and bad input."""

from __future__ import annotations

import argparse
import json

import pytest

from grid.bench.cli import add_bench_parser, bench_main
from grid.errors import GridInputError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="grid")
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_bench_runs_policies_on_ray_and_writes_results(tmp_path):
    out = tmp_path / "out"
    args = _args(
        "--scenario", "baseline", "--policies", "nearest,tests.routing.user_policy:FarthestFirst",
        "--seeds", "2", "--load", "0.3,0.5", "--duration", "20s", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert bench_main(args) == 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["runs"]) == 2 * 2 * 2
    summary = data["summary"]["0.5"]
    assert set(summary) == {"nearest", "tests.routing.user_policy:FarthestFirst"}
    assert summary["nearest"]["ttft_p99_ms"]["n"] == 2
    # common random numbers: per seed and load both policies saw the same number of arrivals
    arrivals = {(r["seed"], r["load"], r["policy"]): r["report"]["grid"]["arrivals"] for r in data["runs"]}
    user = "tests.routing.user_policy:FarthestFirst"
    for seed in (0, 1):
        for load in (0.3, 0.5):
            assert arrivals[(seed, load, "nearest")] == arrivals[(seed, load, user)]
    bounds = data["lp_bound"]["0.5"]
    assert 0 < bounds["no_load"]["mean_ttft_s"] < bounds["load_aware"]["mean_ttft_s"]
    md = (out / "results.md").read_text()
    assert "fluid bound" in md and "load-aware reference" in md and "± " in md
    assert "Mean TTFT ÷ fluid bound / ÷ load-aware reference: nearest " in md
    for png in ("ttft_cdf.png", "p99_vs_load.png", "zone_utilization.png"):
        assert (out / png).stat().st_size > 5000


def test_unknown_policy_lists_the_valid_ones(tmp_path):
    with pytest.raises(GridInputError, match="known: nearest, round_robin"):
        bench_main(_args("--policies", "nearest,fastest", "--out", str(tmp_path)))


def test_unknown_scenario_lists_the_presets(tmp_path):
    with pytest.raises(GridInputError, match="presets: default, baseline"):
        bench_main(_args("--scenario", "eu-peak", "--out", str(tmp_path)))


def test_bad_seeds_and_loads_are_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        _args("--seeds", "0", "--out", "x")
    with pytest.raises(SystemExit):
        _args("--load", "0.5,-1", "--out", "x")
