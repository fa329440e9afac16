"""Autoscaling in the simulator, through `grid sim`: a flash crowd scaled for, spot preemption with
nothing lost, bad configurations refused with their field path, a failing user policy contained."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import grid

FAST = ["--set", "autoscaling.cold_start.provision_s=5", "--set", "autoscaling.cold_start.engine_init_s=5",
        "--set", "autoscaling.upscale_delay_s=0", "--set", "autoscaling.interval_s=5"]  # fmt: skip


def sim_json(*args: str) -> dict:
    out = grid("sim", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_reactive_autoscaler_adds_replicas_where_the_crowd_lands_and_bills_them():
    args = ["--scenario", "flash-crowd", "--duration", "4m", *FAST]
    static = sim_json(*args)
    scaled = sim_json(*args, "--autoscaler", "qps")
    assert "scaling" not in static["meta"]
    events = scaled["meta"]["scaling"]["events"]
    ups = [e for e in events if e["reason"] == "up" and e["zone"] == "thailand-1"]
    before = max((e["replicas"] for e in ups if e["t_s"] < 120.0), default=6)
    during = [e for e in ups if e["t_s"] >= 120.0]  # the crowd starts at 2 min
    assert during and during[-1]["replicas"] > before + 1
    thailand = {z["name"]: z for z in scaled["zones"]}["thailand-1"]
    assert thailand["replica_hours"] > 6 * 4 / 60  # more than its static 6 replicas for 4 minutes
    for key in ("cost_usd", "replica_hours", "spot_replica_hours"):
        assert scaled["grid"][key] > 0 or key == "spot_replica_hours"
    assert static["grid"]["replica_hours"] == pytest.approx(58 * 4 / 60)


def test_preempted_spot_replicas_are_replaced_and_no_request_is_lost(tmp_path):
    scenario = tmp_path / "spot.yaml"
    scenario.write_text(
        "base: default\nduration_s: 3m\n"
        "autoscaling: {spot: {share: 1.0, notice_s: 20}, cold_start: {provision_s: 10, engine_init_s: 5},"
        " interval_s: 5, downscale_delay_s: 1h}\n"
        "faults: [{at_s: 60, kind: spot_preempt, zone: london-1, replicas: 3}]\n"
    )
    report = sim_json("--scenario", str(scenario), "--rate-scale", "0.5", "--autoscaler", "target_utilization")
    events = report["meta"]["scaling"]["events"]
    reasons = [(e["zone"], e["reason"]) for e in events]
    assert ("london-1", "preempted") in reasons and ("london-1", "replace") in reasons
    assert report["grid"]["failed"] == 0 and report["grid"]["rejected"] == 0
    assert report["grid"]["spot_replica_hours"] > 0


def test_bad_autoscaling_configs_name_their_field_and_exit_2():
    cases = {
        ("autoscaling.min_replicas=5", "autoscaling.max_replicas=2"): "min_replicas (5) > max_replicas (2)",
        ("autoscaling.downscale_delay_s=-1",): "autoscaling.downscale_delay_s",
        ("autoscaling.pools.paris=1",): "autoscaling.pools.paris: pool of 1 replicas is smaller than its zones' floor",
        ("autoscaling.zones.paris-1.min_replicas=4", "autoscaling.zones.paris-1.max_replicas=3"): "zones.paris-1",
        ("autoscaling.zones.atlantis.min_replicas=1",): "autoscaling.zones.atlantis: unknown zone",
    }  # fmt: skip
    for sets, message in cases.items():
        out = grid("sim", "--duration", "5s", *[arg for s in sets for arg in ("--set", s)])
        assert out.returncode == 2, (sets, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = grid("sim", "--duration", "5s", "--autoscaler", "nosuch")
    assert out.returncode == 2 and "unknown autoscaler 'nosuch'" in out.stderr


def test_a_user_policy_that_raises_is_contained_and_reported():
    report = sim_json(
        "--duration", "30s", "--rate-scale", "0.1", "--autoscaler", "tests.scaling.user_autoscaler:Raises"
    )
    scaling = report["meta"]["scaling"]
    assert scaling["autoscaler"] == "raises" and scaling["policy_errors"] == 2  # decisions at 10 s and 20 s
    assert report["grid"]["completed"] > 0 and report["grid"]["failed"] == 0


def test_a_user_policy_is_bounded_by_max_replicas():
    user = "tests.scaling.user_autoscaler:Double"
    report = sim_json(
        "--duration", "40s", "--rate-scale", "0.1", "--autoscaler", user, "--set", "autoscaling.max_replicas=8", *FAST
    )
    targets = {e["zone"]: e["replicas"] for e in report["meta"]["scaling"]["events"]}
    assert targets["paris-1"] == 8  # 12 wished, 8 allowed
    assert "frankfurt-1" not in targets  # 16 wished; it has 8 already, the bound
