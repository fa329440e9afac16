"""The discrete-event driver: the grid in virtual time, deterministic per seed.

One heap keyed by (time, sequence) holds deliveries (a request reaching its zone after half its
RTT), zone wake-ups (the serving model's `next_event_time`), fault actions, load reports, hedges
and retries. Arrivals are not in the heap: they come pre-sorted in NumPy chunks and are merged with
the heap top, so the heap stays small. Nothing here reads a wall clock except the progress bar.

Every rule about a request (routing among candidates, retries and their budget, hedging, the context
limit, ending it once into every sink) is the dispatch core's (`grid.dispatch`); this module only
moves requests in virtual time. A refusal at admission (queue full, zone down) travels back to the
router first (half the attempt's RTT), as it does live; a zone failing under a request is known at
once. A retried request keeps its arrival time, so its TTFT and E2E count from the original send.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
from mypy_extensions import mypyc_attr

from grid.demand.arrivals import ArrivalChunk
from grid.demand.plan import demand_plan
from grid.dispatch.core import BUSY, DOWN, FAILED_ATTEMPT, Attempts, Dispatch, client_times
from grid.dispatch.gateway_stage import gateway_stage
from grid.dispatch.recording import RecordsSink, StatsSink
from grid.dispatch.reports import apply_load_report, apply_replicas
from grid.dispatch.settings import DispatchSettings, build_view, client_zone_rtt_s, report_tick_s
from grid.dispatch.sinks import Outcome, Sink, Sinks
from grid.faults import LINK_DELAY, PARTITION, SPOT_PREEMPT, ZONE_DOWN, ZONE_SLOW, ZONE_UP, NetworkState, fault_timeline
from grid.report import Report, ZoneFigures, build_report
from grid.routing.crossing import Crossing
from grid.routing.registry import make_policy
from grid.routing.view import GridView
from grid.scenario import Scenario
from grid.serving.request import ERROR, REJECTED, STOP, Request
from grid.serving.zone import FAILED, FINISHED, FIRST_TOKEN, Zone
from grid.sim.events import _DELIVER, _END, _FAULT, _HEDGE, _REPORT, _RETRY, _SCALE, _TICK, _ZONE
from grid.sim.fleet import SimFleet
from grid.sim.hedging import Hedging
from grid.sim.progress import Progress
from grid.stats import RunStats
from grid.world import build_world

INF: Final = math.inf
# Final: compiled (`make native`), each is a C static instead of a module-dict look-up per call.
heappush: Final = heapq.heappush
heappop: Final = heapq.heappop
heapreplace: Final = heapq.heapreplace

Arrivals = Callable[[np.random.Generator], Iterable[ArrivalChunk]]


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (`make native`): tests subclass it
class Simulation:
    """One run of a scenario under one policy.

    `arrivals(rng)` gives the run's arrivals as time-sorted chunks (default: the scenario's demand,
    `grid.demand.plan`, which may end the arrivals early, at a trace's end, and drain the grid after);
    `sinks` receive every event of the run on the simulated clock (`grid.dispatch.sinks`), beside the
    run's own stats and records."""

    zone_type: ClassVar[type[Zone]] = Zone  # a subclass may observe its zones (tests tap admissions)

    def __init__(
        self,
        scenario: Scenario,
        policy=None,
        seed: int | None = None,
        duration_s: float | None = None,
        rate_scale: float = 1.0,
        records_path: str | Path | None = None,
        progress: bool = False,
        arrivals: Arrivals | None = None,
        sinks: Iterable[Sink] = (),
        autoscaler: str | None = None,
        replay: ArrivalChunk | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        self.rate_scale = rate_scale
        self.demand = demand_plan(scenario, self.duration_s, rate_scale, self.seed) if arrivals is None else None
        self.drain = self.demand is not None and self.demand.drain
        if self.demand is not None:
            self.duration_s = self.demand.horizon_s  # a drained run's duration grows to its last event
        self.arrival_window_s = self.duration_s
        self.world = build_world(scenario, self.demand.mean_tokens if self.demand is not None else None)
        self.policy = (
            make_policy(policy or scenario.routing.policy, self.seed) if not hasattr(policy, "choose") else policy
        )
        self.settings = DispatchSettings.from_scenario(scenario)
        specs = [scenario.zones[z] for z in self.world.zone_ids]
        self.zones = [self.zone_type(scenario.gpus[z.gpu], z.replicas, z.max_queue) for z in specs]
        self.fleet = SimFleet(scenario, self.world, self.zones, autoscaler)
        self.network = NetworkState(self.world)
        self.view: GridView = build_view(scenario, self.world, self.settings, self.network.rtt_s())
        self.stats = RunStats(len(self.world.population_ids), len(self.world.zone_ids), scenario.slo)
        self.records_path = Path(records_path) if records_path else None
        self.progress = progress
        self.arrivals = arrivals if arrivals is not None else self.scenario_arrivals
        if replay is not None:  # a recorded run's arrivals; the rest (world, drain) as the scenario's run
            self.arrivals = lambda rng: iter([replay])
        self.sinks = list(sinks)
        self.in_flight = 0
        self.dispatch: Dispatch | None = None

    def scenario_arrivals(self, rng: np.random.Generator) -> Iterable[ArrivalChunk]:
        """The scenario's demand (Poisson, sessions or a trace), its rates × `rate_scale`."""
        plan = self.demand or demand_plan(self.scenario, self.duration_s, self.rate_scale, self.seed)
        return plan.arrivals(rng)

    def run(self) -> Report:
        rng = np.random.default_rng(self.seed)
        jitter_rng = np.random.default_rng([self.seed, 1])  # its own stream: jitter never shifts arrivals
        records = RecordsSink(self.records_path, crossing=Crossing(self.world)) if self.records_path else None
        sinks = Sinks([*([records] if records else []), *self.sinks])
        self.fleet.sinks = sinks
        if self.fleet.enabled:
            sinks.add(self.fleet.controller)  # it counts what is routed where
        dispatch = self.dispatch = Dispatch(
            self.policy, self.view, self.settings, StatsSink(self.stats), sinks, self.world.population_ids
        )
        # No cyclic GC during the loop: a run makes no reference cycles (a collection after one finds
        # none), so collections only re-scan the run's live objects (≈6% of a compiled run's time).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            run = _Run(self, dispatch, jitter_rng)
            self.duration_s = run.loop(self.arrivals(rng))
            self.in_flight = dispatch.in_flight
        finally:
            if gc_was_enabled:
                gc.enable()
            if records:
                records.close()
        self.stats.flush()
        figures = [ZoneFigures(z.work_s, z.area_queued, z.area_in_system, z.billing) for z in self.zones]
        meta = {"clock": "simulated", "policy": dispatch.policy_name, "seed": self.seed, "rate_scale": self.rate_scale}
        if self.fleet.enabled or self.fleet.events:
            meta["scaling"] = self.fleet.meta()
        if dispatch.hedges["sent"]:
            meta["hedges"] = dict(dispatch.hedges)
        demand_meta = self.demand.meta() if self.demand is not None else None
        if demand_meta is not None:
            meta["demand"] = demand_meta
        if self.duration_s != self.arrival_window_s:
            meta["arrival_window_s"] = self.arrival_window_s  # arrivals stopped here; the grid drained after
        return build_report(self.scenario, self.world, self.stats, figures, self.duration_s, meta, self.in_flight)


class _Run(Hedging):
    """The state of one run in virtual time: the heap, the zones' wake-ups, the requests retrying.

    The hot paths (arrivals, zone events, deliveries) are inline in `loop`; the rare ones (retries,
    hedges, reports, faults) are methods."""

    def __init__(self, sim: Simulation, dispatch: Dispatch, jitter_rng: np.random.Generator) -> None:
        self.sim = sim
        self.dispatch = dispatch
        self.sinks = dispatch.sinks
        self.view = sim.view
        self.zones = sim.zones
        self.end_s = sim.duration_s
        self.drain = sim.drain  # after end_s: no arrivals, the run goes on until no request is in flight …
        self.drain_until_s = self.end_s + 86_400.0  # … or for a day, if requests are stuck (no zone serves)
        self.jitter_rng = jitter_rng
        self.jitter_ratio = sim.settings.jitter_ratio
        self.gateway = gateway_stage(sim.settings)  # the live gateway's load-dependent delay, if modelled
        self.retry_jitter = random.Random(sim.seed * 1_000_003 + 2)  # its own stream: retries never shift arrivals
        self.heap: list[tuple[float, int, int, Any]] = []  # (time, seq, kind, payload)
        self.pushed = 0  # the events' sequence numbers: events at one time keep their order
        self.zone_next = [INF] * len(self.zones)
        # `tries` holds only requests that failed an attempt (empty in a run without faults or full
        # queues, so the hot path pays one dict truth test per ended request).
        self.tries: dict[Request, Attempts] = {}
        self.next_id = 0
        self.fresh = sim.settings.fresh_reports
        self.report_sink = self.sinks.wants("zone_reported")
        self.fleet_seen = [0] * len(self.zones)  # each zone's fleet_version the view last took
        # Policies that read the zones' cache summaries get them; the rest skip their cost (a copy per report).
        self.summaries = bool(getattr(sim.policy, "reads_cached_units", False))

    # --- ending ------------------------------------------------------------------------------------

    def _attempts(self, request: Request) -> Attempts | None:
        return self.tries.pop(request, None) if self.tries else None

    def end(self, request: Request, now_s: float) -> None:
        """A request finished or failed: its client knows now."""
        attempts = self.tries.pop(request, None) if self.tries else None
        retries = attempts.retries if attempts is not None else 0
        if request.status != ERROR:
            ttft_s, tpot_s, e2e_s = client_times(request)  # not `*client_times(...)`: compiled, a native call
            outcome = Outcome(request.finish_reason, request.zone, ttft_s, tpot_s, e2e_s, retries)
        else:
            outcome = Outcome(ERROR, request.zone, retries=retries)
        self.dispatch.end(request, outcome, attempts, now_s)

    def reject(self, request: Request, zone: int, now_s: float, reason: str = BUSY) -> None:
        attempts = self._attempts(request)
        retries = attempts.retries if attempts is not None else 0
        self.dispatch.end(request, Outcome(REJECTED, zone, retries=retries, reason=reason), attempts, now_s)

    # --- the heap ----------------------------------------------------------------------------------

    def push(self, t: float, kind: int, payload) -> None:
        self.pushed += 1
        heappush(self.heap, (t, self.pushed, kind, payload))

    def reschedule(self, zi: int, top_done: bool = False) -> None:
        """Zone `zi`'s next wake-up into the heap, when it is sooner than the one there. `top_done`: the
        event at the heap's top is handled (still the least: what it pushed comes later, events follow
        their causes), and goes; the wake-up takes its place in one sift instead of a pop and a push."""
        t = self.zones[zi].next_event_time()
        if t < self.zone_next[zi]:
            self.zone_next[zi] = t
            self.pushed += 1
            if top_done:
                heapreplace(self.heap, (t, self.pushed, _ZONE, zi))
            else:
                heappush(self.heap, (t, self.pushed, _ZONE, zi))
        elif top_done:
            heappop(self.heap)

    def refresh(self, zi: int, now: float) -> None:
        """The router's view of zone `zi` from its state now (a load report; its cache summary is a
        copy that ages with it, or with fresh reports the caches themselves)."""
        zone, zv = self.zones[zi], self.view.zones[zi]
        if zone.fleet_version != self.fleet_seen[zi]:  # replicas came or went: capacity and candidates follow
            self.fleet_seen[zi] = zone.fleet_version
            serving, warming, draining = zone.counts()
            if apply_replicas(zv, serving, warming, draining, zone.billing[-1][2]):
                self.view.refresh_candidates()
        zv.up, room = zone.up, zone.kv_cache_tokens * zone.replicas
        kv = zone.kv_used / room if room else 0.0
        units = zone.cached_units(not self.fresh) if self.summaries else None
        apply_load_report(zv, zone.in_system, zone.queued, kv, zone.utilization(now), zone.ttft_ewma_s, now, units)
        if self.report_sink:
            self.sinks.zone_reported(zi, zv, now)

    # --- retries -----------------------------------------------------------------------------------

    def retry_at(self, request: Request, at_s: float, reason: str) -> None:
        """An attempt failed before the first token: decide at `at_s` whether and where to retry."""
        attempts = self.tries.get(request)
        if attempts is None:
            attempts = self.tries[request] = Attempts(request.zone)
        attempts.failed(request.zone, reason)
        self.push(at_s, _RETRY, request)

    def on_retry(self, request: Request, t: float) -> None:
        attempts = self.tries[request]
        zi = self.dispatch.retry(request, attempts, t)
        if zi < 0:  # out of retries, over budget, or no zone left to try: it ends
            request.finish_s = t
            if attempts.reason == BUSY:
                self.reject(request, request.zone, t)
            else:
                request.status = ERROR
                self.end(request, t)
            return
        request.zone = zi  # a fresh attempt: the failed one left nothing in its zone
        request.status = ""
        request.replica = -1
        request.admit_s = request.scheduled_s = request.first_token_s = request.finish_s = -1.0
        request.decode_start_step = 0
        rtt_s = self.view.rtt_s[request.population][zi]  # finite: candidates are reachable
        if self.jitter_ratio > 0:
            rtt_s *= 1.0 + self.retry_jitter.expovariate(1.0 / self.jitter_ratio)
        if self.gateway is not None:
            rtt_s = self.gateway.round_trip_s(rtt_s)
        request.rtt_s = rtt_s
        self.dispatch.routed(request, zi, rtt_s, t)
        self.push(t + 0.5 * rtt_s, _DELIVER, request)

    def fail_attempt(self, request: Request, now: float) -> None:
        """Its zone failed under an admitted request: retried when no token had left the zone, else
        ended when the error reaches the client. A copy of a hedged request whose twin lives on just goes."""
        twin = request.twin
        if twin is not None:
            request.twin = twin.twin = None
            self.hand_over(request, twin, now)
        elif request.first_token_s < 0.0:
            self.retry_at(request, now, FAILED_ATTEMPT)
        else:
            self.push(now + 0.5 * request.rtt_s, _END, request)

    # --- reports and faults ------------------------------------------------------------------------

    def on_report(self, t: float, tick_s: float) -> None:
        view = self.view
        view.now_s = t
        was_up = [zv.up for zv in view.zones]
        for zi in range(len(self.zones)):
            self.refresh(zi, t)
        if was_up != [zv.up for zv in view.zones]:
            view.refresh_candidates()
            for zi, zv in enumerate(view.zones):
                if zv.up != was_up[zi]:
                    self.sinks.zone_health(zi, zv.up, t)
        if t + tick_s <= self.end_s or (self.drain and self.dispatch.in_flight and t < self.drain_until_s):
            self.push(t + tick_s, _REPORT, tick_s)

    def on_fault(self, action, t: float) -> None:
        """Apply one fault action at `t`."""
        zones, view = self.zones, self.view
        if action.kind == ZONE_DOWN:
            for _, request in zones[action.zone].fail_all(t):
                self.fail_attempt(request, t)
        elif action.kind == ZONE_UP:
            zones[action.zone].restore(t)
            self.reschedule(action.zone)
        elif action.kind == ZONE_SLOW:
            zones[action.zone].set_slow_factor(action.value, t)
            self.reschedule(action.zone)
        elif action.kind == SPOT_PREEMPT:
            self.sim.fleet.preempt(action.zone, int(action.value), t)
            self.reschedule(action.zone)
        elif action.kind in (LINK_DELAY, PARTITION):
            self.sim.network.apply(action)
            view.rtt_s = client_zone_rtt_s(self.sim.network.rtt_s(), self.sim.settings.gateway_hop_s)  # as live
        if action.kind in (ZONE_DOWN, ZONE_UP) and self.fresh:
            self.refresh(action.zone, t)  # health is known at the next report; with fresh reports, now
            self.sinks.zone_health(action.zone, view.zones[action.zone].up, t)
        view.refresh_candidates()

    def on_scale(self, t: float) -> None:
        """The autoscaler's decision (grid.scaling): zones change at their own times from here."""
        fleet = self.sim.fleet
        self.view.now_s = t
        for zi in fleet.decide(t, self.view):
            self.reschedule(zi)
            if self.fresh:
                self.refresh(zi, t)
        if t + fleet.settings.interval_s <= self.end_s or (
            self.drain and self.dispatch.in_flight and t < self.drain_until_s
        ):
            self.push(t + fleet.settings.interval_s, _SCALE, None)

    def on_tick(self, t: float) -> None:
        self.sinks.tick(t)
        if t + 1.0 <= self.end_s or (self.drain and self.dispatch.in_flight and t < self.drain_until_s):
            self.push(t + 1.0, _TICK, None)

    # --- the loop ----------------------------------------------------------------------------------

    def loop(self, arrivals: Iterable[ArrivalChunk]) -> float:  # noqa: C901 — the hot loop
        """Run to the end (draining: until nothing is in flight); returns when the run ended."""
        sim, dispatch, view = self.sim, self.dispatch, self.view
        end_s = self.end_s
        zones = self.zones
        zone_next = self.zone_next
        heap = self.heap
        fresh = self.fresh
        jitter_ratio = self.jitter_ratio
        gateway = self.gateway
        for action in fault_timeline(sim.scenario.faults, sim.world):
            if action.at_s <= end_s:
                self.push(action.at_s, _FAULT, action)
        # Load reports every interval; with fresh reports, every event refreshes its zone and the
        # tick (`report_tick_s`) keeps the decaying utilization of quiet zones current.
        interval_s = sim.settings.report_interval_s
        self.push(0.0, _REPORT, report_tick_s(interval_s))
        if self.sinks.wants("tick"):
            self.push(0.0, _TICK, None)
        if sim.fleet.enabled:
            self.push(sim.fleet.settings.interval_s, _SCALE, None)
        hedge_delay = dispatch.hedge_delay_s if dispatch.hedging else None
        progress = Progress(end_s) if sim.progress else None
        t = end_s
        for chunk in itertools.chain(arrivals, (None,)):
            if chunk is None:  # the end of the run: a sentinel arrival drains the heap up to end_s
                times, pops, prompts, outputs, jitters = [INF if self.drain else end_s], [0], [0], [0], [0.0]
                hashes = None
            else:
                times = chunk.arrival_s.tolist()
                pops = chunk.population.tolist()
                prompts = chunk.prompt_tokens.tolist()
                outputs = chunk.output_tokens.tolist()
                n = len(times)
                jitters = (self.jitter_rng.exponential(jitter_ratio, n) if jitter_ratio > 0 else np.zeros(n)).tolist()
                hashes = getattr(chunk, "prefix_hashes", None)  # a PrefixedChunk: sessions, traces with hashes
                block = getattr(chunk, "block_tokens", 0)
            n_chunk = len(times)
            i = 0
            while i < n_chunk:
                t_arrival = times[i]
                if heap and heap[0][0] < t_arrival:
                    t, _, kind, payload = heap[0]  # zone events and admissions replace it by a wake-up
                    if kind == _ZONE:
                        zi: int = payload
                        if t != zone_next[zi]:
                            heappop(heap)
                            continue  # superseded wake-up
                        zone_next[zi] = INF
                        for event_kind, request in zones[zi].advance(t):
                            if request.twin is not None:
                                if event_kind == FIRST_TOKEN:
                                    self.drop_twin(request, t)
                                elif event_kind == FAILED:  # its twin lives on: this copy just goes
                                    twin = request.twin
                                    request.twin = twin.twin = None
                                    self.hand_over(request, twin, t)
                                    continue
                            if event_kind == FINISHED:  # its end reaches the client half an RTT later
                                self.push(t + 0.5 * request.rtt_s, _END, request)
                            elif event_kind == FAILED:  # its replica was preempted under it
                                self.fail_attempt(request, t)
                        self.reschedule(zi, top_done=True)
                        if fresh:
                            self.refresh(zi, t)
                        continue
                    if kind == _DELIVER:
                        request = payload
                        zi = request.zone
                        zone = zones[zi]
                        if not request.cancelled and zone.admit(request, t):  # cancelled: a hedge loser on its way
                            self.reschedule(zi, top_done=True)
                            if fresh:
                                self.refresh(zi, t)
                            continue
                        heappop(heap)
                        if request.cancelled:
                            continue
                        other = request.twin  # not `twin`: that name holds a Request (never None) above
                        if other is not None:  # refused, but its twin lives on
                            request.twin = other.twin = None
                            self.hand_over(request, other, t)
                            continue
                        # The refusal travels back, then the router tries elsewhere (or gives up).
                        request.status = REJECTED if zone.up else ERROR
                        self.retry_at(request, t + 0.5 * request.rtt_s, BUSY if zone.up else DOWN)
                        continue
                    heappop(heap)
                    if kind == _END:
                        self.end(payload, t)
                    elif kind == _RETRY:
                        self.on_retry(payload, t)
                    elif kind == _REPORT:
                        self.on_report(t, payload)
                    elif kind == _HEDGE:
                        self.on_hedge(payload, t)
                    elif kind == _TICK:
                        self.on_tick(t)
                    elif kind == _SCALE:
                        self.on_scale(t)
                    else:
                        self.on_fault(payload, t)
                    continue
                if chunk is None:
                    break
                # An arrival: route it now, deliver it after half its round trip.
                p = pops[i]
                request = Request(self.next_id, p, prompts[i], outputs[i], t_arrival, STOP,
                                  hashes[i] if hashes is not None else None, block)  # fmt: skip
                jitter = jitters[i]
                i += 1
                self.next_id += 1
                if not dispatch.arrive(request, t_arrival):
                    continue  # refused: over the context limit
                if gateway is not None:
                    gateway.arrive(request.output_tokens, t_arrival)
                zi = dispatch.route(request, t_arrival)
                if zi < 0:  # no zone up and reachable from this population
                    self.reject(request, -1, t_arrival)
                    continue
                request.zone = zi
                rtt_s = view.rtt_s[p][zi] * (1.0 + jitter)  # finite: candidates are reachable
                if gateway is not None:
                    rtt_s = gateway.round_trip_s(rtt_s)
                request.rtt_s = rtt_s
                dispatch.routed(request, zi, rtt_s, t_arrival)
                self.push(t_arrival + 0.5 * rtt_s, _DELIVER, request)
                if hedge_delay is not None:
                    delay_s = hedge_delay(request, t_arrival)
                    if delay_s is not None:
                        self.push(t_arrival + delay_s, _HEDGE, request)
            if progress and chunk is not None and times:
                progress.update(times[-1])
        end_s = max(end_s, t) if self.drain else end_s
        for zone in zones:
            zone._account(end_s)
        if progress:
            progress.close()
        return end_s
