"""Routing policies: baselines, `latency_aware`, and SLO-bounded spillover, cost and carbon. One idea each.

All pick among the `candidates` the driver passes in (zones up, reachable and not tried yet, nearest first); load is
per replica so big and small zones compare fairly. Ties go to the nearer zone.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from typing import ClassVar, Final

from mypy_extensions import mypyc_attr

from grid.routing import explain as ex
from grid.routing.explain import Explanation, Row
from grid.routing.policy import Policy
from grid.routing.prefix_index import PrefixIndex
from grid.routing.tariff import local_hour, price_usd_per_gpu_hour
from grid.routing.view import HEADROOM_UTILIZATION, GridView, ZoneView
from grid.serving.request import LENGTH, STOP, Request

INF: Final = math.inf  # compiled, `float("inf")` parses the string at every use


class Nearest(Policy):
    """Lowest RTT from the request's population (anycast / GeoDNS); zones of one region share an
    RTT, so ties are spread at random, as DNS spreads clients over a region's availability zones."""

    name = "nearest"

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        rtt = view.rtt_s[request.population]
        best = rtt[candidates[0]]
        ties = 1
        while ties < len(candidates) and rtt[candidates[ties]] == best:
            ties += 1
        return candidates[int(self.rng.random() * ties)] if ties > 1 else candidates[0]

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        winner = peek(self.rng, lambda: self.choose(request, candidates, view))
        rtt = view.rtt_s[request.population]
        rows = [Row(z, {"rtt_s": rtt[z], "drawn": float(z == winner)}) for z in candidates]
        return ex.make(self.name, "drawn", rows, lambda z, r: f"nearest ({r.terms['rtt_s'] * 1000:.0f} ms RTT)")


class RoundRobin(Policy):
    """Each reachable zone in turn, ignoring distance and load (a classic L4 balancer)."""

    name = "round_robin"

    def __init__(self, rng=None) -> None:
        super().__init__(rng)
        self._turn = 0

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        self._turn += 1
        return candidates[(self._turn - 1) % len(candidates)]

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        return drawn(self.name, candidates, candidates[self._turn % len(candidates)], "its turn")


class Random(Policy):
    """A uniformly random reachable zone."""

    name = "random"

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        return candidates[int(self.rng.random() * len(candidates))]

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        winner = peek(self.rng, lambda: self.choose(request, candidates, view))
        return drawn(self.name, candidates, winner, "drawn at random")


class Weighted(Policy):
    """Random, weighted by each zone's capacity (Envoy's weighted round robin, randomized)."""

    name = "weighted"

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        cumulative = list(itertools.accumulate(view.zones[i].capacity_rps for i in candidates))
        return candidates[bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1])]

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        winner = peek(self.rng, lambda: self.choose(request, candidates, view))
        return drawn(self.name, candidates, winner, "drawn at random, weighted by capacity")


class LeastOutstanding(Policy):
    """Fewest reported outstanding requests per replica (Envoy's least_request over all hosts)."""

    name = "least_outstanding"

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        zones = view.zones
        return min(candidates, key=lambda i: zones[i].load)

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        rows = [Row(z, {"load": view.zones[z].load}, view.zones[z].load) for z in candidates]
        return ex.make(self.name, "least", rows, lambda z, r: f"fewest outstanding per replica ({r.score:.1f})")


class PowerOfTwoChoices(Policy):
    """Two random zones, the less loaded wins (Mitzenmacher 2001; Ray Serve's and Envoy's default).

    Randomness keeps it from herding onto one zone when load reports are stale.
    """

    name = "p2c"

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        first = int(self.rng.random() * n)
        second = int(self.rng.random() * (n - 1))
        second += second >= first  # distinct from the first
        a, b = candidates[first], candidates[second]
        load_a, load_b = view.zones[a].load, view.zones[b].load
        if load_a == load_b:
            return a if first < second else b  # candidates are nearest first
        return a if load_a < load_b else b

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        if len(candidates) == 1:
            return ex.make(self.name, "least", [Row(candidates[0], {}, 0.0)], lambda z, r: "the only candidate")
        n = len(candidates)

        def pair() -> tuple[int, int]:
            first = int(self.rng.random() * n)
            second = int(self.rng.random() * (n - 1))
            return candidates[first], candidates[second + (second >= first)]

        a, b = peek(self.rng, pair)
        rows = [Row(z, {"load": view.zones[z].load, "sampled": 1.0 if z == a else 2.0 if z == b else 0.0},
                    view.zones[z].load) for z in candidates]  # fmt: skip
        return ex.make(self.name, "sampled_pair", rows, lambda z, r: f"less loaded of two sampled ({r.score:.1f})")


