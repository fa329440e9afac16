"""An idiomatic SimPy implementation of the grid's serving model: the baseline for issue 2's benchmark.

Same world, same arrivals (grid.demand.arrivals with the same seed), same jitter stream, same p2c
policy object deciding on the same load information, same statistics (grid.stats.RunStats) as
grid/sim/simulator.py + grid/serving/zone.py — but written the way a SimPy user writes a model:

- a SimPy process per request: wait for the arrival time, route, `timeout(rtt/2)` to reach the zone,
  admission (bounded queue, KV fit), `timeout(frontend_s)` in the API server, join the zone's FCFS
  queue, then `yield done` until the engine finishes it;
- a SimPy process per replica engine: the vLLM engine loop. Each iteration is one engine step —
  a prefill of pending prompts up to `max_num_batched_tokens`, or ONE decode step of
  `(decode_base_s + decode_per_seq_s·batch)·slow` that adds a token to every running sequence —
  `yield env.timeout(step)`; an idle engine sleeps on an event until work is assigned to it.

Token-by-token stepping (`engine="step"`, the default) is the idiomatic choice: it is how vLLM's
engine loop runs and how step-level simulators (Vidur, LLMServingSim) are written, and it needs no
analytic reasoning about when a batch changes. It is made as cheap as a step loop can be: a
sequence's finish is stored as a decode-step number in a heap, so a step costs O(1) plus the
sequences that finish, never O(batch). For a like-for-like algorithmic comparison, `engine="batch"`
runs the same analytic jump as grid/serving/zone.py (one timeout per batch change, interrupted at the
next step boundary when new prompts arrive), still in SimPy processes and events.

The zone's FCFS queue is a deque drained by `fill()` (head-of-line blocking: the head goes to the
engine with the fewest sequences that has KV room for prompt+output, else nothing moves). A
`simpy.Store` + dispatcher process can't express "least-loaded engine with KV room, else block"
without an extra event per request, so this is also the cheaper choice for SimPy.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush

import numpy as np
import simpy

from grid.demand.arrivals import DemandModel, poisson_arrivals, size_sampler
from grid.dispatch.settings import build_zone_views
from grid.faults import NetworkState
from grid.routing.registry import make_policy
from grid.routing.view import GridView
from grid.scenario import GpuProfile, Scenario
from grid.serving.request import Request
from grid.stats import METRICS, RunStats
from grid.world import build_world


class Engine:
    """One replica: a SimPy process stepping the continuous-batching engine loop."""

    def __init__(self, env: simpy.Environment, zone: SimpyZone, index: int, per_step: bool) -> None:
        self.env = env
        self.zone = zone
        self.index = index
        self.pending: list[Request] = []  # assigned, waiting for the next prefill step
        self.running: list[tuple[int, int, Request]] = []  # heap of (finish decode step, id, request)
        self.n_slots = 0
        self.kv_used = 0
        self.step = 0  # decode steps run so far
        self.wake: simpy.Event | None = None  # set while the engine sleeps (idle, or mid decode run)
        self.decoding = False
        env.process(self.loop_per_step() if per_step else self.loop_per_batch())

    def assign(self, request: Request) -> None:
        self.pending.append(request)
        if self.wake is not None and not self.wake.triggered and (not self.decoding or len(self.pending) == 1):
            self.wake.succeed()

    def _prefill(self):
        """One prefill step over pending prompts in order, up to the token budget (at least one)."""
        zone, env = self.zone, self.env
        budget = zone.profile.max_num_batched_tokens
        tokens = take = 0
        for request in self.pending:
            if take and tokens + request.prompt_tokens > budget:
                break
            tokens += request.prompt_tokens
            take += 1
        batch = self.pending[:take]
        del self.pending[:take]
        chunks = -(-tokens // budget)
        p = zone.profile
        yield env.timeout((p.prefill_base_s * chunks + p.prefill_per_token_s * tokens) * zone.slow_factor)
        now = env.now
        for request in batch:
            request.first_token_s = now
            if request.output_tokens <= 1:
                self._finish(request, now)
            else:
                heappush(self.running, (self.step + request.output_tokens - 1, request.id, request))

    def _finish(self, request: Request, now: float) -> None:
        request.finish_s = now
        footprint = request.prompt_tokens + request.output_tokens
        self.kv_used -= footprint
        self.n_slots -= 1
        self.zone.kv_used -= footprint
        self.zone.set_in_system(-1)
        self.zone.done.pop(request.id).succeed()

    def _complete_due(self) -> bool:
        running, now, finished = self.running, self.env.now, False
        while running and running[0][0] <= self.step:
            self._finish(heappop(running)[2], now)
            finished = True
        return finished

    def loop_per_step(self):
        """vLLM's engine loop: prefill if prompts wait, else one decode step; sleep when idle."""
        env, zone, p = self.env, self.zone, self.zone.profile
        while True:
            if self.pending:
                yield from self._prefill()
                finished = self._complete_due()  # one-token answers finish at prefill
            elif self.running:
                yield env.timeout((p.decode_base_s + p.decode_per_seq_s * len(self.running)) * zone.slow_factor)
                self.step += 1
                finished = self._complete_due()
            else:
                self.wake = env.event()
                yield self.wake
                self.wake = None
                continue
            if finished and zone.waiting:
                zone.fill()

    def loop_per_batch(self):
        """The same engine, but a decode run is one timeout up to the next completion, cut short at
        the next step boundary when a prompt is assigned (what grid/serving/zone.py computes)."""
        env, zone, p = self.env, self.zone, self.zone.profile
        while True:
            if self.pending:
                yield from self._prefill()
                finished = self._complete_due()
            elif self.running:
                step_s = (p.decode_base_s + p.decode_per_seq_s * len(self.running)) * zone.slow_factor
                t0, step0 = env.now, self.step
                self.wake = env.event()
                self.decoding = True
                yield env.timeout((self.running[0][0] - step0) * step_s) | self.wake
                self.decoding = False
                if self.wake.triggered:  # a prompt arrived: stop at the next step boundary
                    steps = math.ceil((env.now - t0) / step_s - 1e-9)
                    boundary = t0 + steps * step_s
                    if boundary < t0 + (self.running[0][0] - step0) * step_s:
                        yield env.timeout(boundary - env.now)
                    else:
                        yield env.timeout(t0 + (self.running[0][0] - step0) * step_s - env.now)
                self.wake = None
                self.step = step0 + round((env.now - t0) / step_s)
                finished = self._complete_due()
            else:
                self.wake = env.event()
                yield self.wake
                self.wake = None
                continue
            if finished and zone.waiting:
                zone.fill()


