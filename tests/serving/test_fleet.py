"""The replica life cycle inside the serving model (grid.serving.fleet): warming, serving, draining,
released; spot preemption; the billing timeline. Driven by hand, like test_zone.py."""

from __future__ import annotations

from grid.serving.request import ERROR
from grid.serving.zone import FAILED, FINISHED, FIRST_TOKEN, Zone
from tests.serving.test_zone import Clock, profile


def test_a_new_replica_serves_after_its_cold_start_and_is_billed_from_the_ask():
    clock = Clock(Zone(profile(max_num_seqs=1), replicas=1, max_queue=10))
    zone = clock.zone
    assert zone.set_replicas(2, 0, now=0.0, cold_start_s=10.0) == (1, 0)
    assert zone.counts() == (1, 1, 0)  # serving, warming, draining
    first, _ = clock.submit(output=5000)  # decodes for ~55 s
    second, admitted = clock.submit()  # queued: the only serving replica has one slot
    assert admitted and zone.queued == 1
    clock.run_until(9.99)
    assert zone.counts() == (1, 1, 0)
    clock.run_until(10.0)
    assert zone.counts() == (2, 0, 0)
    clock.run_until(10.1)
    assert 10.0 < clock.times(FIRST_TOKEN)[second.id] < 10.1  # placed on the new replica as it came up
    assert first.id not in clock.times(FINISHED)
    assert zone.billing == [(0.0, 2, 0)]  # paid for from the ask, not from readiness


def test_a_drained_replica_finishes_its_requests_then_is_released():
    clock = Clock(Zone(profile(), replicas=1, max_queue=10))
    zone = clock.zone
    request, _ = clock.submit(prompt=100, output=50)
    clock.run_until(0.1)
    assert zone.set_replicas(0, 0, now=0.1, cold_start_s=10.0) == (0, 1)
    assert zone.counts() == (0, 0, 1)
    late, admitted = clock.submit()
    assert not admitted  # no serving replica: a new request is refused
    clock.drain()
    finished = clock.times(FINISHED)
    assert request.id in finished and request.status != ERROR
    assert zone.counts() == (0, 0, 0)
    assert zone.billing == [(0.0, 1, 0), (finished[request.id], 0, 0)]  # billed until released


def test_a_replica_retired_while_warming_never_serves():
    zone = Zone(profile(), replicas=1, max_queue=10)
    zone.set_replicas(3, 0, now=0.0, cold_start_s=10.0)
    zone.set_replicas(1, 0, now=5.0, cold_start_s=10.0)
    assert zone.counts() == (1, 0, 0)
    zone.advance(20.0)
    assert zone.counts() == (1, 0, 0)
    assert zone.billing == [(0.0, 3, 0), (5.0, 1, 0)]


def test_preempted_spot_replica_fails_what_it_still_holds_when_the_notice_ends():
    clock = Clock(Zone(profile(), replicas=0, max_queue=10))
    zone = clock.zone
    zone.set_replicas(0, 1, now=0.0, cold_start_s=0.0)
    clock.run_until(0.0)
    assert zone.counts() == (1, 0, 0) and zone.kinds() == (0, 1)
    request, admitted = clock.submit(prompt=100, output=5000)  # still decoding when the notice ends
    assert admitted
    assert zone.preempt_spot(1, now=1.0, notice_s=2.0) == 1
    assert zone.counts() == (0, 0, 1)
    clock.run_until(3.0)
    assert clock.times(FAILED) == {request.id: 3.0}
    assert request.status == ERROR
    assert zone.counts() == (0, 0, 0) and zone.in_system == 0 and zone.kv_used == 0
    assert zone.billing == [(0.0, 0, 1), (3.0, 0, 0)]


def test_a_spot_replica_that_drains_before_the_notice_just_goes():
    clock = Clock(Zone(profile(), replicas=0, max_queue=10))
    zone = clock.zone
    zone.set_replicas(0, 1, now=0.0, cold_start_s=0.0)
    request, _ = clock.submit(prompt=10, output=2)
    zone.preempt_spot(1, now=0.001, notice_s=30.0)
    clock.drain()
    assert request.id in clock.times(FINISHED) and not clock.times(FAILED)
    assert zone.counts() == (0, 0, 0)


def test_a_released_slot_is_reused_and_old_wake_ups_stay_stale():
    clock = Clock(Zone(profile(), replicas=2, max_queue=10))
    zone = clock.zone
    zone.set_replicas(1, 0, now=0.0, cold_start_s=1.0)  # an idle replica is released at once
    zone.set_replicas(2, 0, now=0.0, cold_start_s=1.0)
    clock.run_until(1.0)
    assert zone.counts() == (2, 0, 0)
    assert len(zone._engines) == 2  # the released slot came back
    requests = [clock.submit(prompt=50, output=20)[0] for _ in range(4)]
    clock.drain()
    assert all(r.id in clock.times(FINISHED) for r in requests)
