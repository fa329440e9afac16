"""Elastic zones on the real live grid (Ray zone actors, uvicorn on 127.0.0.1): a target set by hand
through the admin API warms replicas up for the cold start and then serves (seen in `/metrics`),
`grid scale` refuses bad input with exit 2, and a spot preemption fails only what its replicas
still hold when the notice ends — requests without a first token are retried on another zone, none
is lost, and the zone is not ejected for it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from grid.cli import main as grid_main
from grid.live.gateway import GatewaySettings
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve, wait_until
from .test_gateway_e2e import assert_openai_error

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COLD_START_S = 2.0  # provisioning 1 s + engine start 1 s (no weights to load)
ZONE = "mexico-1"  # one replica, on demand; Dallas's nearest zone


@pytest.fixture(scope="module")
def elastic(ray_session):
    scenario = load_scenario(
        str(SMALL_SCENARIO),
        {
            "routing.policy": "nearest",  # Dallas → mexico-1 while it is up: the preempted zone is known
            "autoscaling.cold_start.provision_s": 1,
            "autoscaling.cold_start.weights_gb": 0,
            "autoscaling.cold_start.engine_init_s": 1,
            "autoscaling.spot.share": 1.0,  # above one on-demand replica per zone, every replica is spot
            "autoscaling.spot.on_demand_base": 1,
            "autoscaling.spot.notice_s": 0.5,
        },
    )
    settings = GatewaySettings(admin_token=TOKEN, request_timeout_s=30.0)  # autoscaler: static (manual only)
    with serve(scenario, settings) as grid:
        yield grid


def metric(grid, name: str, **labels: str) -> float:
    text = grid.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def replicas(grid, zone: str = ZONE) -> tuple[float, float, float]:
    return tuple(metric(grid, "grid_zone_replicas", zone=zone, state=s) for s in ("serving", "warming", "draining"))


def scale_to(grid, replicas_: int, zone: str = ZONE) -> dict:
    r = grid.client.post(f"/admin/zones/{zone}/replicas", json={"replicas": replicas_}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def complete(grid, population: str, prompt_tokens: int = 40, max_tokens: int = 8) -> httpx.Response:
    body = {"model": grid.model, "prompt": [7] * prompt_tokens, "max_tokens": max_tokens, "ignore_eos": True}
    return httpx.post(f"{grid.url}/v1/completions", json=body, headers={"x-grid-population": population}, timeout=60)


def test_admin_scale_up_warms_then_serves(elastic):
    assert replicas(elastic) == (1, 0, 0)
    asked = time.monotonic()
    body = scale_to(elastic, 3)
    assert body == {"zone": ZONE, "replicas": 3, "on_demand": 1, "spot": 2, "reason": "manual"}
    # the next load report (every 0.1 s) carries the warming replicas into the view and /metrics
    wait_until(lambda: replicas(elastic) == (1, 2, 0), 2.0, "two replicas warming up")
    assert metric(elastic, "grid_scaling_events_total", zone=ZONE, reason="manual") == 1
    # paid for from the moment they are asked for: 1 on demand + 2 spot at 40% of the price
    factor = metric(elastic, "grid_zone_cost_usd_per_hour", zone=ZONE) / (1.8 * 2.2)  # $2.2/GPU-h in Mexico
    assert min(abs(factor - f) for f in (0.7, 1.0, 1.35)) < 1e-9, factor  # the time-of-use tariff's bands
    wait_until(lambda: replicas(elastic) == (3, 0, 0), COLD_START_S + 3.0, "the replicas serving")
    assert time.monotonic() - asked >= COLD_START_S - 0.05, "served before the cold start was over"
    zones = {z["zone"]: z for z in elastic.client.get("/grid/zones").json()["zones"]}
    assert (zones[ZONE]["replicas"], zones[ZONE]["warming"], zones[ZONE]["target"]) == (3, 0, 3)
    answers = [complete(elastic, "dallas") for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.headers["x-grid-zone"] for a in answers} == {ZONE}


def test_admin_replicas_refuses_bad_input(elastic):
    client = elastic.client
    assert_openai_error(client.post("/admin/zones/nowhere-1/replicas", json={"replicas": 2}, headers=AUTH), 404)
    for bad in ({"replicas": -1}, {"replicas": "2"}, {"replicas": 2.5}, {}, {"replicas": 2, "extra": 1}):
        assert_openai_error(client.post(f"/admin/zones/{ZONE}/replicas", json=bad, headers=AUTH), 400)
    assert_openai_error(client.post(f"/admin/zones/{ZONE}/replicas", content=b"{", headers=AUTH), 400)
    assert_openai_error(client.post(f"/admin/zones/{ZONE}/replicas", json={"replicas": 2}), 401)


def test_grid_scale_cli(elastic, monkeypatch, capsys):
    monkeypatch.delenv("GRID_ADMIN_TOKEN", raising=False)
    assert grid_main(["scale", ZONE, "3", "--url", elastic.url]) == 2  # no token
    monkeypatch.setenv("GRID_ADMIN_TOKEN", TOKEN)
    for bad in (["scale", ZONE, "-1"], ["scale", ZONE, "three"], ["scale", ZONE]):
        with pytest.raises(SystemExit) as exit_:
            grid_main([*bad, "--url", elastic.url])
        assert exit_.value.code == 2
    capsys.readouterr()
    assert grid_main(["scale", "nowhere-1", "2", "--url", elastic.url]) == 2
    assert "Unknown zone 'nowhere-1'" in capsys.readouterr().err
    assert grid_main(["scale", ZONE, "3", "--url", elastic.url]) == 0
    assert '"reason": "manual"' in capsys.readouterr().out


def test_spot_preemption_retries_what_had_no_first_token(elastic):
    scale_to(elastic, 3)
    wait_until(lambda: replicas(elastic) == (3, 0, 0), COLD_START_S + 3.0, "three replicas serving")
    gateway = elastic.grid.gateway
    zi = gateway.world.zone_ids.index(ZONE)
    retries_before = metric(elastic, "grid_retries_total", zone=ZONE, reason="error")
    # A slowed zone: each prefill step takes about a second, so requests on the spot replicas have no
    # first token yet when the notice (0.5 s) ends.
    slow = {"kind": "zone_slow", "zone": ZONE, "factor": 60, "duration_s": 20}
    assert elastic.client.post("/admin/faults", json=slow, headers=AUTH).status_code == 200
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(complete, elastic, "dallas", 300, 4) for _ in range(12)]
        wait_until(lambda: gateway.view.zones[zi].outstanding >= 12, 5.0, "the requests on the zone")
        preempt = {"kind": "spot_preempt", "zone": ZONE, "replicas": 2}
        r = elastic.client.post("/admin/faults", json=preempt, headers=AUTH)
        assert r.status_code == 200, r.text
        answers = [f.result() for f in futures]
    elastic.client.post("/admin/recover", json={"zone": ZONE}, headers=AUTH)
    assert [a.status_code for a in answers] == [200] * 12, [a.text[:200] for a in answers]  # none lost
    retried = [a for a in answers if int(a.headers["x-grid-attempts"]) >= 2]
    assert retried, "no request was cut off by the preemption"
    assert all(a.headers["x-grid-zone"] != ZONE for a in retried)
    assert metric(elastic, "grid_retries_total", zone=ZONE, reason="error") - retries_before == len(retried)
    history = elastic.client.get("/admin/faults", headers=AUTH).json()["history"]
    assert next(f for f in history if f["kind"] == "spot_preempt")["taken"] == 2
    assert metric(elastic, "grid_scaling_events_total", zone=ZONE, reason="preempted") == 1
    wait_until(lambda: replicas(elastic) == (1, 0, 0), 3.0, "the preempted replicas released")
    assert gateway.health[zi].eligible, "a preemption must not eject the zone"
