"""The live grid's gateway: an OpenAI-compatible FastAPI app that routes each request to a zone actor.

`create_app(scenario, zones, settings)` builds the app (no import-time globals). Per request:
1. validate the body (400 in OpenAI's shape), the model (404) and the population from the
   `X-Grid-Population` header (400 listing the valid ones; default: the scenario's first population
   or `settings.default_population`);
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

Headers on every routed answer: `x-grid-zone`, `x-grid-region`, `x-grid-rtt-ms`, `x-grid-population`.
Overload: 429 (`Retry-After`, `retry-after-ms`) when the chosen zone refuses the request; 503 when
no zone is up and reachable from the population, or the zone failed.

Metrics hook: the app owns one `prometheus_client.CollectorRegistry` (`app.state.registry`, served at
`/metrics`) and a list of callbacks `app.state.on_request_end`, each called with a `RequestRecord`
when a request ends — metric families (vLLM's, the grid's) attach there.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from grid.demand.arrivals import size_sampler
from grid.faults import LINK_DELAY, PARTITION, ZONE_DOWN, ZONE_SLOW, ZONE_UP, NetworkState, fault_timeline
from grid.live import openai_api as api
from grid.live.cluster import ZoneHandles
from grid.live.text import chat_template, count_tokens, generate_pieces
from grid.live.zone_actor import ADMITTED, DOWN, UPDATE_DONE, UPDATE_FAILED
from grid.report import ZoneFigures
from grid.routing.registry import make_policy
from grid.routing.view import GridView
from grid.scenario import Scenario
from grid.serving.request import CANCELLED, ERROR, LENGTH, REJECTED, STOP
from grid.serving.request import Request as GridRequest
from grid.sim.simulator import build_zone_views
from grid.stats import RunStats
from grid.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from grid.telemetry.metrics import GridMetrics
from grid.world import World, build_world

LIVE_REPORT_INTERVAL_S = 0.1  # load-report period when the scenario asks for fresh reports (0)
POPULATION_HEADER = "x-grid-population"
SAMPLE_BLOCK = 1024
MAX_SUBMITS_IN_FLIGHT = 1  # per zone (2 measured worse: more Ray calls, same wait)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's own knobs; the scenario gives the world, the policy and the SLOs."""

    policy: str | None = None  # None: the scenario's routing.policy
    default_population: str | None = None  # None: the scenario's first population
    report_interval_s: float | None = None  # None: the scenario's, or LIVE_REPORT_INTERVAL_S if 0
    seed: int | None = None  # None: the scenario's seed
    poll_wait_s: float = 1.0  # long-poll timeout of the per-zone update stream
    report_timeout_s: float = 2.0  # a zone that does not report within this is unreachable
    retry_after_s: float = 1.0
    apply_faults: bool = True  # play the scenario's fault timeline in wall time from app start


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
    """A request between routing and its end."""

    request: GridRequest
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    stats: RunStats | None = None


