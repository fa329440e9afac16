"""Graceful shutdown of a serving gateway: drain, then let uvicorn stop.

`DrainingServer` is uvicorn's server with a drain in front of its shutdown. On SIGTERM or SIGINT the
gateway stops admitting (new requests get 503 `shutting_down` with Retry-After, `/health` answers 503
`draining` so a load balancer stops sending), running requests get `grace_s` to finish, and what is
still running then ends in OpenAI's shape: a stream with an `error` event and `[DONE]`, a waiting
answer with a 503 (`GridGateway.drain`). Only then does uvicorn close its sockets and run the
app's shutdown. A second signal stops at once (uvicorn's forced exit).

Unlike plain uvicorn, the signal is not re-raised after a clean drain, so `grid up` exits 0 and its
`finally` stops the zone actors and Ray."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[float], Awaitable[int]], grace_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s
        self.drain_started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler (also callable from another thread: it only schedules work)."""
        if self.drain_started or self._loop is None:
            self.should_exit = self.force_exit = True  # a second signal: stop now
            return
        self.drain_started = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        log.warning("draining: no new requests; running ones have %g s to finish", self.grace_s)
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self.drain(self.grace_s)
        finally:
            self.should_exit = True
