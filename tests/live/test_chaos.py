"""Faults on the real live grid (Ray actors killed and restarted, uvicorn on 127.0.0.1): the admin API,
the scenario's fault schedule, a short chaos drill (one kill, every request accounted for), and the
simulator agreeing with the live grid on what a zone_down does and on how many requests it fails and
retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.chaos_drill import (
    COUNTS,
    Kill,
    compare_counts,
    count_bounds,
    expected_live,
    record_arrivals,
    replay_in_simulator,
)
from grid.live import drill
from grid.live.gateway import GatewaySettings
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve, wait_until
from .test_gateway_e2e import assert_openai_error

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEDULED = {"at_s": 1.0, "kind": "zone_down", "zone": "mexico-1", "duration_s": 2.0}
DRILL_S, KILL_AT_S, DOWN_S = 13.0, 3.0, 5.0  # back up at 8 s: 5 s more of load for it to serve again
DRILL_POPULATIONS = ["berlin", "berlin", "berlin", "new_york", "dallas"]
DRILL_RATE_RPS, DRILL_TOKENS = 16.0, (40, 120)


@pytest.fixture(scope="module")
def chaos(ray_session):
    scenario = load_scenario(str(SMALL_SCENARIO), {"faults": [SCHEDULED]})
    settings = GatewaySettings(admin_token=TOKEN, request_timeout_s=30.0)
    with serve(scenario, settings) as grid:
        yield grid


def _history(chaos) -> list[dict]:
    r = chaos.client.get("/admin/faults", headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["history"]


def _incarnation(chaos, zone: str) -> str:
    gateway = chaos.grid.gateway
    return gateway.health[gateway.world.zone_ids.index(zone)].incarnation


def test_scenario_schedule_kills_and_restarts_the_zone_live(chaos):
    first = wait_until(lambda: [f for f in _history(chaos) if f["source"] == "scenario"], 10, "the scheduled fault")[0]
    assert first["kind"] == "zone_down" and first["zone"] == "mexico-1"
    done = wait_until(
        lambda: next((f for f in _history(chaos) if f["id"] == first["id"] and f["back_up_at_s"]), None),
        20,
        "the scheduled fault to end and the zone to come back",
    )
    assert done["detection_s"] is not None and done["detection_s"] <= 2.0, done
    assert done["restarted_at_s"] >= done["killed_at_s"]
    zones = {z["zone"]: z for z in chaos.client.get("/grid/zones").json()["zones"]}
    assert zones["mexico-1"]["up"] and zones["mexico-1"]["outstanding"] == 0  # back, empty
    # Dallas is served by Mexico again.
    r = chaos.client.post(
        "/v1/chat/completions",
        json={"model": chaos.model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Grid-Population": "dallas"},
    )
    assert r.status_code == 200 and r.headers["x-grid-zone"] == "mexico-1"


def test_short_chaos_drill_loses_nothing_and_reconciles(chaos):
    """≈13 s of open-loop load, frankfurt-1 killed once (5 s): no request lost or hung, client counts
    equal RunStats and grid_requests_total, errors only mid-stream on the killed zone; then the
    simulator, replaying the very requests the gateway received with the same kill at the same time,
    shows the same kinds of outcome and the same counts (completed, failed mid-stream, failed before
    the first token, rejected, retries) within the drill's bounds for one kill (`count_bounds`: what
    differs is timing around the kill and the live gateway's detection delay, not the requests)."""
    gateway = chaos.grid.gateway
    old = _incarnation(chaos, "frankfurt-1")
    before = drill.server_counts(chaos.client.get("/metrics").text)
    retries_before = gateway.counts["retries"]
    gateway.reset_stats()
    t_start = gateway.now()
    ended_at: list[tuple[float, object]] = []
    gateway.on_request_end.append(lambda record: ended_at.append((gateway.now() - t_start, record)))
    arrivals = record_arrivals(gateway)
    try:
        tally = asyncio.run(
            drill.drive(
                chaos.url,
                chaos.model,
                DRILL_POPULATIONS,
                ["frankfurt-1"],
                duration_s=DRILL_S,
                rate_rps=DRILL_RATE_RPS,
                admin_token=TOKEN,
                kill_every_s=60.0,
                first_kill_s=KILL_AT_S,
                down_s=DOWN_S,
                client_timeout_s=40.0,
                tokens=DRILL_TOKENS,
                seed=1,
            )
        )
    finally:
        del gateway.handle  # back to the class's method
        gateway.on_request_end.clear()
    live_retries = gateway.counts["retries"] - retries_before
    counts = tally.counts()
    summary = tally.to_dict()
    assert counts["lost"] == 0 and counts["unexpected"] == 0, summary
    assert counts["failed"] == 0, summary  # errors only mid-stream
    assert set(summary["midstream_zones"]) <= {"frankfurt-1"}, summary
    assert summary["max_latency_s"] < 30.0
    # Every accepted request ended exactly once, and both server counters agree with the client.
    stats, in_flight = gateway.snapshot_stats()
    assert in_flight == 0
    assert drill.run_stats_counts(stats) == drill.client_counts(tally), summary
    after = drill.server_counts(chaos.client.get("/metrics").text)
    assert drill.diff(after, before) == drill.client_counts(tally), summary
    assert sum(stats.arrivals) == len(tally.outcomes)
    # The kill: detected within 2 s, the restarted actor is a new incarnation.
    (kill,) = tally.kills
    assert kill["detection_s"] is not None and kill["detection_s"] <= 2.0, kill
    assert _incarnation(chaos, "frankfurt-1") != old
    # What was in flight on frankfurt-1 did not complete there: failed mid-stream or retried elsewhere.
    assert kill["midstream_failures"] + kill["failovers"] >= 1, kill
    assert kill["midstream_failures"] == counts["failed_midstream"]

    # --- the same requests and kill in the simulator: the same kinds of outcome, and counts -----
    killed_s = kill["killed_at_s"] - t_start
    live_kinds = _outcome_kinds(
        [(t, r.zone, r.status) for t, r in ended_at],
        killed_s + kill["detection_s"] + 1.0,  # requests admitted before detection may still end there
        killed_s + DOWN_S,
        DRILL_S,
    )
    assert len(arrivals) == len(tally.outcomes)
    scenario = load_scenario(str(SMALL_SCENARIO))
    sim_ended: list[tuple[float, str, str]] = []
    sim = replay_in_simulator(scenario, arrivals, [Kill.from_history(kill, DOWN_S)], seed=2, ended=sim_ended)
    t_first = min(a.t_s for a in arrivals) - t_start  # the replay's time 0, on this test's clock
    sim_kinds = _outcome_kinds(
        [(t + t_first, zone, status) for t, zone, status in sim_ended], killed_s + 0.5, killed_s + DOWN_S, DRILL_S
    )
    same = ("served_by_down_zone_in_window", "others_served_in_window", "down_zone_serves_after")
    assert (
        {k: sim_kinds[k] for k in same}
        == {k: live_kinds[k] for k in same}
        == {
            "served_by_down_zone_in_window": False,
            "others_served_in_window": True,
            "down_zone_serves_after": True,
        }
    ), (sim_kinds, live_kinds)
    assert sim_kinds["zone_failed_requests"] <= {"frankfurt-1"}  # both fail only what had its first token
    assert live_kinds["zone_failed_requests"] <= {"frankfurt-1"}  # and retry what had none
    live = {**counts, "retries": live_retries}
    expected = expected_live(sim)
    print(f"chaos counts: live {live} · simulated {sim} · expected live {expected}")
    assert sim["in_flight"] == 0, sim
    bounds = count_bounds(1, sim["detection_window_load"])
    assert compare_counts(live, expected, bounds) == dict.fromkeys(COUNTS, True), (live, expected, bounds, sim)


