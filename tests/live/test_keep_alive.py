"""Idle kept-alive connections (issue #14, item 5): the gateway keeps them longer than client pools do.

uvicorn's default `timeout_keep_alive` is 5 s, aiohttp's pools keep idle connections 15 s: a client
that reuses one just as the server closes it gets a connection error (2 of 200 requests behind
LiteLLM's proxy). The gateway's default is 75 s (`GatewaySettings.keep_alive_s`, `grid up --keep-alive`).
Checked on raw sockets against the real gateway (uvicorn over Ray zone actors)."""

from __future__ import annotations

import select
import socket
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from grid.live.gateway import GatewaySettings
from grid.live.server import uvicorn_config
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve

IDLE_S = 6.0  # longer than uvicorn's own default (5 s)
SHORT_KEEP_ALIVE_S = 1.0


def test_uvicorn_config_takes_the_apps_keep_alive():
    def app(keep_alive_s=None):
        return SimpleNamespace(state=SimpleNamespace(http_limits=None, keep_alive_s=keep_alive_s))

    assert GatewaySettings().keep_alive_s == 75.0
    assert uvicorn_config(app(12.0), "127.0.0.1", 1).timeout_keep_alive == 12.0
    assert uvicorn_config(app(), "127.0.0.1", 1).timeout_keep_alive == 75.0  # never uvicorn's 5 s
    assert uvicorn_config(object(), "127.0.0.1", 1).timeout_keep_alive == 75.0  # an app without state
    assert uvicorn_config(app(12.0), "127.0.0.1", 1, keep_alive_s=3.0).timeout_keep_alive == 3.0


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def _get(sock: socket.socket, path: str = "/v1/models") -> int:
    """Send one keep-alive GET and read its whole answer (Content-Length framed); its status."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: grid\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before the answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert fields.get("connection", "").lower() != "close"
    length = int(fields["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed mid-answer"
        body += chunk
    return int(lines[0].split()[1])


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed the connection (EOF waiting, or reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def short(ray_session):
    with serve(load_scenario(str(SMALL_SCENARIO)), GatewaySettings(keep_alive_s=SHORT_KEEP_ALIVE_S)) as grid:
        yield grid


def test_idle_connection_outlives_uvicorns_default_unless_told_otherwise(live, short):
    started = time.monotonic()
    with _connect(live.url) as kept, _connect(short.url) as dropped:
        assert _get(kept) == 200 and _get(dropped) == 200
        time.sleep(IDLE_S)
        # the default (75 s): still open after 6 s idle, and it serves the next request
        assert not _closed_by_server(kept)
        assert _get(kept) == 200
        assert _get(kept, "/health") == 200
        # 1 s: closed by the server long before
        assert _closed_by_server(dropped)
    assert time.monotonic() - started < 20
