"""The health monitor over zones that stop answering, on a virtual clock (fake zone handles: no Ray):
a silent zone is suspected, then dead once; a stall of the gateway's own loop blames nobody."""

from __future__ import annotations

import asyncio

import pytest

from grid.dispatch.settings import DispatchSettings, build_view
from grid.faults import NetworkState
from grid.live.health import HealthSettings, ZoneHealth
from grid.live.health_monitor import HealthMonitor
from grid.live.loop_lag import LoopLag
from grid.live.zone_link import ZoneLink
from grid.scenario import load_scenario
from grid.world import build_world
from tests.dispatch.virtual_loop import VirtualLoop, run_virtual

from .conftest import SMALL_SCENARIO


class _Method:
    def __init__(self, call) -> None:
        self._call = call

    def remote(self, *args):
        return self._call(*args)


STALL_S = 0.7  # the gateway's loop blocked, longer than a check's timeout (0.6 s)


class _Zone:
    """A zone handle whose load report is answered after 20 ms, or never while `silent`. While
    `starve` > 0, each report call blocks the gateway's loop for STALL_S just after it is sent, and its
    answer, produced meanwhile, is handled only after the check's timeout fired (as a Ray answer that
    landed during a stall can be)."""

    def __init__(self) -> None:
        self.silent = False
        self.starve = 0
        self.report = _Method(self._report)
        self.cancel = _Method(lambda ids: asyncio.get_running_loop().create_future())

    def _report(self, *_):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        answer_s = 0.02
        if self.starve > 0:
            self.starve -= 1
            loop.call_later(0.01, _block, loop, STALL_S)
            answer_s = 0.65
        if not self.silent:
            loop.call_later(
                answer_s,
                future.set_result,
                {
                    "up": True,
                    "incarnation": "one",
                    "report_s": asyncio.get_running_loop().time(),
                    "outstanding": 0,
                    "waiting": 0,
                    "kv_usage": 0.0,
                    "utilization": 0.0,
                    "ttft_ewma_s": 0.0,
                },
            )
        return future


def _block(loop: VirtualLoop, seconds: float) -> None:
    """A blocking call on the loop: its clock moves, nothing else runs."""
    loop.now_s += seconds


def _monitor(loop: VirtualLoop, zone: _Zone, failed: list, lag: LoopLag | None) -> HealthMonitor:
    scenario = load_scenario(str(SMALL_SCENARIO))
    world = build_world(scenario)
    view = build_view(scenario, world, DispatchSettings.from_scenario(scenario), NetworkState(world).rtt_s())
    link = ZoneLink(0, zone, lambda zi, updates: None, lambda zi: None)
    return HealthMonitor(
        view, [link], [ZoneHealth()], HealthSettings(), 0.1, 1.0, loop.time,
        lambda zi, updates: None, lambda zi, keep, dead: failed.append(zi) or [7], lag,
    )  # fmt: skip


def test_a_silent_zone_is_suspected_then_dead_once_and_comes_back():
    async def main(loop: VirtualLoop) -> None:
        zone, failed = _Zone(), []
        lag = LoopLag(loop.time)
        monitor = _monitor(loop, zone, failed, lag)
        tasks = [loop.create_task(lag.run()), loop.create_task(monitor._health_loop(0))]
        zv, health = monitor.view.zones[0], monitor.health[0]
        await asyncio.sleep(0.5)
        assert zv.up
        zone.silent = True
        await asyncio.sleep(1.5)  # two checks of 0.6 s missed
        assert not zv.up and not health.dead and failed == []  # suspected: what it holds runs on
        await asyncio.sleep(4.0)  # eight missed (≈ 4.8 s)
        assert health.dead and failed == [0]  # dead: its requests fail, once
        await asyncio.sleep(3.0)
        assert failed == [0]
        zone.silent = False
        await asyncio.sleep(40.0)  # answers again: back after its ejection time, through half-open
        assert zv.up and not health.dead
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_virtual(main)


@pytest.mark.parametrize("measured", [True, False])
def test_a_stalled_gateway_blames_no_zone(measured):
    """Without the lag measure (`measured=False`, as before #13) the same stalls suspect the zone."""

    async def main(loop: VirtualLoop) -> None:
        zone, failed = _Zone(), []
        lag = LoopLag(loop.time)
        monitor = _monitor(loop, zone, failed, lag if measured else None)
        tasks = [loop.create_task(lag.run()), loop.create_task(monitor._health_loop(0))]
        await asyncio.sleep(0.5)
        zone.starve = 5  # the next five checks each meet a stall
        await asyncio.sleep(5.0)
        suspected = [entry for entry in monitor.health_log if not entry[2]]
        assert failed == []
        if measured:
            assert suspected == [] and monitor.health[0].failed_checks == 0
        else:
            assert suspected and suspected[0][3] == "check timeout"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_virtual(main)