UTILIZATION_MEMORY_S: Final = 1.0  # the zones' utilization is a rate decayed over this (grid/serving/zone.py)


def estimated_utilization(view: GridView, zone: int) -> float:
    """The zone's utilization now, as this router can best tell: the reported figure decayed by its
    age (as the zone's own signal decays) plus the requests this router sent since (each adds one
    request's share of the zone's capacity). Without the correction, every decision between two
    reports sees the same stale number and herds onto the zone that looked idle."""
    return zone_utilization(view.zones[zone], view.now_s)


def zone_utilization(z: ZoneView, now_s: float) -> float:
    """`estimated_utilization` of zone view `z` at `now_s` (for a caller that holds the zone's view)."""
    age_s = now_s - z.report_s
    reported = z.utilization * math.exp(-age_s / UTILIZATION_MEMORY_S) if age_s > 0 else z.utilization
    return reported + z.sent_since_report / (z.capacity_rps * UTILIZATION_MEMORY_S)


def predicted_ttft_s(
    request: Request, view: GridView, zone: int, stale_after_s: float = 5.0, utilization: float | None = None
) -> float:
    """Client TTFT if sent to `zone`: RTT + frontend and prefill + queue wait.

    Queue wait has two parts: the backlog (reported waiting + what this router sent since that
    report) drained at the zone's capacity, and the contention of a busy engine — M/M/1 waiting time
    per replica, s·u/(1−u), at the estimated utilization u (capped at 0.95), s = one request's share
    of a saturated replica. Information older than `stale_after_s` adds its excess age as a penalty,
    so a zone that stopped reporting loses traffic gradually instead of being trusted forever.
    `utilization`: `estimated_utilization(view, zone)` when the caller has it already.
    """
    z = view.zones[zone]
    if z.capacity_rps <= 0:
        return INF
    u = zone_utilization(z, view.now_s) if utilization is None else utilization
    return zone_ttft_s(z, view.rtt_s[request.population][zone], request.prompt_tokens, view.now_s, stale_after_s, u)


def zone_ttft_s(z: ZoneView, rtt_s: float, prompt_tokens: int, now_s: float, stale_after_s: float, u: float) -> float:
    """`predicted_ttft_s` at zone view `z`, `rtt_s` away, at estimated utilization `u` (for a caller that
    holds the zone's view, its RTT and `zone_utilization`: the formula is here, once). `z` has capacity:
    `zone_utilization` divides by it, and `predicted_ttft_s` answers inf for a zone without."""
    u = min(u, 0.95)
    wait_s = (z.waiting + z.sent_since_report) / z.capacity_rps + z.replicas / z.capacity_rps * u / (1.0 - u)
    age_s = now_s - z.report_s
    stale_s = age_s - stale_after_s if age_s > stale_after_s else 0.0
    floor_s = z.first_token_floor_s + prompt_tokens * z.prefill_s_per_token
    return rtt_s + floor_s + wait_s + stale_s


def peek(rng, draw):
    """What `draw()` gives with `rng` as it is, leaving `rng` as it was (so `choose` draws the same)."""
    state = rng.getstate()
    try:
        return draw()
    finally:
        rng.setstate(state)


def drawn(policy: str, candidates: list[int], winner: int, why: str) -> Explanation:
    rows = [Row(z, {"drawn": float(z == winner)}) for z in candidates]
    return ex.make(policy, "drawn", rows, lambda z, r: why)


def latency_terms(request: Request, view: GridView, zone: int, stale_after_s: float) -> dict[str, float]:
    """`predicted_ttft_s`'s parts: RTT, frontend + prefill, queue wait (the rest of the prediction, so
    its formula stays in one place), staleness penalty; and the estimated utilization."""
    z = view.zones[zone]
    rtt_s = view.rtt_s[request.population][zone]
    prefill_s = z.first_token_floor_s + request.prompt_tokens * z.prefill_s_per_token
    stale_s = max(0.0, view.now_s - z.report_s - stale_after_s)
    predicted_s = predicted_ttft_s(request, view, zone, stale_after_s)
    return {
        "rtt_s": rtt_s,
        "prefill_s": prefill_s,
        "queue_s": predicted_s - rtt_s - prefill_s - stale_s,
        "stale_s": stale_s,
        "utilization": estimated_utilization(view, zone),
    }


