"""The live grid's gateway core: routes each accepted request to a zone actor, retries, hedges and ends it.

`GridGateway.handle` takes a checked request (`grid.live.app` parses it, `grid.live.intake` sizes
it), routes it with the scenario's policy object (`grid.routing.registry.make_policy`) on a
`GridView` built like the simulator's (`build_zone_views`) and refreshed by `grid.live.health_monitor`
as the scenario's `routing.report_interval_s` says (0: fresh, as in the simulator), sends it over the
zone's `grid.live.zone_link.ZoneLink`, and answers through `grid.live.responses`.

Network: RTT = the population's RTT to the zone × (1 + Exp(jitter_ratio)), split in half: the request
reaches the zone rtt/2 after the gateway got it (the zone-arrival time travels with the request, on
the zone's clock), and every piece of the answer reaches the client rtt/2 after the zone produced it.

- **Retries**: an attempt refused (`busy`, `down`), unanswered (`timeout`: no submit answer within
  `attempt_timeout_s`) or failed before its first token reached the client (`error`) is retried on
  another zone: at most `max_retries` times, never twice on one zone, within Envoy's retry budget
  (retrying requests ≤ max(`retry_budget_min`, `retry_budget_ratio` × requests in flight), the
  scenario's `routing.*`): the dispatch core's rule (`grid.dispatch.core`), as in the simulator.
- **Deadlines**: every request ends by `request_timeout_s` (504 `deadline_exceeded`, or an error
  event mid-stream); a backstop closes any request nobody is serving. Attempt timeouts on a zone
  do not count the gateway's own event-loop stalls (`grid.live.loop_lag`).
- **Drain** (`drain`, on SIGTERM through `grid.live.drain`): nothing new is admitted (503
  `shutting_down`), running requests get a grace period, then are stopped like a deadline (an error
  event and `[DONE]` mid-stream, a 503 before).
- **Hang-ups**: a client that goes away cancels its request (the app's `unless_hung_up`, or the
  stream's own clean-up): the zone frees it and it ends once, as cancelled.
- **Admission**: at most `max_in_flight` requests in the gateway (429 `gateway_overloaded`); zones
  have bounded queues (429 `overloaded` when every zone tried refused); 503 when no zone is up and
  reachable or every zone tried failed.
- **Accounting**: each accepted request ends exactly once (`close`): completed (stop/length),
  failed (error, deadline, client abort) or rejected, in `RunStats` and `grid_requests_total` alike.
  Requests refused before acceptance (bad input, auth, per-key rate limit) are in neither.
- **Faults**: `grid.live.fault_control.FaultController` (admin API, scenario schedule).
- **Hedging**: with a policy that hedges, a request without a first token after the policy's delay
  gets a second copy on another zone (`grid.live.hedging`).

Headers on every routed answer: `x-grid-zone`, `x-grid-region`, `x-grid-rtt-ms`, `x-grid-population`,
`x-grid-attempts`, and `x-grid-hedge` (won | lost | failed) on a hedged one: they name the winning copy's
zone. Prompts are never logged or exported: logs carry request ids and counts only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from fastapi.responses import Response, StreamingResponse

from grid.dispatch.core import Attempts, client_times
from grid.dispatch.sinks import Outcome
from grid.live import openai_api as api
from grid.live import responses
from grid.live.gateway_state import GatewayState
from grid.live.health import HealthSettings
from grid.live.http_limits import HttpLimits
from grid.live.prefix_hashes import BLOCK_TOKENS, block_hashes
from grid.live.responses import ABORT, UPDATE_STOP
from grid.live.security import ApiKey
from grid.live.zone_actor import ADMITTED, BUSY, NOTIFY_NONE, NOTIFY_STREAM, UPDATE_FAILED, UPDATE_FIRST
from grid.live.zone_link import TIMEOUT, expire
from grid.serving.request import CANCELLED, ERROR, REJECTED
from grid.serving.request import Request as GridRequest

STOPPED = "stopped"  # what `send` returns when the request had to end while it waited (deadline, drain)
SHUTDOWN = "shutdown"  # why a request was stopped: the gateway is draining (else its deadline passed)
DRAIN_POLL_S = 0.05
REAP_AFTER_DEADLINE_S = 5.0  # a request still open this long after its deadline is closed (abort)

log = logging.getLogger(__name__)

# The monotonic time a request's first byte reached the server (`http_limits.RECEIVED_AT`), set by the
# app for the request's task before it calls `handle`; None when the server stamps none.
received_at: ContextVar[float | None] = ContextVar("grid_received_at", default=None)


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's own knobs; the scenario gives the world, the policy, the seed, the routing rules
    and the SLOs (`--policy`/`--seed` on the command line are scenario overrides)."""

    default_population: str | None = None  # for requests that name none; None: the scenario's first
    poll_wait_s: float = 1.0  # long-poll timeout of the per-zone update stream
    report_timeout_s: float = 2.0  # zone_figures(): a zone that does not report within this is unreachable
    retry_after_s: float = 1.0
    apply_faults: bool = True  # play the scenario's fault schedule in wall time from app start
    timeline_on_start: bool = True  # False: autoscaling and scheduled faults wait for start_timeline()
    explain_decisions: bool = True  # x-grid-decision and /grid/decisions/{id} (grid.live.decisions)
    autoscaler: str | None = None  # NAME or module:Class (grid.scaling); None: the scenario's autoscaling.policy
    # resilience
    health: HealthSettings = HealthSettings()
    attempt_timeout_s: float = 2.5  # a zone that does not answer a submit within this: retry elsewhere
    request_timeout_s: float = 300.0  # per-request deadline (generous: a long answer at low load fits)
    max_in_flight: int = 4096  # requests inside the gateway at once; beyond: 429
    # security
    drain_grace_s: float = 10.0  # on SIGTERM: running requests get this long to finish (grid up --drain-grace)
    admin_token: str | None = None  # None: the admin endpoints are not routed (404)
    api_keys: tuple[str | ApiKey, ...] = ()  # empty: inference is open; an ApiKey may carry a population
    api_key_rps: float = 50.0  # per key; 0 = unlimited
    api_key_burst: float = 100.0
    http_limits: HttpLimits = HttpLimits()  # the edge's HTTP limits (grid.live.http_limits)
    # An idle kept-alive connection is closed after this (uvicorn's timeout_keep_alive; its default,
    # 5 s, is shorter than aiohttp's 15 s pools: a client reusing a connection the server is closing
    # gets a connection error). Longer than the clients' pools and load balancers' idle timeouts (AWS
    # ALB 60 s), like nginx's default (75 s), so the client side always closes first (grid up --keep-alive).
    keep_alive_s: float = 75.0
    list_model_aliases: bool = False  # /v1/models also lists MODEL@POPULATION (grid up --list-model-aliases)
    # Tokens per SSE chunk: 1 is vLLM's stream (a chunk per decode step); more costs the gateway less
    # CPU per token and shows chunk-timing clients bursts (grid up --stream-chunk-tokens).
    stream_chunk_tokens: int = 1


