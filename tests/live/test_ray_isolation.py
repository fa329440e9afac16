"""Ray stays on this machine and out of the secrets (issue #13, F7).

A private local Ray instance (`start_ray(None, ...)`) must listen on loopback only: GCS, raylet, every
worker (zone actors included), the dashboard agent, the runtime env agent, the metrics servers and the
driver's own core worker. And `grid up` takes `GRID_ADMIN_TOKEN` / `GRID_API_KEYS` out of its
environment before Ray starts, so no Ray process inherits them: checked on a real `grid up` in
test_grid_up.py, with the helpers below.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os

import psutil
import ray

from grid.live.commands import SECRET_ENV_VARS, take_secrets

from .conftest import wait_until

RAY_DIR = os.path.dirname(ray.__file__)


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
