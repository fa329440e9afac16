"""Graceful drain of `grid up` on SIGTERM (issue #13, F6), as an operator's process manager does it:
the real command in a subprocess, with its own Ray, on a loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil

from grid.live.server import free_port

from .conftest import SMALL_SCENARIO, stream_chat, wait_until

GRACE_S = 2.0
LONG_TOKENS = 1500  # ≈ 11 s at the small world's 7 ms a token: cut by the drain
SHORT_TOKENS = 120  # ≈ 1 s: finishes within the grace


def _stream(url: str, population: str, max_tokens: int, out: list) -> None:
    out.append((max_tokens, stream_chat(url, "grid-test/tiny-8B", population, max_tokens)[1]))


def test_sigterm_drains_streams_answers_503_and_leaves_no_ray_process(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grid.cli", "up", "--scenario", str(SMALL_SCENARIO), "--port", str(port),
             "--drain-grace", str(GRACE_S)],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, stderr_path.read_text()
                return False

        wait_until(healthy, 120, "grid up serving", poll_s=0.5)
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        assert ray_processes, "Ray started no process?"
        results: list = []
        threads = [
            threading.Thread(target=_stream, args=(url, pop, LONG_TOKENS, results))
            for pop in ("berlin", "new_york", "dallas", "berlin")
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        short = [threading.Thread(target=_stream, args=(url, "berlin", SHORT_TOKENS, results)) for _ in range(2)]
        for thread in short:
            thread.start()
        time.sleep(0.2)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=5) as client:  # still listening while it drains
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "draining"
            refused = client.post(
                "/v1/chat/completions",
                json={"model": "grid-test/tiny-8B", "messages": [{"role": "user", "content": "late"}]},
            )
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "shutting_down"
            assert int(refused.headers["retry-after"]) >= 1
        for thread in threads + short:
            thread.join(30)
        rc = proc.wait(30)
        exited_s = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr_text = stderr_path.read_text()
    assert rc == 0, stderr_text
    assert "Traceback" not in stderr_text, stderr_text
    assert exited_s < GRACE_S + 10, exited_s
    assert len(results) == 6
    for max_tokens, events in results:
        assert events[-1] == "[DONE]", events[-3:]
        if max_tokens == SHORT_TOKENS:  # finished within the grace
            assert events[-2]["choices"][0]["finish_reason"] == "length"
        else:  # cut: an OpenAI error event, then [DONE]
            assert events[-2]["error"]["code"] == "shutting_down", events[-3:]
    wait_until(lambda: not [p for p in ray_processes if _alive(p)], 15, "every Ray process gone")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
