"""The gateway's own stalls, measured: event-loop lag, and timers that do not blame a zone for them.

Every timeout the gateway sets on a zone (a health check, a submit) measures the *zone*. When the
gateway's event loop is itself blocked — a huge request parsed in one go, a machine starved of CPU —
every such timer fires late and every zone looks dead at once (issue #13, F1: a 64 MiB header
stalled the loop 1.8–3.5 s and all 9 zones were marked lost, failing every stream).

`LoopLag` runs a sleeper that wakes every `interval_s` and records how late it woke: each wake-up
later than `tolerance_s` is a stall `(start, end)` on the gateway's clock. `stalled_s(since)` is the
stall time since a moment, including a stall still in progress (the sleeper has not woken yet: a
timer that fires first must not miss it). `call_later` is `loop.call_later` stretched by that
measure: when it fires it waits again for as long as the loop was stalled since it was armed, so a
deadline counts the zone's time, not ours. The lag is exported as the histogram
`grid_gateway_event_loop_lag_seconds`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KEEP_STALLS = 1024  # recent stalls kept (a timer only asks about the last few seconds)


class LoopLag:
    """Event-loop lag of the running loop, on the clock `clock` (seconds)."""

    def __init__(self, clock: Callable[[], float], interval_s: float = 0.05, tolerance_s: float = 0.02) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.tolerance_s = tolerance_s  # later than this is a stall (scheduling noise is a few ms)
        self.stalls: deque[tuple[float, float]] = deque(maxlen=KEEP_STALLS)
        self.max_lag_s = 0.0
        self.last_lag_s = 0.0
        self._due_s: float | None = None  # when the sleeper should wake next
        self._histogram: Histogram | None = None

    def register(self, registry: CollectorRegistry) -> None:
        self._histogram = Histogram(
            "grid_gateway_event_loop_lag_seconds",
            "How late the gateway's event loop ran a timer due every 50 ms (its own stalls).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    async def run(self) -> None:
        """The sleeper: run it as a task for as long as the gateway serves."""
        while True:
            due = self.clock() + self.interval_s
            self._due_s = due
            await asyncio.sleep(self.interval_s)
            woke = self.clock()
            lag = max(0.0, woke - due)
            self.last_lag_s = lag
            self.max_lag_s = max(self.max_lag_s, lag)
            if lag > self.tolerance_s:
                self.stalls.append((due, woke))
            if self._histogram is not None:
                self._histogram.observe(lag)

    def stalled_s(self, since: float) -> float:
        """Seconds the loop was stalled since `since` (recorded stalls, and one in progress)."""
        total = 0.0
        for start, end in reversed(self.stalls):
            if end <= since:
                break
            total += end - max(start, since)
        due = self._due_s
        if due is not None:
            late = self.clock() - due
            if late > self.tolerance_s:  # the sleeper is overdue: we are in (or just out of) a stall
                total += late - max(0.0, since - due)
        return max(0.0, total)

    def call_later(self, delay_s: float, callback: Callable[..., object], *args) -> StretchedTimer:
        """`loop.call_later(delay_s, callback, *args)`, not counting the loop's own stalls."""
        return StretchedTimer(self, delay_s, callback, args)


class StretchedTimer:
    """A timer that fires `delay_s` of un-stalled time after it was armed (see `LoopLag.call_later`)."""

    __slots__ = ("_lag", "_armed_s", "_delay_s", "_callback", "_args", "_handle")

    def __init__(self, lag: LoopLag, delay_s: float, callback: Callable[..., object], args: tuple) -> None:
        self._lag = lag
        self._armed_s = lag.clock()
        self._delay_s = delay_s
        self._callback = callback
        self._args = args
        self._handle = asyncio.get_running_loop().call_later(delay_s, self._fire)

    def _fire(self) -> None:
        lag = self._lag
        due = self._armed_s + self._delay_s + lag.stalled_s(self._armed_s)
        remaining = due - lag.clock()
        if remaining > 1e-3:
            self._handle = asyncio.get_running_loop().call_later(remaining, self._fire)
            return
        self._callback(*self._args)

    def cancel(self) -> None:
        self._handle.cancel()