class SimpyZone:
    """Replicas of one model in one zone, with a bounded FCFS queue in front of them."""

    def __init__(
        self, env: simpy.Environment, profile: GpuProfile, replicas: int, max_queue: int, view_zone, per_step: bool
    ) -> None:
        self.env = env
        self.profile = profile
        self.max_queue = max_queue
        self.slow_factor = 1.0
        self.engines = [Engine(env, self, i, per_step) for i in range(replicas)]
        self.waiting: deque[Request] = deque()
        self.queued = 0  # admitted, not yet on an engine (in the API server or waiting)
        self.in_system = 0
        self.kv_used = 0
        # The SimPy event each admitted request's process waits on, by request id (a side table: the model's
        # Request takes no subclass when compiled, `make native`).
        self.done: dict[int, simpy.Event] = {}
        self.view_zone = view_zone  # what the router sees: load is reported on every change

    def set_in_system(self, delta: int) -> None:
        self.in_system += delta
        self.view_zone.outstanding = self.in_system

    def admit(self, request: Request) -> bool:
        p = self.profile
        if not self.engines or self.queued >= self.max_queue or request.kv_tokens > p.kv_cache_tokens:
            return False
        self.queued += 1
        self.set_in_system(+1)
        return True

    def fill(self) -> None:
        """Move requests from the head of the queue onto the engine with the fewest sequences that
        has KV room; FCFS: nothing overtakes a head that fits nowhere."""
        waiting, max_seqs, kv_cap = self.waiting, self.profile.max_num_seqs, self.profile.kv_cache_tokens
        while waiting:
            request = waiting[0]
            need = request.prompt_tokens + request.output_tokens
            best, best_slots = None, max_seqs
            for engine in self.engines:
                if engine.n_slots < best_slots and engine.kv_used + need <= kv_cap:
                    best, best_slots = engine, engine.n_slots
                    if best_slots == 0:
                        break
            if best is None:
                return
            waiting.popleft()
            self.queued -= 1
            self.kv_used += need
            best.kv_used += need
            best.n_slots += 1
            best.assign(request)


def baseline_scenario(scenario: Scenario) -> Scenario:
    """`scenario` with the serving model this baseline implements: prefill steps that stall decoding
    (no chunked prefill) and KV counted in tokens (1-token blocks), which the simulator still offers
    behind `chunked_prefill: false` and `block_tokens: 1` (its default is vLLM V1's chunked schedule)."""
    same = {"chunked_prefill": False, "block_tokens": 1}
    gpus = {name: gpu.model_copy(update=same) for name, gpu in scenario.gpus.items()}
    return scenario.model_copy(update={"gpus": gpus})


