"""The discrete-event driver: the grid in virtual time, deterministic per seed.

One heap keyed by (time, sequence) holds deliveries (a request reaching its zone after half its
RTT), zone wake-ups (the serving model's `next_event_time`), fault actions, load reports, hedges
and retries. Arrivals are not in the heap: they come pre-sorted in NumPy chunks and are merged with
the heap top, so the heap stays small. Nothing here reads a wall clock except the progress bar.

Retries follow the live gateway (`grid.serving.retry`): an attempt that fails before its first
token left the zone is routed again, by the same policy among the zones not tried yet, at most
`routing.max_retries` times and within the retry budget. A refusal at admission (queue full, zone
down) travels back to the router first (half the attempt's RTT), as it does live; a zone failing
under a request is known at once. The retried request keeps its arrival time, so its TTFT and E2E
count from the original send, and it stays in flight until it ends.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from heapq import heappop, heappush
from pathlib import Path

import numpy as np

from grid.demand.arrivals import DemandModel, poisson_arrivals, size_sampler, trace_arrivals
from grid.errors import GridInputError
from grid.faults import LINK_DELAY, PARTITION, ZONE_DOWN, ZONE_SLOW, ZONE_UP, NetworkState, fault_timeline
from grid.report import Report, ZoneFigures, build_report
from grid.routing.policy import Policy
from grid.routing.registry import make_policy
from grid.routing.view import GridView, ZoneView
from grid.scenario import Scenario
from grid.serving.request import CANCELLED, ERROR, REJECTED, Request
from grid.serving.retry import RetryBudget
from grid.serving.zone import FAILED, FINISHED, FIRST_TOKEN, Zone
from grid.stats import RunStats
from grid.world import World, build_world

INF = math.inf
UTILIZATION_WINDOW_S = 1.0
_DELIVER, _ZONE, _FAULT, _REPORT, _HEDGE, _RETRY = 0, 1, 2, 3, 4, 5
RECORD_FIELDS = (
    "id", "population", "zone", "arrival_s", "prompt_tokens", "output_tokens", "rtt_ms",
    "status", "ttft_s", "tpot_s", "e2e_s", "queue_s", "retries",
)  # fmt: skip
# Why an attempt failed, as the gateway names it: the zone refused it (queue full) / was down /
# failed under it or was unreachable. A request that runs out of retries ends rejected after "busy",
# failed otherwise.
BUSY, DOWN, FAILED_ATTEMPT = "busy", "down", "error"


class _Tries:
    """A request's attempts, kept from its first failed attempt until it ends."""

    __slots__ = ("zones", "retries", "retrying", "reason")

    def __init__(self, zone: int) -> None:
        self.zones = [zone]  # every zone tried (never one twice)
        self.retries = 0
        self.retrying = False  # counted in the retry budget
        self.reason = ""  # why the last attempt failed


def build_zone_views(scenario: Scenario, world: World) -> list[ZoneView]:
    """The static part of what a router knows about each zone."""
    views = []
    for i, zone_id in enumerate(world.zone_ids):
        zone = scenario.zones[zone_id]
        region = scenario.regions[zone.region]
        profile = scenario.gpus[zone.gpu]
        views.append(
            ZoneView(
                index=i,
                zone_id=zone_id,
                region=zone.region,
                replicas=zone.replicas,
                capacity_rps=float(world.capacity_rps[i]),
                prefill_s_per_token=profile.prefill_per_token_s,
                first_token_floor_s=profile.frontend_s + profile.prefill_base_s,
                price_usd_per_gpu_hour=region.price_usd_per_gpu_hour,
                carbon_g_per_kwh=region.carbon_g_per_kwh,
                tz=region.tz,
            )
        )
    return views


