"""The default GPU profiles (regions/default.yaml `gpus:`) reproduce published serving figures within 15%.

Published (../shared/data/README.md; gpustack docs, performance-lab/qwen3-8b; Qwen3-8B BF16, one GPU,
ShareGPT prompts ≈233 in / ≈221 out tokens):
  H100, concurrency 4 (vLLM 0.11): mean TTFT 64.0 ms, mean TPOT 7.38 ms, 497 output tok/s.
  H100 saturated (vLLM 0.9.2): ≈13,305 output tok/s at mean TPOT ≈126.6 ms.
  A100 saturated (vLLM 0.9.2): ≈10,338 output tok/s at mean TPOT ≈200 ms.

The harness drives one `Zone` (one replica) directly, closed loop: N clients, each re-submitting the
moment its request finishes, as `vllm bench serve --max-concurrency N` does. Metrics are vLLM's,
zone-side (the benchmark client sat on the same host): TTFT = first_token_s − admit_s,
TPOT = (finish_s − first_token_s) / (output_tokens − 1), each averaged over requests; output tok/s =
output tokens finished in the window / window length.

Saturation means the replica always runs the largest batch it can hold with work still queued:
N = 2·B clients, B = min(max_num_seqs, KV blocks // blocks of one 450-token sequence) (what one
replica holds at once), and the check asserts that the waiting queue never empties during the
measurement window. The clients' first requests are spread evenly over two rotations (N / the
replica's nominal capacity, twice): under the unchunked schedule identical requests started together
— or arriving so fast that single-prompt prefills starve decode during the ramp — stay in lockstep
forever: whole batches prefill, decode and finish as one wave, a regime no benchmark with ShareGPT's
varied lengths is in (it gives TPOT ≈81 ms instead of ≈127 ms on H100). Chunked prefill breaks the
waves by itself (a step prefills at most the budget, so first tokens come out a few dozen at a time).
The check asserts the steady state is smooth (few requests finish at any one instant). Varied lengths
break the lockstep on their own too: the ShareGPT-like variant draws prompt/output uniformly within
±50% of the means.

Both schedules are checked (`chunked_prefill` true, the default, and false) with the same fitted
coefficients: at saturation a chunked step carries the prompt tokens the unchunked schedule spends
in separate prefill steps, so throughput and TPOT come out within a few percent of each other. The
only refit for the paged cache is `kv_cache_tokens`, so that it still holds the same B sequences
now that each takes whole 16-token blocks (450 tokens → 29 blocks = 464 tokens).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import pytest

from grid.scenario import GpuProfile, load_scenario
from grid.serving.capacity import replica_capacity_rps
from grid.serving.request import Request
from grid.serving.zone import FINISHED, Zone

TOLERANCE = 0.15
PROMPT, OUTPUT = 230, 220  # ≈ the benchmark's ShareGPT means (233 / 221)


@dataclass
class Measured:
    ttft_s: float
    tpot_s: float
    output_tokens_per_s: float
    min_queued: int  # smallest waiting queue seen in the window (after re-submissions)
    max_running: int  # largest number of sequences on the engine seen in the window
    max_finished_together: int  # most requests finishing at one instant in the window (lockstep if ≈ B)


def fixed_sizes(rng: np.random.Generator) -> tuple[int, int]:
    return PROMPT, OUTPUT


def sharegpt_like_sizes(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(PROMPT // 2, PROMPT * 3 // 2 + 1)), int(rng.integers(OUTPUT // 2, OUTPUT * 3 // 2 + 1))


def closed_loop(profile: GpuProfile, clients: int, sizes, *, warmup: int, measure: int, spread_s: float) -> Measured:
    """Run `clients` closed-loop clients against one replica; measure `measure` requests after `warmup`."""
    rng = np.random.default_rng(0)
    zone = Zone(profile, replicas=1, max_queue=10**9)
    starts = [(i * spread_s / clients, i) for i in range(clients)]  # already a heap (sorted)
    next_id = 0
    finished: list[Request] = []
    min_queued, max_running, max_together = 10**9, 0, 0

    def submit(now: float) -> None:
        nonlocal next_id
        prompt, output = sizes(rng)
        assert zone.admit(Request(next_id, 0, prompt, output, now), now)
        next_id += 1

    while len(finished) < warmup + measure:
        t = zone.next_event_time()
        if starts and starts[0][0] <= t:
            submit(heapq.heappop(starts)[0])
            continue
        assert t < float("inf"), "the zone went idle with clients waiting"
        together = 0
        for kind, request in zone.advance(t):
            if kind == FINISHED:
                finished.append(request)
                submit(t)
                together += 1
        if len(finished) > warmup:
            min_queued = min(min_queued, zone.queued)
            max_running = max(max_running, zone.in_system - zone.queued)
            max_together = max(max_together, together)
    window = finished[warmup : warmup + measure]
    t0, t1 = finished[warmup - 1].finish_s, window[-1].finish_s
    return Measured(
        ttft_s=float(np.mean([r.first_token_s - r.admit_s for r in window])),
        tpot_s=float(np.mean([(r.finish_s - r.first_token_s) / (r.output_tokens - 1) for r in window])),
        output_tokens_per_s=sum(r.output_tokens for r in window) / (t1 - t0),
        min_queued=min_queued,
        max_running=max_running,
        max_finished_together=max_together,
    )


def batch_held(profile: GpuProfile) -> int:
    """Sequences of PROMPT + OUTPUT tokens one replica's KV cache holds, each in whole blocks."""
    blocks_per_sequence = -(-(PROMPT + OUTPUT) // profile.block_tokens)
    return min(profile.max_num_seqs, profile.kv_cache_tokens // profile.block_tokens // blocks_per_sequence)


def saturated(profile: GpuProfile, sizes) -> tuple[Measured, int]:
    batch = batch_held(profile)
    clients = 2 * batch
    rotation_s = clients / replica_capacity_rps(profile, PROMPT, OUTPUT)
    measured = closed_loop(profile, clients, sizes, warmup=2 * clients, measure=3 * clients, spread_s=2 * rotation_s)
    return measured, batch


@pytest.fixture(scope="module", params=[True, False], ids=["chunked", "unchunked"])
def gpus(request) -> dict[str, GpuProfile]:
    """The default profiles under either schedule."""
    return {
        name: profile.model_copy(update={"chunked_prefill": request.param})
        for name, profile in load_scenario().gpus.items()
    }


def _close(measured: float, published: float, what: str) -> None:
    assert measured == pytest.approx(published, rel=TOLERANCE), (
        f"{what}: model {measured:.4g} vs published {published:.4g} ({measured / published - 1:+.1%})"
    )


def test_h100_at_concurrency_4(gpus):
    m = closed_loop(gpus["h100"], 4, sharegpt_like_sizes, warmup=20, measure=2000, spread_s=1.0)
    _close(m.ttft_s * 1e3, 64.0, "H100 c=4 mean TTFT ms")
    _close(m.tpot_s * 1e3, 7.38, "H100 c=4 mean TPOT ms")
    _close(m.output_tokens_per_s, 497.0, "H100 c=4 output tok/s")


@pytest.mark.parametrize(
    ("gpu", "tokens_per_s", "tpot_ms"),
    [("h100", 13_305.0, 126.6), ("a100", 10_338.0, 200.0)],
)
@pytest.mark.parametrize("sizes", [fixed_sizes, sharegpt_like_sizes], ids=["fixed", "sharegpt_like"])
def test_saturated_throughput_and_tpot(gpus, gpu, tokens_per_s, tpot_ms, sizes):
    m, batch = saturated(gpus[gpu], sizes)
    assert m.min_queued > 0, "the queue emptied: the replica was not saturated"
    assert m.max_finished_together < 0.05 * batch, "the batch moves in lockstep waves"
    if sizes is fixed_sizes:
        assert m.max_running == batch  # the KV budget holds exactly B sequences of 450 tokens (29 blocks)
    _close(m.output_tokens_per_s, tokens_per_s, f"{gpu} saturated output tok/s")
    _close(m.tpot_s * 1e3, tpot_ms, f"{gpu} saturated mean TPOT ms")


def test_lockstep_start_is_not_the_saturated_regime(gpus):
    """Why the clients' starts are spread: unchunked, identical requests started together decode in
    waves; chunked prefill staggers their first tokens, so the same start reaches the smooth regime."""
    profile = gpus["h100"]
    batch = batch_held(profile)
    m = closed_loop(profile, 2 * batch, fixed_sizes, warmup=4 * batch, measure=6 * batch, spread_s=0.0)
    if profile.chunked_prefill:
        assert m.max_finished_together < 0.05 * batch
        _close(m.tpot_s * 1e3, 126.6, "H100 saturated mean TPOT ms, started together")
    else:
        assert m.max_finished_together == batch
        assert m.tpot_s * 1e3 < 0.7 * 126.6
