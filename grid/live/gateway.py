"""The live grid's gateway: an OpenAI-compatible FastAPI app that routes each request to a zone actor.

`create_app(scenario, zones, settings)` builds the app (no import-time globals). Per request:
1. check the API key and its rate limit when keys are configured (401 / 429), the body size (413,
   `grid.live.security.BodyLimit`), validate the body (400 in OpenAI's shape), the model (404) and the
   population from the `X-Grid-Population` header (400 listing the valid ones; default: the
   scenario's first population or `settings.default_population`), and that prompt + `max_tokens`
   fit the context (400, as vLLM answers);
2. count the prompt tokens (grid.live.text), decide the answer length up front — a draw from the
   scenario's output size distribution, capped by `max_tokens`/`max_completion_tokens` and the
   context (finish_reason "length" when capped, else "stop"; `ignore_eos` makes it exactly
   `max_tokens`) — seeded by the request's `seed` when it has one;
3. route with the scenario's policy object (`grid.routing.registry.make_policy`) on a `GridView`
   built like the simulator's (`build_zone_views`) and refreshed from the zone actors' load reports
   every `report_interval_s` (live: 0.1 s when the scenario says 0, i.e. "fresh"), with
   `sent_since_report` counted here exactly (requests sent minus requests the zone has received);
4. apply the network: RTT = the population's RTT to the zone × (1 + Exp(jitter_ratio)), split in
   half — the request reaches the zone rtt/2 after the gateway got it, and every piece of the answer
   reaches the client rtt/2 after the zone produced it. Both use the model's times, not the
   transport's: the gateway estimates each actor's clock offset from the load-report round trips
   (NTP-style), sends the zone-arrival time with the request, and delivers each update at
   (zone time it was produced) + rtt/2, or at once when the update itself arrives later than that
   (so a slow Ray hop or a busy CPU shows up as latency only beyond rtt/2);
5. stream the zone's tokens back (or answer once finished) and feed `grid.stats.RunStats` with the
   client-side figures (network included), as the simulator does.

Resilience (issue 7; `grid.live.health` has the health state machine):
- **Health**: every zone is checked every `report_interval_s` (its load report, with a timeout);
  failed checks, a dead actor, a restarted actor (new incarnation) and consecutive request failures
  eject it (outlier ejection, growing ejection time, half-open probation). A zone is routed to only
  while eligible. Requests in flight on a lost zone fail at once.
- **Retries**: an attempt refused (`busy`, `down`), unanswered (`timeout`: no submit answer within
  `attempt_timeout_s`) or failed before its first token reached the client (`error`) is retried on
  another zone: at most `max_retries` times, never twice on one zone, within Envoy's retry budget
  (retrying requests ≤ max(`retry_budget_min`, `retry_budget_ratio` × requests in flight); all three
  from the scenario's `routing.*` unless `GatewaySettings` sets them; `grid.serving.retry`), each
  retry counted in `RunStats.retries` at the failed attempt's zone, as the simulator counts it. A
  non-streaming answer has sent nothing before it completes, so it is retried whenever it fails.
  A stream that already sent tokens ends with an OpenAI `error` event and `[DONE]`.
- **Deadlines**: every request ends by `request_timeout_s` (504 `deadline_exceeded`, or an error
  event mid-stream); a backstop closes any request nobody is serving.
- **Admission**: at most `max_in_flight` requests in the gateway (429 `gateway_overloaded`); zones
  have bounded queues (429 `overloaded` when every zone tried refused); 503 when no zone is up and
  reachable or every zone tried failed.
- **Accounting**: each accepted request ends exactly once (`_close`): completed (stop/length),
  failed (error, deadline, client abort) or rejected, in `RunStats` and `grid_requests_total` alike.
  Requests refused before acceptance (bad input, auth, per-key rate limit) are in neither.
- **Faults**: `grid.live.fault_control.FaultController` (admin API, scenario schedule).
- **Hedging**: with a policy that hedges (`hedge_after_s`, `choose_hedge`, `hedge_budget`: `hedged`), a
  request without a first token after the policy's delay gets a second copy on another zone; the
  first copy to produce a first token wins, the other is cancelled (`grid.live.hedging`).

Headers on every routed answer: `x-grid-zone`, `x-grid-region`, `x-grid-rtt-ms`, `x-grid-population`,
`x-grid-attempts`, and `x-grid-hedge` (won | lost | failed) on a hedged one: they name the winning copy's
zone. Prompts are never logged or exported: logs carry request ids and counts only.

Metrics hook: the app owns one `prometheus_client.CollectorRegistry` (`app.state.registry`, served at
`/metrics`) and a list of callbacks `app.state.on_request_end`, each called with a `RequestRecord`
when a request ends — metric families (vLLM's, the grid's) attach there.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from grid.demand.arrivals import size_sampler
from grid.faults import NetworkState
from grid.live import openai_api as api
from grid.live.cluster import ZoneHandles
from grid.live.fault_control import FaultController
from grid.live.health import HealthSettings, ZoneHealth
from grid.live.hedging import Hedging
from grid.live.security import MAX_BODY_BYTES, ApiKeys, BodyLimit, check_admin
from grid.live.text import chat_template, count_tokens, generate_pieces
from grid.live.zone_actor import (
    ADMITTED,
    BUSY,
    DOWN,
    NOTIFY_NONE,
    NOTIFY_STREAM,
    UPDATE_DONE,
    UPDATE_FAILED,
)
from grid.report import ZoneFigures
from grid.routing.registry import make_policy
from grid.routing.view import GridView
from grid.scenario import Scenario
from grid.serving.request import CANCELLED, ERROR, LENGTH, REJECTED, STOP
from grid.serving.request import Request as GridRequest
from grid.serving.retry import RetryBudget
from grid.sim.simulator import build_zone_views
from grid.stats import RunStats
from grid.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from grid.telemetry.metrics import GridMetrics
from grid.world import World, build_world

LIVE_REPORT_INTERVAL_S = 0.1  # load-report period when the scenario asks for fresh reports (0)
POPULATION_HEADER = "x-grid-population"
SAMPLE_BLOCK = 1024
MAX_SUBMITS_IN_FLIGHT = 1  # per zone (2 measured worse: more Ray calls, same wait)
UPDATE_DEADLINE = -1  # queue marker: the request's deadline passed
TIMEOUT = -1  # attempt outcome: the zone did not answer the submit in time
DEADLINE = "deadline"  # what `_send` returns when the request's deadline passed while it waited
REAP_AFTER_DEADLINE_S = 5.0  # a request still open this long after its deadline is closed (abort)
ABORT = "abort"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's own knobs; the scenario gives the world, the policy and the SLOs."""

    policy: str | None = None  # None: the scenario's routing.policy
    default_population: str | None = None  # None: the scenario's first population
    report_interval_s: float | None = None  # None: the scenario's, or LIVE_REPORT_INTERVAL_S if 0
    seed: int | None = None  # None: the scenario's seed
    poll_wait_s: float = 1.0  # long-poll timeout of the per-zone update stream
    report_timeout_s: float = 2.0  # zone_figures(): a zone that does not report within this is unreachable
    retry_after_s: float = 1.0
    apply_faults: bool = True  # play the scenario's fault schedule in wall time from app start
    # resilience
    health: HealthSettings = HealthSettings()
    # retries (grid.serving.retry); None: the scenario's routing.max_retries / retry_budget_ratio / retry_budget_min
    max_retries: int | None = None  # attempts = 1 + max_retries, each on another zone
    retry_budget_ratio: float | None = None  # Envoy's retry budget: this share of active requests …
    retry_budget_min: int | None = None  # … but at least this many retrying at once
    attempt_timeout_s: float = 2.5  # a zone that does not answer a submit within this: retry elsewhere
    request_timeout_s: float = 300.0  # per-request deadline (generous: a long answer at low load fits)
    max_in_flight: int = 4096  # requests inside the gateway at once; beyond: 429
    # security
    admin_token: str | None = None  # None: the admin endpoints are not routed (404)
    api_keys: tuple[str, ...] = ()  # empty: inference is open
    api_key_rps: float = 50.0  # per key; 0 = unlimited
    api_key_burst: float = 100.0
    max_body_bytes: int = MAX_BODY_BYTES


