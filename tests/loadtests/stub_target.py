"""A tiny OpenAI-shaped HTTP server on loopback for `grid loadtest`'s failure paths (no Ray, no grid).

`GET /v1/models` lists `models` (or answers `models_status`), `GET /grid/world` answers 404 (a plain
vLLM server has none), `POST /v1/chat/completions` answers `chat_status` with an OpenAI error body.
With `api_key` set, every path without `Authorization: Bearer <api_key>` is 401. Every request is
kept in `requests` (method, path, headers, JSON body).
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace


def _handler(state: SimpleNamespace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._answer(status, {"error": {"message": message, "type": "stub_error", "code": status}})

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with state.lock:
                state.requests.append(
                    SimpleNamespace(method=method, path=self.path, headers=dict(self.headers), body=body)
                )
            if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                return self._error(401, "Incorrect or missing API key (stub).")
            if method == "GET" and self.path == "/v1/models":
                if state.models_status != 200:
                    return self._error(state.models_status, "the stub's models fail")
                return self._answer(
                    200, {"object": "list", "data": [{"id": m, "object": "model"} for m in state.models]}
                )
            if method == "POST" and self.path == "/v1/chat/completions":
                return self._error(state.chat_status, "The stub fails every chat completion.")
            return self._error(404, f"Not found: {self.path}")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    return Handler


@contextlib.contextmanager
def stub_target(models=("stub/served-1B",), models_status=200, chat_status=500, api_key=None):
    """Serve the stub on 127.0.0.1 (a free port) for the block; yields its state with `url`."""
    state = SimpleNamespace(
        models=list(models),
        models_status=models_status,
        chat_status=chat_status,
        api_key=api_key,
        requests=[],
        lock=threading.Lock(),
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="stub-target", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
