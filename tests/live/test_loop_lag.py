"""The gateway's own stalls, measured (`grid.live.loop_lag`), on a virtual clock: no sleeping."""

from __future__ import annotations

import asyncio

from grid.live.loop_lag import LoopLag
from tests.dispatch.virtual_loop import VirtualLoop, run_virtual


def _stall(loop: VirtualLoop, seconds: float) -> None:
    """A blocking call on the loop: its clock moves, nothing else runs."""
    loop.now_s += seconds


def test_a_stall_is_measured_and_stretches_timers_armed_before_it():
    async def main(loop: VirtualLoop) -> None:
        lag = LoopLag(loop.time, interval_s=0.05, tolerance_s=0.02)
        sleeper = loop.create_task(lag.run())
        fired: list[float] = []
        plain: list[float] = []
        await asyncio.sleep(0.2)
        lag.call_later(0.6, lambda: fired.append(loop.time()))
        loop.call_later(0.6, lambda: plain.append(loop.time()))
        await asyncio.sleep(0.1)
        loop.call_soon(_stall, loop, 3.0)  # at t=0.3: 3 s blocked
        await asyncio.sleep(5.0)
        sleeper.cancel()
        assert plain == [3.3]  # a plain timer fires as soon as the loop runs again: the stall counted
        assert abs(fired[0] - (0.8 + 3.0)) < 0.06  # 0.6 s of the loop's running time after it was armed
        assert 2.9 < lag.max_lag_s < 3.1
        assert 2.9 < lag.stalled_s(0.25) < 3.1
        assert lag.stalled_s(3.4) == 0.0  # nothing since

    run_virtual(main)


def test_a_stall_in_progress_counts_before_the_sleeper_records_it():
    async def main(loop: VirtualLoop) -> None:
        lag = LoopLag(loop.time, interval_s=0.05, tolerance_s=0.02)
        sleeper = loop.create_task(lag.run())
        await asyncio.sleep(0.01)
        _stall(loop, 2.0)  # the sleeper is overdue; it has not run yet
        assert 1.9 < lag.stalled_s(0.0) < 2.05
        sleeper.cancel()

    run_virtual(main)


def test_no_stall_no_stretch():
    async def main(loop: VirtualLoop) -> None:
        lag = LoopLag(loop.time)
        sleeper = loop.create_task(lag.run())
        fired: list[float] = []
        lag.call_later(0.6, lambda: fired.append(loop.time()))
        await asyncio.sleep(1.0)
        sleeper.cancel()
        assert fired == [0.6] and lag.max_lag_s == 0.0 and not lag.stalls

    run_virtual(main)
