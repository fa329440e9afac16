"""A policy from the user's own module routes the live gateway, as it does `grid sim` and `grid bench`."""

from __future__ import annotations

from grid.live.gateway import GatewaySettings
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve


def test_user_policy_routes_live_requests(ray_session):
    scenario = load_scenario(str(SMALL_SCENARIO), {"routing.policy": "tests.routing.user_policy:FarthestFirst"})
    with serve(scenario, GatewaySettings()) as live:
        body = {"model": live.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        # Berlin's zones by RTT: frankfurt-1/-2 (13.6 ms), then mexico-1 (165 ms): the farthest is mexico-1.
        r = live.client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "berlin"})
        assert r.status_code == 200, r.text
        assert r.headers["x-grid-zone"] == "mexico-1"
        assert live.grid.gateway.policy.name == "farthest_first"
