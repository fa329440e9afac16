"""The gateway stage: the live gateway's load-dependent delay as the simulator models it
(`grid.dispatch.gateway_stage`, `network.gateway_cpu_*`)."""

from __future__ import annotations

import pytest

from grid.dispatch.gateway_stage import RATE_WINDOW_S, GatewayStage, gateway_stage
from grid.dispatch.settings import DispatchSettings
from grid.errors import GridInputError
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation

from ..live.conftest import SMALL_SCENARIO

HOP_S = 0.002


def steady(stage: GatewayStage, rate_rps: float, tokens: int, seconds: float) -> None:
    """Arrivals every 1/rate s for `seconds`, each streaming `tokens`."""
    n = int(seconds * rate_rps)
    for k in range(1, n + 1):
        stage.arrive(tokens, k / rate_rps)


def test_the_load_share_converges_to_the_work_rate():
    stage = GatewayStage(HOP_S, cpu_per_request_s=0.001, cpu_per_token_s=0.0001, cores=1.0)
    steady(stage, rate_rps=20.0, tokens=150, seconds=10 * RATE_WINDOW_S)
    # 20/s × (1 ms + 150 × 0.1 ms) = 0.32 of the loop
    assert stage.utilization == pytest.approx(0.32, rel=0.05)
    assert stage.backlog_s == 0.0


def test_the_hop_stretches_with_the_load_and_long_legs_hide_it():
    stage = GatewayStage(HOP_S, cpu_per_request_s=0.0, cpu_per_token_s=0.0001, cores=1.0)
    assert stage.round_trip_s(0.001) == pytest.approx(2 * HOP_S)  # idle: the floor is twice the hop
    steady(stage, rate_rps=25.0, tokens=200, seconds=10 * RATE_WINDOW_S)  # ρ = 0.5
    assert stage.round_trip_s(0.001) == pytest.approx(2 * HOP_S / (1 - stage.utilization))
    assert stage.round_trip_s(0.001) == pytest.approx(4 * HOP_S, rel=0.05)
    assert stage.round_trip_s(0.050) == 0.050  # a 25 ms leg outlasts a 4 ms stretched hop


def test_more_cores_carry_the_same_load_with_less_delay():
    one, two = (GatewayStage(HOP_S, 0.0, 0.0001, cores=c) for c in (1.0, 2.0))
    for stage in (one, two):
        steady(stage, rate_rps=25.0, tokens=200, seconds=10 * RATE_WINDOW_S)
    assert two.utilization == pytest.approx(one.utilization / 2)
    assert two.round_trip_s(0.0) < one.round_trip_s(0.0)


def test_overload_builds_a_backlog_that_each_leg_waits_for():
    stage = GatewayStage(HOP_S, cpu_per_request_s=0.0, cpu_per_token_s=0.0001, cores=1.0)
    steady(stage, rate_rps=50.0, tokens=300, seconds=10 * RATE_WINDOW_S)  # ρ → 1.5
    assert stage.utilization == pytest.approx(1.5, rel=0.05)
    assert stage.backlog_s > 5.0  # ≈ 0.5 s behind per second once ρ > 1
    assert stage.round_trip_s(0.0) > 2 * stage.backlog_s
    steady_after = stage.backlog_s
    stage.arrive(0, 30 * RATE_WINDOW_S)  # a quiet spell: the load decays and the backlog drains
    assert stage.backlog_s < steady_after


def test_off_unless_a_cost_is_set():
    assert gateway_stage(DispatchSettings.from_scenario(load_scenario("default"))) is None
    s = load_scenario(str(SMALL_SCENARIO), {"network.gateway_cpu_per_token_us": 100})
    assert gateway_stage(DispatchSettings.from_scenario(s)) is not None


def test_bad_costs_are_refused_with_their_field():
    with pytest.raises(GridInputError, match="gateway_cpu_per_token_us"):
        load_scenario(str(SMALL_SCENARIO), {"network.gateway_cpu_per_token_us": -1})
    with pytest.raises(GridInputError, match="gateway_cores"):
        load_scenario(str(SMALL_SCENARIO), {"network.gateway_cores": 0})


def simulate(overrides: dict, rate_scale: float):
    s = load_scenario(str(SMALL_SCENARIO), {"network.jitter_ratio": 0.0, "network.gateway_hop_ms": 1.5, **overrides})
    return Simulation(s, "nearest", 3, 60.0, rate_scale).run()


def test_the_simulator_applies_the_stage_and_only_where_it_is_modelled():
    # a slow gateway (a tenth of a core), so that its stretched hop outlasts the shortest leg (6.8 ms)
    costs = {"network.gateway_cpu_per_request_ms": 1.0, "network.gateway_cpu_per_token_us": 300.0,
             "network.gateway_cores": 0.1}  # fmt: skip
    hop_only_low, staged_low = simulate({}, 0.2), simulate(costs, 0.2)
    hop_only_high, staged_high = simulate({}, 1.0), simulate(costs, 1.0)
    # Same arrivals and routes (nearest): the stage adds delay, more of it at the higher load
    added_low = staged_low.grid.ttft_s["p50"] - hop_only_low.grid.ttft_s["p50"]
    added_high = staged_high.grid.ttft_s["p50"] - hop_only_high.grid.ttft_s["p50"]
    assert added_low >= 0.0
    assert added_high > added_low
    assert staged_high.grid.completed == hop_only_high.grid.completed
    zero = simulate({"network.gateway_cpu_per_request_ms": 0.0, "network.gateway_cpu_per_token_us": 0.0}, 1.0)
    assert zero.to_dict() == hop_only_high.to_dict()
