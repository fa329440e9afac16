"""A killed zone actor that Ray restarts must not serve before the grid restores it (real Ray, loopback).

Calls the gateway makes while Ray restarts a killed actor are held by Ray and delivered to the fresh
process. If that process started up, it admitted them and streamed their first tokens, and the fault
controller's `hold_down` then failed them mid-stream — requests that the simulator's down zone would
have refused, so the gateway would have retried them elsewhere before any token. A reconstructed
actor starts down instead: such requests are refused and retried, and the zone serves again after
`restore` (the fault's end), or on its own after a grace period when nobody holds it down (a crash).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import ray

from grid.live import drill, fault_control
from grid.live.gateway import GatewaySettings
from grid.live.zone_actor import RESTART_GRACE_S
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve, wait_until

TOKEN = "test-restart-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ZONE = "frankfurt-1"
RUN_S, KILL_AT_S, DOWN_S, RATE_RPS = 6.0, 1.5, 2.5, 30.0
HOLD_DOWN_LATE_S = 3.5  # the second case: hold_down reaches the restarted actor ≥ this after the kill
AFTER_KILL_S = 0.2  # a request sent this long after the kill cannot have reached the old process


@pytest.fixture(scope="module")
def grid(ray_session):
    settings = GatewaySettings(admin_token=TOKEN, request_timeout_s=20.0)
    with serve(load_scenario(str(SMALL_SCENARIO)), settings) as served:
        yield served


def _zone(grid, zone: str) -> dict:
    return next(z for z in grid.client.get("/grid/zones").json()["zones"] if z["zone"] == zone)


async def _load_with_kill(grid) -> tuple[list[drill.Outcome], dict]:
    """Streaming Berlin requests at RATE_RPS for RUN_S (Berlin is served by Frankfurt); frankfurt-1
    is killed at KILL_AT_S for DOWN_S. Outcome times are on the gateway's clock."""
    gateway = grid.grid.gateway
    t0 = time.monotonic() - gateway.now()  # so that sent_s / ended_s read the gateway's clock
    start = gateway.now()
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=grid.url, limits=limits, timeout=httpx.Timeout(20.0)) as client:
        tasks, fault = [], None
        i = 0
        while (t := start + i / RATE_RPS) < start + RUN_S:
            await asyncio.sleep(max(0.0, t - gateway.now()))
            if fault is None and t >= start + KILL_AT_S:
                r = await client.post(
                    "/admin/faults", json={"kind": "zone_down", "zone": ZONE, "duration_s": DOWN_S}, headers=AUTH
                )
                r.raise_for_status()
                fault = r.json()["fault"]
            tasks.append(asyncio.create_task(drill.one_request(client, grid.model, "berlin", True, 60 + i % 60, t0)))
            i += 1
        outcomes = await asyncio.gather(*tasks)
    return list(outcomes), fault


@pytest.mark.parametrize("hold_down_late_s", [0.0, HOLD_DOWN_LATE_S], ids=["as-is", "late-hold-down"])
def test_requests_reaching_a_restarting_zone_are_retried_not_failed_midstream(grid, monkeypatch, hold_down_late_s):
    """Requests sent to frankfurt-1 after it was killed are refused by the restarted actor and retried
    elsewhere before their first token. Whether the old code served (and then failed) them depends on
    when the controller's `hold_down` reaches the restarted actor relative to the submits Ray held for
    it and to the zone's return from ejection, so the second case makes `hold_down` late (a busy
    gateway loop, a slow GCS), which made every run of the old code fail."""
    if hold_down_late_s:
        call, first = fault_control._call, []

        async def late_hold_down(method, *args, **kwargs):
            if getattr(method, "_method_name", None) == "hold_down":
                first.append(time.monotonic())
                await asyncio.sleep(max(0.0, first[0] + hold_down_late_s - time.monotonic()))
            return await call(method, *args, **kwargs)

        monkeypatch.setattr(fault_control, "_call", late_hold_down)
    outcomes, fault = asyncio.run(_load_with_kill(grid))
    record = wait_until(
        lambda: next(
            (
                f
                for f in grid.client.get("/admin/faults", headers=AUTH).json()["history"]
                if f["id"] == fault["id"] and f["back_up_at_s"] is not None
            ),
            None,
        ),
        10,
        "the fault to end and the zone to come back",
    )
    killed = record["killed_at_s"]
    late = [o for o in outcomes if o.sent_s >= killed + AFTER_KILL_S]
    assert len(late) >= 30, (len(late), record)
    bad = [o for o in late if o.kind != "completed"]
    assert not bad, (bad, record)  # retried elsewhere before their first token, never failed mid-stream
    assert all(o.kind in ("completed", "failed_midstream") for o in outcomes), outcomes
    assert {o.zone for o in outcomes if o.kind == "failed_midstream"} <= {ZONE}
    assert record["restarted_at_s"] >= killed
    # The zone serves again, empty, once the window is over.
    wait_until(lambda: _zone(grid, ZONE)["up"], 10, f"{ZONE} up")
    wait_until(lambda: _zone(grid, ZONE)["outstanding"] == 0, 10, f"{ZONE} empty")
    r = grid.client.post(
        "/v1/chat/completions",
        json={"model": grid.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"X-Grid-Population": "berlin"},
    )
    assert r.status_code == 200


def test_a_zone_restarted_without_a_fault_comes_back_by_itself(grid):
    """A crash (Ray restarts the actor, no fault controller holds it down): the fresh actor refuses
    work for RESTART_GRACE_S, then serves again without anyone calling `restore`."""
    gateway = grid.grid.gateway
    zi = gateway.world.zone_ids.index(ZONE)
    actor = gateway.links[zi].actor
    old = ray.get(actor.report.remote(), timeout=10)["incarnation"]
    killed = time.monotonic()
    ray.kill(actor, no_restart=False)
    report = wait_until(
        lambda: _report(actor, old),
        15,
        "the restarted actor",
    )
    if time.monotonic() - killed < RESTART_GRACE_S:
        assert not report["up"], report  # reconstructed: down until the grace period ends
    wait_until(lambda: (_report(actor, old) or {}).get("up"), RESTART_GRACE_S + 10, "the restarted actor up")
    wait_until(lambda: _zone(grid, ZONE)["up"], 15, f"{ZONE} eligible again")


def _report(actor, old: str) -> dict | None:
    try:
        report = ray.get(actor.report.remote(), timeout=2)
    except Exception:
        return None
    return report if report["incarnation"] != old else None
