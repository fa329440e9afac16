"""One replica's engine: its prefill queue, its decoding batch and its KV cache, stepped like vLLM.

Every engine step is one forward pass. Its duration comes from the profile's coefficients:

- **Chunked prefill** (`chunked_prefill: true`, vLLM V1's default). A step has a token budget
  (`max_num_batched_tokens`): every running sequence decodes one token, and what is left of the
  budget goes to the waiting prompts in FCFS order, the last one possibly cut into a chunk that
  continues next step. A step with `d` decodes and `p` prefill tokens takes
  `(base + decode_per_seq_s·d + prefill_per_token_s·p) · slow_factor`, where `base` is paid once per
  forward pass (the weights are read once): `decode_base_s` for a decode-only step, `prefill_base_s`
  for a prefill-only step, and the larger of the two for a mixed one. Pure steps reduce to the
  unchunked formulas; a long prompt costs its tokens over several steps while decoding goes on.
- **Unchunked** (`chunked_prefill: false`, vLLM V0 without chunking). A step is either a prefill of
  waiting prompts, in order, up to the budget (a longer prompt alone, its cost as several chunks:
  `prefill_base_s · ⌈tokens / budget⌉ + prefill_per_token_s · tokens`) that stalls every decode, or a
  decode step `decode_base_s + decode_per_seq_s · batch`. Waiting prompts go first.

Steps are not simulated one by one. Between changes of the batch every step is the same, so the
engine runs *runs*: `k` equal steps from `t0`, ending at the next decode completion, at the end of a
long prompt's full-budget chunks, or after one step that completes prompts (their first tokens) —
events scale with requests, not tokens. A change inside a run (a new prompt under pure decode, a
cancel, a slow-down) cuts the run at the next step boundary (`cut`).

`step` counts the steps that advanced decoding (every step in chunked mode, decode steps
unchunked): a sequence whose prefill completed at step s has produced `1 + step − s` tokens, so its
finish is a step number and a heap of finish steps replaces per-token work.

KV: a sequence reserves, when it is placed on the engine, every block it will hold (prompt + output,
rounded up to blocks) minus the prefix blocks it shares from the cache, so nothing is ever preempted.
Its prompt's hash units join the cache when its prefill completes; units past the prompt (the
answer's, when the request carries them) when it finishes. Then it releases all of them.
"""

from __future__ import annotations

import heapq
from math import ceil
from typing import Final

from grid.scenario import GpuProfile
from grid.serving.kv_cache import KvCache
from grid.serving.request import Request

INF: Final = float("inf")
# Final: compiled (`make native`), each is a C static instead of a module-dict look-up per call.
heappush: Final = heapq.heappush
heappop: Final = heapq.heappop
FIRST_TOKEN: Final = 0
FINISHED: Final = 1
FAILED: Final = 2
TTFT_EWMA_WEIGHT: Final = 0.05  # the zone's recent TTFT average (a load report field): ≈ the last 20 first tokens
IDLE: Final = 0
PREFILL: Final = 1
DECODE: Final = 2
MIXED: Final = 3
UPDATING: Final = 4

Event = tuple[int, Request]


