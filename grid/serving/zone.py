"""The serving model of one availability zone: a passive state machine with an explicit `now`.

A zone holds `replicas` engines serving one model with continuous batching (vLLM-style, without
chunked prefill): each engine step is either a prefill of waiting prompts (up to
`max_num_batched_tokens`) or one decode step that adds a token to every running sequence. A step's
duration grows with the batch: decode `(decode_base_s + decode_per_seq_s * batch) * slow_factor`,
prefill `(prefill_base_s + prefill_per_token_s * tokens) * slow_factor`. A sequence holds its full KV
footprint (prompt + output) from admission, so there is no preemption. New requests wait in one
bounded FCFS queue per zone; engines pull from its head when a batch slot and KV room are free.

The model knows no clock. Drivers call `admit(request, now)`, ask `next_event_time()`, and call
`advance(now)` to get what happened: `(FIRST_TOKEN, request)`, `(FINISHED, request)` and
`(FAILED, request)` events. Decode is advanced analytically: between two changes of a batch every
step takes the same time, so the model jumps straight to the next completion (or to the step boundary
where new prompts join) instead of stepping token by token — events scale with requests, not tokens.
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from math import ceil, exp

from grid.scenario import GpuProfile
from grid.serving.request import CANCELLED, ERROR, Request

INF = float("inf")
FIRST_TOKEN, FINISHED, FAILED = 0, 1, 2
_IDLE, _PREFILL, _DECODE, _BUSY_UPDATING = 0, 1, 2, 3
TTFT_EWMA_WEIGHT = 0.05  # ≈ the last 20 first tokens
UTILIZATION_TAU_S = 1.0  # memory of the utilization signal

Event = tuple[int, Request]


class _Replica:
    """One engine. `step` counts decode steps ever run, so a sequence's finish is a step number."""

    __slots__ = (
        "index",
        "phase",
        "running",
        "n_running",
        "n_slots",
        "kv_used",
        "pending",
        "prefilling",
        "step",
        "t0",
        "step0",
        "step_s",
        "next_t",
        "version",
        "busy_since",
        "busy_s",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.phase = _IDLE
        self.running: list[tuple[int, int, Request]] = []  # heap of (finish step, id, request)
        self.n_running = 0  # live sequences in `running` (cancelled ones leave lazily)
        self.n_slots = 0  # pending + prefilling + running: what max_num_seqs bounds
        self.kv_used = 0
        self.pending: list[Request] = []  # assigned, waiting for the next prefill step
        self.prefilling: list[Request] = []
        self.step = 0
        self.t0 = 0.0  # start of the current decode run, at decode step `step0`
        self.step0 = 0
        self.step_s = 0.0
        self.next_t = INF
        self.version = 0
        self.busy_since = 0.0
        self.busy_s = 0.0


class Zone:
    """Replicas of one model in one availability zone, advanced by an outside clock."""

    def __init__(self, profile: GpuProfile, replicas: int, max_queue: int) -> None:
        self._decode_base_s = profile.decode_base_s
        self._decode_per_seq_s = profile.decode_per_seq_s
        self._prefill_base_s = profile.prefill_base_s
        self._prefill_per_token_s = profile.prefill_per_token_s
        self._frontend_s = profile.frontend_s
        self.max_num_seqs = profile.max_num_seqs
        self.max_num_batched_tokens = profile.max_num_batched_tokens
        self.kv_cache_tokens = profile.kv_cache_tokens
        self.max_queue = max_queue
        self.slow_factor = 1.0
        self.up = True
        self._replicas = [_Replica(i) for i in range(replicas)]
        self.replicas = replicas  # an attribute, not a property: read several times per request
        self._heap: list[tuple[float, int, int]] = []  # (time, version, replica index)
        self._arriving: deque[tuple[float, Request]] = deque()  # in the API server (frontend_s)
        self._waiting: deque[Request] = deque()
        self._events: list[Event] = []
        # Counters that load reports read without a scan.
        self.in_system = 0  # admitted and not ended
        self.queued = 0  # admitted, not yet on an engine (arriving + waiting)
        self.kv_used = 0
        # Time integrals for Little's law and mean queue length.
        self._t_last = 0.0
        self.area_in_system = 0.0
        self.area_queued = 0.0
        self.work_s = 0.0  # engine-seconds of work admitted, at saturated efficiency (work_of)
        self.ttft_ewma_s = 0.0  # zone-side time to first token, recent average (a load report field)
        self._work_rate = 0.0  # admitted work per second, exponentially decayed (UTILIZATION_TAU_S)
        self._work_rate_t = 0.0

    # --- what drivers call --------------------------------------------------------------------

    def admit(self, request: Request, now: float) -> bool:
        """Take a request arriving at `now`; False (and nothing changes) when it can't be taken."""
        need = request.prompt_tokens + request.output_tokens
        if (
            not self.up
            or not self._replicas
            or need > self.kv_cache_tokens
            or (self.queued >= self.max_queue and not self._starts_now(need))
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
        if self._frontend_s > 0.0:
            self._arriving.append((now + self._frontend_s, request))
        else:
            self._waiting.append(request)
            self._fill(now)
        return True

    def utilization(self, now: float) -> float:
        """Recent offered load as a share of saturated capacity (admitted work, decayed over ~1 s)."""
        if not self.replicas:
            return 0.0
        return self._work_rate * exp((self._work_rate_t - now) / UTILIZATION_TAU_S) / self.replicas

    def work_of(self, request: Request) -> float:
        """Engine-seconds a request costs at saturated efficiency: its share of full-batch decode
        steps plus its prefill. Utilization counts this work as it is admitted (offered load), not
        busy time: a batching engine is never idle under load, it slows down."""
        batch = min(self.max_num_seqs, self.kv_cache_tokens // (request.prompt_tokens + request.output_tokens))
        return (
            max(0, request.output_tokens - 1) * (self._decode_base_s / batch + self._decode_per_seq_s)
            + self._prefill_per_token_s * request.prompt_tokens
            + self._prefill_base_s * request.prompt_tokens / self.max_num_batched_tokens
        )

    def _starts_now(self, need: int) -> bool:
        """Nothing is queued ahead and an engine has a free slot and KV room: the request won't wait."""
        return not self.queued and any(
            r.n_slots < self.max_num_seqs and r.kv_used + need <= self.kv_cache_tokens for r in self._replicas
        )

    def next_event_time(self) -> float:
        """When something next happens inside the zone (inf when idle)."""
        heap = self._heap
        replicas = self._replicas
        while heap and heap[0][1] != replicas[heap[0][2]].version:
            heappop(heap)
        t = heap[0][0] if heap else INF
        if self._arriving and self._arriving[0][0] < t:
            return self._arriving[0][0]
        return t

    def advance(self, now: float) -> list[Event]:
        """Run everything due at or before `now`, each at its own time; return the events."""
        self._events = events = []
        heap = self._heap
        replicas = self._replicas
        arriving = self._arriving
        while True:
            while heap and heap[0][1] != replicas[heap[0][2]].version:
                heappop(heap)
            t_engine = heap[0][0] if heap else INF
            t_arrive = arriving[0][0] if arriving else INF
            if t_arrive <= t_engine:
                if t_arrive > now:
                    break
                self._account(t_arrive)
                request = arriving.popleft()[1]
                if not request.cancelled:
                    self._waiting.append(request)
                    self._fill(t_arrive)
            else:
                if t_engine > now:
                    break
                self._account(t_engine)
                self._on_engine_event(replicas[heappop(heap)[2]], t_engine)
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
        replica = self._replicas[request.replica]
        replica.kv_used -= request.kv_tokens
        self.kv_used -= request.kv_tokens
        replica.n_slots -= 1
        if request in replica.pending:
            replica.pending.remove(request)
        elif request.first_token_s >= 0.0:
            replica.n_running -= 1  # its heap entry is skipped later
            if replica.phase == _DECODE:
                self._wake_at_next_step(replica, now)  # the batch shrank: step time changes
        self._fill(now)
        return True

    def fail_all(self, now: float) -> list[Event]:
        """The zone goes down: every admitted request fails; new ones are refused until `restore`."""
        self._account(now)
        failed: list[Request] = [r for _, r in self._arriving] + list(self._waiting)
        for replica in self._replicas:
            failed += replica.pending + replica.prefilling + [entry[2] for entry in replica.running]
            if replica.phase != _IDLE:
                replica.busy_s += now - replica.busy_since
        events: list[Event] = []
        for request in failed:
            if not request.cancelled and request.finish_s < 0.0:
                request.status = ERROR
                request.finish_s = now
                events.append((FAILED, request))
        busy = [r.busy_s for r in self._replicas]
        self._replicas = [_Replica(i) for i in range(len(self._replicas))]
        for replica, busy_s in zip(self._replicas, busy, strict=True):
            replica.busy_s = busy_s
        self._heap.clear()
        self._arriving.clear()
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
        for replica in self._replicas:
            if replica.phase == _DECODE:
                self._wake_at_next_step(replica, now)

    def generated_tokens(self, request: Request, now: float) -> int:
        """Tokens a request has produced by `now` (for streaming in wall time)."""
        if request.finish_s >= 0.0 and request.finish_s <= now:
            return request.output_tokens if request.status != ERROR else 0
        if request.first_token_s < 0.0 or request.first_token_s > now:
            return 0
        replica = self._replicas[request.replica]
        step = replica.step
        if replica.phase == _DECODE and replica.step_s > 0.0:
            step = replica.step0 + int((now - replica.t0) / replica.step_s)
        return max(1, min(request.output_tokens, 1 + step - request.decode_start_step))

    def busy_seconds(self, now: float) -> float:
        """Engine-seconds spent non-idle so far (nvidia-smi's "utilization"; ≈1 under any real load)."""
        return sum(r.busy_s + (now - r.busy_since if r.phase != _IDLE else 0.0) for r in self._replicas)

    # --- internals ----------------------------------------------------------------------------

    def _account(self, now: float) -> None:
        elapsed = now - self._t_last
        if elapsed > 0.0:
            self.area_in_system += self.in_system * elapsed
            self.area_queued += self.queued * elapsed
            self._t_last = now

    def _schedule(self, replica: _Replica, t: float) -> None:
        replica.next_t = t
        replica.version += 1
        heappush(self._heap, (t, replica.version, replica.index))

    def _fill(self, now: float) -> None:
        """Move requests from the head of the queue onto engines with a free slot and KV room."""
        waiting = self._waiting
        replicas = self._replicas
        max_seqs = self.max_num_seqs
        kv_cap = self.kv_cache_tokens
        while waiting:
            request = waiting[0]
            if request.cancelled:
                waiting.popleft()
                continue
            need = request.prompt_tokens + request.output_tokens
            best = None
            best_slots = max_seqs
            for replica in replicas:
                if replica.n_slots < best_slots and replica.kv_used + need <= kv_cap:
                    best = replica
                    best_slots = replica.n_slots
                    if best_slots == 0:
                        break
            if best is None:
                return  # FCFS: nothing overtakes the head
            waiting.popleft()
            self.queued -= 1
            self.kv_used += need
            best.kv_used += need
            best.n_slots += 1
            request.replica = best.index
            if best.phase == _IDLE:
                best.busy_since = now
                best.pending.append(request)
                self._start_prefill(best, now)
            else:
                best.pending.append(request)
                if best.phase == _DECODE and len(best.pending) == 1:
                    self._wake_at_next_step(best, now)

    def _wake_at_next_step(self, replica: _Replica, now: float) -> None:
        """End the current decode run at the first step boundary at or after `now`."""
        steps = ceil((now - replica.t0) / replica.step_s - 1e-9)
        boundary = replica.t0 + steps * replica.step_s
        if boundary < replica.next_t:
            self._schedule(replica, boundary)

    def _start_prefill(self, replica: _Replica, now: float) -> None:
        """One prefill step over pending prompts, in order, up to max_num_batched_tokens (at least one)."""
        pending = replica.pending
        budget = self.max_num_batched_tokens
        tokens = 0
        take = 0
        for request in pending:
            if take and tokens + request.prompt_tokens > budget:
                break
            tokens += request.prompt_tokens
            take += 1
            request.scheduled_s = now
        replica.prefilling = pending[:take]
        del pending[:take]
        replica.phase = _PREFILL
        chunks = -(-tokens // budget)  # a prompt longer than the budget takes several steps
        duration = (self._prefill_base_s * chunks + self._prefill_per_token_s * tokens) * self.slow_factor
        self._schedule(replica, now + duration)

    def _on_engine_event(self, replica: _Replica, now: float) -> None:
        events = self._events
        if replica.phase == _PREFILL:
            batch = replica.prefilling
            replica.prefilling = []
            for request in batch:
                if request.cancelled:
                    continue
                request.first_token_s = now
                request.decode_start_step = replica.step
                self.ttft_ewma_s += TTFT_EWMA_WEIGHT * (now - request.admit_s - self.ttft_ewma_s)
                events.append((FIRST_TOKEN, request))
                if request.output_tokens <= 1:
                    self._finish(replica, request, now)
                else:
                    heappush(replica.running, (replica.step + request.output_tokens - 1, request.id, request))
                    replica.n_running += 1
        else:  # a decode run reached a completion or a step boundary
            replica.step = replica.step0 + round((now - replica.t0) / replica.step_s)
            running = replica.running
            while running and running[0][0] <= replica.step:
                request = heappop(running)[2]
                if not request.cancelled:
                    replica.n_running -= 1
                    self._finish(replica, request, now)
        replica.phase = _BUSY_UPDATING  # _fill only queues onto this engine; the next step is set below
        if self._waiting:
            self._fill(now)
        self._next_step(replica, now)

    def _finish(self, replica: _Replica, request: Request, now: float) -> None:
        request.finish_s = now
        request.status = request.finish_reason
        footprint = request.prompt_tokens + request.output_tokens
        replica.kv_used -= footprint
        self.kv_used -= footprint
        replica.n_slots -= 1
        self.in_system -= 1
        self._events.append((FINISHED, request))

    def _next_step(self, replica: _Replica, now: float) -> None:
        if replica.pending:
            self._start_prefill(replica, now)
            return
        running = replica.running
        while running and running[0][2].cancelled:
            heappop(running)
        if not running:
            replica.phase = _IDLE
            replica.busy_s += now - replica.busy_since
            replica.next_t = INF
            replica.version += 1
            return
        replica.phase = _DECODE
        replica.t0 = now
        replica.step0 = replica.step
        replica.step_s = (self._decode_base_s + self._decode_per_seq_s * replica.n_running) * self.slow_factor
        self._schedule(replica, now + (running[0][0] - replica.step) * replica.step_s)
