"""Hostile HTTP at the real gateway's edge (issue #13, F1 and F3), over a raw loopback socket: huge and
numerous headers (431), heads and bodies trickled or never finished (408 at the header or body
timeout), unfinished bodies beyond the server-wide budget (503 with Retry-After), while normal
requests on the same server keep being answered at once. Every refusal is in OpenAI's error shape
with `connection: close`, and the server then closes the connection.

The server runs with short timeouts (1 s) and an 8 MiB body budget so each case takes about a second.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import httpx
import pytest

from grid.live.gateway import GatewaySettings
from grid.live.http_limits import MIB, HttpLimits
from grid.live.server import build_live_grid, free_port, uvicorn_server
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, wait_until

LIMITS = HttpLimits(header_timeout_s=1.0, body_timeout_s=1.0, max_bodies_in_flight_bytes=8 * MIB)
READ_TIMEOUT_S = 5.0  # a client gives up on an answer after this (the unbounded server never answers)
QUICK_S = 0.5  # "at once": well under any timeout
EARLY_S = 0.05  # loop timers run on the loop's cached clock (ms): up to this early on the test's clock


@pytest.fixture(scope="module")
def edge(ray_session):
    """The small scenario served live by `uvicorn_server` under `LIMITS` (one server for the module)."""
    scenario = load_scenario(str(SMALL_SCENARIO))
    grid = build_live_grid(scenario, GatewaySettings(), stream_interval_s=0.01)
    port = free_port()
    server = uvicorn_server(grid.app, "127.0.0.1", port, limits=LIMITS)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "the gateway to start")
    assert server.started, "the gateway did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=READ_TIMEOUT_S) as client:
            yield SimpleNamespace(port=port, server=server, client=client, model=scenario.model.name)
    finally:
        server.should_exit = True
        thread.join(15)
        grid.close()


# --- a raw HTTP/1.1 client ----------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no answer within READ_TIMEOUT_S
    headers: dict[str, str]
    body: bytes
    after_s: float  # from the first byte sent to the end of the answer
    closed: bool  # the server closed the connection after it
    raw: bytes  # all that was read


def _parse(raw: bytes, after_s: float, closed: bool) -> Answer:
    """The first answer in `raw` (its body: the rest of `raw`)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return Answer(None, {}, raw, after_s, closed, raw)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body, after_s, closed, raw)


def _read(sock: socket.socket, started: float) -> Answer:
    """Everything the server sends until it closes, or READ_TIMEOUT_S after `started`."""
    raw, closed = b"", False
    while (left := READ_TIMEOUT_S - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionError:  # a reset after the answer: still closed
            closed = True
            break
        if not data:
            closed = True
            break
        raw += data
    return _parse(raw, time.monotonic() - started, closed)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)


def exchange(port: int, payload: bytes, trickle: bytes = b"", every_s: float = 0.1) -> Answer:
    """Send `payload`, then `trickle` one byte every `every_s` until the server answers; read the answer."""
    with _connect(port) as sock:
        started = time.monotonic()
        try:
            sock.sendall(payload)
            for byte in trickle:
                if select.select([sock], [], [], every_s)[0] or time.monotonic() - started > READ_TIMEOUT_S:
                    break  # answered (or closed), or given up: stop sending
                sock.sendall(bytes([byte]))
        except (ConnectionError, TimeoutError):
            pass  # refused (or not read) while sending: an answer may still be there to read
        return _read(sock, started)


def assert_refused(answer: Answer, status: int, code: str) -> dict:
    """An OpenAI-shaped error with `connection: close`, after which the server closed the connection."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    error = json.loads(answer.body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] is None
    assert error["code"] == code and error["message"]
    assert answer.closed, "the server left the connection open"
    return error


def _get(path: str = "/v1/models", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def _post_head(length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + framing
        + b"\r\n\r\n"
    )


def _budget(edge):
    """The body budget shared by the server's connections."""
    return edge.server.config.http_protocol_class.budget


def _quick_get(edge) -> float:
    started = time.monotonic()
    assert edge.client.get("/health").status_code == 200
    return time.monotonic() - started


# --- headers -------------------------------------------------------------------------------------


def test_one_1_mib_header_is_431_at_once_and_closed(edge):
    answer = exchange(edge.port, _get(extra=b"X-Big: " + b"a" * MIB + b"\r\n"))
    assert_refused(answer, 431, "request_header_fields_too_large")
    assert answer.after_s < QUICK_S
    print(f"1 MiB header: 431 after {answer.after_s * 1000:.0f} ms")


def test_a_64_mib_header_does_not_stall_the_event_loop(edge):
    """F1: httptools grew it by `bytes +=` (quadratic), blocking every other request for seconds."""
    payload = _get(extra=b"X-Big: " + b"a" * (64 * MIB) + b"\r\n")
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            probes.append(_quick_get(edge))

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        answer = exchange(edge.port, payload)
    finally:
        done.set()
        prober.join(READ_TIMEOUT_S)
    assert_refused(answer, 431, "request_header_fields_too_large")
    assert answer.after_s < 2.0
    assert probes and max(probes) < QUICK_S
    slowest = max(probes) * 1000
    print(f"64 MiB header: 431 after {answer.after_s * 1000:.0f} ms; slowest of {len(probes)} probes {slowest:.0f} ms")


def test_200_headers_are_431(edge):
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(200))
    answer = exchange(edge.port, _get(extra=fields))
    assert_refused(answer, 431, "request_header_fields_too_large")
    assert answer.after_s < QUICK_S


