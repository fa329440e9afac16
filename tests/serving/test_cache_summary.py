"""The zone's prefix-cache summary for its load report (`Zone.cached_units`): live, or a snapshot that ages."""

from __future__ import annotations

import pickle

from grid.routing.cache_policies import held_units
from grid.serving.zone import Zone
from tests.serving.test_prefix_cache import PrefixClock, profile


def test_the_summary_holds_every_replicas_units_and_a_snapshot_keeps_its_moment():
    clock = PrefixClock(Zone(profile(), replicas=2, max_queue=10))
    clock.send(64, 2, (1, 2, 3, 4))
    clock.send(64, 2, (7, 8, 9, 10))  # the other engine: the first is busy
    clock.drain()
    zone = clock.zone
    live, snapshot = zone.cached_units(snapshot=False), zone.cached_units()
    assert len(live) == len(snapshot) == 2  # one container per replica
    for summary in (live, snapshot):
        assert held_units((1, 2, 3, 4, 5), 5, summary) == 4
        assert held_units((7, 8, 9, 10), 4, summary) == 4
    clock.send(80, 2, (20, 21, 22, 23, 24), at=1.0)
    clock.drain()
    assert held_units((20, 21, 22), 3, live) == 3  # the live view follows the caches …
    assert held_units((20, 21, 22), 3, snapshot) == 0  # … a snapshot says what they held when taken
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot  # it can cross a process (the live grid's reports)


def test_a_zone_that_failed_reports_empty_caches():
    clock = PrefixClock(Zone(profile(), replicas=1, max_queue=10))
    clock.send(64, 2, (1, 2, 3, 4))
    clock.drain()
    clock.zone.fail_all(clock.now)
    assert held_units((1, 2, 3, 4), 4, clock.zone.cached_units()) == 0
