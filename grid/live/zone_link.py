"""The gateway's end of one zone actor: batched submits, timed load reports, and an in-process handle.

`ZoneLink` talks to an actor handle (`handle.method.remote(...)` returning an awaitable): a Ray
actor handle, or a `LocalZone` wrapping a plain `ZoneActor` in this process (tests, no Ray).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from grid.live.loop_lag import LoopLag
from grid.live.zone_actor import ADMITTED, DOWN, ZoneActor

MAX_SUBMITS_IN_FLIGHT = 1  # per zone (2 measured worse: more Ray calls, same wait)
TIMEOUT = -1  # attempt outcome: the zone did not answer the submit in time

log = logging.getLogger(__name__)


class ZoneLink:
    """The gateway's end of one zone actor: batched submits (the update long-poll is the health monitor's).

    Up to `MAX_SUBMITS_IN_FLIGHT` submit calls run at once; requests arriving meanwhile wait and go
    together in the next call (batching grows with load, the wait stays under one Ray round trip).
    A request whose future is already done when its answer comes (timed out by `expire`, or cancelled:
    nobody waits any more) but that the zone admitted is withdrawn from it (`withdraw(zone, id)`)."""

    def __init__(
        self,
        index: int,
        actor,
        deliver: Callable[[int, list], None],
        lost: Callable[[int], None],
        withdraw: Callable[[int, int], None] | None = None,
    ) -> None:
        self.index = index
        self.actor = actor
        self.deliver = deliver
        self.lost = lost
        self.withdraw = withdraw
        self.incarnation: str | None = None  # last seen on the update stream
        self._batch: list[tuple] = []
        self._waiters: list[asyncio.Future] = []
        self._sending = 0

    def submit(self, item: tuple) -> asyncio.Future:
        """Queue a request for the next submit call; the future gives (answer, incarnation)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._batch.append(item)
        self._waiters.append(future)
        if self._sending < MAX_SUBMITS_IN_FLIGHT:
            self._sending += 1
            loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, waiters = self._batch, self._waiters
                self._batch, self._waiters = [], []
                try:
                    answers, updates, incarnation = await self.actor.submit.remote(batch)
                except Exception as exc:  # the actor is gone: every request in the batch is refused
                    log.warning("zone %d: submit failed: %r", self.index, exc)
                    answers, updates, incarnation = [DOWN] * len(batch), [], None
                    self.lost(self.index)
                if updates:
                    self.deliver(self.index, updates)
                for future, answer, item in zip(waiters, answers, batch, strict=True):
                    if not future.done():
                        future.set_result((answer, incarnation))
                    elif answer == ADMITTED and self.withdraw is not None:  # admitted, but nobody waits
                        self.withdraw(self.index, item[0])
        finally:
            self._sending -= 1


async def report_within(
    link: ZoneLink, timeout_s: float, lag: LoopLag | None = None, cached_units: bool = False
) -> dict:
    """A zone's load report (with its prefix-cache summary if `cached_units`), or TimeoutError after
    `timeout_s` (not counting the gateway's own stalls when `lag` is given: `LoopLag.call_later`).

    The timer cancels the call; a cancellation of the caller itself is told apart by
    `Task.cancelling()` and passes through (a health loop that swallowed `stop()`'s cancel would run
    on and hang the shutdown — the reason Python 3.11's `wait_for` is not used)."""
    report = asyncio.ensure_future(link.actor.report.remote(cached_units))
    timed_out: list[bool] = []

    def time_out() -> None:
        timed_out.append(True)
        report.cancel()

    if lag is not None:
        timer = lag.call_later(timeout_s, time_out)
    else:
        timer = asyncio.get_running_loop().call_later(timeout_s, time_out)
    try:
        return await report
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if timed_out and not (task is not None and task.cancelling()):
            raise TimeoutError(f"zone {link.index}: no report within {timeout_s:g} s") from None
        raise
    finally:
        timer.cancel()


def expire(future: asyncio.Future) -> None:
    """A submit not answered within the attempt's timeout."""
    if not future.done():
        future.set_result((TIMEOUT, None))


class _LocalMethod:
    __slots__ = ("_method",)

    def __init__(self, method) -> None:
        self._method = method

    def remote(self, *args, **kwargs) -> asyncio.Future:
        # A task at once, as a Ray call is sent at once: a call nobody awaits (a cancel) still runs.
        return asyncio.ensure_future(self._method(*args, **kwargs))


class LocalZone:
    """A `ZoneActor` in this process, called like its Ray actor handle: `zone.submit.remote(batch)`
    (and `poll`, `report`, `cancel`, `restore`, `hold_down`, `set_slow_factor`, `fail_all`, …) runs
    the method as a task on the running loop and returns it. `ray.kill` does not apply."""

    def __init__(self, actor: ZoneActor) -> None:
        self.actor = actor

    def __getattr__(self, name: str) -> _LocalMethod:
        method = getattr(self.actor, name)
        if name.startswith("_") or not callable(method):
            raise AttributeError(name)
        return _LocalMethod(method)