class _ZoneLink:
    """The gateway's end of one zone actor: batched submits and the update long-poll.

    Up to `MAX_SUBMITS_IN_FLIGHT` submit calls run at once; requests arriving meanwhile wait and go
    together in the next call (batching grows with load, the wait stays under one Ray round trip)."""

    def __init__(self, index: int, actor, deliver: Callable[[list], None]) -> None:
        self.index = index
        self.actor = actor
        self.deliver = deliver
        self._batch: list[tuple] = []
        self._waiters: list[asyncio.Future] = []
        self._sending = 0

    async def submit(self, item: tuple) -> int:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._batch.append(item)
        self._waiters.append(future)
        if self._sending < MAX_SUBMITS_IN_FLIGHT:
            self._sending += 1
            loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, waiters = self._batch, self._waiters
                self._batch, self._waiters = [], []
                try:
                    answers, updates = await self.actor.submit.remote(batch)
                except Exception as exc:  # the actor is gone: every request in the batch fails
                    log.warning("zone %d: submit failed: %r", self.index, exc)
                    answers, updates = [DOWN] * len(batch), []
                if updates:
                    self.deliver(updates)
                for future, answer in zip(waiters, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self._sending -= 1


class GridGateway:
    """Runtime state of the gateway: the view, the policy, the zone links, the stats."""

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
        self.links = [_ZoneLink(i, actor, self._deliver) for i, actor in enumerate(zones.actors)]
        self.sent_total = [0] * len(self.links)
        self.reports: list[dict | None] = [None] * len(self.links)
        self.clock_offset_s = [0.0] * len(self.links)  # actor clock − gateway clock, per zone
        self._offset_bound = [math.inf] * len(self.links)
        self._offset_at = [0.0] * len(self.links)
        self.stats = self.new_stats()
        self.live: dict[int, _Live] = {}
        self._ids = itertools.count(1)
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

    # --- clock and lifecycle -------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the gateway started: the only clock the gateway reads."""
        return time.monotonic() - self._t0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.refresh_reports()
        self._tasks = [loop.create_task(self._pump(link)) for link in self.links]
        self._tasks.append(loop.create_task(self._report_loop()))
        if self.settings.apply_faults and self.scenario.faults:
            self._tasks.append(loop.create_task(self._fault_loop()))

    async def stop(self) -> None:
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
        reports = await asyncio.gather(*(link.actor.report.remote() for link in self.links))
        return [ZoneFigures(r["work_s"], r["area_queued"], r["area_in_system"]) for r in reports]

    # --- load reports, updates, faults ---------------------------------------------------------

    async def _timed_report(self, link: _ZoneLink) -> tuple[float, dict, float]:
        sent = self.now()
        report = await asyncio.wait_for(link.actor.report.remote(), self.settings.report_timeout_s)
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
        results = await asyncio.gather(*(self._timed_report(link) for link in self.links), return_exceptions=True)
        view = self.view
        changed = False
        for i, result in enumerate(results):
            zv = view.zones[i]
            was_up = zv.up
            if isinstance(result, BaseException):
                zv.up = False  # unreachable: no candidates until it reports again
                self.reports[i] = None
            else:
                asked, report, answered = result
                self._learn_offset(i, asked, report, answered)
                self.reports[i] = report
                zv.up = report["up"]
                zv.outstanding = report["outstanding"]
                zv.waiting = report["waiting"]
                zv.running = report["running"]
                zv.kv_usage = report["kv_usage"]
                zv.utilization = report["utilization"]
                zv.zone_ttft_s = report["ttft_ewma_s"]
                zv.report_s = asked
                zv.sent_since_report = max(0, self.sent_total[i] - report["received"])
            changed |= was_up != zv.up
            if self.metrics is None:
                continue
            if self.reports[i] is None:
                self.metrics.set_zone_up(i, False)
            else:
                age_s = max(0.0, self.now() - zv.report_s)
                self.metrics.observe_zone_report(i, zv.up, zv.running, zv.waiting, zv.kv_usage, zv.utilization, age_s)
        if changed:
            view.refresh_candidates()
        if self.metrics is not None:
            self.metrics.tick(self.now())

    async def _report_loop(self) -> None:
        interval = self.report_interval_s
        while True:
            started = self.now()
            try:
                await self.refresh_reports()
            except Exception:  # never let the report loop die
                log.exception("load report failed")
            await asyncio.sleep(max(0.0, started + interval - self.now()))

    async def _pump(self, link: _ZoneLink) -> None:
        wait_s = self.settings.poll_wait_s
        live = self.live
        while True:
            try:
                updates = await link.actor.poll.remote(wait_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the actor died: its requests fail
                log.warning("zone %d: update stream failed: %r", link.index, exc)
                for item in list(live.values()):
                    if item.request.zone == link.index:
                        item.queue.put_nowait((UPDATE_FAILED, 0, self.now() + self.clock_offset_s[link.index], -1.0))
                await asyncio.sleep(1.0)
                continue
            self._deliver(updates)

    def _deliver(self, updates: list) -> None:
        live = self.live
        for rid, kind, tokens, t_s, first_s in updates:
            item = live.get(rid)
            if item is not None:
                item.queue.put_nowait((kind, tokens, t_s, first_s))

    async def _fault_loop(self) -> None:
        for action in fault_timeline(self.scenario.faults, self.world):
            await asyncio.sleep(max(0.0, action.at_s - self.now()))
            if action.kind in (ZONE_DOWN, ZONE_UP, ZONE_SLOW):
                actor = self.links[action.zone].actor
                if action.kind == ZONE_DOWN:
                    await actor.fail_all.remote()
                elif action.kind == ZONE_UP:
                    await actor.restore.remote()
                else:
                    await actor.set_slow_factor.remote(action.value)
            elif action.kind in (LINK_DELAY, PARTITION):
                self.network.apply(action)
                self.view.rtt_s = self.network.rtt_s()
                self.view.refresh_candidates()

    # --- one request ---------------------------------------------------------------------------

    def population_of(self, headers) -> int:
        name = headers.get(POPULATION_HEADER) or self.default_population
        index = self.population_index.get(name)
        if index is None:
            raise api.ApiError(
                400,
                f"Unknown population {name!r} in header X-Grid-Population; valid populations: "
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

    async def handle(self, chat: bool, body, prompt_tokens: int, population: int) -> Response:
        if prompt_tokens >= self.context_tokens:
            raise api.ApiError(
                400,
                f"This model's maximum context length is {self.context_tokens} tokens. However, your "
                f"{'messages' if chat else 'prompt'} resulted in {prompt_tokens} tokens.",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        output, finish = self._answer_length(prompt_tokens, body.token_limit, body.ignore_eos, body.seed)
        rid = next(self._ids)
        arrival = self.now()
        request = GridRequest(rid, population, prompt_tokens, output, arrival, finish)
        stats = self.stats
        stats.arrivals[population] += 1
        view = self.view
        view.now_s = arrival
        pop_id = self.world.population_ids[population]
        if not view.candidates[population]:
            stats.rejected[population, len(self.links)] += 1
            self._end(request, REJECTED, None)
            raise api.ApiError(
                503,
                f"No zone is reachable from population {pop_id!r} right now.",
                type_="service_unavailable",
                code="no_zone_available",
                retry_after_s=self.settings.retry_after_s,
                headers={"x-grid-population": pop_id},
            )
        decided = time.perf_counter()
        zi = self.policy.choose(request, view)
        decision_s = time.perf_counter() - decided
        request.zone = zi
        rtt = view.rtt_s[population][zi]
        zone_id = self.world.zone_ids[zi]
        headers = {
            "x-grid-zone": zone_id,
            "x-grid-region": self.world.region_ids[self.world.zone_region[zi]],
            "x-grid-population": pop_id,
        }
        if not math.isfinite(rtt):  # routed into a partition: the connection fails
            stats.failed[population, zi] += 1
            self._end(request, ERROR, None)
            raise api.ApiError(
                503,
                f"Zone {zone_id} is unreachable from population {pop_id!r}.",
                type_="service_unavailable",
                code="zone_unreachable",
                retry_after_s=self.settings.retry_after_s,
                headers=headers,
            )
        if self._jitter_ratio > 0:
            rtt *= 1.0 + self._jitter.expovariate(1.0 / self._jitter_ratio)
        request.rtt_s = rtt
        if self.metrics is not None:
            self.metrics.observe_route(population, zi, decision_s, rtt)
        half = 0.5 * rtt
        headers["x-grid-rtt-ms"] = f"{rtt * 1000:.1f}"
        view.zones[zi].sent_since_report += 1
        self.sent_total[zi] += 1
        live = _Live(request, stats=stats)
        self.live[rid] = live
        try:
            if half > 0:
                await asyncio.sleep(half)
            at_s = arrival + half + self.clock_offset_s[zi]  # when it reaches the zone, on the zone's clock
            answer = await self.links[zi].submit((rid, population, prompt_tokens, output, bool(body.stream), at_s))
        except BaseException:
            self.live.pop(rid, None)
            raise
        if answer != ADMITTED:
            self.live.pop(rid, None)
            if half > 0:
                await asyncio.sleep(half)  # the refusal travels back
            if answer == DOWN:
                stats.failed[population, zi] += 1
                self._end(request, ERROR, None)
                raise api.ApiError(
                    503,
                    f"Zone {zone_id} is down.",
                    type_="service_unavailable",
                    code="zone_down",
                    retry_after_s=self.settings.retry_after_s,
                    headers=headers,
                )
            stats.rejected[population, zi] += 1
            self._end(request, REJECTED, None)
            raise api.ApiError(
                429,
                f"Zone {zone_id} is overloaded (queue full); retry later.",
                type_="rate_limit_error",
                code="overloaded",
                retry_after_s=self.settings.retry_after_s,
                headers=headers,
            )
        text_seed = body.seed if body.seed is not None else rid
        response_id = ("chatcmpl-" if chat else "cmpl-") + f"{rid:x}{self._id_rng.getrandbits(48):012x}"
        if body.stream:
            writer = api.ChunkWriter(chat, response_id, self.created, self.model_name, body.include_usage)
            return StreamingResponse(
                self._stream(live, writer, text_seed, half),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache"},
            )
        return await self._complete(live, chat, response_id, text_seed, half, headers)

    async def _complete(self, live: _Live, chat: bool, response_id: str, text_seed: int, half: float, headers):
        request = live.request
        try:
            kind, _, t_s, first_s = await _final(live.queue)
        finally:
            self.live.pop(request.id, None)
        shift = half - self.clock_offset_s[request.zone]  # zone clock → the client's receipt, gateway clock
        delay = t_s + shift - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == UPDATE_FAILED:
            live.stats.failed[request.population, request.zone] += 1
            self._end(request, ERROR, None)
            err = api.ApiError(
                503,
                f"Zone {self.world.zone_ids[request.zone]} failed while serving the request.",
                type_="service_unavailable",
                code="zone_failed",
                retry_after_s=self.settings.retry_after_s,
                headers=headers,
            )
            return err.response()
        e2e = self.now() - request.arrival_s
        ttft = e2e - (t_s - first_s)  # the first token left the zone t_s − first_s before the last one
        self._finished(live, ttft, e2e)
        use = api.usage(request.prompt_tokens, request.output_tokens)
        text = "".join(generate_pieces(request.output_tokens, text_seed))
        build = api.chat_completion if chat else api.text_completion
        payload = build(response_id, self.created, self.model_name, text, request.finish_reason, use)
        return JSONResponse(payload, headers=headers)

    async def _stream(self, live: _Live, writer: api.ChunkWriter, text_seed: int, half: float):
        request = live.request
        pieces = generate_pieces(request.output_tokens, text_seed)
        queue = live.queue
        now = self.now
        sent = 0
        first_s = math.nan
        ended = False
        shift = half - self.clock_offset_s[request.zone]
        try:
            while True:
                kind, tokens, t_s, _ = await queue.get()
                delay = t_s + shift - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                if kind == UPDATE_FAILED:
                    ended = True
                    live.stats.failed[request.population, request.zone] += 1
                    self._end(request, ERROR, None)
                    yield writer.error(
                        api.ApiError(
                            503,
                            f"Zone {self.world.zone_ids[request.zone]} failed while serving the request.",
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
                    ended = True
                    end_s = now()
                    self._finished(live, first_s - request.arrival_s, end_s - request.arrival_s)
                    if writer.include_usage:
                        yield writer.usage(api.usage(request.prompt_tokens, request.output_tokens))
                    yield writer.DONE
                    return
        finally:
            self.live.pop(request.id, None)
            if not ended:  # the client went away: free the zone
                self._end(request, "abort", None)
                with contextlib.suppress(Exception):
                    self.links[request.zone].actor.cancel.remote([request.id])

    def _finished(self, live: _Live, ttft: float, e2e: float) -> None:
        request = live.request
        n = request.output_tokens
        tpot = (e2e - ttft) / (n - 1) if n > 1 else math.nan
        live.stats.finished(request.population, request.zone, ttft, tpot, e2e, request.prompt_tokens, n)
        request.first_token_s = request.arrival_s + ttft
        request.finish_s = request.arrival_s + e2e
        self._end(request, request.finish_reason, (ttft, e2e, tpot))

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
                    CANCELLED if status == "abort" else status,
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
            "placed_by_region": self.zones.placed_by_region,
            "zones": zones,
        }


async def _final(queue: asyncio.Queue) -> tuple:
    """The last update of a non-streaming request (done or failed)."""
    while True:
        item = await queue.get()
        if item[0] in (UPDATE_DONE, UPDATE_FAILED):
            return item


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

    app = FastAPI(title="inference grid gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    app.state.registry = registry
    app.state.on_request_end = gateway.on_request_end
    gateway.metrics = app.state.metrics = GridMetrics(registry, scenario, policy=gateway.policy.name)

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

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = api.parse_body(api.ChatCompletionRequest, await request.body())
        if body.model != gateway.model_name:
            raise api.model_not_found(body.model)
        population = gateway.population_of(request.headers)
        prompt = chat_template([(m.role, m.text()) for m in body.messages])
        return await gateway.handle(True, body, count_tokens(prompt), population)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = api.parse_body(api.CompletionRequest, await request.body())
        if body.model != gateway.model_name:
            raise api.model_not_found(body.model)
        population = gateway.population_of(request.headers)
        prompt = body.prompt
        if isinstance(prompt, list):
            prompt_tokens = len(prompt) if prompt and isinstance(prompt[0], int) else count_tokens(prompt[0])
        else:
            prompt_tokens = count_tokens(prompt)
        return await gateway.handle(False, body, max(1, prompt_tokens), population)

    @app.get("/v1/models")
    async def models():
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

    @app.get("/grid/zones")
    async def grid_zones():
        return gateway.zones_json()

    return app