def describe_ttft(score_s: float, terms: dict[str, float], eligible_any: bool) -> str:
    why = "lowest predicted TTFT" + (" among zones with headroom" if eligible_any else " (no zone had headroom)")
    ms = {k: v * 1000 for k, v in terms.items() if k.endswith("_s")}
    parts = f"RTT {ms['rtt_s']:.0f} + prefill {ms['prefill_s']:.0f} + queue {ms['queue_s']:.0f}"
    if terms.get("cache_s"):
        parts += f" − cache {terms['cache_s'] * 1000:.0f}"
    return f"{why}: {score_s * 1000:.0f} ms ({parts} ms)"


@mypyc_attr(allow_interpreted_subclasses=True)  # grid.routing.cache_policies and user policies subclass it
class LatencyAware(Policy):
    """Lowest predicted client TTFT among zones with headroom; ties within 1 ms go to the nearer.

    A batching engine near saturation degrades faster than any queueing formula predicts from
    1-second-old utilization, so zones at or above `headroom_utilization` (1/1.4: Envoy's
    overprovisioning factor) are used only when no zone has headroom; then the lowest prediction
    over all zones wins (its contention term still steers away from the busiest).

    It learns the zones' prefix caches from its own decisions (`PrefixIndex`: what it sent where):
    for a request with prefix information the prediction drops the prefill of the prompt tokens a
    zone is expected to hold (`score_s`), so a long cached prefix can be worth a farther zone.
    """

    name = "latency_aware"
    stale_after_s: ClassVar[float] = 5.0
    headroom_utilization: ClassVar[float] = HEADROOM_UTILIZATION

    def __init__(self, rng=None) -> None:
        super().__init__(rng)
        self.index: PrefixIndex | None = None  # built on the first request with prefix information

    def expected_hit_tokens(self, request: Request, view: GridView, zone: int) -> int:
        """Prompt tokens of `request` this router expects `zone`'s prefix cache to hold."""
        if self.index is None:
            self.index = PrefixIndex([z.kv_cache_tokens for z in view.zones])
        return self.index.hit_tokens(request, zone)

    def score_s(self, request: Request, view: GridView, zone: int) -> float:
        """Predicted client TTFT at `zone`, less the prefill its expected cache hit saves."""
        predicted = predicted_ttft_s(request, view, zone, self.stale_after_s)
        if request.prefix_hashes:
            predicted -= self.expected_hit_tokens(request, view, zone) * view.zones[zone].prefill_s_per_token
        return predicted

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        score = self.score_s if request.prefix_hashes else None
        stale_after_s, headroom_utilization = self.stale_after_s, self.headroom_utilization
        best, best_s = -1, INF
        fallback, fallback_s = candidates[0], INF
        # A prediction is at least the zone's RTT plus the grid's lowest no-load floor for this prompt (the
        # queue and staleness terms are ≥ 0). Candidates come nearest first, so once that bound cannot beat
        # the best (or the fallback) by 1 ms, no later zone can: they are skipped, and the choice is the same.
        zones, now_s, prompt_tokens = view.zones, view.now_s, request.prompt_tokens
        rtt_s = view.rtt_s[request.population]
        floor_s = view.floor_base_s + prompt_tokens * view.floor_per_token_s
        for zone in candidates:  # nearest first: a tie keeps the nearer
            if score is None and rtt_s[zone] + floor_s >= (best_s if best_s > fallback_s else fallback_s) - 1e-3:
                break
            z = zones[zone]
            u = zone_utilization(z, now_s)
            if score is None:
                predicted = zone_ttft_s(z, rtt_s[zone], prompt_tokens, now_s, stale_after_s, u)
            else:
                predicted = score(request, view, zone)
            if predicted < fallback_s - 1e-3:
                fallback, fallback_s = zone, predicted
            if u >= headroom_utilization:
                continue
            if predicted < best_s - 1e-3:
                best, best_s = zone, predicted
        choice = best if best >= 0 else fallback
        if score is not None:
            self.record(request, choice)
        return choice

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        rows = self.latency_rows(request, candidates, view)
        any_ok = any(r.eligible for r in rows)
        return ex.make(self.name, "lowest_eligible", rows, lambda z, r: describe_ttft(r.score, r.terms, any_ok))

    def latency_rows(self, request: Request, candidates: list[int], view: GridView) -> list[Row]:
        """Each candidate's terms, its score as `choose` ranks it, and the headroom rule."""
        rows = []
        for zone in candidates:
            terms = latency_terms(request, view, zone, self.stale_after_s)
            if request.prefix_hashes:
                score = self.score_s(request, view, zone)
                terms["cache_s"] = predicted_ttft_s(request, view, zone, self.stale_after_s) - score
            else:
                score = predicted_ttft_s(request, view, zone, self.stale_after_s)
            eligible = estimated_utilization(view, zone) < self.headroom_utilization
            rows.append(Row(zone, terms | {"headroom": float(eligible)}, score, eligible))
        return rows

    def record(self, request: Request, zone: int) -> None:
        """`request` goes to `zone`: its prompt's prefix will be cached there (the index exists: every
        choice that records first asked `expected_hit_tokens`)."""
        if self.index is not None:
            self.index.record(request, zone)


