"""Semantics of the serving model (grid.serving.zone.Zone), driven by hand with an explicit clock.

A toy profile with round numbers makes every time exact: prefill = 2 ms + 0.1 ms/token, decode step
= 10 ms + 1 ms per running sequence, no frontend delay (one test adds it). These tests pin the
unchunked schedule (vLLM V0: a prefill step stalls decoding) with 1-token KV blocks, i.e. the model
as it was before chunked prefill and paged blocks: `chunked_prefill: false` keeps it one flag away.
The chunked schedule: test_chunked_prefill.py; blocks and prefix reuse: test_prefix_cache.py.
"""

from __future__ import annotations

import pytest

from grid.scenario import GpuProfile
from grid.serving.request import ERROR, STOP, Request
from grid.serving.zone import FAILED, FINISHED, FIRST_TOKEN, Zone

INF = float("inf")


def profile(**changes) -> GpuProfile:
    values = dict(
        max_num_seqs=8,
        max_num_batched_tokens=4096,
        kv_cache_tokens=100_000,
        decode_base_s=0.010,
        decode_per_seq_s=0.001,
        prefill_base_s=0.002,
        prefill_per_token_s=0.0001,
        frontend_s=0.0,
        chunked_prefill=False,
        block_tokens=1,
    )
    return GpuProfile(**(values | changes))


