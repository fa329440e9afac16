"""One grid, two clocks: the same arrivals through `grid sim` and through the live dispatch path
(the gateway and in-process zone actors on a virtual clock) make the same decisions.

For every registered policy and a user policy, on a world with an SLO, a tariff, full queues (so
retries), a slowed zone, a partition and prompts over the context, each request's sequence of
(attempt zone, retry, hedge, outcome) must be the same in both drivers, with load reports every
0.5 s and with fresh ones (the scenario's 0, which the zone actors push with their updates).

Network jitter is off: the two drivers draw it from different random streams (same distribution).
A `zone_down` fault kills a Ray actor live, which an in-process zone cannot show: the world has a
slowed zone and a partition instead."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from grid.dispatch.sinks import Sink
from grid.live.cluster import ZoneHandles
from grid.live.experiment import with_policy_and_seed
from grid.live.gateway import GatewaySettings, GridGateway
from grid.live.openai_api import ApiError, CompletionRequest
from grid.live.zone_actor import ZoneActor, zone_actor_args
from grid.live.zone_link import LocalZone
from grid.routing.registry import POLICIES
from grid.scenario import load_scenario
from grid.serving.request import LENGTH, STOP
from grid.sim.simulator import Simulation
from grid.world import build_world

from ..live.conftest import SMALL_SCENARIO
from .virtual_loop import VirtualLoop

DURATION_S = 12.0
USER_POLICY = "tests.routing.user_policy:FarthestFirst"


def scenario(report_interval_s: float = 0.5):
    return load_scenario(
        str(SMALL_SCENARIO),
        {
            "model.context_tokens": 400,  # ≈3% of prompts do not fit; longer answers are cut
            "gpus.h100.max_num_seqs": 4,
            "zones.frankfurt-1.max_queue": 2,
            "zones.frankfurt-2.max_queue": 2,
            "zones.mexico-1.max_queue": 2,
            "network.jitter_ratio": 0.0,
            "demand.rate_rps": 45,
            "demand.start_utc": "2026-06-01T17:00:00Z",  # the tariff's evening peak in Europe
            "slo.ttft_s": 0.5,
            "routing.report_interval_s": report_interval_s,
            "faults": [
                {"at_s": 3, "kind": "zone_slow", "zone": "frankfurt-2", "factor": 4, "duration_s": 4},
                {"at_s": 5, "kind": "partition", "population": "dallas", "region": "mexico", "duration_s": 4},
            ],
        },
    )


class DecisionLog(Sink):
    """Each request's decisions, keyed by its arrival time (ids differ between the drivers)."""

    def __init__(self) -> None:
        self.by_request: dict[float, list[tuple]] = {}

    def _add(self, request, event: tuple) -> None:
        self.by_request.setdefault(round(request.arrival_s, 9), []).append(event)

    def routed(self, request, zone, rtt_s, decision_s, now_s) -> None:
        self._add(request, ("attempt", zone))

    def retried(self, request, from_zone, reason, to_zone, now_s) -> None:
        self._add(request, ("retry", from_zone, reason))

    def hedged(self, request, zone, outcome, now_s) -> None:
        self._add(request, ("hedge", zone, outcome))

    def ended(self, request, outcome, now_s) -> None:
        kind = "completed" if outcome.status in (STOP, LENGTH) else outcome.status
        self._add(request, ("end", kind, outcome.zone, outcome.reason if kind == "rejected" else ""))


def arrivals(s, seed: int):
    sim = Simulation(s, seed=seed, duration_s=DURATION_S)
    chunks = list(sim.scenario_arrivals(np.random.default_rng(seed)))
    return [
        (t, p, prompt, out)
        for chunk in chunks
        for t, p, prompt, out in zip(
            chunk.arrival_s.tolist(),
            chunk.population.tolist(),
            chunk.prompt_tokens.tolist(),
            chunk.output_tokens.tolist(),
            strict=True,
        )  # fmt: skip
    ]


def simulated(s, policy: str, seed: int, drain_s: float) -> DecisionLog:
    log = DecisionLog()
    demand = Simulation(s, seed=seed, duration_s=DURATION_S)  # arrivals over DURATION_S, then a drain
    Simulation(s, policy, seed, DURATION_S + drain_s, sinks=[log], arrivals=demand.scenario_arrivals).run()
    return log


async def in_process_gateway(s, sink, settings: GatewaySettings | None = None) -> GridGateway:
    """The gateway and one zone actor per zone in this process, all on the event loop's clock (no Ray,
    no HTTP): the live driver's rules, driven like the simulator's. `sink` gets the run's events."""
    loop = asyncio.get_running_loop()
    world = build_world(s)
    actors = []
    for zone_id in world.zone_ids:
        args, kwargs = zone_actor_args(s, zone_id, 0.02)
        actors.append(LocalZone(ZoneActor(*args, **kwargs, clock=loop.time)))
    handles = ZoneHandles(actors, list(world.zone_ids), [s.zones[z].region for z in world.zone_ids], False)
    gateway = GridGateway(s, handles, settings or GatewaySettings(), clock=loop.time)
    gateway.sinks.add(sink)
    await gateway.start()
    return gateway


async def _live(s, policy: str, seed: int, requests) -> DecisionLog:
    log = DecisionLog()
    gateway = await in_process_gateway(with_policy_and_seed(s, policy, seed), log)
    loop = asyncio.get_running_loop()
    context = s.model.context_tokens
    pending = []

    async def one(population: int, prompt: int, output: int) -> None:
        limit = max(1, min(output, context - prompt))
        body = CompletionRequest(model=s.model.name, prompt="x", max_tokens=limit, ignore_eos=True)
        with contextlib.suppress(ApiError):  # refused (context) or given up: the decision log has it
            await gateway.handle(False, body, prompt, population)

    for t, p, prompt, out in requests:
        loop.call_at(t, lambda a=(p, prompt, out): pending.append(loop.create_task(one(*a))))
    await asyncio.sleep(DURATION_S + 0.001)
    await asyncio.gather(*pending)
    await gateway.stop()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the zone actors' loops
        task.cancel()
    return log


def live(s, policy: str, seed: int, requests) -> DecisionLog:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_live(s, policy, seed, requests))
    finally:
        loop.close()


@pytest.mark.parametrize("report_interval_s", [0.0, 0.5], ids=["fresh-reports", "reports-every-0.5s"])
@pytest.mark.parametrize("policy", [*POLICIES, USER_POLICY])
def test_live_dispatch_decides_as_the_simulator(policy, report_interval_s):
    s = scenario(report_interval_s)
    seed = 5
    requests = arrivals(s, seed)
    assert len(requests) > 400
    sim_log = simulated(s, policy, seed, drain_s=60.0)
    live_log = live(s, policy, seed, requests)
    assert set(sim_log.by_request) == {round(t, 9) for t, *_ in requests}
    events = [e for log in sim_log.by_request.values() for e in log]
    assert any(e[0] == "retry" for e in events), "the world must force retries"
    assert any(e[:2] == ("end", "rejected") and e[3] == "context_length" for e in events)
    differ = sorted(t for t in sim_log.by_request if sim_log.by_request[t] != live_log.by_request.get(t))
    assert not differ, (
        f"{len(differ)} of {len(sim_log.by_request)} requests decided differently; the first, at t={differ[0]}: "
        f"simulated {sim_log.by_request[differ[0]]}, live {live_log.by_request.get(differ[0])}"
    )
    assert len(live_log.by_request) == len(sim_log.by_request)