class Hedged(LatencyAware):
    """latency_aware, plus a second copy to the next-best zone when the first token is later than the
    population's recent p95 TTFT ("The Tail at Scale", Dean & Barroso 2013). The first copy to
    produce a token wins; the other is cancelled and frees its zone. Copies are capped at
    `hedge_budget` (5%) of requests. The simulator drives the hedge through `hedge_after_s` and
    `choose_hedge`; a driver without hedging support routes it as latency_aware.
    """

    name = "hedged"
    hedge_budget: ClassVar[float] = 0.05
    hedge_quantile: ClassVar[float] = 0.95
    window: ClassVar[int] = 500  # recent first-token times kept per population
    warmup: ClassVar[int] = 50  # no hedging before this many observations

    def __init__(self, rng=None) -> None:
        super().__init__(rng)
        self._recent: dict[int, collections.deque[float]] = {}
        self._threshold_s: dict[int, float] = {}

    def hedge_after_s(self, request: Request, view: GridView) -> float | None:
        """Client-side delay after which a request without a first token gets a second copy."""
        return self._threshold_s.get(request.population)

    def choose_hedge(self, request: Request, candidates: list[int], view: GridView) -> int | None:
        """The best other zone by predicted TTFT (None if there is none)."""
        others = [z for z in candidates if z != request.zone]
        if not others:
            return None
        return min(others, key=lambda z: predicted_ttft_s(request, view, z, self.stale_after_s))

    def observe(self, request: Request) -> None:
        if request.first_token_s < 0.0 or request.status not in (STOP, LENGTH):
            return
        recent = self._recent.setdefault(request.population, collections.deque(maxlen=self.window))
        recent.append(request.first_token_s + 0.5 * request.rtt_s - request.arrival_s)
        if len(recent) >= self.warmup and len(recent) % 25 == 0:
            ordered = sorted(recent)
            self._threshold_s[request.population] = ordered[int(self.hedge_quantile * (len(ordered) - 1))]


# --- SLO-, price- and carbon-aware policies ---------------------------------------------------------
# They share `latency_aware`'s prediction (`predicted_ttft_s`) and its headroom rule, and aim at a
# share of the scenario's TTFT objective (`view.slo_ttft_s`): the prediction is a mean-like estimate,
# so aiming at `slo_fraction` of the SLO leaves room for the tail (jitter, big prompts, stale load).

DEFAULT_SLO_TTFT_S = 1.0  # the default scenario's objective, when the driver gives none


def _ttft_target_s(view: GridView, slo_fraction: float) -> float:
    slo_s = view.slo_ttft_s if view.slo_ttft_s is not None else DEFAULT_SLO_TTFT_S
    return slo_fraction * slo_s


def _meets_target(request: Request, view: GridView, zone: int, target_s: float, policy: LatencyAware) -> bool:
    if estimated_utilization(view, zone) >= policy.headroom_utilization:
        return False
    return predicted_ttft_s(request, view, zone, policy.stale_after_s) <= target_s