class Simulation:
    """One run of a scenario under one policy."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str | Policy | None = None,
        seed: int | None = None,
        duration_s: float | None = None,
        rate_scale: float = 1.0,
        records_path: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        self.rate_scale = rate_scale
        self.world = build_world(scenario)
        self.policy = (
            make_policy(policy or scenario.routing.policy, self.seed) if not hasattr(policy, "choose") else policy
        )
        self.zones = [
            Zone(scenario.gpus[scenario.zones[z].gpu], scenario.zones[z].replicas, scenario.zones[z].max_queue)
            for z in self.world.zone_ids
        ]
        self.network = NetworkState(self.world)
        self.view = GridView(
            zones=build_zone_views(scenario, self.world),
            rtt_s=self.network.rtt_s(),
            candidates=[],
            start_utc=scenario.demand.start_utc,
            slo_ttft_s=scenario.slo.ttft_s,
        )
        self.view.refresh_candidates()
        self.stats = RunStats(len(self.world.population_ids), len(self.world.zone_ids), scenario.slo)
        self.records_path = Path(records_path) if records_path else None
        self.progress = progress
        self.in_flight = 0
        self.hedges: dict[str, int] = {"sent": 0, "won": 0, "cancelled": 0}
        routing = scenario.routing
        self.budget = RetryBudget(routing.retry_budget_ratio, routing.retry_budget_min)

    def _arrivals(self, rng: np.random.Generator):
        s = self.scenario
        demand = DemandModel(s.demand, s.populations)
        if s.demand.trace is not None:
            scale = self.rate_scale * s.demand.scale
            return trace_arrivals(s.demand.trace.path, demand.shares, scale, self.duration_s, s.demand.trace.loop, rng)
        if self.rate_scale != 1.0:
            demand.mean_rate_rps *= self.rate_scale
        return poisson_arrivals(demand, size_sampler(s.demand.sizes), self.duration_s, rng)

    def run(self) -> Report:
        rng = np.random.default_rng(self.seed)
        jitter_rng = np.random.default_rng([self.seed, 1])  # its own stream: jitter never shifts arrivals
        records_file = self.records_path.open("w", newline="") if self.records_path else None
        try:
            writer = csv.writer(records_file) if records_file else None
            if writer:
                writer.writerow(RECORD_FIELDS)
            self._loop(self._arrivals(rng), jitter_rng, writer)
        finally:
            if records_file:
                records_file.close()
        self.stats.flush()
        figures = [ZoneFigures(z.work_s, z.area_queued, z.area_in_system) for z in self.zones]
        meta = {
            "clock": "simulated",
            "policy": getattr(self.policy, "name", type(self.policy).__name__),
            "seed": self.seed,
            "rate_scale": self.rate_scale,
        }
        if self.hedges["sent"]:
            meta["hedges"] = dict(self.hedges)
        return build_report(self.scenario, self.world, self.stats, figures, self.duration_s, meta, self.in_flight)

    def _loop(self, arrivals, jitter_rng: np.random.Generator, writer) -> None:  # noqa: C901 — the hot loop
        end_s = self.duration_s
        zones = self.zones
        n_zones = len(zones)
        view = self.view
        zone_views = view.zones
        policy = self.policy
        choose = policy.choose
        observe = getattr(policy, "observe", None)
        if observe is not None and getattr(type(policy), "observe", None) is Policy.observe:
            observe = None  # the base class's no-op: skip the call
        stats = self.stats
        stats_arrivals = stats.arrivals
        finished = stats.finished
        rejected = stats.rejected
        failed = stats.failed
        jitter_ratio = self.scenario.network.jitter_ratio
        interval_s = self.scenario.routing.report_interval_s
        fresh = interval_s <= 0.0
        heap: list = []
        seq = 0
        zone_next = [INF] * n_zones
        timeline = fault_timeline(self.scenario.faults, self.world)
        for action in timeline:
            if action.at_s <= end_s:
                heappush(heap, (action.at_s, seq, _FAULT, action))
                seq += 1
        # Load reports every interval; with fresh reports, every event refreshes its zone and the
        # tick (UTILIZATION_WINDOW_S) keeps the decaying utilization of quiet zones current.
        tick_s = interval_s if not fresh else UTILIZATION_WINDOW_S
        heappush(heap, (0.0, seq, _REPORT, None))
        seq += 1
        rtt = view.rtt_s
        next_id = 0
        in_flight = 0
        progress = _Progress(end_s) if self.progress else None
        # Hedging (policies with `hedge_after_s` and `choose_hedge`, e.g. `hedged`): a second copy when
        # the first token is late, the loser cancelled at the winner's first token.
        hedge_after = getattr(policy, "hedge_after_s", None)
        hedge_cap = getattr(policy, "hedge_budget", 0.0)
        hedges = self.hedges = {"sent": 0, "won": 0, "cancelled": 0}
        # Retries: `tries` holds only requests that failed an attempt (empty in a run without faults
        # or full queues, so the hot path pays one dict truth test per ended request).
        max_retries = self.scenario.routing.max_retries
        retry_on = max_retries > 0
        budget = self.budget
        budget.retrying = 0
        tries: dict[Request, _Tries] = {}
        retries = stats.retries
        retry_jitter = random.Random(self.seed * 1_000_003 + 2)  # its own stream: retries never shift arrivals
        population_ids = self.world.population_ids

        def drop_twin(winner: Request, now: float) -> None:
            """The winner's first token is out: cancel the other copy and free its zone. (A hedged
            request is one request in flight however many copies it has.)"""
            loser = winner.twin
            winner.twin = loser.twin = None
            if loser.status:
                return
            hedges["cancelled"] += 1
            hedges["won"] += winner.attempts  # attempts = 1 marks the hedge copy
            if tries and loser in tries:
                hand_over(loser, winner)
            if loser.admit_s >= 0.0 and zones[loser.zone].cancel(loser, now):
                reschedule(loser.zone)
            else:  # still on its way to the zone: dropped on delivery
                loser.cancelled = True
                loser.status = CANCELLED

        def forget(request: Request) -> int:
            """The request ended: it leaves the retry budget. Returns how many retries it had."""
            tried = tries.pop(request, None)
            if tried is None:
                return 0
            if tried.retrying:
                budget.retrying -= 1
            return tried.retries

        def hand_over(gone: Request, survivor: Request) -> None:
            """One copy of a hedged request goes, the other lives on: the survivor inherits the zones
            tried (never twice on one zone) and the retries (one request in the budget)."""
            lost = tries.pop(gone, None)
            kept = tries.get(survivor)
            if kept is None:
                kept = tries[survivor] = _Tries(survivor.zone)
            for z in lost.zones if lost is not None else (gone.zone,):
                if z not in kept.zones:
                    kept.zones.append(z)
            if lost is not None:
                kept.retries += lost.retries
                if lost.retrying:
                    if kept.retrying:
                        budget.retrying -= 1
                    kept.retrying = True

        def retry_at(request: Request, at_s: float, reason: str) -> None:
            """An attempt failed before the first token: decide at `at_s` whether and where to retry."""
            nonlocal seq
            tried = tries.get(request)
            if tried is None:
                tried = tries[request] = _Tries(request.zone)
            tried.reason = reason
            heappush(heap, (at_s, seq, _RETRY, request))
            seq += 1

        def choose_again(request: Request, tried: list[int], now: float) -> int:
            """The policy's choice among the zones not tried yet (-1 when there is none): the
            gateway's `_choose(request, tried)`, whose answer outside them means the nearest."""
            p = request.population
            saved = view.candidates[p]
            candidates = [z for z in saved if z not in tried]
            if not candidates:
                return -1
            view.candidates[p] = candidates
            try:
                zi = choose(request, view)
            except Exception as exc:
                raise GridInputError(
                    f"policy {policy.name!r} raised {exc!r} at t={now:.3f}s retrying request {request.id} "
                    f"(population {population_ids[p]})"
                ) from exc
            finally:
                view.candidates[p] = saved
            return zi if zi in candidates else candidates[0]

        def reject(request: Request, zi: int) -> None:
            request.status = REJECTED
            rejected[request.population, zi] += 1
            n_retries = forget(request) if tries else 0
            if writer is not None:
                _write_record(writer, request, math.nan, math.nan, math.nan, math.nan, n_retries)
            if observe is not None:
                observe(request)

        def fail_attempt(request: Request, now: float) -> int:
            """Its zone failed under an admitted request: retried when no token had left the zone,
            else ended (1). A copy of a hedged request whose twin lives on just goes (0)."""
            twin = request.twin
            if twin is not None:
                request.twin = twin.twin = None
                hand_over(request, twin)
                return 0
            if retry_on and request.first_token_s < 0.0:
                retry_at(request, now, FAILED_ATTEMPT)
                return 0
            end_request(request, FAILED)
            return 1

        def end_request(request: Request, status_kind: int) -> None:
            """Record an ended request (finished or failed) for stats and records."""
            p, z = request.population, request.zone
            n_retries = forget(request) if tries else 0
            if status_kind == FINISHED:
                half = request.rtt_s * 0.5
                ttft = request.first_token_s + half - request.arrival_s
                e2e = request.finish_s + half - request.arrival_s
                n_out = request.output_tokens
                tpot = (e2e - ttft) / (n_out - 1) if n_out > 1 else math.nan
                finished(p, z, ttft, tpot, e2e, request.prompt_tokens, n_out)
            else:
                failed[p, z] += 1
                ttft = tpot = e2e = math.nan
            if writer is not None:
                queue = request.scheduled_s - request.admit_s if request.scheduled_s >= 0 else math.nan
                _write_record(writer, request, ttft, tpot, e2e, queue, n_retries)
            if observe is not None:
                observe(request)

        def refresh(zi: int, now: float) -> None:
            zone, zv = zones[zi], zone_views[zi]
            zv.up = zone.up
            zv.outstanding = zone.in_system
            zv.waiting = zone.queued
            zv.running = zone.in_system - zone.queued
            zv.zone_ttft_s = zone.ttft_ewma_s
            zv.utilization = zone.utilization(now)
            zv.kv_usage = zone.kv_used / (zone.kv_cache_tokens * zone.replicas) if zone.replicas else 0.0
            zv.report_s = now
            zv.sent_since_report = 0

        def reschedule(zi: int) -> None:
            nonlocal seq
            t = zones[zi].next_event_time()
            if t < zone_next[zi]:
                zone_next[zi] = t
                heappush(heap, (t, seq, _ZONE, zi))
                seq += 1

        for chunk in itertools.chain(arrivals, (None,)):
            if chunk is None:  # the end of the run: a sentinel arrival drains the heap up to end_s
                times, pops, prompts, outputs, jitters = [end_s], [0], [0], [0], [0.0]
            else:
                times = chunk.arrival_s.tolist()
                pops = chunk.population.tolist()
                prompts = chunk.prompt_tokens.tolist()
                outputs = chunk.output_tokens.tolist()
                n = len(times)
                jitters = (jitter_rng.exponential(jitter_ratio, n) if jitter_ratio > 0 else np.zeros(n)).tolist()
            n_chunk = len(times)
            i = 0
            while i < n_chunk:
                t_arrival = times[i]
                if heap and heap[0][0] < t_arrival:
                    t, _, kind, payload = heappop(heap)
                    if kind == _ZONE:
                        if t != zone_next[payload]:
                            continue  # superseded wake-up
                        zone_next[payload] = INF
                        for event_kind, request in zones[payload].advance(t):
                            if request.twin is not None:
                                if event_kind == FIRST_TOKEN:
                                    drop_twin(request, t)
                                elif event_kind == FAILED:  # its twin lives on: this copy just goes
                                    twin = request.twin
                                    request.twin = twin.twin = None
                                    hand_over(request, twin)
                                    continue
                            if event_kind != FIRST_TOKEN:
                                in_flight -= 1
                                end_request(request, event_kind)
                        reschedule(payload)
                        if fresh:
                            refresh(payload, t)
                    elif kind == _DELIVER:
                        if payload.cancelled:
                            continue  # a hedge loser cancelled on its way
                        zi = payload.zone
                        zone = zones[zi]
                        if zone.admit(payload, t):
                            reschedule(zi)
                            if fresh:
                                refresh(zi, t)
                            continue
                        twin = payload.twin
                        if twin is not None:  # refused, but its twin lives on
                            payload.twin = twin.twin = None
                            hand_over(payload, twin)
                            continue
                        if retry_on:  # the refusal travels back, then the router tries elsewhere
                            payload.status = REJECTED if zone.up else ERROR
                            retry_at(payload, t + 0.5 * payload.rtt_s, BUSY if zone.up else DOWN)
                            continue
                        in_flight -= 1
                        if not zone.up:  # sent to a dead zone: the connection fails
                            payload.status = ERROR
                            payload.finish_s = t
                            end_request(payload, FAILED)
                            continue
                        reject(payload, zi)
                    elif kind == _RETRY:
                        request = payload
                        tried = tries[request]
                        view.now_s = t
                        zi = -1
                        if tried.retries < max_retries and (tried.retrying or budget.allows(in_flight)):
                            zi = choose_again(request, tried.zones, t)
                        if zi < 0:  # out of retries, over budget, or no zone left to try: it ends
                            in_flight -= 1
                            request.finish_s = t
                            if tried.reason == BUSY:
                                reject(request, request.zone)
                            else:
                                request.status = ERROR
                                end_request(request, FAILED)
                            continue
                        p = request.population
                        retries[p, request.zone] += 1
                        if not tried.retrying:
                            tried.retrying = True
                            budget.retrying += 1
                        tried.retries += 1
                        tried.zones.append(zi)
                        request.zone = zi  # a fresh attempt: the failed one left nothing in its zone
                        request.status = ""
                        request.replica = -1
                        request.admit_s = request.scheduled_s = request.first_token_s = request.finish_s = -1.0
                        request.decode_start_step = 0
                        rtt_s = rtt[p][zi]
                        if rtt_s == INF:  # routed into a partition: this attempt fails at once
                            request.status = ERROR
                            retry_at(request, t, FAILED_ATTEMPT)
                            continue
                        if jitter_ratio > 0:
                            rtt_s *= 1.0 + retry_jitter.expovariate(1.0 / jitter_ratio)
                        request.rtt_s = rtt_s
                        zone_views[zi].sent_since_report += 1
                        heappush(heap, (t + 0.5 * rtt_s, seq, _DELIVER, request))
                        seq += 1
                    elif kind == _REPORT:
                        view.now_s = t
                        was_up = [zv.up for zv in zone_views]
                        for zi in range(n_zones):
                            refresh(zi, t)
                        if was_up != [zv.up for zv in zone_views]:
                            view.refresh_candidates()
                        if t + tick_s <= end_s:
                            heappush(heap, (t + tick_s, seq, _REPORT, None))
                            seq += 1
                    elif kind == _HEDGE:
                        original = payload
                        if original.status or original.twin is not None:
                            continue  # ended already
                        if original.first_token_s >= 0.0:
                            continue  # its first token exists (at worst still on its way to the client)
                        if hedges["sent"] >= hedge_cap * (next_id - hedges["sent"]):
                            continue  # over the extra-work budget
                        view.now_s = t
                        zb = policy.choose_hedge(original, view)
                        if zb is None or zb == original.zone or rtt[original.population][zb] == INF:
                            continue
                        if tries and original in tries and zb in tries[original].zones:
                            continue  # never twice on one zone
                        copy = Request(next_id, original.population, original.prompt_tokens, original.output_tokens,
                                       original.arrival_s)  # fmt: skip
                        next_id += 1
                        rtt_s = rtt[original.population][zb]
                        if jitter_ratio > 0:  # a copy crosses the network like any attempt
                            rtt_s *= 1.0 + retry_jitter.expovariate(1.0 / jitter_ratio)
                        copy.zone, copy.rtt_s, copy.attempts = zb, rtt_s, 1
                        copy.twin, original.twin = original, copy
                        hedges["sent"] += 1
                        zone_views[zb].sent_since_report += 1
                        heappush(heap, (t + 0.5 * copy.rtt_s, seq, _DELIVER, copy))
                        seq += 1
                    else:
                        in_flight -= self._apply_fault(payload, t, fail_attempt, reschedule, refresh)
                        rtt = view.rtt_s
                    continue
                if chunk is None:
                    break
                # An arrival: route it now, deliver it after half its round trip.
                p = pops[i]
                stats_arrivals[p] += 1
                request = Request(next_id, p, prompts[i], outputs[i], t_arrival)
                jitter = jitters[i]
                i += 1
                next_id += 1
                view.now_s = t_arrival
                if not view.candidates[p]:
                    request.status = REJECTED
                    rejected[p, n_zones] += 1
                    if writer is not None:
                        _write_record(writer, request, math.nan, math.nan, math.nan, math.nan, 0)
                    continue
                try:
                    zi = choose(request, view)
                except Exception as exc:
                    raise GridInputError(
                        f"policy {policy.name!r} raised {exc!r} at t={t_arrival:.3f}s on request {request.id} "
                        f"(population {self.world.population_ids[p]})"
                    ) from exc
                if type(zi) is not int or not 0 <= zi < n_zones:
                    raise GridInputError(
                        f"policy {policy.name!r} returned {zi!r} at t={t_arrival:.3f}s: a zone index must be an "
                        f"int in 0..{n_zones - 1} (view.zones[i].index)"
                    )
                rtt_s = rtt[p][zi]
                request.zone = zi
                if rtt_s == INF:  # routed into a partition: the connection fails
                    if retry_on:
                        in_flight += 1
                        request.status = ERROR
                        retry_at(request, t_arrival, FAILED_ATTEMPT)
                        continue
                    request.status = ERROR
                    request.finish_s = t_arrival
                    end_request(request, FAILED)
                    continue
                rtt_s *= 1.0 + jitter
                request.rtt_s = rtt_s
                zone_views[zi].sent_since_report += 1
                in_flight += 1
                heappush(heap, (t_arrival + 0.5 * rtt_s, seq, _DELIVER, request))
                seq += 1
                if hedge_after is not None:
                    delay_s = hedge_after(request, view)
                    if delay_s is not None:
                        heappush(heap, (t_arrival + delay_s, seq, _HEDGE, request))
                        seq += 1
            if progress and chunk is not None and times:
                progress.update(times[-1])
        for zone in zones:
            zone._account(end_s)
        self.in_flight = in_flight
        if progress:
            progress.close()

    def _apply_fault(self, action, t, fail_attempt, reschedule, refresh) -> int:
        """Apply one fault action at `t`; returns how many in-flight requests it ended
        (`fail_attempt(request, t)` returns 1 if it ended the request, 0 if it retries or drops it)."""
        ended = 0
        view = self.view
        if action.kind == ZONE_DOWN:
            for _, request in self.zones[action.zone].fail_all(t):
                ended += fail_attempt(request, t)
        elif action.kind == ZONE_UP:
            self.zones[action.zone].restore(t)
            reschedule(action.zone)
        elif action.kind == ZONE_SLOW:
            self.zones[action.zone].set_slow_factor(action.value, t)
            reschedule(action.zone)
        elif action.kind in (LINK_DELAY, PARTITION):
            self.network.apply(action)
            view.rtt_s = self.network.rtt_s()
        if action.kind in (ZONE_DOWN, ZONE_UP) and self.scenario.routing.report_interval_s <= 0:
            refresh(action.zone, t)  # health is known at the next report; with fresh reports, now
        view.refresh_candidates()
        return ended


def _write_record(
    writer, request: Request, ttft: float, tpot: float, e2e: float, queue: float, retries: int = 0
) -> None:
    writer.writerow(
        (
            request.id,
            request.population,
            request.zone,
            f"{request.arrival_s:.6f}",
            request.prompt_tokens,
            request.output_tokens,
            f"{request.rtt_s * 1000:.3f}",
            request.status or "open",
            _fmt(ttft),
            _fmt(tpot),
            _fmt(e2e),
            _fmt(queue),
            retries,
        )  # fmt: skip
    )


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


class _Progress:
    """A progress bar over simulated time, on stderr, only when it is a terminal or forced."""

    def __init__(self, total_s: float) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=round(total_s), unit="sim-s", desc="simulating", leave=False)
        self._done = 0

    def update(self, t_s: float) -> None:
        step = int(t_s) - self._done
        if step > 0:
            self._bar.update(step)
            self._done += step

    def close(self) -> None:
        self._bar.close()