@dataclass
class _Live:
    """An accepted request until it ends."""

    request: GridRequest
    handled_s: float = 0.0  # when its handler began (its arrival: when it reached the server, earlier)
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    deadline_s: float = math.inf
    admitted: bool = False  # the current attempt's zone holds it
    incarnation: str | None = None  # of the zone actor that admitted it
    attempts: Attempts = field(default_factory=Attempts)  # zones tried, retries, why the last failed
    closed: bool = False
    stopped_by: str = ""  # why it must end now: "deadline" or SHUTDOWN (`GridGateway.stop_request`)
    timers: list = field(default_factory=list)
    # hedging (grid.live.hedging): when a copy is due, the copy while it races
    hedge_at_s: float = -math.inf
    hedge: _Live | None = None


class GridGateway(GatewayState):
    """The request path: accept, route, send, retry, hedge, end (the state and lifecycle are `GatewayState`'s)."""

    # --- updates and losses, to the requests they concern ---------------------------------------

    def deliver(self, zi: int, updates: list) -> None:
        """Zone `zi`'s updates to the requests (or hedge copies) waiting for them."""
        live = self.live
        for update in updates:
            item = live.get(update[0])
            if item is None:
                continue
            if item.request.zone == zi:
                item.queue.put_nowait(update[1:])
            elif item.hedge is not None and item.hedge.request.zone == zi:  # a hedge copy (same id, its zone)
                item.hedge.queue.put_nowait(update[1:])

    def fail_admitted(self, zi: int, keep: str | None, dead: str | None) -> list[int]:
        """Fail the requests admitted on zone `zi` — all of them, or those of incarnation `dead`,
        or those not of incarnation `keep` (the survivor of a restart). Returns their ids."""
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
                leg.queue.put_nowait((UPDATE_FAILED, 0, -math.inf, -1.0, None))
                failed.append(leg.request.id)
        return failed

    # --- one request ---------------------------------------------------------------------------

    async def handle(
        self, chat: bool, body, prompt_tokens: int, population: int, prompt_ids: Sequence[int] = ()
    ) -> Response:
        """Serve one accepted request; `prompt_ids` (its token ids) name its KV blocks for the prefix caches."""
        if self.draining:
            raise self.draining_error()
        self.intake.check_token_limit(chat, prompt_tokens, body.token_limit)
        output, finish = self.intake.answer_length(prompt_tokens, body.token_limit, body.ignore_eos, body.seed)
        rid = self.last_id = self.last_id + 1
        text_seed = body.seed if body.seed is not None else rid  # the answer's text is known before routing
        output, finish = self.intake.apply_stop(output, finish, text_seed, body.stop_sequences)
        handled = self.now()
        # The request arrived when its first byte reached the server (its TTFT and E2E start there, as
        # the client's do): the gateway's own queueing and parsing before this handler count.
        received = self.since_start(received_at.get())
        arrival = handled if received is None else min(handled, max(0.0, received))
        self.observe_intake(handled - arrival)
        request = GridRequest(rid, population, prompt_tokens, output, arrival, finish)
        if not self.dispatch.arrive(request, arrival):  # over the context: ended, rejected
            raise self.intake.context_error(chat, prompt_tokens)
        request.prefix_hashes = block_hashes(prompt_ids)  # within the context: ≤ 1 ms
        if request.prefix_hashes:
            request.prefix_block_tokens = BLOCK_TOKENS
        live = _Live(request, handled_s=handled)
        self.live[rid] = live
        timeout = self.settings.request_timeout_s
        live.deadline_s = arrival + timeout
        loop = asyncio.get_running_loop()
        live.timers.append(loop.call_later(timeout, self._deadline_passed, live))
        pop_id = self.world.population_ids[population]
        if self.hedging is not None:
            self.hedging.arm(live)
        if len(self.live) > self.settings.max_in_flight:
            self.close(live, REJECTED)
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
            zi, headers, half, first = await self.attempt(live, stream)
        except api.ApiError:
            raise
        except BaseException:  # cancelled (the client went away) or a bug: the request still ends
            if not live.closed:
                self.abandon(live, ABORT)
            raise
        created = int(self.wall_t0_s + request.arrival_s)  # when this request arrived, Unix seconds
        response_id = ("chatcmpl-" if chat else "cmpl-") + f"{rid:x}{self._id_rng.getrandbits(48):012x}"
        if stream:
            writer = api.ChunkWriter(
                chat, response_id, created, self.model_name, body.include_usage, body.continuous_usage, prompt_tokens
            )
            return StreamingResponse(
                responses.stream(self, live, writer, text_seed, half, first),
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache"},
            )
        try:
            return await responses.complete(self, live, chat, response_id, created, text_seed, half, headers)
        except api.ApiError:
            raise
        except BaseException:
            if not live.closed:
                self.abandon(live, ABORT)
            raise

    async def attempt(self, live: _Live, stream: bool) -> tuple[int, dict, float, tuple | None]:
        """Route and send the request, retrying elsewhere while nothing has reached the client.
        Returns (zone, headers, half RTT, the first update when streaming or hedging); raises ApiError
        (the request then has ended)."""
        request = live.request
        attempts = live.attempts
        while True:
            now = self.now()
            if now >= live.deadline_s or live.stopped_by:
                raise self.stop_error(live)
            # When the attempt leaves, on the model's clock: a retry when it is decided; the first when
            # it arrived if the scenario models the gateway's hop (its intake is part of that leg:
            # `network.gateway_hop_ms`), else when its handler began (the wait before it counts).
            sent_s = now if attempts.zones else request.arrival_s if self._hop_s > 0 else live.handled_s
            if not attempts.zones:
                zi = self.dispatch.route(request, now)
                if zi >= 0:
                    attempts.zones.append(zi)
            else:
                zi = self.dispatch.retry(request, attempts, now)
                if zi >= 0:
                    self.counts["retries"] += 1
            if zi < 0:
                raise self._give_up(live)
            request.attempts += 1
            if self.hedging is not None and live.hedge_at_s > self.now():  # a copy may be due while this runs
                sent = await self.hedging.race(live, zi, stream, sent_s)
            else:
                sent = await self.send(live, live, zi, NOTIFY_STREAM if stream else NOTIFY_NONE, sent_s)
            if sent == STOPPED:
                raise self.stop_error(live)
            if sent is not None:
                headers, half, first = sent
                if first is not None and first[0] == UPDATE_FIRST:  # a stream's headers go with its first token
                    headers["x-grid-cached-tokens"] = str(first[4])
                return request.zone, headers, half, first

    async def send(self, live: _Live, leg: _Live, zi: int, notify: int, sent_s: float):
        """One copy of the request (`leg`: the request itself, or its hedge copy) to zone `zi`, sent
        at `sent_s`: the network, the submit, the admission and, when `notify` asks for updates, the
        first one. Returns (headers, half RTT, first update or None); None when the zone refused or
        failed it before that (recorded on `live`, the request, for its retries and error message);
        STOPPED when the request had to end meanwhile (its deadline, a drain)."""
        request = leg.request
        population = request.population
        request.zone = zi
        rtt = self.view.rtt_s[population][zi]  # finite: the choice was among reachable zones, just now
        headers = {**self._route_headers[population][zi], "x-grid-attempts": str(request.attempts)}
        headers["x-grid-request-id"] = str(request.id)
        if self.decisions is not None and (why := self.decisions.header(request.id)) is not None:
            headers["x-grid-decision"] = why
        if self._jitter_ratio > 0:
            rtt *= 1.0 + self._jitter.expovariate(1.0 / self._jitter_ratio)
        request.rtt_s = rtt
        half = 0.5 * rtt
        headers["x-grid-rtt-ms"] = f"{rtt * 1000:.1f}"
        self.dispatch.routed(request, zi, rtt, self.now())
        self.monitor.sent_total[zi] += 1
        at_s = sent_s + half  # reaches the zone (a late Ray call is back-dated by the zone actor) …
        if (delay := at_s - self.now()) > 0:
            await asyncio.sleep(delay)  # on its way: cancelled here (a race ended, the client left), it still was sent
        else:
            at_s -= delay  # … unless the gateway's own path overran the leg: late by as much
        leg.queue = asyncio.Queue()
        at_s += self.monitor.clock_offset_s[zi]  # on the zone's clock
        future = self.links[zi].submit(
            (request.id, population, request.prompt_tokens, request.output_tokens, notify, at_s, request.prefix_hashes)
        )
        wait_s = min(self.settings.attempt_timeout_s, live.deadline_s - self.now())
        # The submit's own future, awaited with a timer that answers TIMEOUT (cheaper than asyncio.wait
        # per request). A timed-out or cancelled (a dropped hedge copy) future is done before the
        # zone's answer: if the zone admits the request after all, the link withdraws it.
        if wait_s > 0:
            timer = self.loop_lag.call_later(wait_s, expire, future)  # the zone's time, not our stalls
            try:
                answer, incarnation = await future
            except asyncio.CancelledError:  # answered just as the task was cancelled: withdraw an admission
                if future.done() and not future.cancelled() and future.result()[0] == ADMITTED:
                    self.cancel_on_zone(zi, request.id)
                raise
            finally:
                timer.cancel()
        else:
            expire(future)
            answer, incarnation = future.result()
        if answer == ADMITTED:
            leg.admitted = True
            leg.incarnation = incarnation
            if leg is live and live.attempts.retrying and live.attempts.reason != "busy":
                self.failover_log.append((self.now(), live.attempts.last_zone, zi))
            if notify == NOTIFY_NONE:
                return headers, half, None
            first = await leg.queue.get()
            if first[0] == UPDATE_FIRST:
                first = await responses.until_made(self.now, leg.queue, first, -self.monitor.clock_offset_s[zi])
            if first[0] == UPDATE_STOP:
                return STOPPED
            if first[0] != UPDATE_FAILED:
                return headers, half, first
            leg.admitted = False
            self.attempt_failed(live, zi, "error")
            return None
        if half > 0 and answer != TIMEOUT:
            await asyncio.sleep(half)  # the refusal travels back
        reason = "busy" if answer == BUSY else "timeout" if answer == TIMEOUT else "down"
        self.attempt_failed(live, zi, reason, health=answer != BUSY)
        return None

    def attempt_failed(self, live: _Live, zi: int, reason: str, health: bool = True) -> None:
        live.attempts.failed(zi, reason)
        if health:
            self.monitor.request_failed(zi, reason)

    def _give_up(self, live: _Live) -> api.ApiError:
        """No (more) zone to try: end the request and say why."""
        status, error = responses.give_up_error(self.world, self.view, live, self.settings.retry_after_s)
        self.close(live, status)
        return error

    def _deadline_passed(self, live: _Live) -> None:
        if live.closed:
            return
        self.stop_request(live, "deadline")
        loop = asyncio.get_running_loop()
        live.timers.append(loop.call_later(REAP_AFTER_DEADLINE_S, self._reap, live))

    def stop_request(self, live: _Live, why: str) -> None:
        """Tell whoever serves the request to end it now (`stop_error` says how)."""
        live.stopped_by = live.stopped_by or why
        live.queue.put_nowait((UPDATE_STOP, 0, -math.inf, -1.0, None))
        if live.hedge is not None:  # a copy racing alone must stop waiting too
            live.hedge.queue.put_nowait((UPDATE_STOP, 0, -math.inf, -1.0, None))

    def _reap(self, live: _Live) -> None:
        """Backstop: nobody served this request (its response was never started)."""
        if not live.closed:
            self.counts["reaped"] += 1
            log.warning("request %d: closed by the backstop after its deadline", live.request.id)
            self.abandon(live, ABORT)

    def stop_error(self, live: _Live) -> api.ApiError:
        """End a stopped request (or one past its deadline) and say why: 503 when the gateway drains
        (retry elsewhere), else 504."""
        if live.stopped_by == SHUTDOWN:
            self.counts["drained"] += 1
            self.abandon(live, ERROR)
            return self.draining_error()
        self._timed_out(live)
        return api.ApiError(
            504,
            f"The request did not finish within its deadline ({self.settings.request_timeout_s:g} s).",
            type_="timeout_error",
            code="deadline_exceeded",
        )

    def draining_error(self) -> api.ApiError:
        return api.ApiError(
            503,
            "The gateway is shutting down; retry (another gateway will take the request).",
            type_="service_unavailable",
            code="shutting_down",
            retry_after_s=self.settings.retry_after_s,
        )

    async def drain(self, grace_s: float) -> int:
        """Graceful shutdown: admit nothing more (`draining`: 503 with Retry-After, /health says so),
        give running requests `grace_s` to finish, then stop the rest (a stream ends with an error
        event and `[DONE]`, a waiting answer with a 503). Returns how many were stopped."""
        self.draining = True
        deadline_s = self.now() + grace_s
        while self.live and self.now() < deadline_s:
            await asyncio.sleep(DRAIN_POLL_S)
        stopped = list(self.live.values())
        for live in stopped:
            self.stop_request(live, SHUTDOWN)
        deadline_s = self.now() + 1.0  # their handlers write the error and end them
        while self.live and self.now() < deadline_s:
            await asyncio.sleep(DRAIN_POLL_S)
        if stopped:
            log.warning("drain: %d request(s) still running after %g s were stopped", len(stopped), grace_s)
        return len(stopped)

    def _timed_out(self, live: _Live) -> None:
        self.counts["deadline"] += 1
        zi = live.request.zone
        if zi >= 0:
            self.attempt_failed(live, zi, "timeout")
        self.abandon(live, ERROR)

    def abandon(self, live: _Live, status: str) -> None:
        """End a request that did not complete (abort, deadline) and free its zone."""
        request = live.request
        admitted = live.admitted
        hedge = live.hedge
        self.close(live, status)
        if admitted and request.zone >= 0:
            self.cancel_on_zone(request.zone, request.id)
        if hedge is not None and hedge.admitted:  # normally the race's own clean-up does this
            hedge.admitted = False
            self.cancel_on_zone(hedge.request.zone, request.id)

    def finished(
        self,
        live: _Live,
        ttft: float,
        e2e: float,
        itl_s: list[float] | None = None,
        phases: tuple[float, float, int] | None = None,
    ) -> None:
        """A request completed: TTFT and E2E as its client saw them, the gaps between its chunks as
        sent (None: not streamed), and its zone's (queue s, prefill s, cached prompt tokens)."""
        request = live.request
        # Zone-side times on the gateway's clock, as the simulator's requests carry them: a policy's
        # `observe` adds the half RTT back (`hedged` learns its client-side TTFT threshold that way).
        half = 0.5 * request.rtt_s
        request.first_token_s = request.arrival_s + ttft - half
        request.finish_s = request.arrival_s + e2e - half
        if phases is not None:  # so vLLM's queue, prefill and inference histograms fill as in the simulator
            request.scheduled_s = request.first_token_s - phases[1]
            request.admit_s = request.scheduled_s - phases[0]
            request.cached_tokens = phases[2]
        self.health[request.zone].request_ok()
        self.close(live, request.finish_reason, client_times(request), itl_s)

    def close(
        self,
        live: _Live,
        status: str,
        times: tuple[float, float, float] | None = None,
        itl_s: list[float] | None = None,
    ) -> None:
        """The one place an accepted request ends: into the dispatch core (stats, metrics, the
        policy's feedback) once, then the `on_request_end` callbacks. `times`: TTFT, TPOT, E2E."""
        if live.closed:
            log.error("request %d ended twice (%s)", live.request.id, status)
            return
        live.closed = True
        live.admitted = False
        request = live.request
        self.live.pop(request.id, None)
        for timer in live.timers:
            timer.cancel()
        attempts = live.attempts
        outcome_status = CANCELLED if status == ABORT else status
        if times is not None:
            outcome = Outcome(outcome_status, request.zone, *times, retries=attempts.retries, itl_s=itl_s)
        else:
            outcome = Outcome(outcome_status, request.zone, retries=attempts.retries, reason=attempts.reason)
        self.dispatch.end(request, outcome, attempts, self.now())
        if request.status == REJECTED:
            status = REJECTED  # nothing was ever sent to a zone
        if self.on_request_end:
            record_times = (times[0], times[2], times[1]) if times is not None else None  # TTFT, E2E, TPOT
            responses.notify_end(self.on_request_end, self.world, request, status, record_times)
