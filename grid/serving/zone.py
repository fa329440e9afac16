"""The serving model of one availability zone: a passive state machine with an explicit `now`.

A zone holds `replicas` engines (grid/serving/engine.py) serving one model with continuous batching,
vLLM-style: chunked prefill by default (a per-step token budget shared by decodes and prompt chunks)
or, with `chunked_prefill: false`, prefill steps that stall decoding. Each engine has a paged KV cache
with automatic prefix caching (grid/serving/kv_cache.py). Step times come from the profile:
decode `decode_base_s + decode_per_seq_s · batch`, prefill `prefill_base_s + prefill_per_token_s ·
tokens`, a mixed step one base plus both per-item terms, all times `slow_factor`.

New requests pass the API server (`frontend_s`) and wait in one bounded FCFS queue per zone. The
head moves onto an engine when one has a free batch slot (`max_num_seqs`) and KV room for the whole
sequence (prompt + output in blocks, less the prefix blocks it finds cached there), so nothing is
ever preempted. Which engine: the least loaded; a request with prefix hashes goes to the engine
holding its longest cached prefix when that covers a good share of its prompt and the engines'
loads are not far apart (the cache-aware rule of SGLang's router, `_choose_by_prefix`).

The model knows no clock. Drivers call `admit(request, now)`, ask `next_event_time()`, and call
`advance(now)` to get what happened: `(FIRST_TOKEN, request)`, `(FINISHED, request)` and
`(FAILED, request)` events. Engines advance analytically: between two changes of a batch every step
takes the same time, so the model jumps from event to event — events scale with requests, not tokens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterator
from heapq import heapify, heappop
from math import exp
from typing import Final

from mypy_extensions import mypyc_attr

from grid.scenario import GpuProfile
from grid.serving.capacity import prefill_step_base_s
from grid.serving.engine import DECODE, FAILED, FINISHED, FIRST_TOKEN, IDLE, INF, Engine, Event
from grid.serving.fleet import READY, Fleet
from grid.serving.kv_cache import UnitHash
from grid.serving.request import CANCELLED, ERROR, Request

__all__ = ["FAILED", "FINISHED", "FIRST_TOKEN", "INF", "Event", "Zone"]  # events re-exported for the drivers

UTILIZATION_TAU_S: Final = 1.0  # memory of the utilization signal
# Placing requests with prefix hashes: SMG's cache-aware routing defaults (the SGLang model gateway,
# docs/concepts/routing/cache-aware.md): cache_threshold, balance_abs_threshold, balance_rel_threshold.
PREFIX_AFFINITY_MIN_SHARE = 0.3
PREFIX_BALANCE_ABS = 64  # sequences
PREFIX_BALANCE_REL = 1.5


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (`make native`): tests tap `admit` in a subclass
class Zone(Fleet):
    """Replicas of one model in one availability zone, advanced by an outside clock. Their number
    changes at run time through the `Fleet` mixin (grid/serving/fleet.py)."""

    # Slots: these are read several times per request, and past 30 attributes CPython 3.11 stops
    # sharing instance-dict keys and specializing their loads (≈10% of the model's time).
    __slots__ = (
        "profile",
        "_decode_base_s",
        "_decode_per_seq_s",
        "_prefill_per_token_s",
        "_prefill_step_base_s",
        "_frontend_s",
        "max_num_seqs",
        "max_num_batched_tokens",
        "block_tokens",
        "_kv_blocks",
        "kv_cache_tokens",
        "max_queue",
        "slow_factor",
        "up",
        "_engines",
        "_due",
        "_due_known",
        "_arriving",
        "_arrive_t",
        "_waiting",
        "_events",
        "queued",
        "prefix_cache_queries_tokens",
        "prefix_cache_hits_tokens",
        "_t_last",
        "area_in_system",
        "area_queued",
        "work_s",
        "ttft_ewma_s",
        "_work_rate",
        "_work_rate_t",
    )

    def __init__(self, profile: GpuProfile, replicas: int, max_queue: int) -> None:
        self.profile = profile
        self._decode_base_s = profile.decode_base_s
        self._decode_per_seq_s = profile.decode_per_seq_s
        self._prefill_per_token_s = profile.prefill_per_token_s
        self._prefill_step_base_s = prefill_step_base_s(profile)
        self._frontend_s = profile.frontend_s
        self.max_num_seqs = profile.max_num_seqs
        self.max_num_batched_tokens = profile.max_num_batched_tokens
        self.block_tokens = profile.block_tokens
        self._kv_blocks = profile.kv_cache_tokens // profile.block_tokens  # per replica
        self.kv_cache_tokens = self._kv_blocks * profile.block_tokens  # whole blocks only
        self.max_queue = max_queue
        self.slow_factor = 1.0
        self.up = True
        self._engines = [Engine(i, profile) for i in range(replicas)]
        self.replicas = replicas  # serving ones; an attribute, not a property: read several times per request
        # The engine due first (least `due`, then version, then index), or None; unknown after it ran
        # or went (a scan finds the next): a few engines per zone, so no heap and no stale entries.
        self._due: Engine | None = None
        self._due_known = True
        # In the API server: each leaves at its admit_s + frontend_s (admissions come in time order)
        self._arriving: deque[Request] = deque()
        self._arrive_t = INF  # when the head of `_arriving` leaves the API server (a field, not a deque peek)
        self._waiting: deque[Request] = deque()
        self._events: list[Event] = []
        # Counters that load reports read without a scan.
        self.in_system = 0  # admitted and not ended
        self.queued = 0  # admitted, not yet on an engine (arriving + waiting)
        self.kv_used = 0  # KV tokens held by live sequences, whole blocks (vLLM's kv_cache_usage_perc numerator)
        # vLLM's prefix-cache counters, in prompt tokens of requests placed on an engine.
        self.prefix_cache_queries_tokens = 0
        self.prefix_cache_hits_tokens = 0
        # Time integrals for Little's law and mean queue length.
        self._t_last = 0.0
        self.area_in_system = 0.0
        self.area_queued = 0.0
        self.work_s = 0.0  # engine-seconds of work admitted, at saturated efficiency (work_of)
        self.ttft_ewma_s = 0.0  # zone-side time to first token, recent average (a load report field)
        self._work_rate = 0.0  # admitted work per second, exponentially decayed (UTILIZATION_TAU_S)
        self._work_rate_t = 0.0
        self._init_fleet(replicas)

    # --- what drivers call --------------------------------------------------------------------

    def admit(self, request: Request, now: float) -> bool:
        """Take a request arriving at `now`; False (and nothing changes) when it can't be taken."""
        need = request.prompt_tokens + request.output_tokens
        if (
            not self.up
            or not self._accepting
            or need > self.kv_cache_tokens  # whole blocks: the same as its blocks > the replica's blocks
            or (self.queued >= self.max_queue and not self._starts_now(-(-need // self.block_tokens)))
        ):
            return False
        self._account(now)
        self.in_system += 1
        self.queued += 1
        work = self.work_of(request) * self.slow_factor  # a slowed engine spends longer on the same work
        self.work_s += work
        self._work_rate = (
            self._work_rate * exp((self._work_rate_t - now) / UTILIZATION_TAU_S) + work / UTILIZATION_TAU_S
        )
        self._work_rate_t = now
        request.admit_s = now
        request.replica = -1
        if request.prefix_hashes is not None:
            request.cached_tokens = 0  # a retried request found nothing here yet
        if self._frontend_s > 0.0:
            if not self._arriving:
                self._arrive_t = now + self._frontend_s
            self._arriving.append(request)
        else:
            self._waiting.append(request)
            self._fill(now)
        return True

    def in_system_seconds(self, now: float) -> float:
        """∫ requests in the zone dt from the start to `now` (read only: the integrals move on events)."""
        return self.area_in_system + self.in_system * max(0.0, now - self._t_last)

    def utilization(self, now: float) -> float:
        """Recent offered load as a share of saturated capacity (admitted work, decayed over ~1 s)."""
        if not self.replicas:
            return 0.0
        return self._work_rate * exp((self._work_rate_t - now) / UTILIZATION_TAU_S) / self.replicas

    def work_of(self, request: Request) -> float:
        """Engine-seconds a request costs at saturated efficiency: its share of full-batch decode
        steps plus its prefill (its whole prompt: which replica, hence what is cached, is not known
        yet). Utilization counts this work as it is admitted (offered load), not busy time: a
        batching engine is never idle under load, it slows down."""
        batch = min(self.max_num_seqs, self.kv_cache_tokens // (request.prompt_tokens + request.output_tokens))
        return (
            max(0, request.output_tokens - 1) * (self._decode_base_s / batch + self._decode_per_seq_s)
            + self._prefill_per_token_s * request.prompt_tokens
            + self._prefill_step_base_s * request.prompt_tokens / self.max_num_batched_tokens
        )

    def _starts_now(self, blocks: int) -> bool:
        """Nothing is queued ahead and an engine has a free slot and KV room: the request won't wait."""
        cap = self._kv_blocks
        return not self.queued and any(
            e.n_slots < self.max_num_seqs and e.kv.held_blocks + blocks <= cap for e in self._accepting
        )

    def next_event_time(self) -> float:
        """When something next happens inside the zone (inf when idle)."""
        engine = self._due if self._due_known else self._find_due()
        t = engine.due if engine is not None else INF
        if self._arrive_t < t:
            t = self._arrive_t
        if self._timers and self._timers[0][0] < t:
            return self._timers[0][0]
        return t

    def advance(self, now: float) -> list[Event]:
        """Run everything due at or before `now`, each at its own time; return the events."""
        events: list[Event] = []
        self._events = events
        arriving = self._arriving
        timers = self._timers
        while True:
            engine = self._due if self._due_known else self._find_due()
            t_engine = engine.due if engine is not None else INF
            t_arrive = self._arrive_t
            if timers and timers[0][0] <= now and timers[0][0] <= t_engine and timers[0][0] <= t_arrive:
                t_timer, _, kind, payload = heappop(timers)  # replicas ready, a preemption's notice over
                self._account(t_timer)
                self._on_timer(kind, payload, t_timer, events)
                continue
            if t_arrive <= t_engine:
                if t_arrive > now:
                    break
                self._account(t_arrive)
                request = arriving.popleft()
                self._arrive_t = arriving[0].admit_s + self._frontend_s if arriving else INF
                if not request.cancelled:
                    self._waiting.append(request)
                    self._fill(t_arrive)
            else:
                if t_engine > now or engine is None:
                    break
                self._account(t_engine)
                self._unwake(engine)
                self._end_run(engine, t_engine)
        return events

    def cancel(self, request: Request, now: float) -> bool:
        """Withdraw an admitted, unfinished request and free what it holds; False if it already ended."""
        if request.cancelled or request.finish_s >= 0.0 or request.admit_s < 0.0 or request.status:
            return False
        self._account(now)
        request.cancelled = True
        request.status = CANCELLED
        self.in_system -= 1
        if request.replica < 0:
            self.queued -= 1  # still in a queue: dropped lazily when it reaches the head
            return True
        engine = self._engines[request.replica]
        held = engine.kv.held_blocks
        if engine.cancel(request):
            self._cut(engine, now)
        self.kv_used += (engine.kv.held_blocks - held) * self.block_tokens
        if not engine.accepting:
            self._release_if_empty(engine, now)
        self._fill(now)
        return True

    def fail_all(self, now: float) -> list[Event]:
        """The zone goes down: every admitted request fails; new ones are refused until `restore`.
        The engines restart empty: their prefix caches are lost."""
        self._account(now)
        failed: list[Request] = list(self._arriving) + list(self._waiting)
        for engine in self._engines:
            if engine.released:
                continue
            failed += engine.open_requests()
            if engine.phase != IDLE:
                engine.busy_s += now - engine.busy_since
        events: list[Event] = []
        for request in failed:
            if not request.cancelled and request.finish_s < 0.0:
                request.status = ERROR
                request.finish_s = now
                events.append((FAILED, request))
        old = self._engines
        self._engines = [Engine(i, self.profile, self.slow_factor, e.spot) for i, e in enumerate(old)]
        self._accepting = []
        for engine, was in zip(self._engines, old, strict=True):
            engine.busy_s, engine.version = was.busy_s, was.version + 1
            engine.accepting, engine.released = was.accepting, was.released
            if was.accepting:
                self._accepting.append(engine)
            elif not was.released:  # a draining replica had nothing left to finish: it goes
                self._release(engine, now)
        self._timers = [entry for entry in self._timers if entry[2] == READY]  # notices end with their replicas
        heapify(self._timers)
        self._due, self._due_known = None, True  # the new engines are idle
        self._arriving.clear()
        self._arrive_t = INF
        self._waiting.clear()
        self.in_system = self.queued = self.kv_used = 0
        self.up = False
        return events

    def restore(self, now: float) -> None:
        """The zone is back up, empty."""
        self._account(now)
        self.up = True

    def set_slow_factor(self, factor: float, now: float) -> None:
        """Scale every step from the next step boundary on (a degraded zone: thermal, noisy neighbour)."""
        self.slow_factor = factor
        for engine in self._engines:
            engine.slow_factor = factor
            self._cut(engine, now)

    def first_tokens_in_progress(self) -> Iterator[tuple[float, Request]]:
        """(time, request) of every first token the steps in progress will make: a step that completes
        prompts is a run of its own, never cut, so those times are fixed when it starts."""
        for engine in self._engines:
            if engine.prefilling and not engine.released:
                t = engine.next_t
                for request in engine.prefilling:
                    if not request.cancelled:
                        yield t, request

    def generated_tokens(self, request: Request, now: float) -> int:
        """Tokens a request has produced by `now` (for streaming in wall time; `now` may lie a little
        ahead, inside the run in progress, to pace tokens)."""
        if request.finish_s >= 0.0 and request.finish_s <= now:
            return request.output_tokens if request.status != ERROR else 0
        if request.first_token_s < 0.0 or request.first_token_s > now:
            return 0
        step = self._engines[request.replica].steps_by(now)
        return max(1, min(request.output_tokens, 1 + step - request.decode_start_step))

    def busy_seconds(self, now: float) -> float:
        """Engine-seconds spent non-idle so far (nvidia-smi's "utilization"; ≈1 under any real load)."""
        return sum(
            e.busy_s + (now - e.busy_since if e.phase != IDLE and not e.released else 0.0) for e in self._engines
        )

    def kv_cached_tokens(self) -> int:
        """Prefix-cache tokens held by no live sequence, kept for reuse until evicted (all replicas)."""
        return sum(e.kv.cached_blocks for e in self._accepting) * self.block_tokens

    def cached_units(self, snapshot: bool = True) -> tuple[Container[UnitHash], ...]:
        """What the zone's prefix caches hold, for its load report (KV events as llm-d and Dynamo consume
        them): one container of unit hashes per replica, a unit cached in the zone when any holds it
        (each holds a prefix of every chain). `snapshot`: copies as of now, for a report that ages or
        crosses a process (≈0.5 ms per 100k units); otherwise the replicas' indexes themselves, live
        (fresh reports: every change reaches the router as it happens, at no cost)."""
        return tuple(e.kv.cached_units(snapshot) for e in self._accepting)

    # --- internals ----------------------------------------------------------------------------

    def _account(self, now: float) -> None:
        elapsed = now - self._t_last
        if elapsed > 0.0:
            self.area_in_system += self.in_system * elapsed
            self.area_queued += self.queued * elapsed
            self._t_last = now

    def _schedule(self, engine: Engine, t: float) -> None:
        """Wake `engine` at `t` (its run's end, never later than a wake-up it has: runs only get cut)."""
        if t < INF:
            if self._due_known and _sooner(t, engine, self._due):
                self._due = engine
            engine.due = t

    def _unwake(self, engine: Engine) -> None:
        """`engine` has no wake-up now (its run ended, or it went)."""
        engine.due = INF
        if engine is self._due:
            self._due_known = False

    def _find_due(self) -> Engine | None:
        """The engine due first: least `due`, then the lower version, then the lower index."""
        first: Engine | None = None
        for engine in self._engines:
            t = engine.due
            if t < INF and _sooner(t, engine, first):
                first = engine
        self._due = first
        self._due_known = True
        return first

    def _cut(self, engine: Engine, now: float) -> None:
        """End the engine's run at its next step boundary (its batch or its speed changed)."""
        self._schedule(engine, engine.cut(now))

    def _fill(self, now: float) -> None:
        """Move requests from the head of the queue onto engines with a free slot and KV room."""
        waiting = self._waiting
        engines = self._accepting
        max_seqs = self.max_num_seqs
        cap = self._kv_blocks
        b = self.block_tokens
        while waiting:
            request = waiting[0]
            if request.cancelled:
                waiting.popleft()
                continue
            blocks = (request.prompt_tokens + request.output_tokens + b - 1) // b
            units = 0
            if request.prefix_hashes is None:
                best = None
                best_slots = max_seqs
                for engine in engines:
                    if engine.n_slots < best_slots and engine.kv.held_blocks + blocks <= cap:
                        best = engine
                        best_slots = engine.n_slots
                        if best_slots == 0:
                            break
            else:
                best, units = self._choose_by_prefix(request, blocks)
            if best is None:
                return  # FCFS: nothing overtakes the head
            waiting.popleft()
            self.queued -= 1
            self.prefix_cache_queries_tokens += request.prompt_tokens
            if units:
                kv = best.kv
                held = kv.held_blocks
                best.place(request, blocks, units)
                self.kv_used += (kv.held_blocks - held) * b  # shared blocks are held once
                self.prefix_cache_hits_tokens += request.cached_tokens
            else:
                best.place(request, blocks, 0)
                self.kv_used += blocks * b
            if best.phase == IDLE:
                best.busy_since = now
                self._schedule(best, best.plan(now))
            elif best.phase == DECODE and len(best.pending) == 1:
                self._cut(best, now)  # the new prompt joins at the next step boundary

    def _choose_by_prefix(self, request: Request, blocks: int) -> tuple[Engine | None, int]:
        """The engine for a request with prefix hashes, and how many of its units are cached there:
        SMG's cache-aware rule (SGLang's router). Balanced engines: the longest cached prefix if it
        covers more than PREFIX_AFFINITY_MIN_SHARE of the prompt, else the least loaded; imbalanced
        ones (more than PREFIX_BALANCE_ABS sequences and PREFIX_BALANCE_REL× apart): the least loaded."""
        hashes = request.prefix_hashes
        assert hashes is not None
        unit = request.prefix_block_tokens
        max_units = min(len(hashes), request.prompt_tokens // unit)
        max_seqs = self.max_num_seqs
        cap = self._kv_blocks
        least: Engine | None = None
        least_units = 0
        best: Engine | None = None
        best_units = -1
        low, high = max_seqs, 0
        for engine in self._accepting:
            slots = engine.n_slots
            low = min(low, slots)
            high = max(high, slots)
            if slots >= max_seqs:
                continue
            kv = engine.kv
            units = kv.match(hashes, max_units)
            if kv.held_blocks + blocks > cap:  # fits only if enough of its prefix is shared
                shared = kv.units_blocks(units, unit)
                if kv.held_blocks + blocks - shared + kv.evictable_blocks(hashes, units, unit) > cap:
                    continue
            if least is None or slots < least.n_slots:
                least, least_units = engine, units
            if units > best_units or (units == best_units and best is not None and slots < best.n_slots):
                best, best_units = engine, units
        if best is None or least is None:
            return None, 0
        imbalanced = high - low > PREFIX_BALANCE_ABS and high > PREFIX_BALANCE_REL * low
        if imbalanced or best_units * unit <= PREFIX_AFFINITY_MIN_SHARE * request.prompt_tokens:
            return least, least_units
        return best, best_units

    def _end_run(self, engine: Engine, now: float) -> None:
        kv = engine.kv
        held = kv.held_blocks
        slots = engine.n_slots
        self.ttft_ewma_s = engine.end_run(now, self._events, self.ttft_ewma_s)
        self.kv_used += (kv.held_blocks - held) * self.block_tokens
        self.in_system -= slots - engine.n_slots  # the sequences that finished
        if not engine.accepting and engine.n_slots == 0:
            self._release(engine, now)  # drained
            return
        if self._waiting:
            self._fill(now)
        self._schedule(engine, engine.plan(now))


def _sooner(t: float, engine: Engine, than: Engine | None) -> bool:
    """`engine`, due at `t`, runs before `than`: the earlier, then the lower version, then the lower index."""
    if than is None or t < than.due:
        return True
    return t == than.due and (
        engine.version < than.version or (engine.version == than.version and engine.index < than.index)
    )