class SloSpillover(LatencyAware):
    """Nearest zone while it is predicted to meet the TTFT SLO; otherwise spill to the next nearest
    that is, and only when none is, to the lowest predicted TTFT (`latency_aware`).

    The "spillover" / overflow routing of CDNs and of multi-region LLM gateways (stay local, cross a
    border only when local capacity runs out): fewer cross-region requests than `latency_aware`,
    which moves traffic for any predicted gain above 1 ms.
    """

    name = "slo_spillover"
    slo_fraction: ClassVar[float] = 0.6

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        target_s = _ttft_target_s(view, self.slo_fraction)
        for zone in candidates:  # nearest first
            if _meets_target(request, view, zone, target_s, self):
                return zone
        return super().choose(request, candidates, view)

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        target_s = _ttft_target_s(view, self.slo_fraction)
        rows = [
            Row(r.zone, r.terms, r.score, _meets_target(request, view, r.zone, target_s, self))
            for r in self.latency_rows(request, candidates, view)
        ]
        met = any(r.eligible for r in rows)
        return ex.make(
            self.name, "spill_nearest", rows,
            lambda z, r: f"nearest zone predicted within {target_s * 1000:.0f} ms" if met
            else describe_ttft(r.score, r.terms, any(x.terms["headroom"] for x in rows)),
            target_s=target_s,
        )  # fmt: skip


class _CheapestMeetingSlo(LatencyAware):
    """Among zones predicted to meet the TTFT SLO, the one with the lowest `cost(view, zone)`; ties
    (within 0.1%) go to the lower predicted TTFT; when no zone is predicted to meet it, `latency_aware`."""

    slo_fraction: ClassVar[float] = 0.6

    def cost(self, view: GridView, zone: int) -> float:
        raise NotImplementedError

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        target_s = _ttft_target_s(view, self.slo_fraction)
        best, best_key = -1, (INF, INF)
        for zone in candidates:
            if estimated_utilization(view, zone) >= self.headroom_utilization:
                continue
            predicted = predicted_ttft_s(request, view, zone, self.stale_after_s)
            if predicted > target_s:
                continue
            key = (round(self.cost(view, zone), 3), predicted)
            if key < best_key:
                best, best_key = zone, key
        return best if best >= 0 else super().choose(request, candidates, view)

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        target_s = _ttft_target_s(view, self.slo_fraction)
        rows = []
        for r in self.latency_rows(request, candidates, view):
            predicted = predicted_ttft_s(request, view, r.zone, self.stale_after_s)
            terms = r.terms | {"cost": self.cost(view, r.zone), "predicted_s": predicted}
            rows.append(Row(r.zone, terms, r.score, r.eligible and predicted <= target_s))
        met, headroom = any(r.eligible for r in rows), any(r.terms["headroom"] for r in rows)
        what = self.name.split("_")[0]
        return ex.make(
            self.name, "cheapest_meeting", rows,
            lambda z, r: f"lowest {what} ({r.terms['cost']:.4g}) of the zones predicted within {target_s * 1000:.0f} ms"
            if met else describe_ttft(r.score, r.terms, headroom),
            target_s=target_s,
        )  # fmt: skip


class CostAware(_CheapestMeetingSlo):
    """Cheapest zone predicted to meet the TTFT SLO, at its region's GPU-hour price for the local hour
    (a time-of-use tariff: grid/routing/tariff.py). "Follow the cheap power" — as batch schedulers
    chase spot prices — but only within the latency objective."""

    name = "cost_aware"

    def cost(self, view: GridView, zone: int) -> float:
        z = view.zones[zone]
        return price_usd_per_gpu_hour(z.price_usd_per_gpu_hour, local_hour(view.start_utc, view.now_s, z.tz))


class CarbonAware(_CheapestMeetingSlo):
    """Lowest grid carbon intensity (gCO2/kWh) among zones predicted to meet the TTFT SLO: carbon-aware
    spatial load shifting (Google's carbon-intelligent computing; Radovanović et al. 2021), bounded by
    the latency objective."""

    name = "carbon_aware"

    def cost(self, view: GridView, zone: int) -> float:
        return view.zones[zone].carbon_g_per_kwh
