"""A policy from the user's own module routes the live gateway, as it does `grid sim` and `grid bench`."""

from __future__ import annotations

import threading
import time

import httpx

from grid.live.gateway import GatewaySettings
from grid.live.server import build_live_grid, free_port, uvicorn_server
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO


def test_user_policy_routes_live_requests(ray_session):
    scenario = load_scenario(str(SMALL_SCENARIO))
    grid = build_live_grid(scenario, GatewaySettings(policy="tests.routing.user_policy:FarthestFirst"))
    server = uvicorn_server(grid.app, "127.0.0.1", free_port())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.config.port}"
        body = {"model": scenario.model.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(base_url=url, timeout=30) as client:
            # Berlin's zones by RTT: frankfurt-1/-2 (13.6 ms), then mexico-1 (165 ms): the farthest is mexico-1.
            r = client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "berlin"})
            assert r.status_code == 200, r.text
            assert r.headers["x-grid-zone"] == "mexico-1"
            assert grid.gateway.policy.name == "farthest_first"
    finally:
        server.should_exit = True
        thread.join(15)
        grid.close()
