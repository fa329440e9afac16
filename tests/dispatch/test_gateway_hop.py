"""`network.gateway_hop_ms`: no client↔zone leg shorter than the gateway's own hop, in both clocks.

The rule lives in one place (`grid.dispatch.settings.client_zone_rtt_s`, applied where both drivers
build their view); here the simulator and the live gateway (in-process zone actors on a virtual clock)
serve the same requests with and without it, and must agree request by request."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from grid.demand.arrivals import ArrivalChunk
from grid.dispatch.settings import DispatchSettings, client_zone_rtt_s
from grid.dispatch.sinks import Sink
from grid.faults import LINK_DELAY, FaultAction
from grid.live.cluster import ZoneHandles
from grid.live.gateway import GatewaySettings, GridGateway
from grid.live.openai_api import CompletionRequest
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation
from grid.world import build_world
from tests.dispatch.test_differential import in_process_gateway

from ..live.conftest import SMALL_SCENARIO
from .virtual_loop import VirtualLoop

HOP_MS = 20.0  # floors berlin→frankfurt (13.6 ms RTT) and dallas→mexico (26.1) at 40 ms; new_york's 68.6 stays
# (arrival s, population, prompt tokens, output tokens), far enough apart not to share a batch
REQUESTS = [(1.0, "berlin", 120, 12), (2.0, "dallas", 80, 9), (3.0, "new_york", 200, 15)]


def scenario(hop_ms: float):
    return load_scenario(str(SMALL_SCENARIO), {"network.jitter_ratio": 0.0, "network.gateway_hop_ms": hop_ms})


class Ends(Sink):
    """Each request's (zone, RTT applied, TTFT, E2E), keyed by its arrival time."""

    def __init__(self) -> None:
        self.rtt: dict[float, float] = {}
        self.by_arrival: dict[float, tuple] = {}

    def routed(self, request, zone, rtt_s, decision_s, now_s) -> None:
        self.rtt[round(request.arrival_s, 9)] = rtt_s

    def ended(self, request, outcome, now_s) -> None:
        key = round(request.arrival_s, 9)
        self.by_arrival[key] = (outcome.zone, self.rtt[key], outcome.ttft_s, outcome.e2e_s)


def simulated(s) -> dict[float, tuple]:
    pops = build_world(s).population_ids
    chunk = ArrivalChunk(
        np.array([t for t, *_ in REQUESTS]),
        np.array([pops.index(p) for _, p, *_ in REQUESTS]),
        np.array([n for *_, n, _ in REQUESTS]),
        np.array([n for *_, n in REQUESTS]),
    )
    ends = Ends()
    Simulation(s, seed=1, duration_s=10.0, sinks=[ends], arrivals=lambda rng: iter([chunk])).run()
    return ends.by_arrival


async def _live(s) -> dict[float, tuple]:
    ends = Ends()
    gateway = await in_process_gateway(s, ends)
    loop = asyncio.get_running_loop()
    world = gateway.world
    tasks = []

    async def one(population: str, prompt: int, output: int) -> None:
        body = CompletionRequest(model=s.model.name, prompt="x", max_tokens=output, ignore_eos=True)
        await gateway.handle(False, body, prompt, world.population_ids.index(population))

    for t, population, prompt, output in REQUESTS:
        loop.call_at(t, lambda a=(population, prompt, output): tasks.append(loop.create_task(one(*a))))
    await asyncio.sleep(REQUESTS[-1][0] + 0.001)
    await asyncio.gather(*tasks)
    await gateway.stop()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the zone actors' loops
        task.cancel()
    return ends.by_arrival


def live(s) -> dict[float, tuple]:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_live(s))
    finally:
        loop.close()


def test_the_floor_applies_to_finite_rtts_only():
    rtt = [[0.0136, 0.165], [0.0261, math.inf]]
    assert client_zone_rtt_s(rtt, 0.0) is rtt  # not modelled: the network's own table
    assert client_zone_rtt_s(rtt, 0.02) == [[0.04, 0.165], [0.04, math.inf]]
    assert DispatchSettings.from_scenario(scenario(HOP_MS)).gateway_hop_s == pytest.approx(0.02)
    assert DispatchSettings.from_scenario(load_scenario("default")).gateway_hop_s == 0.0