def _outcome_kinds(ended: list[tuple[float, str | None, str]], window_from: float, window_to: float, end: float):
    """What a zone_down of frankfurt-1 did, as kinds: where requests failed, whether the zone served
    anything while down, whether the others did, whether it served again afterwards."""
    completed = [(t, z) for t, z, status in ended if status in ("stop", "length")]
    return {
        "zone_failed_requests": {z for _, z, status in ended if status == "error"},
        "served_by_down_zone_in_window": any(
            z == "frankfurt-1" and window_from <= t <= window_to for t, z in completed
        ),
        "others_served_in_window": any(z != "frankfurt-1" and window_from <= t <= window_to for t, z in completed),
        "down_zone_serves_after": any(z == "frankfurt-1" and window_to + 2.0 <= t <= end + 5.0 for t, z in completed),
    }


# --- the admin API ----------------------------------------------------------------------------


def test_admin_endpoints_do_not_exist_without_a_token(live):
    r = live.client.post("/admin/faults", json={"kind": "zone_down", "zone": "frankfurt-1"})
    assert_openai_error(r, 404)
    assert_openai_error(live.client.post("/admin/recover", json={}), 404)


def test_admin_auth(chaos):
    body = {"kind": "zone_slow", "zone": "frankfurt-2", "factor": 2}
    assert_openai_error(chaos.client.post("/admin/faults", json=body), 401, "invalid_admin_token")
    r = chaos.client.post("/admin/faults", json=body, headers={"Authorization": "Bearer wrong"})
    assert_openai_error(r, 401, "invalid_admin_token")
    r = chaos.client.post("/admin/faults", json=body, headers={"Authorization": TOKEN})  # no scheme
    assert_openai_error(r, 401)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"kind": "zone_down"}, "zone"),
        ({"kind": "zone_down", "zone": "atlantis-1"}, "zone"),
        ({"kind": "zone_slow", "zone": "frankfurt-2"}, "factor"),
        ({"kind": "zone_slow", "zone": "frankfurt-2", "factor": -1}, "factor"),
        ({"kind": "link_delay", "population": "berlin", "region": "frankfurt"}, "add_ms"),
        ({"kind": "partition", "population": "mars", "region": "frankfurt"}, "population"),
        ({"kind": "meteor", "zone": "frankfurt-2"}, "kind"),
        ({"kind": "zone_down", "zone": "frankfurt-2", "duration_s": "soon"}, "duration_s"),
        ({"kind": "zone_down", "zone": "frankfurt-2", "duration_s": 0}, "duration_s"),
        ([1, 2], None),
    ],
)
def test_admin_bad_bodies_are_400(chaos, body, param):
    error = assert_openai_error(chaos.client.post("/admin/faults", json=body, headers=AUTH), 400)
    if param is not None:
        assert error["param"] == param
    r = chaos.client.post("/admin/faults", content=b"{nope", headers={**AUTH, "content-type": "application/json"})
    assert_openai_error(r, 400)
    assert_openai_error(chaos.client.post("/admin/recover", json={"zone": "atlantis"}, headers=AUTH), 400)