class SimpyGrid:
    """The whole grid in SimPy: arrivals → p2c → network → zone → engines → stats."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str = "p2c",
        seed: int | None = None,
        duration_s: float | None = None,
        engine: str = "step",
    ) -> None:
        if scenario.faults:
            raise ValueError("the SimPy baseline models no faults")
        if scenario.routing.report_interval_s > 0:
            raise ValueError("the SimPy baseline models fresh load reports only (report_interval_s: 0)")
        if engine not in ("step", "batch"):
            raise ValueError(f"engine must be 'step' or 'batch', not {engine!r}")
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        self.world = build_world(scenario)
        self.policy = make_policy(policy, self.seed)
        self.view = GridView(
            zones=build_zone_views(scenario, self.world), rtt_s=NetworkState(self.world).rtt_s(), candidates=[]
        )
        self.view.refresh_candidates()
        self.env = simpy.Environment()
        self.zones = [
            SimpyZone(
                self.env,
                scenario.gpus[scenario.zones[z].gpu],
                scenario.zones[z].replicas,
                scenario.zones[z].max_queue,
                self.view.zones[i],
                engine == "step",
            )
            for i, z in enumerate(self.world.zone_ids)
        ]
        self.stats = RunStats(len(self.world.population_ids), len(self.world.zone_ids), scenario.slo)
        self.rejected = 0

    def run(self) -> SimpyGrid:
        rng = np.random.default_rng(self.seed)
        jitter_rng = np.random.default_rng([self.seed, 1])
        s = self.scenario
        arrivals = poisson_arrivals(
            DemandModel(s.demand, s.populations), size_sampler(s.demand.sizes), self.duration_s, rng
        )
        self.env.process(self.source(arrivals, jitter_rng))
        self.env.run(until=self.duration_s)
        self.stats.flush()
        return self

    def source(self, arrivals, jitter_rng: np.random.Generator):
        """Open-loop arrivals: route each one as it arrives and start its request process."""
        env, view, stats = self.env, self.view, self.stats
        jitter_ratio = self.scenario.network.jitter_ratio
        next_id = 0
        for chunk in arrivals:
            n = len(chunk)
            jitters = jitter_rng.exponential(jitter_ratio, n) if jitter_ratio > 0 else np.zeros(n)
            for t, p, prompt, output, jitter in zip(
                chunk.arrival_s.tolist(),
                chunk.population.tolist(),
                chunk.prompt_tokens.tolist(),
                chunk.output_tokens.tolist(),
                jitters.tolist(),
                strict=True,
            ):
                yield env.timeout(t - env.now)
                request = Request(next_id, p, prompt, output, t)
                next_id += 1
                stats.arrivals[p] += 1
                view.now_s = t
                if not view.candidates[p]:
                    stats.rejected[p, -1] += 1
                    continue
                zi = self.policy.choose(request, view.candidates[p], view)
                request.zone = zi
                request.rtt_s = view.rtt_s[p][zi] * (1.0 + jitter)
                env.process(self.serve(request, self.zones[zi]))

    def serve(self, request: Request, zone: SimpyZone):
        """One request's life: network, admission, API server, queue, engine, back to the client."""
        env = self.env
        yield env.timeout(0.5 * request.rtt_s)
        if not zone.admit(request):
            self.stats.rejected[request.population, request.zone] += 1
            return
        request.admit_s = env.now
        done = zone.done[request.id] = env.event()
        yield env.timeout(zone.profile.frontend_s)
        zone.waiting.append(request)
        zone.fill()
        yield done
        half = 0.5 * request.rtt_s
        ttft = request.first_token_s + half - request.arrival_s
        e2e = request.finish_s + half - request.arrival_s
        n_out = request.output_tokens
        tpot = (e2e - ttft) / (n_out - 1) if n_out > 1 else math.nan
        self.stats.finished(request.population, request.zone, ttft, tpot, e2e, request.prompt_tokens, n_out)

    def summary(self) -> dict:
        """Grid-wide counts and p50/p90/p99 of TTFT, TPOT and E2E (the same histograms as the simulator)."""
        st = self.stats
        every = slice(None)
        out = {
            "arrivals": int(sum(st.arrivals)),
            "completed": int(st.completed.sum()),
            "rejected": int(st.rejected.sum()),
        }
        for metric in METRICS:
            out[metric] = st.quantiles(metric, every, every)
        return out
