"""The built-in dashboard (`GET /dashboard`) on the real live grid, rendered by headless Chromium.

Chromium (Debian's `chromium`; `make test` installs it, through `.ci/install-system-deps`) loads the
page from the loopback gateway, runs its JavaScript for a few seconds of virtual time (it polls
`/grid/zones`), and dumps the DOM or takes a screenshot. A zone failed through the admin API shows
as down; recovered, as up again.

`UPDATE_DASHBOARD_SCREENSHOT=1` also copies the screenshot taken under load (one zone down) to
docs/dashboard.png.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from grid.live.gateway import GatewaySettings
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve

TOKEN = "dashboard-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_PROMPT = "zebra-quartz-prompt-marker"  # must never reach the page
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
    "--virtual-time-budget=5000",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


def _run_chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{time.monotonic_ns()}"
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


def dump_dom(url: str, tmp: Path) -> str:
    return _run_chromium(url, tmp, "--dump-dom").stdout


def screenshot(url: str, tmp: Path) -> Path:
    shot = tmp / "shot.png"
    _run_chromium(url, tmp, f"--screenshot={shot}")
    return shot


def _zone_states(dom: str) -> dict[str, str]:
    """zone id → "up"/"down", from the table rows the page's JS rendered."""
    return dict(re.findall(r'<tr id="zone-[^"]*" data-zone="([^"]+)" data-state="(up|down)"', dom))


def _chat(client: httpx.Client, model: str, population: str, content: str = "hello") -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8},
        headers={"X-Grid-Population": population},
    )


def _wait_zone(client: httpx.Client, zone: str, up: bool, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        zones = {z["zone"]: z for z in client.get("/grid/zones").json()["zones"]}
        if zones[zone]["up"] is up:
            return
        time.sleep(0.1)
    raise AssertionError(f"{zone} did not become {'up' if up else 'down'}")


class _Load:
    """Background chat requests from every population (closed loop, a few at once)."""

    def __init__(self, url: str, model: str, populations: list[str], workers: int = 4) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [
            threading.Thread(target=self._run, args=(url, model, populations, i), daemon=True) for i in range(workers)
        ]

    def _run(self, url: str, model: str, populations: list[str], i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            n = i
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    _chat(client, model, populations[n % len(populations)], SECRET_PROMPT)
                self.sent += 1
                n += 1
                time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(35)


@pytest.fixture(scope="module")
def dash(ray_session):
    scenario = load_scenario(str(SMALL_SCENARIO))
    with serve(scenario, GatewaySettings(admin_token=TOKEN, request_timeout_s=30.0)) as grid:
        yield grid


def test_dashboard_page_is_self_contained(dash):
    r = dash.client.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<svg" in page and "/grid/zones" in page and "/admin/faults" in page
    # nothing loaded from the network: no external scripts, styles, fonts or images
    assert not re.search(r"<script[^>]+src=|<link\b|@import|url\(", page)
    assert set(re.findall(r"https?://[^\s\"'`)]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_world_and_zone_fields_for_the_map(dash):
    world = dash.client.get("/grid/world").json()
    assert {z["zone"] for z in world["zones"]} == set(dash.scenario.zones)
    assert {p["population"] for p in world["populations"]} == set(dash.scenario.populations)
    assert all(-90 <= x["lat"] <= 90 and -180 <= x["lon"] <= 180 for x in world["regions"] + world["populations"])
    assert len(world["land"]) > 100 and all(len(ring) >= 4 for ring in world["land"])  # coastlines to draw on
    before = {z["zone"]: z["completed_total"] for z in dash.client.get("/grid/zones").json()["zones"]}
    for population in ("berlin", "dallas"):
        r = _chat(dash.client, dash.model, population)
        assert r.status_code == 200, r.text
    body = dash.client.get("/grid/zones").json()
    after = {z["zone"]: z for z in body["zones"]}
    assert sum(after[z]["completed_total"] for z in after) == sum(before.values()) + 2
    assert any(after[z]["ttft_p99_s"] is not None for z in after)
    # flows: exactly population × zone, labelled from the scenario only
    keys = {(f["population"], f["zone"]) for f in body["flows"]}
    assert keys == {(p, z) for p in dash.scenario.populations for z in dash.scenario.zones}
    assert sum(f["completed_total"] for f in body["flows"]) == sum(after[z]["completed_total"] for z in after)


def test_admin_errors_the_page_reports(dash):
    fault = {"kind": "zone_down", "zone": "mexico-1"}
    r = dash.client.post("/admin/faults", json=fault, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401  # the page says "wrong or missing admin token"


def test_admin_errors_the_page_reports_on_a_grid_without_a_token(live):
    """On the session's `live` grid (tests/conftest.py runs it late, apart from this module's `dash`)."""
    fault = {"kind": "zone_down", "zone": "mexico-1"}
    r = live.client.post("/admin/faults", json=fault, headers=AUTH)
    assert r.status_code == 404  # no GRID_ADMIN_TOKEN: the page says the admin API is disabled
    assert live.client.get("/dashboard").status_code == 200  # the dashboard itself needs no token


def test_dashboard_in_headless_chromium_shows_a_zone_fail_and_recover(dash, tmp_path):
    url = f"{dash.url}/dashboard"
    zones = list(dash.scenario.zones)
    for population in dash.scenario.populations:
        assert _chat(dash.client, dash.model, population, SECRET_PROMPT).status_code == 200

    dom = dump_dom(url, tmp_path)
    assert _zone_states(dom) == {z: "up" for z in zones}, dom[-3000:]
    for population in dash.scenario.populations:
        assert f'data-population="{population}"' in dom  # population squares on the map
    assert SECRET_PROMPT not in dom

    with _Load(dash.url, dash.model, list(dash.scenario.populations)) as load:
        time.sleep(1.0)
        r = dash.client.post("/admin/faults", json={"kind": "zone_down", "zone": "mexico-1"}, headers=AUTH)
        assert r.status_code == 200, r.text
        try:
            _wait_zone(dash.client, "mexico-1", up=False)
            # Flows need requests completing between two of the page's polls, which Chromium's virtual
            # time can run closer together than real traffic does; on a loaded machine (a fresh-clone CI
            # run missed three loads in a row) a load can miss it, so load the page for up to 30 s.
            deadline = time.monotonic() + 30.0
            dom = dump_dom(url, tmp_path)
            while 'class="flow"' not in dom and time.monotonic() < deadline:
                dom = dump_dom(url, tmp_path)
            states = _zone_states(dom)
            assert states["mexico-1"] == "down" and states["frankfurt-1"] == "up", states
            assert 'class="state down">DOWN<' in dom
            assert 'class="flow"' in dom  # routing flows drawn from traffic between polls
            assert SECRET_PROMPT not in dom
            shot = screenshot(url, tmp_path)
            assert shot.exists() and shot.stat().st_size > 20_000, "screenshot missing or blank"
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("UPDATE_DASHBOARD_SCREENSHOT"):
                shutil.copyfile(shot, DOCS_SHOT)
        finally:
            r = dash.client.post("/admin/recover", json={"zone": "mexico-1"}, headers=AUTH)
            assert r.status_code == 200, r.text
    assert load.sent > 0

    _wait_zone(dash.client, "mexico-1", up=True)
    dom = dump_dom(url, tmp_path)
    assert _zone_states(dom) == {z: "up" for z in zones}