class Engine:
    """One replica, advanced run by run by its zone (which owns the clock, the queue and its wake-ups: `due`)."""

    __slots__ = (
        "index",
        "kv",
        "phase",
        "running",
        "n_running",
        "n_slots",
        "pending",
        "prefilling",
        "head_done",
        "run_head",
        "run_chunk",
        "run_steps",
        "step",
        "t0",
        "step0",
        "step_s",
        "next_t",
        "due",
        "version",
        "busy_since",
        "busy_s",
        "slow_factor",
        "_chunked",
        "_budget",
        "_decode_base_s",
        "_decode_per_seq_s",
        "_prefill_base_s",
        "_mixed_base_s",
        "_prefill_per_token_s",
        "accepting",
        "released",
        "spot",
    )

    def __init__(self, index: int, profile: GpuProfile, slow_factor: float = 1.0, spot: bool = False) -> None:
        self.index = index
        # Its life cycle (grid/serving/fleet.py): serving (accepting), draining (not accepting, its
        # sequences finish), released (gone: the zone reuses its slot for the next replica).
        self.accepting = True
        self.released = False
        self.spot = spot  # bought on the spot market: cheaper, and may be preempted
        self.kv = KvCache(profile.kv_cache_tokens // profile.block_tokens, profile.block_tokens)
        self.phase = IDLE
        self.running: list[tuple[int, int, Request]] = []  # heap of (finish step, id, request)
        self.n_running = 0  # live sequences in `running` (cancelled ones leave lazily)
        self.n_slots = 0  # pending + prefilling + running: what max_num_seqs bounds
        self.pending: list[Request] = []  # placed here, prefill not complete; only the head may be started
        self.prefilling: list[Request] = []  # prompts that complete in the step in progress
        self.head_done = 0  # prompt tokens of pending[0] computed (or scheduled in the step in progress)
        self.run_head: Request | None = None  # the prompt a run of full-budget chunks works on
        self.run_chunk = 0  # its tokens per step
        self.run_steps = 0  # steps in the run in progress
        self.step = 0
        self.t0 = 0.0  # start of the run in progress, at step `step0`
        self.step0 = 0
        self.step_s = 0.0
        self.next_t = INF
        self.due = INF  # next_t while its zone is to wake it then (`Zone._schedule`), else INF
        self.version = 0  # bumped whenever next_t changes: among engines due at one time, the lower goes first
        self.busy_since = 0.0
        self.busy_s = 0.0
        self.slow_factor = slow_factor
        self._chunked = profile.chunked_prefill
        self._budget = profile.max_num_batched_tokens
        self._decode_base_s = profile.decode_base_s
        self._decode_per_seq_s = profile.decode_per_seq_s
        self._prefill_base_s = profile.prefill_base_s
        self._mixed_base_s = max(profile.decode_base_s, profile.prefill_base_s)
        self._prefill_per_token_s = profile.prefill_per_token_s

    # --- placing and removing sequences ---------------------------------------------------------

    def place(self, request: Request, blocks: int, units: int) -> None:
        """Take `request` (needing `blocks` KV blocks in all, `units` of its prefix units cached here)."""
        self.n_slots += 1
        request.replica = self.index
        request.kv_blocks = blocks
        hashes = request.prefix_hashes
        if hashes is None:
            kv = self.kv
            if kv.cached_blocks:
                kv.reserve(blocks)
            else:  # nothing to evict: the common case without prefix information, inline
                kv.held_blocks += blocks
        else:
            kv = self.kv
            unit = request.prefix_block_tokens
            request.kv_units = units = kv.hold(hashes, units, unit, blocks)
            # vLLM recomputes at least the last prompt token (it needs its logits).
            hit_blocks = min(kv.units_blocks(units, unit), (request.prompt_tokens - 1) // kv.block_tokens)
            request.cached_tokens = max(0, hit_blocks) * kv.block_tokens
        self.pending.append(request)

    def release(self, request: Request) -> None:
        """Give back every block `request` holds (it finished or was cancelled)."""
        kv = self.kv
        hashes = request.prefix_hashes
        if hashes is None:
            kv.held_blocks -= request.kv_blocks
        else:
            unit = request.prefix_block_tokens
            units = request.kv_units
            kv.release(hashes, units, unit, request.kv_blocks - kv.units_blocks(units, unit))

    def cancel(self, request: Request) -> bool:
        """Withdraw a placed, unfinished request; True when the run in progress must be cut."""
        self.release(request)
        self.n_slots -= 1
        pending = self.pending
        if pending and pending[0] is request:
            del pending[0]
            self.head_done = 0
            return self.run_head is request  # its full-budget chunks stop at the next step
        if request in pending:
            pending.remove(request)
            return False
        if request.first_token_s >= 0.0:
            self.n_running -= 1  # its heap entry is skipped later
            return self.phase == DECODE or self.phase == MIXED  # the batch shrank: step time changes
        return False  # in `prefilling`: skipped when its step ends

    # --- runs ---------------------------------------------------------------------------------

    def plan(self, now: float) -> float:
        """Start the next run at `now`; return its end (INF when the engine goes idle)."""
        running = self.running
        while running and running[0][2].cancelled:
            heappop(running)
        if self.pending:
            return self._plan_mixed(now) if self._chunked else self._plan_prefill(now)
        if not running:
            self.phase = IDLE
            self.busy_s += now - self.busy_since
            self.next_t = INF
            self.version += 1
            return INF
        self.phase = DECODE
        self.t0 = now
        self.step0 = self.step
        self.step_s = (self._decode_base_s + self._decode_per_seq_s * self.n_running) * self.slow_factor
        self.run_steps = running[0][0] - self.step
        self.version += 1
        self.next_t = t = now + self.run_steps * self.step_s
        return t

    def _plan_mixed(self, now: float) -> float:
        """Chunked: every running sequence decodes; the rest of the budget prefills pending prompts."""
        pending = self.pending
        decodes = self.n_running
        room = self._budget - decodes  # ≥ 1: max_num_seqs ≤ budget and pending prompts hold slots
        head = pending[0]
        if head.scheduled_s < 0.0:
            head.scheduled_s = now
        left = head.prompt_tokens - head.cached_tokens - self.head_done
        if left > room:  # a run of full-budget chunks of the head prompt, none completing it
            steps = (left - 1) // room
            running = self.running
            if running and running[0][0] - self.step < steps:
                steps = running[0][0] - self.step
            self.run_head = head
            self.run_chunk = tokens = room
        else:  # one step that completes the head prompt and packs the ones behind it
            steps = 1
            tokens = left
            done = 1
            self.head_done = 0
            free = room - left
            n = len(pending)
            while done < n and free > 0:
                request = pending[done]
                request.scheduled_s = now
                need = request.prompt_tokens - request.cached_tokens
                if need > free:
                    self.head_done = free  # started here; the head of the queue from the next step
                    tokens += free
                    break
                tokens += need
                free -= need
                done += 1
            self.prefilling = pending[:done]
            del pending[:done]
        base = (self._mixed_base_s if decodes else self._prefill_base_s) if tokens else self._decode_base_s
        self.phase = MIXED
        self.t0 = now
        self.step0 = self.step
        self.step_s = (base + self._decode_per_seq_s * decodes + self._prefill_per_token_s * tokens) * self.slow_factor
        self.run_steps = steps
        self.version += 1
        self.next_t = t = now + steps * self.step_s
        return t

    def _plan_prefill(self, now: float) -> float:
        """Unchunked: one prefill step over pending prompts, in order, up to the budget (at least one)."""
        pending = self.pending
        budget = self._budget
        tokens = 0
        take = 0
        for request in pending:
            need = request.prompt_tokens - request.cached_tokens
            if take and tokens + need > budget:
                break
            tokens += need
            take += 1
            request.scheduled_s = now
        self.prefilling = pending[:take]
        del pending[:take]
        self.phase = PREFILL
        chunks = -(-tokens // budget)  # a prompt longer than the budget takes several chunks' time
        duration = (self._prefill_base_s * chunks + self._prefill_per_token_s * tokens) * self.slow_factor
        self.version += 1
        self.next_t = t = now + duration
        return t

    def cut(self, now: float) -> float:
        """End the run in progress at the first step boundary at or after `now`; the new end, or INF
        when nothing changes (a single step, or already ending there)."""
        if not (self.phase == DECODE or (self.phase == MIXED and self.run_head is not None)) or self.step_s <= 0.0:
            return INF
        steps = ceil((now - self.t0) / self.step_s - 1e-9)
        boundary = self.t0 + steps * self.step_s
        if boundary >= self.next_t:
            return INF
        self.run_steps = steps
        self.version += 1
        self.next_t = boundary
        return boundary

    def end_run(self, now: float, events: list[Event], ttft_ewma_s: float) -> float:
        """The run ends at `now`: completed prompts give first tokens, completed sequences finish.
        Returns the zone's TTFT average `ttft_ewma_s` with these first tokens folded in."""
        if self.phase == PREFILL:
            step = self.step  # decoding stalled
        else:
            steps = self.run_steps  # engine events fire only at their run's end (`cut` moves both)
            self.step = step = self.step0 + steps
            head = self.run_head
            if head is not None:
                if not head.cancelled:
                    self.head_done += steps * self.run_chunk
                self.run_head = None
        if self.prefilling:
            batch = self.prefilling
            self.prefilling = []
            running = self.running
            for request in batch:
                if request.cancelled:
                    continue
                request.first_token_s = now
                request.decode_start_step = step
                ttft_ewma_s += TTFT_EWMA_WEIGHT * (now - request.admit_s - ttft_ewma_s)
                events.append((FIRST_TOKEN, request))
                hashes = request.prefix_hashes
                if hashes is not None:
                    units = min(len(hashes), request.prompt_tokens // request.prefix_block_tokens)
                    if units > request.kv_units:
                        self.kv.insert(hashes, request.kv_units, units, request.prefix_block_tokens)
                        request.kv_units = units
                if request.output_tokens <= 1:
                    self._finish(request, now, events)
                else:
                    heappush(running, (step + request.output_tokens - 1, request.id, request))
                    self.n_running += 1
        running = self.running
        while running and running[0][0] <= step:
            request = heappop(running)[2]
            if not request.cancelled:
                self.n_running -= 1
                self._finish(request, now, events)
        self.phase = UPDATING  # placements only queue onto this engine until `plan`
        return ttft_ewma_s

    def _finish(self, request: Request, now: float, events: list[Event]) -> None:
        request.finish_s = now
        request.status = request.finish_reason
        hashes = request.prefix_hashes
        if hashes is not None:  # the answer's full units (when the request carries them) are cached too
            unit = request.prefix_block_tokens
            units = min(len(hashes), (request.prompt_tokens + request.output_tokens) // unit)
            if units > request.kv_units:
                self.kv.insert(hashes, request.kv_units, units, unit)
                request.kv_units = units
            self.release(request)
        else:
            self.kv.held_blocks -= request.kv_blocks
        self.n_slots -= 1
        events.append((FINISHED, request))

    # --- reading ------------------------------------------------------------------------------

    def steps_by(self, now: float) -> int:
        """Steps that advanced decoding by `now` (inside the run in progress: its completed steps)."""
        if (self.phase == DECODE or self.phase == MIXED) and self.step_s > 0.0:
            return self.step0 + min(self.run_steps, int((now - self.t0) / self.step_s))
        return self.step

    def open_requests(self) -> list[Request]:
        """Everything placed here and not ended (for failing a zone)."""
        return self.pending + self.prefilling + [entry[2] for entry in self.running]