class Clock:
    """Drives a zone the way both drivers do; keeps every event with its time."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.now = 0.0
        self.events: list[tuple[float, int, Request]] = []
        self.ids = 0

    def submit(self, prompt: int = 100, output: int = 11, at: float | None = None) -> tuple[Request, bool]:
        self.run_until(self.now if at is None else at)
        request = Request(self.ids, 0, prompt, output, self.now)
        self.ids += 1
        return request, self.zone.admit(request, self.now)

    def run_until(self, t: float) -> None:
        while (t_next := self.zone.next_event_time()) <= t:
            self.events += [(t_next, kind, r) for kind, r in self.zone.advance(t_next)]
        self.now = max(self.now, t)

    def drain(self) -> None:
        while (t_next := self.zone.next_event_time()) < INF:
            self.run_until(t_next)

    def times(self, kind: int) -> dict[int, float]:
        return {r.id: t for t, k, r in self.events if k == kind}


def test_single_request_timing_is_exact():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    request, ok = clock.submit(prompt=100, output=11)
    assert ok and clock.zone.in_system == 1
    clock.drain()
    assert request.scheduled_s == 0.0
    assert request.first_token_s == pytest.approx(0.002 + 100 * 0.0001)  # 12 ms prefill
    assert request.finish_s == pytest.approx(0.012 + 10 * 0.011)  # 10 decode steps of 11 ms (batch 1)
    assert request.status == STOP
    assert [k for _, k, _ in clock.events] == [FIRST_TOKEN, FINISHED]
    assert clock.zone.in_system == clock.zone.queued == clock.zone.kv_used == 0
    assert clock.zone.next_event_time() == INF


def test_fcfs_order_with_one_slot():
    clock = Clock(Zone(profile(max_num_seqs=1), replicas=1, max_queue=100))
    requests = [clock.submit(prompt=50 + 10 * i, output=5 + (7 * i) % 11, at=0.001 * i)[0] for i in range(8)]
    clock.drain()
    starts = [r.scheduled_s for r in requests]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    finished = [r.id for _, k, r in clock.events if k == FINISHED]
    assert finished == [r.id for r in requests]
    for before, after in zip(requests, requests[1:], strict=False):
        assert after.scheduled_s == pytest.approx(before.finish_s)  # the slot is reused at once


def test_fcfs_head_of_line_blocks_smaller_requests_behind_it():
    # KV room for 1000 tokens: a 600-token request runs; a 600 waits; a 100 behind it must not overtake.
    clock = Clock(Zone(profile(kv_cache_tokens=1000), replicas=1, max_queue=100))
    first, _ = clock.submit(prompt=300, output=300)
    big, _ = clock.submit(prompt=300, output=300, at=0.001)
    small, _ = clock.submit(prompt=50, output=50, at=0.002)
    clock.run_until(1.0)
    assert first.first_token_s > 0 and big.scheduled_s < 0 and small.scheduled_s < 0
    assert clock.zone.queued == 2
    clock.drain()
    assert big.scheduled_s == pytest.approx(first.finish_s)
    assert small.scheduled_s >= big.scheduled_s


def test_kv_budget_blocks_admission_onto_the_engine():
    clock = Clock(Zone(profile(kv_cache_tokens=1000, max_num_seqs=8), replicas=1, max_queue=100))
    a, _ = clock.submit(prompt=400, output=200)  # 600 tokens reserved
    b, _ = clock.submit(prompt=300, output=200)  # 500 more would be 1100 > 1000
    assert clock.zone.kv_used == 600 and clock.zone.queued == 1
    clock.drain()
    assert b.scheduled_s == pytest.approx(a.finish_s)
    # A request bigger than the whole budget can never run: refused at the door.
    too_big, ok = clock.submit(prompt=900, output=101)
    assert not ok and too_big.admit_s < 0


def test_max_queue_rejects_and_changes_nothing():
    zone = Zone(profile(max_num_seqs=1), replicas=1, max_queue=2)
    clock = Clock(zone)
    running, ok0 = clock.submit()
    waiting = [clock.submit()[1] for _ in range(2)]
    assert ok0 and all(waiting)
    assert zone.queued == 2 and zone.in_system == 3
    before = (zone.queued, zone.in_system, zone.kv_used, zone.work_s, zone.next_event_time())
    refused, ok = clock.submit()
    assert not ok
    assert refused.admit_s < 0 and refused.replica == -1
    assert (zone.queued, zone.in_system, zone.kv_used, zone.work_s, zone.next_event_time()) == before
    # Once the head moves onto the engine there is room again.
    clock.run_until(running.finish_s if running.finish_s > 0 else 1.0)
    assert clock.submit()[1]


def test_max_queue_zero_still_serves_when_an_engine_is_free():
    """max_queue bounds *waiting* requests ("waiting requests beyond this are rejected"). With 0, a
    request that would start at once on an idle engine waits for nothing and must be taken; the zone
    must not refuse all work (zone.py bug: admit compares queued >= max_queue before anything else)."""
    clock = Clock(Zone(profile(), replicas=1, max_queue=0))
    request, ok = clock.submit()
    assert ok, "an idle zone with max_queue=0 refused a request it could start at once"
    clock.drain()
    assert request.status == STOP


def test_one_token_output_finishes_at_its_first_token():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    one, _ = clock.submit(prompt=100, output=1)
    clock.drain()
    assert one.finish_s == one.first_token_s == pytest.approx(0.012)
    assert [k for _, k, _ in clock.events] == [FIRST_TOKEN, FINISHED]
    assert clock.zone.generated_tokens(one, one.finish_s) == 1
    assert clock.zone.in_system == clock.zone.kv_used == 0


def test_batch_shares_steps_and_step_time_grows_with_batch():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)  # starts prefilling at once (12 ms)
    b, _ = clock.submit(prompt=100, output=101)
    c, _ = clock.submit(prompt=100, output=101)
    clock.drain()
    # b and c arrived during a's prefill: one prefill step for both (2 ms + 200 × 0.1 ms), then
    # 100 decode steps of 13 ms (batch 3) for everyone.
    assert a.first_token_s == pytest.approx(0.012)
    assert b.first_token_s == c.first_token_s == pytest.approx(0.012 + 0.022)
    assert a.finish_s == b.finish_s == c.finish_s == pytest.approx(0.034 + 100 * 0.013)


def test_cancel_running_request_shortens_the_others_steps_and_frees_capacity():
    clock = Clock(Zone(profile(max_num_seqs=2), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)
    b, _ = clock.submit(prompt=100, output=101)
    c, _ = clock.submit(prompt=100, output=101)  # no slot: waits
    clock.run_until(0.5)
    assert clock.zone.queued == 1 and clock.zone.kv_used == 402
    assert clock.zone.cancel(a, 0.5)
    # a's slot and KV go to the queue head at once (c is placed on the engine, b + c reserved).
    assert clock.zone.kv_used == 402 and clock.zone.in_system == 2 and clock.zone.queued == 0
    assert not clock.zone.cancel(a, 0.5)  # only once
    clock.drain()
    # a prefilled 0–12 ms, b 12–24 ms; decode (batch 2, 12 ms) from 24 ms. The step in progress at
    # 0.5 ends at its boundary, step 40 at 0.024 + 40 × 12 ms = 0.504, where c's prefill starts.
    boundary = 0.024 + 40 * 0.012
    assert c.scheduled_s == pytest.approx(boundary)
    decode_from = boundary + 0.012
    # b still has 60 steps, now in a batch of 2 again (b + c) at 12 ms each.
    assert b.finish_s == pytest.approx(decode_from + 60 * 0.012)
    assert a.finish_s < 0 and a.status == "cancelled"
    assert not any(r is a for _, k, r in clock.events if k == FINISHED)


def test_cancel_alone_shortens_steps():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=101)
    b, _ = clock.submit(prompt=100, output=101)
    clock.run_until(0.5)
    clock.zone.cancel(a, 0.5)
    clock.drain()
    boundary = 0.024 + 40 * 0.012
    assert b.finish_s == pytest.approx(boundary + 60 * 0.011)  # batch 1 from the boundary on
    # Without the cancel it would have been 0.024 + 100 × 12 ms = 1.224 s.
    assert b.finish_s < 0.024 + 100 * 0.012 - 0.05


def test_cancel_queued_request_is_skipped():
    clock = Clock(Zone(profile(max_num_seqs=1), replicas=1, max_queue=10))
    a, _ = clock.submit()
    b, _ = clock.submit()
    c, _ = clock.submit()
    assert clock.zone.cancel(b, 0.0) and clock.zone.queued == 1
    clock.drain()
    assert b.scheduled_s < 0 and b.finish_s < 0
    assert c.scheduled_s == pytest.approx(a.finish_s)


def test_fail_all_fails_everything_refuses_while_down_and_serves_after_restore():
    zone = Zone(profile(max_num_seqs=2, frontend_s=0.005), replicas=2, max_queue=10)
    clock = Clock(zone)
    admitted = [clock.submit(prompt=100, output=200)[0] for _ in range(6)]  # 4 on engines, 2 queued
    clock.run_until(0.05)
    late, _ = clock.submit(prompt=100, output=200)  # still in the frontend when the zone dies
    assert zone.in_system == 7
    failed = zone.fail_all(clock.now)
    assert {r.id for _, r in failed} == {r.id for r in [*admitted, late]}
    assert all(kind == FAILED for kind, _ in failed)
    assert all(r.status == ERROR and r.finish_s == clock.now for r in [*admitted, late])
    assert zone.in_system == zone.queued == zone.kv_used == 0
    assert zone.next_event_time() == INF
    refused, ok = clock.submit(at=0.1)
    assert not ok and refused.admit_s < 0
    clock.run_until(1.0)
    assert not any(k == FINISHED for _, k, _ in clock.events)  # nothing finishes after it failed
    zone.restore(1.0)
    again, ok = clock.submit(prompt=100, output=11, at=1.0)
    assert ok
    clock.drain()
    assert again.status == STOP
    assert again.first_token_s == pytest.approx(1.0 + 0.005 + 0.012)
    assert again.finish_s == pytest.approx(again.first_token_s + 10 * 0.011)


def test_generated_tokens_is_monotone_and_reaches_output_at_finish():
    clock = Clock(Zone(profile(max_num_seqs=4), replicas=1, max_queue=10))
    requests = [clock.submit(prompt=200, output=n, at=0.013 * i)[0] for i, n in enumerate((30, 7, 55, 2, 41))]
    last = {r.id: 0 for r in requests}
    t = 0.0
    while clock.zone.next_event_time() < INF or t < 0.1:
        t += 0.0007
        clock.run_until(t)
        for r in requests:
            n = clock.zone.generated_tokens(r, t)
            assert n >= last[r.id], f"request {r.id} went from {last[r.id]} to {n} tokens at t={t}"
            if r.first_token_s < 0 or t < r.first_token_s:
                assert n == 0
            elif r.finish_s < 0 or t < r.finish_s:
                assert 1 <= n < r.output_tokens
            else:
                assert n == r.output_tokens
            last[r.id] = n
    assert all(last[r.id] == r.output_tokens for r in requests)


def test_generated_tokens_counts_each_decode_step():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    r, _ = clock.submit(prompt=100, output=11)
    for k in range(10):
        t = 0.012 + k * 0.011 + 0.0055  # mid-way through decode step k+1
        clock.run_until(t)
        assert clock.zone.generated_tokens(r, t) == 1 + k


def test_zero_replica_zone_rejects():
    zone = Zone(profile(), replicas=0, max_queue=10)
    request = Request(0, 0, 10, 10, 0.0)
    assert not zone.admit(request, 0.0)
    assert zone.in_system == 0 and zone.next_event_time() == INF
    assert zone.utilization(1.0) == 0.0


def test_slow_factor_scales_steps():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    clock.zone.set_slow_factor(2.0, 0.0)
    r, _ = clock.submit(prompt=100, output=11)
    clock.drain()
    assert r.first_token_s == pytest.approx(2 * 0.012)
    assert r.finish_s == pytest.approx(2 * (0.012 + 10 * 0.011))


def test_area_in_system_counts_time_in_zone():
    clock = Clock(Zone(profile(max_num_seqs=1), replicas=1, max_queue=10))
    a, _ = clock.submit(prompt=100, output=11)
    b, _ = clock.submit(prompt=100, output=11)
    clock.drain()
    clock.zone._account(b.finish_s)
    assert clock.zone.area_in_system == pytest.approx((a.finish_s - a.admit_s) + (b.finish_s - b.admit_s))
    assert clock.zone.area_queued == pytest.approx(b.scheduled_s - b.admit_s)
