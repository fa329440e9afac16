"""A real Prometheus server for the tests: on loopback, a free port, its own data directory.

Debian's `prometheus` package gives `prometheus` and `promtool`; `make test` installs it
(`.ci/install-system-deps`). A test that needs it fails, never skips, when it is missing."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from grid.live.server import free_port


def binary(name: str) -> str:
    """The path of `prometheus` or `promtool`, or the test fails saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs Debian's prometheus package")
    return path


@contextmanager
def prometheus_server(workdir: Path, config: str, data: Path, *extra_args: str) -> Iterator[str]:
    """Run Prometheus with `config` (YAML text) on `data`; yields its API base URL once ready."""
    config_file = workdir / "prometheus.yml"
    config_file.write_text(config)
    log = workdir / "prometheus.log"
    port = free_port()
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{api}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield api
    finally:
        process.terminate()
        process.wait(15)
