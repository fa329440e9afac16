"""Ray stays on this machine and out of the secrets (issue #13, F7).

A private local Ray instance (`start_ray(None, ...)`) must listen on loopback only: GCS, raylet, every
worker (zone actors included), the dashboard agent, the runtime env agent, the metrics servers and the
driver's own core worker. And `grid up` takes `GRID_ADMIN_TOKEN` / `GRID_API_KEYS` out of its
environment before Ray starts, so no Ray process inherits them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import ray

from grid.live.commands import SECRET_ENV_VARS, take_secrets
from grid.live.server import free_port

from .conftest import SMALL_SCENARIO, wait_until

RAY_DIR = os.path.dirname(ray.__file__)
ADMIN_TOKEN = "isolation-test-admin-token"
API_KEY = "isolation-test-api-key"
GRID_START_TIMEOUT_S = 120.0
GRID_STOP_TIMEOUT_S = 60.0


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _cmdline(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def _ray_processes(root: psutil.Process) -> list[psutil.Process]:
    """`root`'s descendants that belong to Ray: started from Ray's package (GCS, raylet, monitor,
    dashboard, log monitor) or titled `ray::…` (workers, agents), and everything under them."""
    found, stack = {}, list(root.children())
    while stack:
        process = stack.pop()
        cmdline = _cmdline(process)
        if cmdline and (cmdline[0].startswith("ray::") or any(RAY_DIR in arg for arg in cmdline)):
            found[process.pid] = process
            with contextlib.suppress(psutil.Error):
                found.update((p.pid, p) for p in process.children(recursive=True))
        else:
            with contextlib.suppress(psutil.Error):
                stack.extend(process.children())
    return list(found.values())


def _label(process: psutil.Process) -> str:
    cmdline = _cmdline(process)
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    script = next((arg for arg in cmdline if arg.endswith(".py")), cmdline[0])
    return os.path.basename(script)


def _listening(pids: dict[int, str]) -> list[tuple[str, int, str, int]]:
    """(label, pid, ip, port) of every TCP socket in LISTEN state owned by one of `pids`."""
    return sorted(
        (pids[c.pid], c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    )


def _labels(processes) -> dict[int, str]:
    return {p.pid: _label(p) for p in processes}


def _assert_listeners_on_loopback(pids: dict[int, str], must_listen: tuple[str, ...]) -> None:
    """Every listening socket of `pids` is on loopback, once each of `must_listen` has one (so the
    check is not vacuous; some of Ray's servers start a moment after `ray.init` returns)."""

    def all_listening():
        sockets = _listening(pids)
        listeners = {label for label, *_ in sockets}
        return sockets if all(any(name in label for label in listeners) for name in must_listen) else None

    try:
        sockets = wait_until(all_listening, 30.0, f"a listening socket of each of {must_listen}", poll_s=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; seen: {_listening(pids)}") from None
    exposed = [s for s in sockets if not _is_loopback(s[2])]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"


def test_every_listening_socket_of_the_local_ray_instance_is_on_loopback(live):
    """The session's Ray (start_ray(None, num_cpus=2)) with the small world's zone actors running."""
    driver = psutil.Process()
    processes = _ray_processes(driver)
    labels = _labels(processes)
    assert any("ZoneActor" in label for label in labels.values()), f"no zone actor among {sorted(labels.values())}"
    labels[driver.pid] = "driver"  # its core worker's gRPC server (and the test gateway, on 127.0.0.1)
    _assert_listeners_on_loopback(
        labels,
        ("driver", "gcs_server", "raylet", "ray::ZoneActor", "ray::DashboardAgent", "ray::RuntimeEnvAgent"),
    )


def test_take_secrets_removes_them_from_the_environment():
    environ = {"GRID_ADMIN_TOKEN": "t0k", "GRID_API_KEYS": "a, b", "PATH": "/bin"}
    assert take_secrets(environ) == ("t0k", "a, b")
    assert environ == {"PATH": "/bin"}
    assert take_secrets(environ) == (None, None)  # unset (or empty): None, and nothing else touched
    environ = {"GRID_ADMIN_TOKEN": "", "PATH": "/bin"}
    assert take_secrets(environ) == (None, None) and environ == {"PATH": "/bin"}
    assert set(SECRET_ENV_VARS) == {"GRID_ADMIN_TOKEN", "GRID_API_KEYS"}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: `grid up` and whatever it started
        process.wait(10)


def test_grid_up_keeps_secrets_out_of_ray_and_ray_on_loopback_and_stops_cleanly(ray_session, tmp_path):
    """`grid up` in its own process (beside the session's Ray instance, as in a full test run): its
    Ray processes inherit neither secret and listen on loopback only; the secrets still work at the
    gateway; SIGTERM stops it with exit code 0 and no Ray process left behind."""
    port = free_port()
    env = {**os.environ, "GRID_ADMIN_TOKEN": ADMIN_TOKEN, "GRID_API_KEYS": API_KEY}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "grid.cli", "up", "--scenario", str(SMALL_SCENARIO), "--port", str(port)]
    log_path = tmp_path / "grid-up.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    ray_processes: list[psutil.Process] = []
    try:

        def healthy() -> bool:
            assert process.poll() is None, f"grid up exited with {process.returncode}: {log_path.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/health", timeout=2).status_code == 200
            return False

        wait_until(healthy, GRID_START_TIMEOUT_S, "grid up to serve /health", poll_s=0.5)
        with httpx.Client(base_url=url, timeout=10) as client:  # the secrets were taken, not lost
            assert client.get("/admin/faults").status_code == 401
            assert client.get("/admin/faults", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
            assert client.get("/v1/models").status_code == 401
            assert client.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200

        grid = psutil.Process(process.pid)
        processes = ray_processes = _ray_processes(grid)
        labels = _labels(processes)
        assert any("ZoneActor" in label for label in labels.values()), f"no zone actor among {sorted(labels.values())}"
        leaked = []
        for p in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                leaked += [(labels[p.pid], p.pid, name) for name in SECRET_ENV_VARS if name in p.environ()]
        assert not leaked, f"Ray processes inherited secrets: {leaked}"

        labels[grid.pid] = "driver"  # its only other listener: the gateway on 127.0.0.1
        _assert_listeners_on_loopback(labels, ("driver", "gcs_server", "raylet", "ray::ZoneActor"))

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(GRID_STOP_TIMEOUT_S)
        assert returncode == 0, f"grid up exited with {returncode}: {log_path.read_text()}"  # drained, then stopped
        assert "grid up: stopped" in log_path.read_text()

        def ray_gone() -> bool:
            return not [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        wait_until(ray_gone, 30.0, "grid up's Ray processes to exit after it did", poll_s=0.2)
        print(f"grid up: SIGTERM to every Ray process gone in {time.monotonic() - started:.1f} s")
    finally:
        _stop(process)
        for p in ray_processes:  # only what this test's `grid up` started, should it have left anything
            with contextlib.suppress(psutil.Error):
                p.kill()  # psutil checks the PID was not reused