@dataclass
class RequestRecord:
    """One ended request, as the `on_request_end` callbacks see it (times in s; NaN if none)."""

    request_id: int
    population: str
    zone: str | None
    region: str | None
    status: str  # stop | length | rejected | error | abort
    prompt_tokens: int
    output_tokens: int
    rtt_s: float
    ttft_s: float = math.nan
    e2e_s: float = math.nan
    tpot_s: float = math.nan


@dataclass
class _Live:
    """An accepted request until it ends."""

    request: GridRequest
    stats: RunStats
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    deadline_s: float = math.inf
    admitted: bool = False  # the current attempt's zone holds it
    incarnation: str | None = None  # of the zone actor that admitted it
    tried: list[int] = field(default_factory=list)
    last_zone: int = -1
    last_reason: str = ""
    retrying: bool = False  # counted in the retry budget
    closed: bool = False
    timers: list = field(default_factory=list)
    # hedging (grid.live.hedging): when a copy is due, the copy while it races, copies sent (not retries)
    hedge_at_s: float = -math.inf
    hedge: _Live | None = None
    hedged: int = 0


class _ZoneLink:
    """The gateway's end of one zone actor: batched submits and the update long-poll.

    Up to `MAX_SUBMITS_IN_FLIGHT` submit calls run at once; requests arriving meanwhile wait and go
    together in the next call (batching grows with load, the wait stays under one Ray round trip).
    A request whose future is already done when its answer comes (timed out by `expire`, or cancelled:
    nobody waits any more) but that the zone admitted is withdrawn from it (`withdraw(zone, id)`)."""

    def __init__(
        self,
        index: int,
        actor,
        deliver: Callable[[int, list], None],
        lost: Callable[[int], None],
        withdraw: Callable[[int, int], None] | None = None,
    ) -> None:
        self.index = index
        self.actor = actor
        self.deliver = deliver
        self.lost = lost
        self.withdraw = withdraw
        self.incarnation: str | None = None  # last seen on the update stream
        self._batch: list[tuple] = []
        self._waiters: list[asyncio.Future] = []
        self._sending = 0

    def submit(self, item: tuple) -> asyncio.Future:
        """Queue a request for the next submit call; the future gives (answer, incarnation)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._batch.append(item)
        self._waiters.append(future)
        if self._sending < MAX_SUBMITS_IN_FLIGHT:
            self._sending += 1
            loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, waiters = self._batch, self._waiters
                self._batch, self._waiters = [], []
                try:
                    answers, updates, incarnation = await self.actor.submit.remote(batch)
                except Exception as exc:  # the actor is gone: every request in the batch is refused
                    log.warning("zone %d: submit failed: %r", self.index, exc)
                    answers, updates, incarnation = [DOWN] * len(batch), [], None
                    self.lost(self.index)
                if updates:
                    self.deliver(self.index, updates)
                for future, answer, item in zip(waiters, answers, batch, strict=True):
                    if not future.done():
                        future.set_result((answer, incarnation))
                    elif answer == ADMITTED and self.withdraw is not None:  # admitted, but nobody waits
                        self.withdraw(self.index, item[0])
        finally:
            self._sending -= 1


class GridGateway:
    """Runtime state of the gateway: the view, the policy, the zone links, health, the stats."""

    def __init__(self, scenario: Scenario, zones: ZoneHandles, settings: GatewaySettings) -> None:
        self.scenario = scenario
        self.settings = settings
        self.world: World = build_world(scenario)
        if list(zones.zone_ids) != list(self.world.zone_ids):
            raise ValueError("zone actors do not match the scenario's zones")
        self.zones = zones
        self.seed = scenario.seed if settings.seed is None else settings.seed
        self.policy = make_policy(settings.policy or scenario.routing.policy, self.seed)
        self._observe = getattr(self.policy, "observe", None)
        # decided once: a policy without the hedge hooks never pays for hedging per request
        self.hedging: Hedging | None = Hedging(self, self.policy) if Hedging.supported(self.policy) else None
        self.network = NetworkState(self.world)
        self.view = GridView(zones=build_zone_views(scenario, self.world), rtt_s=self.network.rtt_s(), candidates=[])
        self.view.refresh_candidates()
        interval = settings.report_interval_s
        if interval is None:
            interval = scenario.routing.report_interval_s or LIVE_REPORT_INTERVAL_S
        self.report_interval_s = interval
        self.population_index = {p: i for i, p in enumerate(self.world.population_ids)}
        default = settings.default_population or self.world.population_ids[0]
        if default not in self.population_index:
            raise ValueError(f"default population {default!r} is not in the scenario")
        self.default_population = default
        self.model_name = scenario.model.name
        self.context_tokens = scenario.model.context_tokens
        n = len(zones.actors)
        self.links = [
            _ZoneLink(i, actor, self._deliver, self._link_lost, self.cancel_on_zone)
            for i, actor in enumerate(zones.actors)
        ]
        self.health = [ZoneHealth(settings.health) for _ in range(n)]
        routing = scenario.routing
        self.max_retries = routing.max_retries if settings.max_retries is None else settings.max_retries
        self.budget = RetryBudget(
            routing.retry_budget_ratio if settings.retry_budget_ratio is None else settings.retry_budget_ratio,
            routing.retry_budget_min if settings.retry_budget_min is None else settings.retry_budget_min,
        )
        self.sent_total = [0] * n
        self._sent_base = [0] * n  # sent_total when the current incarnation started
        self.reports: list[dict | None] = [None] * n
        self.clock_offset_s = [0.0] * n  # actor clock − gateway clock, per zone
        self._offset_bound = [math.inf] * n
        self._offset_at = [0.0] * n
        self.stats = self.new_stats()
        self.live: dict[int, _Live] = {}
        self.last_id = 0  # request ids are 1, 2, …: also how many requests arrived (the hedge budget's base)
        self._sizes = size_sampler(scenario.demand.sizes)
        self._size_rng = np.random.default_rng([self.seed, 7])
        self._size_block: list[int] = []
        self._jitter = random.Random(self.seed * 1_000_003 + 1)
        self._jitter_ratio = scenario.network.jitter_ratio
        self._id_rng = random.Random(self.seed)
        self._t0 = time.monotonic()
        self.created = int(time.time())
        self._tasks: list[asyncio.Task] = []
        self.on_request_end: list[Callable[[RequestRecord], None]] = []
        self.metrics: GridMetrics | None = None  # set by create_app: the Prometheus families
        self.api_keys = ApiKeys(settings.api_keys, settings.api_key_rps, settings.api_key_burst)
        self.faults = FaultController(self)
        # what the drills read (bounded): (t, zone, eligible, reason), (t, from, to), (t, zone)
        self.health_log: deque[tuple[float, int, bool, str]] = deque(maxlen=4096)
        self.failover_log: deque[tuple[float, int, int]] = deque(maxlen=65536)
        self.midstream_log: deque[tuple[float, int]] = deque(maxlen=65536)
        self.counts = {"retries": 0, "deadline": 0, "reaped": 0, "midstream_failed": 0}
        w = self.world
        self._route_headers = [  # [population][zone]: the routed answer's fixed headers, built once
            [
                {
                    "x-grid-zone": w.zone_ids[zi],
                    "x-grid-region": w.region_ids[w.zone_region[zi]],
                    "x-grid-population": pop_id,
                }
                for zi in range(n)
            ]
            for pop_id in w.population_ids
        ]
        self._decision_s = 0.0

    # --- clock and lifecycle -------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the gateway started: the only clock the gateway reads."""
        return time.monotonic() - self._t0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.refresh_reports()
        self._tasks = [loop.create_task(self._pump(link)) for link in self.links]
        self._tasks += [loop.create_task(self._health_loop(i)) for i in range(len(self.links))]
        self._tasks.append(loop.create_task(self._tick_loop()))
        if self.settings.apply_faults and self.scenario.faults:
            self._tasks.append(loop.create_task(self.faults.run_schedule(self.scenario.faults)))

    async def stop(self) -> None:
        await self.faults.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # --- stats ---------------------------------------------------------------------------------

    def new_stats(self) -> RunStats:
        return RunStats(len(self.world.population_ids), len(self.world.zone_ids), self.scenario.slo)

    def reset_stats(self) -> None:
        """Start a fresh measurement window (requests already in flight report to the old one)."""
        self.stats = self.new_stats()

    def snapshot_stats(self) -> tuple[RunStats, int]:
        """A copy of the current window's stats and how many of its requests are still in flight."""
        current = self.stats
        in_flight = sum(1 for live in self.live.values() if live.stats is current)
        snapshot = copy.deepcopy(current)
        snapshot.flush()
        return snapshot, in_flight

    async def zone_figures(self) -> list[ZoneFigures]:
        """Cumulative serving-model integrals of every zone (subtract two for a window)."""
        timeout_s = self.settings.report_timeout_s
        reports = await asyncio.gather(*(_report_within(link, timeout_s) for link in self.links))
        return [ZoneFigures(r["work_s"], r["area_queued"], r["area_in_system"]) for r in reports]

    # --- health: load reports as active checks, the update stream, zone loss ---------------------

    async def _timed_report(self, link: _ZoneLink) -> tuple[float, dict, float]:
        sent = self.now()
        report = await _report_within(link, self.settings.health.check_timeout_s)
        return sent, report, self.now()

    def _learn_offset(self, zi: int, sent: float, report: dict, received: float) -> None:
        """Actor clock − gateway clock, NTP-style from the report round trip; the tightest recent
        round trip wins (its bound loosens by 1 ms per 10 s so a drifting clock is re-learned)."""
        half_rtt = 0.5 * (received - sent)
        bound = self._offset_bound[zi] + (received - self._offset_at[zi]) * 1e-4
        if half_rtt <= bound:
            self.clock_offset_s[zi] = report["report_s"] - 0.5 * (sent + received)
            self._offset_bound[zi] = half_rtt
            self._offset_at[zi] = received

    async def refresh_reports(self) -> None:
        """Check every zone once."""
        await asyncio.gather(*(self._check(i) for i in range(len(self.links))))

    async def _check(self, zi: int) -> None:
        link, health, zv = self.links[zi], self.health[zi], self.view.zones[zi]
        try:
            asked, report, answered = await self._timed_report(link)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            timeout = isinstance(exc, TimeoutError)
            self.reports[zi] = None
            if health.check_failed(self.now(), timeout):
                log.warning("zone %d: lost (%s)", zi, "checks timed out" if timeout else repr(exc))
                self._fail_zone(zi, keep=None, cancel=True)
            self._update_eligibility(zi, health.last_reason or "check failed")
            if self.metrics is not None:
                self.metrics.set_zone_up(zi, False)
            return
        if health.check_ok(report["up"], report["incarnation"], answered):
            log.warning("zone %d: restarted (incarnation %s)", zi, report["incarnation"])
            self._offset_bound[zi] = math.inf  # a new process, a new clock
            self._sent_base[zi] = self.sent_total[zi] - report["received"]
            self._fail_zone(zi, keep=report["incarnation"], cancel=False)
        self._learn_offset(zi, asked, report, answered)
        self.reports[zi] = report
        zv.outstanding = report["outstanding"]
        zv.waiting = report["waiting"]
        zv.running = report["running"]
        zv.kv_usage = report["kv_usage"]
        zv.utilization = report["utilization"]
        zv.zone_ttft_s = report["ttft_ewma_s"]
        zv.report_s = asked
        zv.sent_since_report = max(0, self.sent_total[zi] - self._sent_base[zi] - report["received"])
        self._update_eligibility(zi, "report")
        if self.metrics is not None:
            age_s = max(0.0, self.now() - zv.report_s)
            self.metrics.observe_zone_report(zi, zv.up, zv.running, zv.waiting, zv.kv_usage, zv.utilization, age_s)

    def _update_eligibility(self, zi: int, reason: str) -> None:
        zv = self.view.zones[zi]
        eligible = self.health[zi].eligible
        if zv.up != eligible:
            zv.up = eligible
            self.health_log.append((self.now(), zi, eligible, reason))
            self.view.refresh_candidates()
            if self.metrics is not None:
                self.metrics.set_zone_up(zi, eligible)

    async def _health_loop(self, zi: int) -> None:
        interval = self.report_interval_s
        while True:
            started = self.now()
            try:
                await self._check(zi)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a health loop die
                log.exception("zone %d: health check failed", zi)
            await asyncio.sleep(max(0.0, started + interval - self.now()))

    async def _tick_loop(self) -> None:
        while True:
            if self.metrics is not None:
                self.metrics.tick(self.now())
            await asyncio.sleep(max(self.report_interval_s, 0.5))

    def _link_lost(self, zi: int, fail_admitted: bool = False) -> None:
        """A Ray call to the zone failed: its actor is gone (Ray may be restarting it). A failed
        update stream also fails what the incarnation it was reading held; a failed submit only
        refuses its batch (its error may arrive after the restart, for the old process)."""
        if self.health[zi].lost(self.now(), "actor error"):
            log.warning("zone %d: lost (actor error)", zi)
        if fail_admitted:
            self._fail_zone(zi, keep=None, dead=self.links[zi].incarnation)
        self._update_eligibility(zi, "actor error")

    def _fail_zone(self, zi: int, keep: str | None, dead: str | None = None, cancel: bool = False) -> None:
        """Fail the requests admitted on zone `zi` — all of them, or those of incarnation `dead`,
        or those not of incarnation `keep` (the survivor of a restart)."""
        failed = []
        for item in self.live.values():
            for leg in (item, item.hedge):  # the request, and its hedge copy while they race
                if leg is None or not leg.admitted or leg.request.zone != zi:
                    continue
                if keep is not None and leg.incarnation == keep:
                    continue
                if dead is not None and leg.incarnation != dead:
                    continue
                leg.admitted = False
                leg.queue.put_nowait((UPDATE_FAILED, 0, -math.inf, -1.0))
                failed.append(leg.request.id)
        if failed and cancel:
            with contextlib.suppress(Exception):
                self.links[zi].actor.cancel.remote(failed)

    async def _pump(self, link: _ZoneLink) -> None:
        wait_s = self.settings.poll_wait_s
        zi = link.index
        while True:
            try:
                incarnation, updates = await link.actor.poll.remote(wait_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the actor died: its requests fail
                log.warning("zone %d: update stream failed: %r", zi, exc)
                self._link_lost(zi, fail_admitted=True)
                await asyncio.sleep(0.1)
                continue
            if incarnation != link.incarnation:
                if link.incarnation is not None:  # a restart: what the old process held is lost
                    self._fail_zone(zi, keep=incarnation)
                link.incarnation = incarnation
            if updates:
                self._deliver(zi, updates)

    def _deliver(self, zi: int, updates: list) -> None:
        live = self.live
        for rid, kind, tokens, t_s, first_s in updates:
            item = live.get(rid)
            if item is None:
                continue
            if item.request.zone == zi:
                item.queue.put_nowait((kind, tokens, t_s, first_s))
            elif item.hedge is not None and item.hedge.request.zone == zi:  # a hedge copy (same id, its zone)
                item.hedge.queue.put_nowait((kind, tokens, t_s, first_s))

    def apply_network(self, action) -> None:
        """A network fault starts or ends (grid.live.fault_control)."""
        self.network.apply(action)
        self.view.rtt_s = self.network.rtt_s()
        self.view.refresh_candidates()

    def zone_down_figures(self, record) -> dict:
        """Detection and failover figures of one zone_down fault (grid.live.fault_control)."""
        zi = self.world.zone_ids.index(record.zone)
        killed = record.killed_at_s
        if killed is None:
            return {}
        end = record.ended_at_s if record.ended_at_s is not None else self.now()
        detected = next((t for t, z, ok, _ in self.health_log if z == zi and not ok and t >= killed), None)
        back = None
        if record.ended_at_s is not None:
            back = next((t for t, z, ok, _ in self.health_log if z == zi and ok and t >= record.ended_at_s), None)
        failovers = [t for t, src, _ in self.failover_log if src == zi and killed <= t <= end]
        midstream = sum(1 for t, z in self.midstream_log if z == zi and killed <= t <= end)
        return {
            "killed_at_s": round(killed, 4),
            "restarted_at_s": round(record.restarted_at_s, 4) if record.restarted_at_s is not None else None,
            "detected_at_s": round(detected, 4) if detected is not None else None,
            "detection_s": round(detected - killed, 4) if detected is not None else None,
            "failovers": len(failovers),
            "failover_s": round(max(failovers) - killed, 4) if failovers else None,
            "midstream_failures": midstream,
            "back_up_at_s": round(back, 4) if back is not None else None,
        }

    # --- one request ---------------------------------------------------------------------------

    def population_of(self, headers) -> int:
        name = headers.get(POPULATION_HEADER) or self.default_population
        index = self.population_index.get(name)
        if index is None:
            raise api.ApiError(
                400,
                f"Unknown population {name[:64]!r} in header X-Grid-Population; valid populations: "
                + ", ".join(self.world.population_ids),
                param="X-Grid-Population",
                code="unknown_population",
            )
        return index

    def _answer_length(self, prompt_tokens: int, limit: int | None, ignore_eos: bool, seed: int | None):
        room = self.context_tokens - prompt_tokens
        cap = room if limit is None else min(limit, room)
        if ignore_eos and limit is not None:
            return cap, LENGTH
        if seed is not None:
            drawn = int(self._sizes(np.random.default_rng([self.seed, 11, seed & 0xFFFFFFFFFFFF]), 1)[1][0])
        else:
            if not self._size_block:
                self._size_block = self._sizes(self._size_rng, SAMPLE_BLOCK)[1].tolist()
            drawn = int(self._size_block.pop())
        return (cap, LENGTH) if drawn > cap else (max(1, drawn), STOP)

    def check_context(self, chat: bool, prompt_tokens: int, limit: int | None) -> None:
        what = "messages" if chat else "prompt"
        if prompt_tokens >= self.context_tokens:
            raise api.ApiError(
                400,
                f"This model's maximum context length is {self.context_tokens} tokens. However, your "
                f"{what} resulted in {prompt_tokens} tokens.",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        if limit is not None and prompt_tokens + limit > self.context_tokens:
            raise api.ApiError(
                400,
                f"This model's maximum context length is {self.context_tokens} tokens. However, you requested "
                f"{prompt_tokens + limit} tokens ({prompt_tokens} in the {what}, {limit} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="max_completion_tokens" if chat else "max_tokens",
                code="context_length_exceeded",
            )

    async def handle(self, chat: bool, body, prompt_tokens: int, population: int) -> Response:
        self.check_context(chat, prompt_tokens, body.token_limit)
        output, finish = self._answer_length(prompt_tokens, body.token_limit, body.ignore_eos, body.seed)
        rid = self.last_id = self.last_id + 1
        arrival = self.now()
        request = GridRequest(rid, population, prompt_tokens, output, arrival, finish)
        stats = self.stats
        stats.arrivals[population] += 1
        self.view.now_s = arrival
        live = _Live(request, stats)
        self.live[rid] = live
        timeout = self.settings.request_timeout_s
        live.deadline_s = arrival + timeout
        loop = asyncio.get_running_loop()
        live.timers.append(loop.call_later(timeout, self._deadline_passed, live))
        pop_id = self.world.population_ids[population]
        if self.hedging is not None:
            self.hedging.arm(live)
        if len(self.live) > self.settings.max_in_flight:
            self._close(live, REJECTED)
            raise api.ApiError(
                429,
                "The gateway is at capacity; retry later.",
                type_="rate_limit_error",
                code="gateway_overloaded",
                retry_after_s=self.settings.retry_after_s,
                headers={"x-grid-population": pop_id},
            )
        stream = bool(body.stream)
        try:
            zi, headers, half, first = await self._attempt(live, stream)
        except api.ApiError:
            raise
        except BaseException:  # cancelled (the client went away) or a bug: the request still ends
            if not live.closed:
                self._abandon(live, ABORT)
            raise
        text_seed = body.seed if body.seed is not None else rid
        response_id = ("chatcmpl-" if chat else "cmpl-") + f"{rid:x}{self._id_rng.getrandbits(48):012x}"
        if stream:
            writer = api.ChunkWriter(chat, response_id, self.created, self.model_name, body.include_usage)
            return StreamingResponse(
                self._stream(live, writer, text_seed, half, first),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache"},
            )
        try:
            return await self._complete(live, chat, response_id, text_seed, half, headers)
        except api.ApiError:
            raise
        except BaseException:
            if not live.closed:
                self._abandon(live, ABORT)
            raise

    def _choose(self, request: GridRequest, tried: list[int]) -> int | None:
        view = self.view
        population = request.population
        candidates = view.candidates[population]
        if tried:
            candidates = [z for z in candidates if z not in tried]
        if not candidates:
            return None
        saved = view.candidates[population]
        view.candidates[population] = candidates
        decided = time.perf_counter()
        try:
            zi = self.policy.choose(request, view)
        except Exception:
            log.exception("policy %s raised; using the nearest candidate", getattr(self.policy, "name", "?"))
            zi = candidates[0]
        finally:
            view.candidates[population] = saved
        self._decision_s = time.perf_counter() - decided
        return zi if zi in candidates else candidates[0]

    async def _attempt(self, live: _Live, stream: bool) -> tuple[int, dict, float, tuple | None]:
        """Route and send the request, retrying elsewhere while nothing has reached the client.
        Returns (zone, headers, half RTT, the first update when streaming or hedging); raises ApiError
        (the request then has ended)."""
        request = live.request
        while True:
            if self.now() >= live.deadline_s:
                raise self._deadline_error(live)
            zi = self._choose(request, live.tried)
            retries = len(live.tried) - live.hedged  # a hedge copy's zone is tried, but it is no retry
            over = retries > self.max_retries or not (live.retrying or self.budget.allows(len(self.live)))
            if live.tried and zi is not None and over:
                zi = None  # out of retries, or the budget is spent
            if zi is None:
                raise self._give_up(live)
            if live.tried:  # a retry
                if not live.retrying:
                    live.retrying = True
                    self.budget.retrying += 1
                self.counts["retries"] += 1
                live.stats.retries[request.population, live.last_zone] += 1  # at the failed attempt's zone (as sim)
                if self.metrics is not None:
                    self.metrics.observe_retry(live.last_zone, live.last_reason, zi)
            live.tried.append(zi)
            request.attempts += 1
            if self.hedging is not None and live.hedge_at_s > self.now():  # a copy may be due while this runs
                sent = await self.hedging.race(live, zi, stream)
            else:
                sent = await self._send(live, live, zi, NOTIFY_STREAM if stream else NOTIFY_NONE, request.arrival_s)
            if sent == DEADLINE:
                raise self._deadline_error(live)
            if sent is not None:
                headers, half, first = sent
                return request.zone, headers, half, first

    async def _send(self, live: _Live, leg: _Live, zi: int, notify: int, sent_s: float):
        """One copy of the request (`leg`: the request itself, or its hedge copy) to zone `zi`, sent
        at `sent_s`: the network, the submit, the admission and, when `notify` asks for updates, the
        first one. Returns (headers, half RTT, first update or None); None when the zone refused or
        failed it before that (recorded on `live`, the request, for its retries and error message);
        DEADLINE when the request's deadline passed meanwhile."""
        request = leg.request
        population = request.population
        view = self.view
        request.zone = zi
        rtt = view.rtt_s[population][zi]
        headers = {**self._route_headers[population][zi], "x-grid-attempts": str(request.attempts)}
        if not math.isfinite(rtt):  # routed into a partition: the connection fails
            self._attempt_failed(live, zi, "error", health=False)
            return None
        if self._jitter_ratio > 0:
            rtt *= 1.0 + self._jitter.expovariate(1.0 / self._jitter_ratio)
        request.rtt_s = rtt
        if self.metrics is not None:
            self.metrics.observe_route(population, zi, self._decision_s, rtt)
        half = 0.5 * rtt
        headers["x-grid-rtt-ms"] = f"{rtt * 1000:.1f}"
        view.zones[zi].sent_since_report += 1
        self.sent_total[zi] += 1
        if half > 0:
            try:
                await asyncio.sleep(half)
            except asyncio.CancelledError:  # never sent (a hedge race ended, the client left): uncount it
                self.sent_total[zi] -= 1
                view.zones[zi].sent_since_report = max(0, view.zones[zi].sent_since_report - 1)
                raise
        leg.queue = asyncio.Queue()
        at_s = sent_s + half + self.clock_offset_s[zi]  # reaches the zone, on the zone's clock
        future = self.links[zi].submit(
            (request.id, population, request.prompt_tokens, request.output_tokens, notify, at_s)
        )
        wait_s = min(self.settings.attempt_timeout_s, live.deadline_s - self.now())
        # The submit's own future, awaited with a timer that answers TIMEOUT (cheaper than asyncio.wait
        # per request). A timed-out or cancelled (a dropped hedge copy) future is done before the
        # zone's answer: if the zone admits the request after all, the link withdraws it.
        if wait_s > 0:
            timer = asyncio.get_running_loop().call_later(wait_s, _expire, future)
            try:
                answer, incarnation = await future
            except asyncio.CancelledError:  # answered just as the task was cancelled: withdraw an admission
                if future.done() and not future.cancelled() and future.result()[0] == ADMITTED:
                    self.cancel_on_zone(zi, request.id)
                raise
            finally:
                timer.cancel()
        else:
            _expire(future)
            answer, incarnation = future.result()
        if answer == ADMITTED:
            leg.admitted = True
            leg.incarnation = incarnation
            if leg is live and live.retrying and live.last_reason != "busy":
                self.failover_log.append((self.now(), live.last_zone, zi))
            if notify == NOTIFY_NONE:
                return headers, half, None
            first = await leg.queue.get()
            if first[0] == UPDATE_DEADLINE:
                return DEADLINE
            if first[0] != UPDATE_FAILED:
                return headers, half, first
            leg.admitted = False
            self._attempt_failed(live, zi, "error")
            return None
        if half > 0 and answer != TIMEOUT:
            await asyncio.sleep(half)  # the refusal travels back
        reason = "busy" if answer == BUSY else "timeout" if answer == TIMEOUT else "down"
        self._attempt_failed(live, zi, reason, health=answer != BUSY)
        return None

    def cancel_on_zone(self, zi: int, rid: int) -> None:
        """Withdraw request `rid` from zone `zi` (frees its capacity; a no-op if it already ended there)."""
        with contextlib.suppress(Exception):
            self.links[zi].actor.cancel.remote([rid])

    def _attempt_failed(self, live: _Live, zi: int, reason: str, health: bool = True) -> None:
        live.last_zone, live.last_reason = zi, reason
        if health and self.health[zi].request_failed(self.now(), reason):
            log.warning("zone %d: ejected after request failures (%s)", zi, reason)
            self._update_eligibility(zi, f"outlier: {reason}")

    def _give_up(self, live: _Live) -> api.ApiError:
        """No (more) zone to try: end the request and say why."""
        request = live.request
        pop_id = self.world.population_ids[request.population]
        retry_after = self.settings.retry_after_s
        if not live.tried:
            self._close(live, REJECTED)
            return api.ApiError(
                503,
                f"No zone is reachable from population {pop_id!r} right now.",
                type_="service_unavailable",
                code="no_zone_available",
                retry_after_s=retry_after,
                headers={"x-grid-population": pop_id},
            )
        zone_id = self.world.zone_ids[live.last_zone]
        headers = {"x-grid-population": pop_id, "x-grid-zone": zone_id, "x-grid-attempts": str(request.attempts)}
        tried = ", ".join(self.world.zone_ids[z] for z in live.tried)
        if live.last_reason == "busy":
            self._close(live, REJECTED)
            return api.ApiError(
                429,
                f"Every zone tried is overloaded (queue full: {tried}); retry later.",
                type_="rate_limit_error",
                code="overloaded",
                retry_after_s=retry_after,
                headers=headers,
            )
        self._close(live, ERROR)
        if live.last_reason == "down":
            message, code = f"Zone {zone_id} is down (tried {tried}).", "zone_down"
        elif live.last_reason == "timeout":
            message, code = f"Zone {zone_id} did not answer (tried {tried}).", "zone_unreachable"
        elif not math.isfinite(self.view.rtt_s[request.population][live.last_zone]):
            message, code = f"Zone {zone_id} is unreachable from population {pop_id!r}.", "zone_unreachable"
        else:
            message, code = f"Zone {zone_id} failed while serving the request (tried {tried}).", "zone_failed"
        return api.ApiError(
            503, message, type_="service_unavailable", code=code, retry_after_s=retry_after, headers=headers
        )

    def _deadline_passed(self, live: _Live) -> None:
        if live.closed:
            return
        live.queue.put_nowait((UPDATE_DEADLINE, 0, -math.inf, -1.0))
        if live.hedge is not None:  # a copy racing alone must stop waiting too
            live.hedge.queue.put_nowait((UPDATE_DEADLINE, 0, -math.inf, -1.0))
        loop = asyncio.get_running_loop()
        live.timers.append(loop.call_later(REAP_AFTER_DEADLINE_S, self._reap, live))

    def _reap(self, live: _Live) -> None:
        """Backstop: nobody served this request (its response was never started)."""
        if not live.closed:
            self.counts["reaped"] += 1
            log.warning("request %d: closed by the backstop after its deadline", live.request.id)
            self._abandon(live, ABORT)

    def _deadline_error(self, live: _Live) -> api.ApiError:
        self._timed_out(live)
        return api.ApiError(
            504,
            f"The request did not finish within its deadline ({self.settings.request_timeout_s:g} s).",
            type_="timeout_error",
            code="deadline_exceeded",
        )

    def _timed_out(self, live: _Live) -> None:
        self.counts["deadline"] += 1
        zi = live.request.zone
        if zi >= 0:
            self._attempt_failed(live, zi, "timeout")
        self._abandon(live, ERROR)

    def _abandon(self, live: _Live, status: str) -> None:
        """End a request that did not complete (abort, deadline) and free its zone."""
        request = live.request
        admitted = live.admitted
        hedge = live.hedge
        self._close(live, status)
        if admitted and request.zone >= 0:
            self.cancel_on_zone(request.zone, request.id)
        if hedge is not None and hedge.admitted:  # normally the race's own clean-up does this
            hedge.admitted = False
            self.cancel_on_zone(hedge.request.zone, request.id)

    async def _complete(self, live: _Live, chat: bool, response_id: str, text_seed: int, half: float, headers):
        request = live.request
        while True:
            item = await _final(live.queue)
            kind, _, t_s, first_s = item
            if kind == UPDATE_DEADLINE:
                return self._deadline_error(live).response()
            if kind != UPDATE_FAILED:
                break
            # Nothing has reached the client: try another zone.
            live.admitted = False
            self._attempt_failed(live, request.zone, "error")
            _, headers, half, _ = await self._attempt(live, stream=False)
        shift = half - self.clock_offset_s[request.zone]  # zone clock → the client's receipt, gateway clock
        delay = t_s + shift - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        e2e = self.now() - request.arrival_s
        ttft = e2e - (t_s - first_s)  # the first token left the zone t_s − first_s before the last one
        self._finished(live, ttft, e2e)
        use = api.usage(request.prompt_tokens, request.output_tokens)
        text = "".join(generate_pieces(request.output_tokens, text_seed))
        build = api.chat_completion if chat else api.text_completion
        payload = build(response_id, self.created, self.model_name, text, request.finish_reason, use)
        return JSONResponse(payload, headers=headers)

    async def _stream(self, live: _Live, writer: api.ChunkWriter, text_seed: int, half: float, first: tuple):
        request = live.request
        pieces = generate_pieces(request.output_tokens, text_seed)
        queue = live.queue
        now = self.now
        sent = 0
        first_s = math.nan
        shift = half - self.clock_offset_s[request.zone]
        item = first
        try:
            while True:
                if item is None:
                    item = await queue.get()
                kind, tokens, t_s, _ = item
                item = None
                if kind == UPDATE_DEADLINE:
                    err = self._deadline_error(live)
                    yield writer.error(err)
                    yield writer.DONE
                    return
                delay = t_s + shift - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                if kind == UPDATE_FAILED:
                    zi = request.zone
                    self.midstream_log.append((now(), zi))
                    self.counts["midstream_failed"] += 1
                    self._attempt_failed(live, zi, "error")
                    self._close(live, ERROR)
                    yield writer.error(
                        api.ApiError(
                            503,
                            f"Zone {self.world.zone_ids[zi]} failed while serving the request.",
                            type_="service_unavailable",
                            code="zone_failed",
                        )
                    )
                    yield writer.DONE
                    return
                done = kind == UPDATE_DONE
                if done:
                    tokens = request.output_tokens
                if tokens > sent or done:
                    chunk = writer.content("".join(pieces[sent:tokens]), request.finish_reason if done else None)
                    sent = tokens
                    if first_s != first_s:  # NaN: this is the first token
                        first_s = now()
                    yield chunk
                if done:
                    end_s = now()
                    self._finished(live, first_s - request.arrival_s, end_s - request.arrival_s)
                    if writer.include_usage:
                        yield writer.usage(api.usage(request.prompt_tokens, request.output_tokens))
                    yield writer.DONE
                    return
        finally:
            if not live.closed:  # the client went away: free the zone
                self._abandon(live, ABORT)

    def _finished(self, live: _Live, ttft: float, e2e: float) -> None:
        request = live.request
        n = request.output_tokens
        tpot = (e2e - ttft) / (n - 1) if n > 1 else math.nan
        live.stats.finished(request.population, request.zone, ttft, tpot, e2e, request.prompt_tokens, n)
        # Zone-side times on the gateway's clock, as the simulator's requests carry them: a policy's
        # `observe` adds the half RTT back (`hedged` learns its client-side TTFT threshold that way).
        half = 0.5 * request.rtt_s
        request.first_token_s = request.arrival_s + ttft - half
        request.finish_s = request.arrival_s + e2e - half
        self.health[request.zone].request_ok()
        self._close(live, request.finish_reason, (ttft, e2e, tpot))

    def _close(self, live: _Live, status: str, times: tuple[float, float, float] | None = None) -> None:
        """The one place an accepted request ends: counted once in RunStats, metrics and callbacks."""
        if live.closed:
            log.error("request %d ended twice (%s)", live.request.id, status)
            return
        live.closed = True
        live.admitted = False
        request = live.request
        self.live.pop(request.id, None)
        for timer in live.timers:
            timer.cancel()
        if live.retrying:
            self.budget.retrying -= 1
        zi = request.zone
        if status in (ERROR, ABORT) and zi < 0:
            status = REJECTED  # nothing was ever sent to a zone
        if status == REJECTED:
            live.stats.rejected[request.population, zi if zi >= 0 else len(self.links)] += 1
        elif status in (ERROR, ABORT):
            live.stats.failed[request.population, zi] += 1  # a client abort counts as failed (not completed)
        self._end(request, status, times)

    def _end(self, request: GridRequest, status: str, times: tuple[float, float, float] | None) -> None:
        request.status = status
        if self._observe is not None:
            self._observe(request)
        if self.metrics is not None:
            try:
                ttft, e2e = (times[0], times[1]) if times else (None, None)
                self.metrics.observe_request_end(
                    request,
                    request.population,
                    request.zone if request.zone >= 0 else None,
                    ttft,
                    e2e,
                    None,
                    CANCELLED if status == ABORT else status,
                )
            except Exception:  # a metrics bug must not fail requests
                log.exception("metrics: observe_request_end failed")
        if not self.on_request_end:
            return
        zi = request.zone
        record = RequestRecord(
            request_id=request.id,
            population=self.world.population_ids[request.population],
            zone=self.world.zone_ids[zi] if zi >= 0 else None,
            region=self.world.region_ids[self.world.zone_region[zi]] if zi >= 0 else None,
            status=status,
            prompt_tokens=request.prompt_tokens,
            output_tokens=request.output_tokens if times else 0,
            rtt_s=request.rtt_s,
        )
        if times:
            record.ttft_s, record.e2e_s, record.tpot_s = times
        for callback in self.on_request_end:
            try:
                callback(record)
            except Exception:  # a metrics bug must not fail requests
                log.exception("on_request_end callback failed")

    # --- introspection -------------------------------------------------------------------------

    def zones_json(self) -> dict:
        view = self.view
        now = self.now()
        zones = []
        for i, zv in enumerate(view.zones):
            report = self.reports[i] or {}
            zones.append(
                {
                    "zone": zv.zone_id,
                    "region": zv.region,
                    "up": zv.up,
                    "reachable": report != {},
                    "health": self.health[i].to_dict(now),
                    "replicas": zv.replicas,
                    "capacity_rps": zv.capacity_rps,
                    "outstanding": zv.outstanding,
                    "waiting": zv.waiting,
                    "running": zv.running,
                    "kv_usage": zv.kv_usage,
                    "utilization": zv.utilization,
                    "ttft_ewma_s": zv.zone_ttft_s,
                    "slow_factor": report.get("slow_factor", 1.0),
                    "sent_since_report": zv.sent_since_report,
                    "report_age_s": max(0.0, now - zv.report_s),
                    "sent_total": self.sent_total[i],
                }
            )
        return {
            "policy": getattr(self.policy, "name", type(self.policy).__name__),
            "report_interval_s": self.report_interval_s,
            "model": self.model_name,
            "in_flight": len(self.live),
            "retrying": self.budget.retrying,
            "placed_by_region": self.zones.placed_by_region,
            "counts": dict(self.counts),
            **({"hedges": dict(self.hedging.counts)} if self.hedging is not None else {}),
            "zones": zones,
        }


class DashboardStats:
    """What the built-in dashboard (`/dashboard`) reads beyond `zones_json`: per-zone ended-request
    counters, each zone's recent client TTFTs (bounded) and the population × zone flow counters.
    Bounded by the scenario: every key is a scenario id, never request text."""

    RECENT_TTFT = 256  # TTFTs kept per zone for the p99

    def __init__(self, world: World) -> None:
        self.world = world
        self.zone_index = {z: i for i, z in enumerate(world.zone_ids)}
        self.pop_index = {p: i for i, p in enumerate(world.population_ids)}
        n_p, n_z = len(world.population_ids), len(world.zone_ids)
        self.completed = np.zeros((n_p, n_z), dtype=np.int64)
        self.failed = np.zeros(n_z, dtype=np.int64)
        self.ttft: list[deque[float]] = [deque(maxlen=self.RECENT_TTFT) for _ in range(n_z)]

    def observe(self, record: RequestRecord) -> None:
        zi = self.zone_index.get(record.zone) if record.zone is not None else None
        pi = self.pop_index.get(record.population)
        if zi is None or pi is None:
            return
        if record.status in (STOP, LENGTH):
            self.completed[pi, zi] += 1
            if math.isfinite(record.ttft_s):
                self.ttft[zi].append(record.ttft_s)
        elif record.status in (ERROR, ABORT):
            self.failed[zi] += 1

    def zone_fields(self, zi: int) -> dict:
        recent = self.ttft[zi]
        p99 = float(np.quantile(np.fromiter(recent, float), 0.99)) if recent else None
        return {
            "completed_total": int(self.completed[:, zi].sum()),
            "failed_total": int(self.failed[zi]),
            "ttft_p99_s": p99,
        }

    def flows(self) -> list[dict]:
        w = self.world
        return [
            {"population": w.population_ids[p], "zone": w.zone_ids[z], "completed_total": int(self.completed[p, z])}
            for p in range(len(w.population_ids))
            for z in range(len(w.zone_ids))
        ]


def world_json(scenario: Scenario, world: World) -> dict:
    """The scenario's geography for the dashboard map: regions, zones and populations with lat/lon."""
    return {
        "regions": [
            {"region": r, "name": reg.name, "lat": reg.lat, "lon": reg.lon}
            for r, reg in ((r, scenario.regions[r]) for r in world.region_ids)
        ],
        "zones": [{"zone": z, "region": scenario.zones[z].region} for z in world.zone_ids],
        "populations": [
            {
                "population": p,
                "name": scenario.populations[p].name,
                "lat": scenario.populations[p].lat,
                "lon": scenario.populations[p].lon,
            }
            for p in world.population_ids
        ],
    }


async def _report_within(link: _ZoneLink, timeout_s: float) -> dict:
    """A zone's load report, or TimeoutError. `asyncio.timeout`, not `wait_for`: Python 3.11's wait_for
    swallows a cancellation when the report lands at the same moment, and a health loop that
    swallowed `stop()`'s cancel would run on and hang the shutdown."""
    async with asyncio.timeout(timeout_s):
        return await link.actor.report.remote()


def _expire(future: asyncio.Future) -> None:
    """A submit not answered within the attempt's timeout."""
    if not future.done():
        future.set_result((TIMEOUT, None))


async def _final(queue: asyncio.Queue) -> tuple:
    """The last update of a non-streaming request (done, failed, or its deadline)."""
    while True:
        item = await queue.get()
        if item[0] in (UPDATE_DONE, UPDATE_FAILED, UPDATE_DEADLINE):
            return item


def _body_schemas() -> tuple[dict, dict, dict]:
    """OpenAPI request bodies of the two inference endpoints, and the component schemas they use."""
    components: dict = {}
    bodies = []
    for model in (api.ChatCompletionRequest, api.CompletionRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        bodies.append(
            {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
            }
        )
    return bodies[0], bodies[1], components


_ERROR_RESPONSE = {
    "description": "An OpenAI-shaped error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def create_app(
    scenario: Scenario, zones: ZoneHandles, settings: GatewaySettings | None = None, registry=None
) -> FastAPI:
    """The gateway app over running zone actors (see grid.live.cluster.start_zone_actors)."""
    settings = settings or GatewaySettings()
    gateway = GridGateway(scenario, zones, settings)
    registry = registry if registry is not None else CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="inference grid gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    app.state.registry = registry
    app.state.on_request_end = gateway.on_request_end
    gateway.metrics = app.state.metrics = GridMetrics(
        registry, scenario, policy=gateway.policy.name, hedging=gateway.hedging is not None
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(api.ApiError)
    async def _api_error(_request: Request, exc: api.ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        return api.validation_error(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return api.ApiError(exc.status_code, str(exc.detail), type_=kind).response()

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception):  # never a bare traceback page
        log.error("internal error: %s", type(exc).__name__)
        return api.ApiError(500, "Internal error.", type_="internal_error", code="internal_error").response()

    chat_body, completion_body, component_schemas = _body_schemas()
    population_param = {
        "name": "X-Grid-Population",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": list(gateway.world.population_ids)},
    }
    errors = {str(code): _ERROR_RESPONSE for code in (400, 401, 404, 413, 429, 503, 504)}
    openapi_extra = {"parameters": [population_param]}

    def authorize(request: Request) -> None:
        gateway.api_keys.check(request.headers, gateway.now())

    async def accept(request: Request, schema):
        """Key check, body, model and population: what every inference endpoint does first."""
        authorize(request)
        body = api.parse_body(schema, await request.body())
        if body.model != gateway.model_name:
            raise api.model_not_found(body.model)
        return body, gateway.population_of(request.headers)

    @app.post(
        "/v1/chat/completions",
        openapi_extra={**openapi_extra, "requestBody": chat_body},
        responses={**errors, 200: {"description": "A chat completion, or its event stream"}},
    )
    async def chat_completions(request: Request):
        body, population = await accept(request, api.ChatCompletionRequest)
        prompt = chat_template([(m.role, m.text()) for m in body.messages])
        return await gateway.handle(True, body, count_tokens(prompt), population)

    @app.post(
        "/v1/completions",
        openapi_extra={**openapi_extra, "requestBody": completion_body},
        responses={**errors, 200: {"description": "A text completion, or its event stream"}},
    )
    async def completions(request: Request):
        body, population = await accept(request, api.CompletionRequest)
        prompt = body.prompt
        if isinstance(prompt, list):
            prompt_tokens = len(prompt) if prompt and isinstance(prompt[0], int) else count_tokens(prompt[0])
        else:
            prompt_tokens = count_tokens(prompt)
        return await gateway.handle(False, body, max(1, prompt_tokens), population)

    @app.get("/v1/models", responses={"401": _ERROR_RESPONSE})
    async def models(request: Request):
        authorize(request)
        return {
            "object": "list",
            "data": [
                {"id": gateway.model_name, "object": "model", "created": gateway.created, "owned_by": "inference-grid"}
            ],
        }

    @app.get("/health")
    async def health():
        up = sum(1 for zv in gateway.view.zones if zv.up)
        body = {"status": "ok" if up else "unavailable", "zones_up": up, "zones": len(gateway.view.zones)}
        return JSONResponse(body, status_code=200 if up else 503)

    @app.get("/metrics")
    def metrics():  # a plain def: exposition runs in a worker thread, off the event loop
        return Response(gateway.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    dashboard = app.state.dashboard = DashboardStats(gateway.world)
    gateway.on_request_end.append(dashboard.observe)

    @app.get("/grid/zones")
    async def grid_zones():
        body = gateway.zones_json()
        for i, zone in enumerate(body["zones"]):
            zone.update(dashboard.zone_fields(i))
        body["flows"] = dashboard.flows()
        body["t_s"] = gateway.now()  # the gateway's clock, for rates between polls
        return body

    @app.get("/grid/world")
    async def grid_world():
        return world_json(scenario, gateway.world)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page():
        page = resources.files("grid.live").joinpath("dashboard.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    if settings.admin_token:  # no token: the admin endpoints do not exist (404)
        token = settings.admin_token
        controller = gateway.faults

        @app.post("/admin/faults", include_in_schema=False)
        async def admin_fault(request: Request):
            check_admin(request.headers, token)
            record = controller.apply(controller.parse(await request.body()))
            log.warning("admin: fault %d (%s) started", record.id, record.kind)
            return {"fault": controller.to_dict(record)}

        @app.get("/admin/faults", include_in_schema=False)
        async def admin_faults(request: Request):
            check_admin(request.headers, token)
            history = [controller.to_dict(f) for f in controller.history]
            return {"active": [f for f in history if f["active"]], "history": history}

        @app.post("/admin/recover", include_in_schema=False)
        async def admin_recover(request: Request):
            check_admin(request.headers, token)
            zone = controller.parse_recover(await request.body())
            ended = controller.recover(zone)
            tasks = [f.task for f in ended if f.task is not None]
            if tasks:  # let the ends take effect (a restore is one actor call)
                await asyncio.wait(tasks, timeout=5.0)
            return {"recovered": [controller.to_dict(f) for f in ended]}

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(component_schemas)
            schemas["ErrorBody"] = _ERROR_SCHEMA
            for name in ("ChatCompletionRequest", "CompletionRequest"):  # the one model this grid serves
                schemas[name]["properties"]["model"] = {"type": "string", "enum": [gateway.model_name]}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
