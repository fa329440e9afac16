"""`grid up` as an operator runs it (issue #13, F6 and F7): the real command in its own process and session,
with its own Ray beside the session's (as in a full test run), on a loopback port, the admin token and an
API key in its environment. One process serves the module (`grid up` and its Ray take ~20 s to start on 2
busy cores): it is checked while it runs, then stopped with SIGTERM as a process manager does it.

- F7: its Ray processes inherit neither secret and listen on loopback only; the secrets still work at the
  gateway (test_ray_isolation.py checks the session's own Ray instance).
- F6: SIGTERM drains: streams that fit the grace finish, longer ones end with an OpenAI error event,
  /health reads draining and new requests get 503; it exits 0, and leaves no Ray process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import psutil
import pytest

from grid.live.commands import SECRET_ENV_VARS
from grid.live.server import free_port

from .conftest import SMALL_SCENARIO, stream_chat, wait_until
from .test_ray_isolation import _assert_listeners_on_loopback, _labels, _ray_processes

ADMIN_TOKEN = "isolation-test-admin-token"
API_KEY = "isolation-test-api-key"
KEYED = {"Authorization": f"Bearer {API_KEY}"}
GRID_START_TIMEOUT_S = 120.0
GRID_STOP_TIMEOUT_S = 60.0
GRACE_S = 2.0
LONG_TOKENS = 1500  # ≈ 11 s at the small world's 7 ms a token: cut by the drain
SHORT_TOKENS = 120  # ≈ 1 s: finishes within the grace


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: `grid up` and whatever it started
        process.wait(10)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def grid_up(ray_session, tmp_path_factory):
    """`grid up --drain-grace 2` on the small world, serving; the last test of the module stops it."""
    port = free_port()
    env = {**os.environ, "GRID_ADMIN_TOKEN": ADMIN_TOKEN, "GRID_API_KEYS": API_KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "grid.cli", "up", "--scenario", str(SMALL_SCENARIO), "--port", str(port),
           "--drain-grace", str(GRACE_S)]  # fmt: skip
    log_path = tmp_path_factory.mktemp("grid-up") / "grid-up.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    served = SimpleNamespace(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, started=[])
    try:

        def healthy() -> bool:
            assert process.poll() is None, f"grid up exited with {process.returncode}: {log_path.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(served.url + "/health", timeout=2).status_code == 200
            return False

        wait_until(healthy, GRID_START_TIMEOUT_S, "grid up to serve /health", poll_s=0.5)
        yield served
    finally:
        _stop(process)
        for p in served.started:  # only what this `grid up` started, should it have left anything
            with contextlib.suppress(psutil.Error):
                p.kill()  # psutil checks the PID was not reused


def test_grid_up_keeps_secrets_out_of_ray_and_ray_on_loopback(grid_up):
    """Its Ray processes inherit neither secret and listen on loopback only; the secrets still work at
    the gateway (taken from the environment, not lost)."""
    with httpx.Client(base_url=grid_up.url, timeout=10) as client:
        assert client.get("/admin/faults").status_code == 401
        assert client.get("/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers=KEYED).status_code == 200

    grid = psutil.Process(grid_up.process.pid)
    processes = _ray_processes(grid)
    grid_up.started += processes
    labels = _labels(processes)
    assert any("ZoneActor" in label for label in labels.values()), f"no zone actor among {sorted(labels.values())}"
    leaked = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            leaked += [(labels[p.pid], p.pid, name) for name in SECRET_ENV_VARS if name in p.environ()]
    assert not leaked, f"Ray processes inherited secrets: {leaked}"

    labels[grid.pid] = "driver"  # its only other listener: the gateway on 127.0.0.1
    _assert_listeners_on_loopback(labels, ("driver", "gcs_server", "raylet", "ray::ZoneActor"))


def _wait_in_flight(url: str, n: int) -> None:
    """Until the gateway holds `n` requests (GET /grid/zones needs no key)."""
    wait_until(lambda: httpx.get(f"{url}/grid/zones", timeout=5).json()["in_flight"] >= n, 30, f"{n} in flight")


def _stream(url: str, population: str, max_tokens: int, out: list) -> None:
    out.append((max_tokens, stream_chat(url, "grid-test/tiny-8B", population, max_tokens, headers=KEYED)[1]))


def test_sigterm_drains_streams_answers_503_and_leaves_no_ray_process(grid_up):
    """Runs last: it stops the module's `grid up`."""
    url, proc = grid_up.url, grid_up.process
    assert proc.poll() is None, grid_up.log_path.read_text()
    descendants = psutil.Process(proc.pid).children(recursive=True)
    grid_up.started += descendants
    assert _ray_processes(psutil.Process(proc.pid)), "Ray started no process?"
    results: list = []
    threads = [
        threading.Thread(target=_stream, args=(url, pop, LONG_TOKENS, results))
        for pop in ("berlin", "new_york", "dallas", "berlin")
    ]
    for thread in threads:
        thread.start()
    _wait_in_flight(url, 4)
    short = [threading.Thread(target=_stream, args=(url, "berlin", SHORT_TOKENS, results)) for _ in range(2)]
    for thread in short:
        thread.start()
    _wait_in_flight(url, 6)  # every stream admitted before the signal (a fixed pause raced a busy machine)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with httpx.Client(base_url=url, timeout=5) as client:  # still listening while it drains
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        refused = client.post(
            "/v1/chat/completions",
            json={"model": "grid-test/tiny-8B", "messages": [{"role": "user", "content": "late"}]},
            headers=KEYED,
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "shutting_down"
        assert int(refused.headers["retry-after"]) >= 1
    for thread in threads + short:
        thread.join(30)
    rc = proc.wait(GRID_STOP_TIMEOUT_S)
    exited_s = time.monotonic() - signalled
    log = grid_up.log_path.read_text()
    assert rc == 0, log  # drained, then stopped
    assert "grid up: stopped" in log and "Traceback" not in log, log
    assert exited_s < GRACE_S + 10, exited_s
    assert len(results) == 6
    for max_tokens, events in results:
        assert events[-1] == "[DONE]", events[-3:]
        if max_tokens == SHORT_TOKENS:  # finished within the grace
            assert events[-2]["choices"][0]["finish_reason"] == "length"
        else:  # cut: an OpenAI error event, then [DONE]
            assert events[-2]["error"]["code"] == "shutting_down", events[-3:]
    wait_until(lambda: not [p for p in descendants if _alive(p)], 30, "every Ray process gone", poll_s=0.2)
    print(f"grid up: SIGTERM to every process it started gone in {time.monotonic() - signalled:.1f} s")
