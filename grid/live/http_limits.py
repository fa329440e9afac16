"""Bounded HTTP at the gateway's edge (issue #13, F1 and F3): limits on what a client may make the
server hold, and for how long, enforced in uvicorn's HTTP protocol, before any app code runs.

uvicorn (with httptools) bounds none of it: a request head of any size is buffered (and httptools
grows a long header by `bytes +=`, quadratic: one 64 MiB header blocked the event loop for seconds),
a head or body trickled byte by byte holds its connection forever, and so does a body shorter than
its Content-Length. `LimitedHttpToolsProtocol` adds, per `HttpLimits`:

- the request head (request line and headers) at most `max_header_bytes` and `max_headers` fields,
  else **431**; it must arrive within `header_timeout_s` of the connection (or, on a kept-alive
  connection, of its first byte), else **408** (slowloris);
- a body at most `max_body_bytes` (**413**, from Content-Length or while a chunked body arrives),
  arriving within `body_timeout_s` of the end of its head, else **408** (a stalled or lying body);
- all bodies being received, across connections, at most `max_bodies_in_flight_bytes` (a
  Content-Length is reserved whole when its head arrives, a chunked body as it comes), else **503**
  with Retry-After: the bound is the server's, not the client's (429 would blame the client).

The app starts once its body has fully arrived (bodies are small JSON, at most 1 MiB), so a body that
never completes costs no app task, and a refused request never reaches the app. Refusals are
answered in OpenAI's error shape with `connection: close`, then the connection lingers: the answer is
followed by a FIN and what the client still sends is read and dropped for up to `linger_s`, because
closing a socket with unread input sends a reset that can destroy the answer before it is read.

Each request's scope carries `RECEIVED_AT` (`time.monotonic()` when its first byte was parsed), where
the gateway's TTFT and E2E clocks start, so its own queueing counts as the client's latency does.

Keep-alive idle connections keep uvicorn's `timeout_keep_alive`. Without httptools (uvicorn's h11
fallback) only the head size is bounded (h11's `max_incomplete_event_size`; answered 400): see
`uvicorn_options`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from asyncio import TimerHandle
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from grid.live import openai_api as api
from grid.live.security import MAX_BODY_BYTES

log = logging.getLogger(__name__)

KIB = 1 << 10
MIB = 1 << 20


@dataclass(frozen=True)
class HttpLimits:
    """What one request may make the server hold, and for how long."""

    max_header_bytes: int = 64 * KIB  # request line and header fields
    max_headers: int = 100
    header_timeout_s: float = 10.0  # from connection (or a kept-alive request's first byte) to end of head
    body_timeout_s: float = 30.0  # from end of head to end of body: at least ~35 KB/s for a 1 MiB body
    max_body_bytes: int = MAX_BODY_BYTES
    max_bodies_in_flight_bytes: int = 64 * MIB  # bodies being received, all connections together
    retry_after_s: float = 1.0  # on 503: reservations free as bodies end (or time out)
    linger_s: float = 2.0  # after a refusal: drop what the client still sends for this long at most


class BodyBudget:
    """Bytes of request bodies being received, across all connections of one server (one event loop)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def refusal_bytes(error: api.ApiError, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 response for `error` in OpenAI's shape, closing the connection."""
    body = json.dumps(error.body()).encode()
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if error.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after_s))).encode()))
        headers.append((b"retry-after-ms", str(max(1, round(error.retry_after_s * 1000))).encode()))
    lines = [_status_line(error.status), *(name + b": " + value + b"\r\n" for name, value in headers), b"\r\n"]
    return b"".join(lines) + body


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


RECEIVED_AT = "grid.received_at_s"  # scope key: monotonic time of the request's first byte


def _kib(n: int) -> str:
    return f"{n / KIB:g} KiB" if n < MIB else f"{n / MIB:g} MiB"


try:
    import httptools
    from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
except ImportError:  # uvicorn without [standard]: see uvicorn_options
    httptools = None
    HttpToolsProtocol = object  # type: ignore[assignment,misc]


class LimitedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's httptools protocol under `HttpLimits` (see the module's docstring). Build one with
    `limited_protocol(limits)`: the class carries the limits and the budget shared by its connections."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    budget: ClassVar[BodyBudget] = BodyBudget(HttpLimits().max_bodies_in_flight_bytes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between the end of a message and the end of the next head
        self._head_begun = False  # the head's first byte has arrived
        self._head_bytes = 0
        self._head_fields = 0
        self._message_ended = False  # during one feed: a message ended in it
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._linger_timer: TimerHandle | None = None
        self._body_pending = False  # the current message's body is still arriving
        self._body_length: int | None = None  # its Content-Length (None: chunked)
        self._body_received = 0
        self._body_reserved = 0  # bytes of `budget` it holds
        self._waiting: tuple[RequestResponseCycle, Any] | None = None  # app to start once the body is in
        self._running: RequestResponseCycle | None = None  # the cycle whose app was started last
        self._refused = False  # a refusal was sent: input is dropped until the connection closes

    # --- connection --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._end_body()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._waiting = None
        if self.cycle is not None:
            # A body never handed to the app is dropped now: the protocol and its cycle reference each
            # other, so it would otherwise wait for a full garbage collection (measured: the soak's
            # unfinished 1 MB bodies grew the gateway by ~0.5 MB each until one ran).
            self.cycle.body = b""
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._refused or self._waiting is not None:
            self.transport.close()  # no answer in progress: nothing to wait for
        else:
            super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped
        self._unset_keepalive_if_required()
        self._message_ended = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            # A limit below raises ApiError in a parser callback: httptools stops parsing and chains it.
            error = exc.__context__ if isinstance(exc.__context__, api.ApiError) else None
            if error is None:
                log.warning("invalid HTTP request: %s", exc)
                error = api.ApiError(400, "Invalid HTTP request.", code="invalid_http_request")
            self._refuse(error)
            return
        if self._in_head:
            # A head that spans reads: count them whole (at most one read, ~256 KiB, is parsed past the
            # limit). The rest of a read that ended a message and began the next is not counted.
            if not self._message_ended:
                self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._head_too_large())
            elif self._head_begun and self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)
        elif self._body_pending and self._body_timer is None and not self.pipeline:
            self._arm_body_timer()

    # --- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[RECEIVED_AT] = time.monotonic()  # type: ignore[literal-required]
        self._head_begun = True
        self._head_fields = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.limits.max_headers:
            raise api.ApiError(
                431,
                f"The request has more than {self.limits.max_headers} header fields.",
                code="request_header_fields_too_large",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = self._head_begun = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._admit_body()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self._body_received += len(body)
        extra = self._body_received - self._body_reserved  # > 0 only for a chunked body
        if extra > 0:
            if self._body_received > self.limits.max_body_bytes:
                raise self._body_too_large()
            if not self.budget.take(extra):
                raise self._busy()
            self._body_reserved += extra
        self.cycle.body += body
        if self._waiting is None and len(self.cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()  # a running app reads it; a waiting one gets it whole (bounded)
        self.cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = self._message_ended = True
        self._end_body()
        if self._waiting is not None:
            cycle, app = self._waiting
            self._waiting = None
            self._run(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request and resume reading its body
        if self._body_pending and self._body_timer is None and not self.pipeline:
            self._arm_body_timer()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if cycle is self.cycle and self._body_pending:
            self._waiting = (cycle, app)  # started by on_message_complete
            if cycle.waiting_for_100_continue:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # admitted: let the client send it
                cycle.waiting_for_100_continue = False
            return
        self._run(cycle, app)

    def _run(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # --- limits ------------------------------------------------------------------------------------

    def _admit_body(self) -> None:
        """At the end of a head: refuse a body over the size limit or the budget, else reserve it."""
        length, chunked = None, False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value)  # llhttp accepts digits only
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and length > self.limits.max_body_bytes:
            raise self._body_too_large()
        if length and not self.budget.take(length):
            raise self._busy()
        self._body_length = length
        self._body_received = 0
        self._body_reserved = length or 0
        self._body_pending = bool(length) or chunked

    def _end_body(self) -> None:
        self._body_pending = False
        if self._body_reserved:
            self.budget.give(self._body_reserved)
            self._body_reserved = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _arm_body_timer(self) -> None:
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(
            api.ApiError(
                408,
                f"The request headers did not arrive within {self.limits.header_timeout_s:g} s.",
                type_="timeout_error",
                code="request_timeout",
            )
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        promised = f"{self._body_length} promised" if self._body_length is not None else "chunked"
        self._refuse(
            api.ApiError(
                408,
                f"The request body did not arrive within {self.limits.body_timeout_s:g} s "
                f"({self._body_received} bytes received, {promised}).",
                type_="timeout_error",
                code="request_timeout",
            )
        )

    def _head_too_large(self) -> api.ApiError:
        return api.ApiError(
            431,
            f"The request line and headers are larger than {_kib(self.limits.max_header_bytes)}.",
            code="request_header_fields_too_large",
        )

    def _body_too_large(self) -> api.ApiError:
        return api.ApiError(
            413, f"The request body is larger than {_kib(self.limits.max_body_bytes)}.", code="request_too_large"
        )

    def _busy(self) -> api.ApiError:
        return api.ApiError(
            503,
            "The server is receiving too many request bodies at once; retry shortly.",
            type_="service_unavailable",
            code="server_busy",
            retry_after_s=self.limits.retry_after_s,
        )

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, error: api.ApiError) -> None:
        """Answer `error` and close; the request (and any pipelined after it) is never run."""
        self._refused = True
        self._cancel_timers()
        self._end_body()
        self._waiting = None
        self.pipeline.clear()
        if self.cycle is not None and self.cycle is not self._running:
            self.cycle.disconnected = True  # a request never started: it never will be
            self.cycle.body = b""
        running = self._running
        if running is not None and not running.response_complete:
            running.keep_alive = False  # an answer is under way (pipelining): no room for ours; close after it
            return
        if self.transport.is_closing():
            return
        self.transport.write(refusal_bytes(error, self.server_state.default_headers))
        self.flow.resume_reading()  # keep reading: the rest of the request is dropped, not left unread
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(self.limits.linger_s, self.transport.close)
        else:  # TLS cannot half-close
            self.transport.close()


def limited_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for one server: its connections share one body budget."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "budget": BodyBudget(limits.max_bodies_in_flight_bytes), "__module__": __name__},
    )


def uvicorn_options(limits: HttpLimits) -> dict[str, Any]:
    """`uvicorn.Config` keyword arguments that apply `limits`."""
    if httptools is not None:
        return {"http": limited_protocol(limits)}
    log.warning(
        "httptools is not installed: uvicorn's h11 protocol bounds only the request head's size "
        "(no header or body timeouts, no body budget); install uvicorn[standard]"
    )
    return {"http": "h11", "h11_max_incomplete_event_size": limits.max_header_bytes}
