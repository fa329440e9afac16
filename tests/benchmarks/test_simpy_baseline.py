"""The SimPy baseline of benchmarks/sim_throughput.py must stay a fair comparison: same model, same answers."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("simpy")

from benchmarks.simpy_baseline import SimpyGrid, baseline_scenario  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402

DURATION_S = 30.0
TOLERANCE = 0.03  # relative, on p50/p99 of TTFT, TPOT and E2E


@pytest.fixture(scope="module")
def scenario():
    return baseline_scenario(load_scenario("default"))  # the model the baseline implements


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE)


@pytest.mark.parametrize("engine", ["step", "batch"])
def test_simpy_baseline_agrees_with_simulator(scenario, engine):
    ours = Simulation(scenario, policy="p2c", duration_s=DURATION_S, seed=3).run().grid
    simpy = SimpyGrid(scenario, policy="p2c", duration_s=DURATION_S, seed=3, engine=engine).run().summary()
    assert simpy["arrivals"] == ours.arrivals  # the same arrival stream
    assert simpy["completed"] > 0.5 * ours.arrivals  # the rest are still in flight at the end
    assert abs(simpy["completed"] - ours.completed) <= 0.01 * ours.completed
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        for q in ("p50", "p99"):
            theirs, mine = simpy[metric][q], getattr(ours, metric)[q]
            assert _close(theirs, mine), f"{metric} {q}: SimPy {theirs:.4f} vs simulator {mine:.4f}"