def test_slowloris_head_is_408_at_the_header_timeout(edge):
    head = _get(extra=b"X-Slow: " + b"z" * 200 + b"\r\n")
    answer = exchange(edge.port, head[:20], trickle=head[20:], every_s=0.05)
    error = assert_refused(answer, 408, "request_timeout")
    assert error["type"] == "timeout_error"
    assert LIMITS.header_timeout_s - EARLY_S <= answer.after_s < LIMITS.header_timeout_s + QUICK_S
    print(f"slowloris head: 408 after {answer.after_s * 1000:.0f} ms")


def test_a_connection_that_sends_nothing_is_408_at_the_header_timeout(edge):
    answer = exchange(edge.port, b"")
    assert_refused(answer, 408, "request_timeout")
    assert LIMITS.header_timeout_s - EARLY_S <= answer.after_s < LIMITS.header_timeout_s + QUICK_S


# --- bodies --------------------------------------------------------------------------------------


def test_a_body_shorter_than_its_content_length_is_408_after_the_body_timeout(edge):
    body = json.dumps({"model": edge.model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    answer = exchange(edge.port, _post_head(len(body) + 100) + body)  # promises 100 bytes it never sends
    assert_refused(answer, 408, "request_timeout")
    assert LIMITS.body_timeout_s - EARLY_S <= answer.after_s < LIMITS.body_timeout_s + QUICK_S
    print(f"lying Content-Length: 408 after {answer.after_s * 1000:.0f} ms")


def test_a_stalled_chunked_body_is_408_after_the_body_timeout(edge):
    answer = exchange(edge.port, _post_head(None) + b'5\r\n{"mod\r\n')  # no last chunk
    assert_refused(answer, 408, "request_timeout")
    assert LIMITS.body_timeout_s - EARLY_S <= answer.after_s < LIMITS.body_timeout_s + QUICK_S


def test_unfinished_bodies_beyond_the_budget_are_503_and_the_gateway_still_answers(edge):
    """F3: 300 unfinished 1 MB bodies were all held (RSS +286 MB), never timed out. Here each
    reserves its Content-Length; once the 8 MiB budget is full the next is refused at its head."""
    length, n = 1_000_000, 12
    fit = LIMITS.max_bodies_in_flight_bytes // length  # 8
    socks = [_connect(edge.port) for _ in range(n)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(_post_head(length) + b"x" * 100_000)  # a tenth of it, then nothing
        answered_s: dict[socket.socket, float] = {}  # when each refused one was answered
        while (left := started + QUICK_S - time.monotonic()) > 0 and len(answered_s) < n:
            for sock in select.select([s for s in socks if s not in answered_s], [], [], left)[0]:
                answered_s[sock] = time.monotonic() - started
        assert len(answered_s) == n - fit
        for sock in answered_s:
            answer = _read(sock, started)
            assert_refused(answer, 503, "server_busy")
            assert answer.headers["retry-after"] == "1"
        assert _budget(edge).used == fit * length <= LIMITS.max_bodies_in_flight_bytes
        # Meanwhile the gateway answers at once.
        assert _quick_get(edge) < QUICK_S
        # The held ones end at the body timeout, and give their reservations back.
        held = [_read(sock, started) for sock in socks if sock not in answered_s]
        for answer in held:
            assert_refused(answer, 408, "request_timeout")
            assert answer.after_s < LIMITS.body_timeout_s + QUICK_S
        assert _budget(edge).used == 0
        refused_ms, held_ms = max(answered_s.values()) * 1000, max(a.after_s for a in held) * 1000
        print(f"{n} bodies: {len(answered_s)} 503 within {refused_ms:.0f} ms, {len(held)} 408 at {held_ms:.0f} ms")
    finally:
        for sock in socks:
            sock.close()


# --- and then -------------------------------------------------------------------------------------


def test_normal_requests_still_work_after_all_that_and_abandoned_connections_are_closed(edge):
    """Attackers that never close: the server answers them at its timeouts and lets go of them within
    `linger_s` on its own, while normal requests (on the same server) go through."""
    hostile = [_connect(edge.port) for _ in range(3)]
    try:
        started = time.monotonic()
        hostile[0].sendall(b"GET /health HTTP/1.1\r\nHost")  # a head never finished
        hostile[1].sendall(_post_head(1000) + b"{")  # a body never finished
        # hostile[2] sends nothing at all
        r = edge.client.post(
            "/v1/chat/completions",
            json={"model": edge.model, "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 8},
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
        # Keep-alive, pipelined and 100-continue requests still go through the limited protocol.
        body = json.dumps({"model": edge.model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        head = _post_head(len(body))[:-2] + b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        answer = exchange(edge.port, _get("/health") + head + body)
        assert answer.status == 200 and answer.closed
        assert answer.raw.count(b"HTTP/1.1 200 OK\r\n") == 2 and b"HTTP/1.1 100 Continue\r\n" in answer.raw
        for sock in hostile:
            assert_refused(_read(sock, started), 408, "request_timeout")
        # The server let go of them, though they are still open at this end.
        wait_until(
            lambda: len(edge.server.server_state.connections) <= 1,  # the httpx client's kept-alive one
            LIMITS.linger_s + QUICK_S,
            "the server to close abandoned connections",
        )
        assert _budget(edge).used == 0
    finally:
        for sock in hostile:
            sock.close()
