"""A zone actor: one availability zone's serving model (`grid.serving.zone.Zone`) driven in wall time.

The actor owns a `Zone` and a clock `now = clock() − t0` (`clock`: `time.monotonic` unless injected).
Its loop advances the model to `now`, turns the model's events into updates for the gateway, and
sleeps until the earlier of the model's `next_event_time()` and the next stream tick; `submit` wakes
it early. Between events the model is analytic, so the actor costs nothing per token except at
stream ticks, when it reads `generated_tokens(request, now)` for the streaming requests that advanced.

Transport (actor ↔ gateway), chosen for hundreds of requests/s on 2 cores:
- **submit**: the gateway batches the requests that reached a zone since its last call into one
  `submit([...])` (one call in flight per zone; Nagle-like), answered with admitted/rejected flags
  and any updates already pending (so a request served at once needs one round trip).
- **updates**: one long-poll per zone, not per request: `poll(max_wait_s)` returns every update the
  zone produced since the previous call (first tokens, token counts at stream ticks, completions,
  failures) as plain tuples, as soon as there is at least one.
So actor calls scale with zones × stream ticks and with batches of arrivals, not with requests ×
tokens: a per-request Ray streaming generator would cost one Ray object per chunk per request, more
than Ray carries here (benchmarks/RESULTS.md, "Live grid"). With fresh reports (a report interval of
0), the zone's load goes out with its updates after every admission and model event.

Time: the model's times, not the transport's. A submitted request carries the time it reaches the
zone (`at_s`, on the actor's clock: the gateway's arrival + rtt/2, translated with its estimate of the
clock offset); the actor admits it then — or at the model's current time if the model has already
moved past it — so a late Ray call or a busy CPU does not shift the request. Updates are tuples
`(request id, kind, tokens, t_s, first_s, extra)` stamped with the model time the tokens were
produced: kind FIRST (the first token, at its time; `extra` = its prompt tokens served from the
prefix cache), TOKENS (a promise: `tokens` by `t_s`), DONE (all output tokens, at the finish; `extra`
= its vLLM queue and prefill times, s, and its cached prompt tokens) and FAILED; `first_s`
is the first token's time (−1 before it). The gateway delivers each one at t_s + rtt/2 (its clock).

Early first tokens: a step that completes prompts is never cut, so their first tokens' times are
fixed when it starts; the actor sends each FIRST then, stamped with the step's end, rather than
when the step ends. The Ray hop back to the gateway then runs while the step computes, as the
network's half RTT does; the gateway treats the token as made only at its time (a failure before
then is retried, as before any first token; a hedge race is ordered by it) and the client gets it
half an RTT later, as every update. Without it every first token reached the client one Ray round trip
late, which a population next to its zone (RTT 1–2 ms) could not hide.

Streams are paced token by token (`grid.live.token_pacing`): a stream tick at `now` promises each
streaming request's token count at `now + stream_interval_s`, read from the model's current decode
run (`generated_tokens` extrapolates it), capped one short of the answer so the last token comes with
DONE at its true time; a first token is followed at once by its first promise. The gateway spaces the
tokens between two promises evenly, so a client sees one token per decode step, not one burst per
tick, at the cost of one update per tick. A promise can run ahead of the model when a batch change
slows its run (a new prompt's prefill): the next promise is then lower and the gateway waits. What a request
is sent depends on its `notify` (the submit's 5th field): NOTIFY_NONE, DONE/FAILED only (a plain
non-streaming answer); NOTIFY_STREAM, everything; NOTIFY_FIRST, FIRST then DONE/FAILED, no ticks (a
non-streaming copy of a hedged request: the gateway must know which copy's first token came first).

Restarts: the actor runs with `max_restarts` (grid.live.cluster), so a killed actor (a live
`zone_down`, `ray.kill(actor, no_restart=False)`) comes back as a fresh process: empty, with a
new `incarnation` (a random id drawn in `__init__`). Every submit and poll answer and every report
carries it, so the gateway knows that requests admitted by an older incarnation are lost. The loop
starts on the first call of any method (a restarted actor is never sent `start`). A restarted actor
starts *down* (`was_current_actor_reconstructed`; empty, refusing work), because Ray holds the calls
made while it restarts and delivers them to the new process: submits the gateway sent to the dead
zone must be refused (and retried elsewhere before their first token), as by a down zone in the
simulator, not served and then failed mid-stream when the fault controller catches up.
`hold_down(old)` claims a restarted actor (it stays down until `restore`), which is how a fault
window outlives the restart; a restarted actor nobody claims within `RESTART_GRACE_S` of its start
(Ray restarted it after a crash, not a fault) comes back up by itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable

from grid.live.prefix_hashes import BLOCK_TOKENS
from grid.scenario import GpuProfile, Scenario
from grid.serving.request import STOP, Request
from grid.serving.zone import FAILED, FINISHED, FIRST_TOKEN, Zone

log = logging.getLogger(__name__)

UPDATE_FIRST, UPDATE_TOKENS, UPDATE_DONE, UPDATE_FAILED = 0, 1, 2, 3
UPDATE_REPORT = 4  # fresh reports: (REPORT_ID, UPDATE_REPORT, load_fields(now), now, 0.0, zone.counts())
REPORT_ID = -1  # the id slot of a report update (request ids are positive)
PREEMPTED = "preempted"  # a FAILED update's extra when a spot preemption cut it off (the zone is fine)
ADMITTED, BUSY, DOWN = 0, 1, 2  # submit answers: taken; refused (queue full, too large); zone down
NOTIFY_NONE, NOTIFY_STREAM, NOTIFY_FIRST = 0, 1, 2  # which updates a request gets (True/False still work)
MAX_CONCURRENCY = 256  # submit, poll, report, cancel run concurrently on the actor's event loop
RESTART_GRACE_S = 5.0  # a restarted actor nobody holds down (a crash, not a fault) comes back up after this


def _was_reconstructed() -> bool:
    """True in an actor process that Ray restarted (not the first); False outside Ray."""
    try:
        import ray

        if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
            return False  # not in an actor (a test constructing ZoneActor directly)
        with warnings.catch_warnings():  # Ray's own property reads its deprecated `actor_id`
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)  # a GCS query
    except Exception:
        log.exception("cannot tell whether this zone actor was restarted; starting up")
        return False


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def zone_actor_args(scenario: Scenario, zone_id: str, stream_interval_s: float) -> tuple[tuple, dict]:
    """The constructor arguments of zone `zone_id`'s actor, as the scenario resolves them (for Ray's
    `.remote(*args, **kwargs)` and for an in-process actor alike)."""
    spec = scenario.zones[zone_id]
    args = (zone_id, spec.region, scenario.gpus[spec.gpu], spec.replicas, spec.max_queue, stream_interval_s)
    return args, {"fresh_reports": scenario.routing.report_interval_s <= 0}


class ZoneActor:
    """Wrapped with `ray.remote(num_cpus=0, max_concurrency=...)` by grid.live.cluster."""

    def __init__(
        self,
        zone_id: str,
        region: str,
        profile: GpuProfile,
        replicas: int,
        max_queue: int,
        stream_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        fresh_reports: bool = False,
    ) -> None:
        self.zone_id = zone_id
        self.region = region
        self.zone = Zone(profile, replicas, max_queue)
        # The scenario's report interval is 0: the zone's load goes out with its updates after every
        # admission and every event of its model, as the simulator refreshes the router's view.
        self.fresh_reports = fresh_reports
        self.stream_interval_s = stream_interval_s
        self._clock = clock  # monotonic seconds: the only clock the actor reads
        self._t0 = clock()
        self._requests: dict[int, Request] = {}
        self._streaming: dict[int, list] = {}  # id -> [request, tokens already reported]
        self._first_only: set[int] = set()  # NOTIFY_FIRST requests whose first token is still to come
        self._announced: set[int] = set()  # first tokens sent ahead, their steps still in progress
        self._outbox: list[tuple] = []  # updates for the gateway (see "Time")
        self._poll_waiter: asyncio.Future | None = None
        self._wake: asyncio.Future | None = None
        self._next_tick = math.inf
        self._task: asyncio.Task | None = None
        self._t_model = 0.0  # the latest time the model has been advanced to
        self.received = 0  # submissions ever received (admitted or not): the gateway's in-transit count
        self.cancelled = 0  # admitted requests withdrawn by the gateway (hedge losers, aborts)
        self.incarnation = uuid.uuid4().hex[:12]  # new on every (re)start of the actor process
        # A restarted process starts down (see "Restarts"): Ray delivers the calls it held during the
        # restart to this process, and a zone_down fault must refuse them, not serve and then fail them.
        self.reconstructed = _was_reconstructed()
        self._held = False  # `hold_down` claimed this restart: only `restore` brings the zone back
        self._grace: asyncio.TimerHandle | None = None
        self._restored = False  # `restore` was called on this incarnation
        if self.reconstructed:
            self.zone.fail_all(0.0)  # empty: nothing fails, new work is refused until `restore`

    def _now(self) -> float:
        return self._clock() - self._t0

    # --- called by the gateway ---------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
            if self.reconstructed and not self._held and not self.zone.up:
                self._grace = loop.call_later(max(0.0, RESTART_GRACE_S - self._now()), self._end_grace)

    def _end_grace(self) -> None:
        """Nobody held this restarted actor down (Ray restarted it after a crash): it comes back up."""
        self._grace = None
        if not self._held and not self.zone.up:
            self.zone.restore(self._now())

    async def start(self) -> str:
        self._ensure_started()
        return self.zone_id

    async def submit(self, batch: list[tuple]) -> tuple[list[int], list[tuple], str]:
        """Admit `(id, population, prompt_tokens, output_tokens, notify, at_s, prefix_hashes)` requests,
        each at `at_s` (actor clock; clamped to [model time, now]; `prefix_hashes`: the prompt's KV-block
        chain, `grid.live.prefix_hashes`, or None); answers one of ADMITTED, BUSY, DOWN per
        request, plus every pending update (piggybacked: a fast request may already be done) and
        the incarnation that admitted them."""
        self._ensure_started()
        now = self._now()
        zone = self.zone
        accepted = []
        for rid, population, prompt, output, notify, at_s, hashes in batch:
            self.received += 1
            t = min(now, max(at_s, self._t_model))
            self._advance(t)  # the model must be current before it takes new work
            request = Request(rid, population, prompt, output, t, STOP, hashes, BLOCK_TOKENS if hashes else 0)
            if zone.admit(request, t):
                if self.fresh_reports:
                    self._push_report(t)
                self._requests[rid] = request
                if notify == NOTIFY_FIRST:
                    self._first_only.add(rid)
                elif notify:
                    self._streaming[rid] = [request, 0]
                accepted.append(ADMITTED)
            else:
                accepted.append(DOWN if not zone.up or zone.replicas == 0 else BUSY)
        self._advance(now)
        if self._wake is not None:
            _resolve(self._wake)
        out, self._outbox = self._outbox, []
        return accepted, out, self.incarnation

    async def poll(self, max_wait_s: float = 1.0) -> tuple[str, list[tuple]]:
        """(incarnation, every update since the last call); waits up to `max_wait_s` for the first one."""
        self._ensure_started()
        if not self._outbox:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_wait_s
            # Woken by new updates; a submit may take them first (piggybacked on its answer): then wait
            # on rather than answer empty (an empty answer is a wasted round trip per submit batch).
            while not self._outbox:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                waiter = self._poll_waiter = loop.create_future()
                handle = loop.call_later(remaining, _resolve, waiter)
                try:
                    await waiter
                finally:
                    handle.cancel()
                    self._poll_waiter = None
        out, self._outbox = self._outbox, []
        return self.incarnation, out

    async def cancel(self, ids: list[int]) -> int:
        now = self._now()
        self._advance(now)
        done = 0
        for rid in ids:
            request = self._requests.pop(rid, None)
            self._streaming.pop(rid, None)
            self._first_only.discard(rid)
            self._announced.discard(rid)
            if request is not None and self.zone.cancel(request, now):
                done += 1
        self.cancelled += done
        if self._wake is not None:
            _resolve(self._wake)
        return done

    async def report(self, cached_units: bool = False) -> dict:
        """The load report (and the integrals a run report needs); with `cached_units`, the unit hashes
        the zone's prefix caches hold, as of now (a copy: for routers that read them, `kv_aware`)."""
        self._ensure_started()
        now = self._now()
        self._advance(now)
        zone = self.zone
        zone._account(now)  # bring the time integrals up to now
        outstanding, waiting, kv_usage, utilization, ttft_ewma_s = self._load(now)
        return {
            "zone": self.zone_id,
            "region": self.region,
            "up": zone.up,
            "outstanding": outstanding,
            "waiting": waiting,
            "running": outstanding - waiting,
            "kv_usage": kv_usage,
            "utilization": utilization,
            "ttft_ewma_s": ttft_ewma_s,
            "slow_factor": zone.slow_factor,
            "report_s": now,
            "received": self.received,
            "cancelled": self.cancelled,
            "incarnation": self.incarnation,
            "work_s": zone.work_s,
            "area_queued": zone.area_queued,
            "area_in_system": zone.area_in_system,
            "replicas": zone.counts(),  # (serving, warming, draining): the router's view follows them
            "paid": zone.billing[-1][1:],  # replicas paid for now: (on demand, spot)
            **({"cached_units": zone.cached_units(snapshot=True)} if cached_units else {}),
        }

    async def fail_all(self) -> int:
        now = self._now()
        self._advance(now)
        events = self.zone.fail_all(now)
        self._dispatch(events, now)
        return len(events)

    async def restore(self) -> None:
        self._held = False
        self._restored = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.zone.restore(self._now())

    async def hold_down(self, old_incarnation: str) -> bool:
        """If this is a restarted actor (not `old_incarnation`), stay (or go) down — refuse work until
        `restore` — and return True; False while the old incarnation still answers."""
        self._ensure_started()
        if self.incarnation == old_incarnation:
            return False
        if self._restored:  # a stale call (Ray delivers held calls late): its fault already ended
            return True
        self._held = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        await self.fail_all()  # a restarted actor starts down and empty; this matters only after its grace
        return True

    async def process_info(self) -> dict:
        """This actor's process: pid and resident memory (bytes), for the overload benchmark."""
        import psutil

        return {"pid": os.getpid(), "rss_bytes": psutil.Process().memory_info().rss, "incarnation": self.incarnation}

    async def set_slow_factor(self, factor: float) -> None:
        now = self._now()
        self._advance(now)
        self.zone.set_slow_factor(factor, now)
        if self._wake is not None:
            _resolve(self._wake)

    async def in_system_seconds(self) -> float:
        """∫ requests in the zone dt so far, on the actor's clock (the autoscaler's ongoing-requests mean)."""
        self._ensure_started()
        now = self._now()
        self._advance(now)
        return self.zone.in_system_seconds(now)

    async def scale(self, on_demand: int, spot: int, cold_start_s: float) -> tuple[int, int]:
        """Aim at `on_demand` + `spot` replicas now (`Zone.set_replicas`: new ones serve after
        `cold_start_s`, extra ones drain); returns (started, retired)."""
        self._ensure_started()
        now = self._now()
        self._advance(now)
        result = self.zone.set_replicas(on_demand, spot, now, cold_start_s)
        self._fleet_changed(now)
        return result

    async def preempt_spot(self, count: int, notice_s: float) -> int:
        """The spot market takes back up to `count` replicas; what they hold when the notice ends
        fails (FAILED updates: the gateway retries those without a first token). Returns how many."""
        self._ensure_started()
        now = self._now()
        self._advance(now)
        taken = self.zone.preempt_spot(count, now, notice_s)
        self._fleet_changed(now)
        return taken

    def _fleet_changed(self, now: float) -> None:
        """Replicas came or went: the loop's next wake-up moved (a warm-up, a notice's end), and the
        router hears of it with the next fresh report."""
        if self.fresh_reports:
            self._push_report(now)
        if self._wake is not None:
            _resolve(self._wake)

    def _load(self, now: float) -> tuple[int, int, float, float, float]:
        """What a load report says: outstanding, waiting, KV usage, utilization, zone TTFT."""
        zone = self.zone
        capacity = zone.kv_cache_tokens * zone.replicas
        kv_usage = zone.kv_used / capacity if capacity else 0.0
        return zone.in_system, zone.queued, kv_usage, zone.utilization(now), zone.ttft_ewma_s

    def _push_report(self, now: float) -> None:
        """A fresh report with the next updates: it replaces one still waiting (only the latest counts)."""
        outbox = self._outbox
        if outbox and outbox[-1][0] == REPORT_ID:
            outbox.pop()
        outbox.append((REPORT_ID, UPDATE_REPORT, self._load(now), now, 0.0, self.zone.counts()))
        if self._poll_waiter is not None:
            _resolve(self._poll_waiter)

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.stream_interval_s
        while True:
            now = self._now()
            internal = self.fresh_reports and self.zone.next_event_time() <= now  # a model event is due
            self._advance(now)
            if internal:
                self._push_report(now)
            if self._streaming:
                if now >= self._next_tick:
                    self._stream_tick(now)
                    self._next_tick = now + interval
            else:
                self._next_tick = math.inf
            t_next = min(self.zone.next_event_time(), self._next_tick)
            delay = t_next - self._now()
            if delay <= 0:
                await asyncio.sleep(0)  # let submits and polls in
                continue
            wake = self._wake = loop.create_future()
            handle = loop.call_later(delay, _resolve, wake) if math.isfinite(delay) else None
            await wake
            self._wake = None
            if handle is not None:
                handle.cancel()

    def _advance(self, now: float) -> None:
        if now > self._t_model:
            self._t_model = now
        events = self.zone.advance(now)
        if events:
            self._dispatch(events, now)
        if self._streaming or self._first_only:
            self._announce_first_tokens()

    def _announce_first_tokens(self) -> None:
        """Send each first token as soon as the step that makes it starts (see "Early first tokens")."""
        announced = self._announced
        for t, request in self.zone.first_tokens_in_progress():
            rid = request.id
            if rid in announced or (rid not in self._streaming and rid not in self._first_only):
                continue
            announced.add(rid)
            self._first_only.discard(rid)
            self._outbox.append((rid, UPDATE_FIRST, 1, t, t, request.cached_tokens))

    def _dispatch(self, events, now: float) -> None:
        outbox = self._outbox
        for kind, request in events:
            rid = request.id
            if kind == FIRST_TOKEN:
                first_s = request.first_token_s
                early = rid in self._announced
                if early:
                    self._announced.discard(rid)
                entry = self._streaming.get(rid)
                if entry is not None:
                    entry[1] = 1
                    if not early:
                        outbox.append((rid, UPDATE_FIRST, 1, first_s, first_s, request.cached_tokens))
                    self._promise(entry, now)  # its pace until the next tick
                    if self._next_tick == math.inf:
                        self._next_tick = now + self.stream_interval_s
                elif rid in self._first_only:
                    self._first_only.discard(rid)
                    outbox.append((rid, UPDATE_FIRST, 1, first_s, first_s, request.cached_tokens))
            elif kind == FINISHED:
                self._requests.pop(rid, None)
                self._streaming.pop(rid, None)
                self._first_only.discard(rid)
                self._announced.discard(rid)
                first_s = request.first_token_s
                phases = (request.scheduled_s - request.admit_s, first_s - request.scheduled_s, request.cached_tokens)
                outbox.append((rid, UPDATE_DONE, request.output_tokens, request.finish_s, first_s, phases))
            elif kind == FAILED:
                self._requests.pop(rid, None)
                self._streaming.pop(rid, None)
                self._first_only.discard(rid)
                self._announced.discard(rid)
                why = PREEMPTED if self.zone.up else None  # an up zone fails requests only when preempted
                outbox.append((rid, UPDATE_FAILED, 0, now, request.first_token_s, why))
        if outbox and self._poll_waiter is not None:
            _resolve(self._poll_waiter)

    def _stream_tick(self, now: float) -> None:
        for entry in self._streaming.values():
            if entry[0].first_token_s >= 0.0:
                self._promise(entry, now)
        if self._outbox and self._poll_waiter is not None:
            _resolve(self._poll_waiter)

    def _promise(self, entry: list, now: float) -> None:
        """Promise a streaming request's tokens by the next tick (see "Streams are paced"), if it grew."""
        request = entry[0]
        horizon = now + self.stream_interval_s
        tokens = min(request.output_tokens - 1, self.zone.generated_tokens(request, horizon))
        if tokens > entry[1]:
            entry[1] = tokens
            self._outbox.append((request.id, UPDATE_TOKENS, tokens, horizon, request.first_token_s, None))
