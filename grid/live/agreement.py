"""Live vs simulated, request by request: where each request went and what its prompt hit in the cache.

A run's hit rate mixes two things: the cache model (given the same zone and the same earlier turns,
the same blocks hit) and placement (which zone a load-dependent policy picked, which moves with timing
live). Splitting the requests by "routed to the same zone in both clocks" tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from grid.dispatch.sinks import Sink
from grid.report import Report
from grid.scenario import Scenario
from grid.sim.simulator import Simulation


class RequestLog(Sink):
    """Each simulated request's zone index, cached prompt tokens and TTFT, by id (its schedule index)."""

    def __init__(self) -> None:
        self.zone: dict[int, int] = {}
        self.cached: dict[int, int] = {}
        self.ttft_s: dict[int, float] = {}

    def ended(self, request, outcome, now_s: float) -> None:
        self.zone[request.id] = request.zone
        self.cached[request.id] = request.cached_tokens
        self.ttft_s[request.id] = outcome.ttft_s


def simulate_logged(
    scenario: Scenario, policy: str | None, duration_s: float, rate_scale: float, seed: int
) -> tuple[Report, RequestLog, list[str]]:
    """`run_simulated` with each request logged: (report, log, zone ids)."""
    log = RequestLog()
    sim = Simulation(scenario, policy, seed, duration_s, rate_scale, sinks=[log])
    return sim.run(), log, sim.world.zone_ids


@dataclass(frozen=True)
class Group:
    """Requests routed alike (or not) in both clocks: count, prompt tokens, hit rates, exact matches."""

    requests: int
    prompt_tokens: int
    live_hit: float
    sim_hit: float
    exact: int

    def describe(self, label: str) -> str:
        return (
            f"{label}: {self.requests} requests, hit live {self.live_hit:.1%} / sim {self.sim_hit:.1%}, "
            f"{self.exact} exact"
        )


def split_by_zone(client: dict, sim: RequestLog, zone_ids: list[str], prompts: list[int]) -> dict[bool, Group]:
    """{True: requests served by the same zone live as simulated, False: the rest}, each with its
    token-weighted hit rate in both clocks; requests that failed in either clock are left out."""
    live_zone, live_cached = client["per_request"]["zone"], client["per_request"]["cached_tokens"]
    ids: dict[bool, list[int]] = {True: [], False: []}
    for i, zone in enumerate(live_zone):
        if zone is not None and i in sim.zone:
            ids[zone == zone_ids[sim.zone[i]]].append(i)
    groups = {}
    for same, group in ids.items():
        tokens = sum(prompts[i] for i in group)
        live_hit = sum(live_cached[i] for i in group) / (tokens or 1)
        sim_hit = sum(sim.cached[i] for i in group) / (tokens or 1)
        exact = sum(live_cached[i] == sim.cached[i] for i in group)
        groups[same] = Group(len(group), tokens, live_hit, sim_hit, exact)
    return groups


def describe_split(groups: dict[bool, Group]) -> str:
    return " · ".join(groups[same].describe("same zone" if same else "other zone") for same in (True, False))
