"""The measured zone TTFT curve: starts at the no-load TTFT, rises with load, slows with slow_factor."""

from __future__ import annotations

import numpy as np
import pytest

from grid.bench.lp_bound import zone_no_load_ttft_s
from grid.bench.zone_curve import zone_ttft_curve
from grid.scenario import load_scenario
from grid.world import build_world


@pytest.fixture(scope="module")
def baseline():
    scenario = load_scenario("baseline")
    return scenario, build_world(scenario)


def _curve(baseline, replicas: int, slow_factor: float = 1.0) -> np.ndarray:
    scenario, world = baseline
    args = (scenario.gpus["h100"], replicas, scenario.demand.sizes, world.mean_prompt_tokens, world.mean_output_tokens)
    return np.array(zone_ttft_curve(*args, slow_factor)[1])


def test_curve_starts_near_the_no_load_ttft_and_rises_ever_faster(baseline):
    scenario, world = baseline
    ttft_s = _curve(baseline, 2)
    no_load_s = zone_no_load_ttft_s(scenario, world.mean_prompt_tokens)[0]
    assert no_load_s <= ttft_s[0] <= 1.1 * no_load_s  # at 5% load a prompt rarely waits
    assert np.all(np.diff(ttft_s) > 0)
    assert ttft_s[-1] > 2 * ttft_s[0]  # at 95% load the wait dominates


def test_a_slowed_zone_is_slower_at_the_same_utilization(baseline):
    assert np.all(_curve(baseline, 2, slow_factor=2.0)[:3] > _curve(baseline, 2)[:3])
