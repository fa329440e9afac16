"""The gateway's zone link over an in-process zone actor (`LocalZone`): no Ray."""

from __future__ import annotations

import asyncio

import pytest

from grid.live.zone_actor import ADMITTED, NOTIFY_STREAM, UPDATE_DONE, UPDATE_FIRST, ZoneActor
from grid.live.zone_link import TIMEOUT, LocalZone, ZoneLink, expire, report_within
from grid.scenario import load_scenario
from grid.world import build_world

from .conftest import SMALL_SCENARIO


def _local_zone() -> LocalZone:
    scenario = load_scenario(str(SMALL_SCENARIO))
    zone_id = build_world(scenario).zone_ids[0]
    spec = scenario.zones[zone_id]
    return LocalZone(ZoneActor(zone_id, spec.region, scenario.gpus[spec.gpu], spec.replicas, spec.max_queue, 0.01))


def test_submit_then_poll_until_done():
    async def run():
        zone = _local_zone()
        delivered: list[tuple] = []
        lost: list[int] = []
        link = ZoneLink(0, zone, lambda zi, updates: delivered.extend(updates), lost.append)
        answer, incarnation = await link.submit((1, 0, 20, 8, NOTIFY_STREAM, 0.0, None))
        assert answer == ADMITTED
        assert incarnation == zone.actor.incarnation
        kinds = [u[1] for u in delivered if u[0] == 1]  # any updates piggybacked on the submit answer
        async with asyncio.timeout(10):
            while UPDATE_DONE not in kinds:
                seen, updates = await zone.poll.remote(0.5)
                assert seen == incarnation
                kinds += [u[1] for u in updates if u[0] == 1]
        assert kinds[0] == UPDATE_FIRST
        assert kinds[-1] == UPDATE_DONE
        assert not lost
        report = await report_within(link, 1.0)
        assert report["received"] == 1
        assert report["outstanding"] == 0

    asyncio.run(run())


def test_admission_nobody_waits_for_is_withdrawn():
    async def run():
        zone = _local_zone()
        withdrawn: list[tuple[int, int]] = []
        link = ZoneLink(0, zone, lambda zi, updates: None, lambda zi: None, lambda zi, rid: withdrawn.append((zi, rid)))
        future = link.submit((7, 0, 20, 8, NOTIFY_STREAM, 0.0, None))
        expire(future)  # the attempt timed out before the zone answered
        assert future.result() == (TIMEOUT, None)
        async with asyncio.timeout(5):
            while not withdrawn:
                await asyncio.sleep(0.01)
        assert withdrawn == [(0, 7)]

    asyncio.run(run())


def test_local_zone_exposes_only_public_methods():
    zone = _local_zone()
    with pytest.raises(AttributeError):
        zone._advance  # noqa: B018
    with pytest.raises(AttributeError):
        zone.incarnation  # noqa: B018 (an attribute, not a method)