def test_both_clocks_apply_the_gateway_hop():
    """Each request takes the floored RTT in both clocks (TTFT and E2E grow by the RTT it added), and
    the live gateway's client-side TTFT and E2E equal the simulator's, with and without the hop."""
    base_sim, hop_sim = simulated(scenario(0.0)), simulated(scenario(HOP_MS))
    base_live, hop_live = live(scenario(0.0)), live(scenario(HOP_MS))
    world = build_world(scenario(0.0))
    for t, population, *_ in REQUESTS:
        key = round(t, 9)
        zone, rtt, ttft, e2e = base_sim[key]
        assert hop_sim[key][0] == zone
        floored = max(rtt, 2 * HOP_MS / 1000)
        assert rtt == pytest.approx(world.rtt_s[world.population_ids.index(population)][zone])
        assert hop_sim[key][1] == pytest.approx(floored)
        added = floored - rtt  # 26.4 ms from berlin, 13.9 from dallas, none from new_york
        assert hop_sim[key][2] == pytest.approx(ttft + added, abs=1e-9)
        assert hop_sim[key][3] == pytest.approx(e2e + added, abs=1e-9)
        for sim, lv in ((base_sim, base_live), (hop_sim, hop_live)):
            assert lv[key][:2] == (sim[key][0], pytest.approx(sim[key][1]))
            assert lv[key][2] == pytest.approx(sim[key][2], abs=1e-6), f"{population}: live TTFT ≠ simulated"
            assert lv[key][3] == pytest.approx(sim[key][3], abs=1e-6), f"{population}: live E2E ≠ simulated"
    assert any(hop_sim[k][2] > base_sim[k][2] + 0.01 for k in hop_sim), "the floor must bind somewhere"


def test_a_network_fault_keeps_the_floor_live():
    """A link delay recomputes the live view's RTTs from the network: the floor still applies."""
    s = scenario(HOP_MS)
    world = build_world(s)
    handles = ZoneHandles([None] * len(world.zone_ids), list(world.zone_ids), [], False)  # never called here
    gateway = GridGateway(s, handles, GatewaySettings())
    berlin, dallas = world.population_ids.index("berlin"), world.population_ids.index("dallas")
    mexico = world.region_ids.index("mexico")
    frankfurt_1 = world.zone_ids.index("frankfurt-1")
    assert gateway.view.rtt_s[berlin][frankfurt_1] == pytest.approx(0.04)
    gateway.apply_network(FaultAction(0.0, LINK_DELAY, population=dallas, region=mexico, value=0.002))
    assert gateway.view.rtt_s[berlin][frankfurt_1] == pytest.approx(0.04)  # still floored
    assert gateway.view.rtt_s[dallas][world.zone_ids.index("mexico-1")] == pytest.approx(0.04)  # 28.1 ms, floored
    gateway.apply_network(FaultAction(0.0, LINK_DELAY, population=dallas, region=mexico, value=0.030))
    assert gateway.view.rtt_s[dallas][world.zone_ids.index("mexico-1")] == pytest.approx(0.0561)  # over the floor


def test_the_simulator_keeps_the_floor_after_a_network_fault():
    from grid.scenario import load_scenario
    from grid.sim.simulator import Simulation

    scenario = load_scenario(
        "default",
        {
            "network.gateway_hop_ms": 5,
            "faults": [
                {
                    "at_s": 1,
                    "duration_s": 1,
                    "kind": "link_delay",
                    "population": "london",
                    "region": "paris",
                    "add_ms": 3,
                }
            ],
        },
    )
    sim = Simulation(scenario, duration_s=3.0, rate_scale=0.01)
    sim.run()  # the fault started and ended: the RTTs were rebuilt twice
    finite = [rtt for row in sim.view.rtt_s for rtt in row if rtt != float("inf")]
    assert min(finite) >= 0.010 - 1e-12  # RTT ≥ 2 × the 5 ms hop, as the gateway keeps it