def test_zone_slow_link_delay_partition_and_recover(chaos):
    def ask(population: str):
        r = chaos.client.post(
            "/v1/chat/completions",
            json={"model": chaos.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            headers={"X-Grid-Population": population},
        )
        assert r.status_code == 200, r.text
        return r

    r = chaos.client.post("/admin/faults", json={"kind": "zone_slow", "zone": "mexico-1", "factor": 3}, headers=AUTH)
    assert r.status_code == 200
    fault = r.json()["fault"]
    assert fault["kind"] == "zone_slow" and fault["factor"] == 3 and fault["active"]
    wait_until(
        lambda: (
            next(z for z in chaos.client.get("/grid/zones").json()["zones"] if z["zone"] == "mexico-1")["slow_factor"]
            == 3
        ),
        5,
        "the slowdown",
    )
    base_rtt = float(ask("dallas").headers["x-grid-rtt-ms"])
    r = chaos.client.post(
        "/admin/faults",
        json={"kind": "link_delay", "population": "dallas", "region": "mexico", "add_ms": 500, "duration_s": 60},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["fault"]["add_ms"] == 500
    delayed = ask("dallas")
    assert delayed.headers["x-grid-zone"] != "mexico-1" or float(delayed.headers["x-grid-rtt-ms"]) >= base_rtt + 500
    r = chaos.client.post(
        "/admin/faults", json={"kind": "partition", "population": "dallas", "region": "mexico"}, headers=AUTH
    )
    assert r.status_code == 200
    for _ in range(3):
        assert ask("dallas").headers["x-grid-region"] == "frankfurt"  # cut from Mexico: served from Frankfurt
    r = chaos.client.post("/admin/recover", json={}, headers=AUTH)
    assert r.status_code == 200
    assert {"zone_slow", "link_delay", "partition"} <= {f["kind"] for f in r.json()["recovered"]}
    assert not [f for f in _history(chaos) if f["active"]]
    wait_until(
        lambda: (
            next(z for z in chaos.client.get("/grid/zones").json()["zones"] if z["zone"] == "mexico-1")["slow_factor"]
            == 1
        ),
        5,
        "the slowdown to end",
    )
    assert ask("dallas").headers["x-grid-zone"] == "mexico-1"


def test_zone_down_via_admin_then_recover_one_zone(chaos):
    old = _incarnation(chaos, "frankfurt-2")
    r = chaos.client.post("/admin/faults", json={"kind": "zone_down", "zone": "frankfurt-2"}, headers=AUTH)
    assert r.status_code == 200
    fault = r.json()["fault"]
    assert fault["ends_at_s"] is None  # no duration: until recovered
    wait_until(lambda: _incarnation(chaos, "frankfurt-2") not in (None, old), 15, "the restarted actor")
    # While down, berlin is served by frankfurt-1 only.
    time.sleep(0.5)
    for _ in range(5):
        r = chaos.client.post(
            "/v1/chat/completions",
            json={"model": chaos.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert r.status_code == 200 and r.headers["x-grid-zone"] == "frankfurt-1"
    r = chaos.client.post("/admin/recover", json={"zone": "frankfurt-2"}, headers=AUTH)
    assert r.status_code == 200 and [f["zone"] for f in r.json()["recovered"]] == ["frankfurt-2"]
    record = wait_until(
        lambda: next((f for f in _history(chaos) if f["id"] == fault["id"] and f["back_up_at_s"]), None),
        15,
        "frankfurt-2 back up",
    )
    assert record["detection_s"] <= 2.0


def test_grid_fault_cli_against_the_gateway(chaos, monkeypatch, capsys):
    import argparse

    from grid.errors import GridInputError
    from grid.fault_cli import add_fault_parser

    parser = argparse.ArgumentParser(prog="grid")
    add_fault_parser(parser.add_subparsers(dest="command"))
    monkeypatch.delenv("GRID_ADMIN_TOKEN", raising=False)
    args = parser.parse_args(["fault", "zone-slow", "frankfurt-2", "--factor", "2", "--for", "30s", "--url", chaos.url])
    with pytest.raises(GridInputError):
        args.run(args)  # no token in the environment
    monkeypatch.setenv("GRID_ADMIN_TOKEN", TOKEN)
    assert args.run(args) == 0
    assert '"zone_slow"' in capsys.readouterr().out
    args = parser.parse_args(["fault", "link-delay", "berlin", "frankfurt", "--add", "200ms", "--url", chaos.url])
    assert args.add_ms == 200.0 and args.run(args) == 0
    args = parser.parse_args(["fault", "list", "--url", chaos.url])
    assert args.run(args) == 0 and '"active"' in capsys.readouterr().out
    args = parser.parse_args(["fault", "zone-down", "atlantis-1", "--url", chaos.url])
    assert args.run(args) == 1  # the gateway's 400
    args = parser.parse_args(["fault", "recover", "--url", chaos.url])
    assert args.run(args) == 0
    assert not [f for f in _history(chaos) if f["active"]]


def test_metrics_scrapes_answer_while_a_zone_restarts(chaos):
    """Prometheus keeps scraping through a kill and restart: every scrape answers, the zone reads down."""
    zone_up = 'grid_zone_up{region="frankfurt",zone="frankfurt-2"}'
    old = _incarnation(chaos, "frankfurt-2")
    r = chaos.client.post("/admin/faults", json={"kind": "zone_down", "zone": "frankfurt-2"}, headers=AUTH)
    assert r.status_code == 200
    seen_down = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (seen_down and _incarnation(chaos, "frankfurt-2") not in (None, old)):
        scrape = chaos.client.get("/metrics", timeout=5)
        assert scrape.status_code == 200
        seen_down |= f"{zone_up} 0.0" in scrape.text
        time.sleep(0.1)
    assert seen_down, "the killed zone never read down in /metrics"
    r = chaos.client.post("/admin/recover", json={"zone": "frankfurt-2"}, headers=AUTH)
    assert r.status_code == 200
    wait_until(lambda: f"{zone_up} 1.0" in chaos.client.get("/metrics").text, 15, "frankfurt-2 up in /metrics")
