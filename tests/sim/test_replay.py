"""Counterfactual replay (issue 19): a run's records give its exact arrivals back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grid.errors import GridInputError
from grid.scenario import load_scenario
from grid.sim.replay import compare, read_records
from grid.sim.simulator import Simulation

DURATION_S = 60.0


def run(tmp_path, name: str, policy: str | None = None, replay=None):
    scenario = load_scenario("demo")
    path = tmp_path / f"{name}.csv"
    sim = Simulation(scenario, policy, 3, DURATION_S, 1.0, records_path=path, replay=replay)
    return sim.run(), path, sim


def test_replaying_a_run_under_its_policy_and_seed_gives_its_report_exactly(tmp_path):
    report, path, sim = run(tmp_path, "original")
    recorded = read_records(path, len(sim.world.population_ids))
    assert len(recorded.ids) == report.grid.arrivals  # requests still in flight at the end are recorded too
    replayed, replay_path, _ = run(tmp_path, "replay", replay=recorded.arrivals)
    assert replayed.to_dict() == report.to_dict()
    diff = compare(recorded, read_records(replay_path, len(sim.world.population_ids)), sim.world.population_ids)
    assert diff.compared == report.grid.completed and diff.faster == diff.slower == diff.moved == 0


def test_another_policy_on_the_same_arrivals_is_compared_request_by_request(tmp_path):
    report, path, sim = run(tmp_path, "original")
    recorded = read_records(path, len(sim.world.population_ids))
    other, other_path, _ = run(tmp_path, "rr", policy="round_robin", replay=recorded.arrivals)
    assert other.grid.arrivals == report.grid.arrivals
    diff = compare(recorded, read_records(other_path, len(sim.world.population_ids)), sim.world.population_ids)
    assert diff.moved > diff.compared / 2  # round robin ignores distance: most requests go elsewhere
    assert diff.slower > diff.faster and diff.delta_ms["p50"] > 0
    assert sum(row[1] for row in diff.by_population) == diff.compared


def test_bad_records_are_refused_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,population\n1,2\n")
    with pytest.raises(GridInputError, match=r"bad.csv:1: not a records file .*arrival_s"):
        read_records(bad, 22)
    _, path, _ = run(tmp_path, "original")
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[3], "soon", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GridInputError, match=r"original.csv:4: could not convert string to float: 'soon'"):
        read_records(path, 22)
    done = subprocess.run(
        [sys.executable, "-m", "grid.cli", "sim", "--scenario", "demo", "--replay", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "original.csv:4" in done.stderr and "Traceback" not in done.stderr
