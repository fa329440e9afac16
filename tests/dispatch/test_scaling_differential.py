"""One autoscaler, two clocks: the same arrivals through `grid sim` and through the live gateway and
in-process zone actors (on a virtual clock) make the same scaling events within one decision interval.

The rule is shared (`grid.scaling.driver.FleetDriver`: `SimFleet` calls the zones, `LiveFleet` the
zone actors), the signals are the dispatch core's counts and the router's view, and the replicas'
warm-up is the serving model's (`Zone.set_replicas` in either clock). What may differ is when a load
report carries a fleet change to the router, hence the tolerance of one interval."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from grid.dispatch.sinks import Sink
from grid.live.gateway import GatewaySettings
from grid.live.openai_api import ApiError, CompletionRequest
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation
from tests.dispatch.test_differential import in_process_gateway

from ..live.conftest import SMALL_SCENARIO
from .virtual_loop import VirtualLoop

DURATION_S = 40.0
INTERVAL_S = 2.0


SPOT = {  # half of the replicas above one per zone are spot; the market takes two at 21 s
    "autoscaling.spot.share": 0.5,
    "autoscaling.spot.on_demand_base": 1,
    "autoscaling.spot.notice_s": 1,
    "faults": [{"at_s": 21, "kind": "spot_preempt", "zone": "frankfurt-1", "replicas": 2}],
}


def scenario(report_interval_s: float, spot: bool = False):
    return load_scenario(
        str(SMALL_SCENARIO),
        {
            **(SPOT if spot else {}),
            "network.jitter_ratio": 0.0,
            "routing.report_interval_s": report_interval_s,
            "demand.rate_rps": 12,
            "demand.flash_crowds": [{"population": "berlin", "at_s": 14, "duration_s": 10, "factor": 3}],
            "autoscaling.interval_s": INTERVAL_S,
            "autoscaling.look_back_s": 4,
            "autoscaling.upscale_delay_s": 0,
            "autoscaling.downscale_delay_s": 4,
            "autoscaling.target_qps_per_replica": 2.0,
            "autoscaling.max_replicas": 8,
            "autoscaling.cold_start.provision_s": 1,
            "autoscaling.cold_start.weights_gb": 0,
            "autoscaling.cold_start.engine_init_s": 2,
        },
    )


def arrivals(s, seed: int) -> list[tuple[float, int, int, int]]:
    """The scenario's arrivals over DURATION_S: (time, population, prompt tokens, output tokens)."""
    sim = Simulation(s, seed=seed, duration_s=DURATION_S)
    out = []
    for chunk in sim.scenario_arrivals(np.random.default_rng(seed)):
        columns = (chunk.arrival_s, chunk.population, chunk.prompt_tokens, chunk.output_tokens)
        out += zip(*(c.tolist() for c in columns), strict=True)
    return out


class ScalingLog(Sink):
    def __init__(self) -> None:
        self.events: list[tuple[float, int, str, int]] = []

    def scaled(self, zone, reason, replicas, now_s) -> None:
        self.events.append((now_s, zone, reason, replicas))


def simulated(s, autoscaler: str, seed: int) -> ScalingLog:
    log = ScalingLog()
    demand = Simulation(s, seed=seed, duration_s=DURATION_S)
    sim = Simulation(s, None, seed, DURATION_S, sinks=[log], arrivals=demand.scenario_arrivals, autoscaler=autoscaler)
    sim.run()
    return log


async def _live(s, autoscaler: str, requests) -> ScalingLog:
    log = ScalingLog()
    gateway = await in_process_gateway(s, log, GatewaySettings(autoscaler=autoscaler))
    loop = asyncio.get_running_loop()
    context = s.model.context_tokens
    pending = []

    async def one(population: int, prompt: int, output: int) -> None:
        limit = max(1, min(output, context - prompt))
        body = CompletionRequest(model=s.model.name, prompt="x", max_tokens=limit, ignore_eos=True)
        with contextlib.suppress(ApiError):
            await gateway.handle(False, body, prompt, population)

    for t, p, prompt, out in requests:
        loop.call_at(t, lambda a=(p, prompt, out): pending.append(loop.create_task(one(*a))))
    await asyncio.sleep(DURATION_S)
    await asyncio.gather(*pending)
    await gateway.stop()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the zone actors' loops
        task.cancel()
    return log


def live(s, autoscaler: str, requests) -> ScalingLog:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_live(s, autoscaler, requests))
    finally:
        loop.close()


@pytest.mark.parametrize("report_interval_s", [0.0, 0.5], ids=["fresh-reports", "reports-every-0.5s"])
@pytest.mark.parametrize("autoscaler", ["qps", "target_utilization", "qps-spot"])
def test_live_scales_as_the_simulator(autoscaler, report_interval_s):
    spot = autoscaler.endswith("-spot")
    autoscaler = autoscaler.removesuffix("-spot")
    s = scenario(report_interval_s, spot)
    if autoscaler == "target_utilization":
        s = s.model_copy(update={"autoscaling": s.autoscaling.model_copy(update={"target_ongoing_requests": 1.0})})
    seed = 7
    requests = arrivals(s, seed)
    # the decisions before the last one (the virtual clock's sums of intervals drift by ~1e-13 s)
    sim = [e for e in simulated(s, autoscaler, seed).events if e[0] < DURATION_S - 1.0]
    lv = [e for e in live(s, autoscaler, requests).events if e[0] < DURATION_S - 1.0]
    assert any(e[2] == "up" for e in sim) and any(e[2] == "down" for e in sim), sim
    if spot:  # the preemption, and the next decision replacing what it took
        assert [e[2] for e in sim if e[2] in ("preempted", "replace")] == ["preempted", "replace"], sim
    by_zone = {}
    for name, events in (("sim", sim), ("live", lv)):
        for t, zone, reason, replicas in events:
            by_zone.setdefault(zone, {"sim": [], "live": []})[name].append((t, reason, replicas))
    for zone, both in by_zone.items():
        assert [e[1:] for e in both["sim"]] == [e[1:] for e in both["live"]], (zone, both)
        for (t_sim, *_), (t_live, *_) in zip(both["sim"], both["live"], strict=True):
            assert abs(t_sim - t_live) <= INTERVAL_S + 1e-6, (zone, both)
