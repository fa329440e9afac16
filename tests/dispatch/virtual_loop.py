"""An asyncio event loop on virtual time: when nothing is ready, time jumps to the next timer.

The live gateway and in-process zone actors (`grid.live.zone_link.LocalZone`) read only the clock
they are given (`loop.time`), so on this loop they run the live dispatch path in simulated time,
exactly and without sleeping. No real I/O may happen on it (nothing would wake it)."""

from __future__ import annotations

import asyncio
import selectors


class _InstantSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._keys: dict = {}

    def register(self, fileobj, events, data=None):
        key = selectors.SelectorKey(fileobj, fileobj if isinstance(fileobj, int) else fileobj.fileno(), events, data)
        self._keys[key.fd] = key
        return key

    def unregister(self, fileobj):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout=None):
        if timeout is None:
            raise RuntimeError("the virtual loop has nothing scheduled and nothing ready: a deadlock")
        if timeout > 0:
            scheduled = self._loop._scheduled  # the loop's timer heap: jump exactly to the first one
            self._loop.now_s = scheduled[0]._when if scheduled else self._loop.now_s + timeout
        return []

    def get_map(self):
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now_s = 0.0
        super().__init__(selector=_InstantSelector(self))

    def time(self) -> float:
        return self.now_s


def run_virtual(main) -> None:
    """Run `main(loop)` to completion on a fresh `VirtualLoop`."""
    loop = VirtualLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()
