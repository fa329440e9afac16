"""The chunked-prefill schedule (vLLM V1), computed by hand on a toy profile.

Toy profile: budget 1,000 tokens per step, prefill 2 ms + 0.1 ms/token, decode 10 ms + 1 ms per
sequence. A mixed step pays the larger base once: 10 ms + 1 ms·decodes + 0.1 ms·prefill tokens.
"""

from __future__ import annotations

import random

import pytest

from grid.scenario import GpuProfile
from grid.serving.zone import FINISHED, INF, Zone
from tests.serving.test_zone import Clock
from tests.serving.test_zone import profile as zone_profile


def chunked(**changes) -> GpuProfile:
    """test_zone's small engine, chunked (vLLM V1's schedule) with a 1,000-token step budget."""
    defaults = {"max_num_batched_tokens": 1000, "chunked_prefill": True, "block_tokens": 16}
    return zone_profile(**(defaults | changes))


def test_long_prompt_is_chunked_while_decoding_goes_on():
    clock = Clock(Zone(chunked(), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)
    long, _ = clock.submit(prompt=2500, output=3, at=0.030)  # mid-way through a's second decode step
    clock.drain()
    assert a.first_token_s == pytest.approx(0.012)  # alone: a prefill-only step, 2 + 100 × 0.1 ms
    # It joins at that step's boundary (12 + 2 × 11 ms). Each step: a's decode + 999 prompt tokens,
    # 10 + 1 + 99.9 ms; two such steps, then the last 502 tokens: 10 + 1 + 50.2 ms.
    assert long.scheduled_s == pytest.approx(0.034)
    full, last = 0.1109, 0.0612
    assert long.first_token_s == pytest.approx(0.034 + 2 * full + last)
    assert long.finish_s == pytest.approx(long.first_token_s + 2 * 0.012)  # two decode steps, batch 2
    # a decoded through all of it: 2 steps of 11 ms, 2 full chunks, the last chunk, 2 steps of 12 ms
    # (batch 2), then its remaining 93 tokens alone at 11 ms.
    assert a.finish_s == pytest.approx(0.012 + 2 * 0.011 + 2 * full + last + 2 * 0.012 + 93 * 0.011)
    # Streaming sees a's tokens one per step, inside the chunked run too.
    assert clock.zone.generated_tokens(a, 0.034 + 0.5 * full) >= 3
    zone = Zone(chunked(), replicas=1, max_queue=10)
    probe = Clock(zone)
    b, _ = probe.submit(prompt=100, output=101)
    probe.submit(prompt=2500, output=3, at=0.030)
    probe.run_until(0.034 + 1.5 * full)  # inside the second full chunk
    assert zone.generated_tokens(b, 0.034 + 1.5 * full) == 1 + 2 + 1
    assert zone.generated_tokens(b, 0.034 + 2 * full + 0.001) == 1 + 2 + 2


def test_the_same_prompt_unchunked_stalls_decoding():
    """The unchunked schedule for comparison: one prefill step of 3 chunks' base + 2,500 tokens."""
    clock = Clock(Zone(chunked(chunked_prefill=False), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)
    long, _ = clock.submit(prompt=2500, output=3, at=0.030)
    clock.drain()
    stall = 3 * 0.002 + 2500 * 0.0001
    assert long.first_token_s == pytest.approx(0.034 + stall)
    assert a.finish_s == pytest.approx(0.012 + 2 * 0.011 + stall + 2 * 0.012 + 96 * 0.011)


def test_a_step_completes_prompts_and_starts_the_next_one_as_a_chunk():
    clock = Clock(Zone(chunked(), replicas=1, max_queue=10))
    r1, _ = clock.submit(prompt=600, output=2)  # alone on an idle engine: 2 + 60 ms
    r2, _ = clock.submit(prompt=600, output=2)
    r3, _ = clock.submit(prompt=600, output=2)
    clock.drain()
    assert r1.first_token_s == pytest.approx(0.062)
    # Next step: r1 decodes (1), r2's 600 tokens complete, r3 starts with the 399 left: 10 + 1 + 99.9 ms.
    second = 0.062 + 0.1109
    assert r2.scheduled_s == r3.scheduled_s == pytest.approx(0.062)
    assert r2.first_token_s == pytest.approx(second) and r1.finish_s == pytest.approx(second)
    # Then r2 decodes and r3's last 201 tokens complete: 10 + 1 + 20.1 ms; then r3 decodes alone.
    third = second + 0.0311
    assert r3.first_token_s == pytest.approx(third) and r2.finish_s == pytest.approx(third)
    assert r3.finish_s == pytest.approx(third + 0.011)


def test_cancelling_the_chunked_prompt_ends_its_run_at_the_next_step():
    clock = Clock(Zone(chunked(), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)
    long, _ = clock.submit(prompt=5000, output=3, at=0.030)
    clock.run_until(0.034 + 1.5 * 0.1109)
    assert clock.zone.cancel(long, clock.now)
    clock.drain()
    # a's steps: 2 × 11 ms, 2 full-chunk steps (the second finishes after the cancel), then 11 ms again.
    assert a.finish_s == pytest.approx(0.012 + 2 * 0.011 + 2 * 0.1109 + 96 * 0.011)
    assert clock.zone.kv_used == 0 and clock.zone.in_system == 0


def test_token_budget_never_below_the_batch():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        chunked(max_num_seqs=64, max_num_batched_tokens=32)


@pytest.mark.parametrize("is_chunked", [True, False])
def test_random_mix_streams_monotonically_and_frees_everything(is_chunked):
    rng = random.Random(7)
    zone = Zone(chunked(chunked_prefill=is_chunked, max_num_seqs=4), replicas=2, max_queue=1000)
    clock = Clock(zone)
    requests = []
    for i in range(60):
        prompt = rng.choice((20, 300, 1500, 4000))
        requests.append(clock.submit(prompt=prompt, output=rng.randint(1, 40), at=0.02 * i)[0])
    last = {r.id: 0 for r in requests}
    t = 0.0
    while zone.next_event_time() < INF:
        t += 0.003
        clock.run_until(t)
        for r in requests:
            n = zone.generated_tokens(r, t + 0.001)  # a little ahead, as the live actor paces tokens
            assert n >= last[r.id]
            last[r.id] = n
    assert all(last[r.id] == r.output_tokens for r in requests)
    assert sum(k == FINISHED for _, k, _ in clock.events) == len(requests)
    assert all(r.admit_s <= r.scheduled_s <= r.first_token_s <= r.finish_s for r in requests)
    assert zone.kv_used == zone.in_system == zone.queued == 0
