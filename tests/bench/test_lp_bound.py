"""The fluid LP bound: a hand-checkable case, feasibility, and ≤ every policy's mean TTFT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grid.bench.lp_bound import lp_bound, solve_assignment
from grid.bench.runner import RunSpec, run_one
from grid.scenario import load_scenario


def test_capacity_forces_the_overflow_to_the_next_best_zone():
    latency = np.array([[0.1, 0.3], [0.2, 0.2]])
    x, value = solve_assignment(np.array([10.0, 5.0]), latency, np.array([8.0, 100.0]))
    assert x is not None
    # population 0 fills zone 0 (8), overflows 2 to zone 1; population 1 is indifferent but zone 0 is full
    assert x[0, 0] == pytest.approx(8.0) and x[0, 1] == pytest.approx(2.0)
    assert value == pytest.approx(8 * 0.1 + 2 * 0.3 + 5 * 0.2)


def test_infeasible_when_demand_exceeds_capacity():
    x, value = solve_assignment(np.array([10.0]), np.array([[0.1]]), np.array([5.0]))
    assert x is None and math.isnan(value)


def test_bound_is_feasible_and_below_every_policy_on_an_uncongested_grid():
    scenario = load_scenario("baseline")
    bound = lp_bound(scenario, duration_s=30.0, rate_scale=0.5)
    assert bound.infeasible_slices == 0 and 0.1 < bound.mean_ttft_s < 0.3
    assert lp_bound(scenario, 30.0, 0.5, utilization_cap=0.8).mean_ttft_s >= bound.mean_ttft_s - 1e-12
    for policy in ("nearest", "round_robin", "p2c", "latency_aware", "slo_spillover"):
        run = run_one(RunSpec("baseline", (), policy, 0, 0.5, 30.0))
        assert bound.mean_ttft_s <= run["ttft_mean_s"], policy


def test_outage_removes_capacity():
    s = load_scenario("frankfurt-outage")
    assert lp_bound(s, 600.0).cross_region_share > lp_bound(s, 60.0).cross_region_share
