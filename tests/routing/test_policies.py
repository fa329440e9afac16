"""Routing policies on hand-built GridViews (fakes of our own interface), the tariff, the registry,
and user policies through `grid sim` (subprocess, the real CLI)."""

from __future__ import annotations

import datetime as dt
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from grid.errors import GridInputError
from grid.routing import policies
from grid.routing.registry import POLICIES, make_policy, policy_class, policy_summary
from grid.routing.tariff import local_hour, price_usd_per_gpu_hour, tariff_factor
from grid.routing.view import GridView, ZoneView
from grid.serving.request import Request

ROOT = Path(__file__).resolve().parents[2]


def zone(i, region, *, price=10.0, carbon=300.0, tz="UTC", utilization=0.1, waiting=0, replicas=4, cap=60.0):
    z = ZoneView(i, f"{region}-{i}", region, replicas, cap, 0.00005, 0.05, price, carbon, tz=tz)
    z.utilization = utilization
    z.waiting = waiting
    z.outstanding = waiting
    return z


def view(zones, rtt_ms, now_s=0.0, start_utc=None, slo_ttft_s=1.0) -> GridView:
    v = GridView(zones=zones, rtt_s=[[ms / 1000 for ms in rtt_ms]], candidates=[], now_s=now_s)
    v.start_utc, v.slo_ttft_s = start_utc, slo_ttft_s
    v.refresh_candidates()
    return v


def req(prompt=500) -> Request:
    return Request(0, 0, prompt, 100, 0.0)


def test_new_policies_are_registered_and_documented():
    for name in ("slo_spillover", "cost_aware", "carbon_aware"):
        assert name in POLICIES
        assert policy_summary(POLICIES[name])  # the docstring (read from the source when compiled)


def test_unknown_policy_lists_the_valid_ones():
    with pytest.raises(GridInputError) as err:
        policy_class("latency_awar")
    for name in POLICIES:
        assert name in str(err.value)


def test_slo_spillover_stays_near_until_the_slo_is_at_risk():
    near, far = zone(0, "paris"), zone(1, "mexico")
    v = view([near, far], [5, 140])
    p = make_policy("slo_spillover", 0)
    assert p.choose(req(), v.candidates[0], v) == 0
    near.waiting = 60 * 2  # a 2-second backlog at 60 req/s: predicted TTFT well over 0.6 s
    assert p.choose(req(), v.candidates[0], v) == 1
    far.waiting = 60 * 3  # neither meets it: latency_aware's choice (the smaller predicted TTFT)
    assert p.choose(req(), v.candidates[0], v) == 0


def test_slo_spillover_prefers_nearer_over_lower_predicted_ttft():
    # latency_aware would move for a 20 ms gain; spillover stays home while home meets the SLO.
    home, other = zone(0, "london", waiting=20), zone(1, "paris")
    v = view([home, other], [2, 9])
    assert make_policy("latency_aware", 0).choose(req(), v.candidates[0], v) == 1
    assert make_policy("slo_spillover", 0).choose(req(), v.candidates[0], v) == 0


def test_cost_aware_follows_the_tariff_within_the_slo():
    # 18:00 UTC: Berlin is at its evening peak (×1.35), Mexico City at noon (×1.0).
    start = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)
    eu = zone(0, "frankfurt", price=10.0, tz="Europe/Berlin")
    mx = zone(1, "mexico", price=12.0, tz="America/Mexico_City")
    v = view([eu, mx], [20, 100], start_utc=start)
    p = make_policy("cost_aware", 0)
    assert p.choose(req(), v.candidates[0], v) == 1  # 13.50 in Frankfurt vs 12.00 in Mexico
    v.now_s = 6 * 3600  # 00:00 UTC: Berlin 01:00 off-peak (7.00), Mexico 18:00 peak (16.20)
    assert p.choose(req(), v.candidates[0], v) == 0
    v.now_s = 0.0
    v.rtt_s = [[0.020, 0.700]]  # Mexico too far for the SLO target: pay the peak price
    assert p.choose(req(), v.candidates[0], v) == 0


def test_carbon_aware_picks_the_cleanest_zone_meeting_the_slo():
    de, fr, th = zone(0, "frankfurt", carbon=381), zone(1, "paris", carbon=56), zone(2, "thailand", carbon=479)
    v = view([de, fr, th], [14, 24, 200])
    p = make_policy("carbon_aware", 0)
    assert p.choose(req(), v.candidates[0], v) == 1
    fr.utilization = 0.9  # no headroom: the next cleanest that meets the SLO
    assert p.choose(req(), v.candidates[0], v) == 0


def test_slo_target_defaults_when_the_driver_gives_none():
    v = view([zone(0, "a"), zone(1, "b", carbon=10)], [5, 50], slo_ttft_s=None)
    assert make_policy("carbon_aware", 0).choose(req(), v.candidates[0], v) == 1


def test_existing_policies_unchanged_on_a_simple_view():
    v = view([zone(0, "a", waiting=5), zone(1, "b")], [5, 50])
    v.zones[0].outstanding = 5
    assert make_policy("nearest", 0).choose(req(), v.candidates[0], v) == 0
    assert make_policy("least_outstanding", 0).choose(req(), v.candidates[0], v) == 1
    rr = policies.RoundRobin(random.Random(0))
    assert [rr.choose(req(), v.candidates[0], v) for _ in range(3)] == [0, 1, 0]


def test_tariff_shape_and_local_hour():
    assert tariff_factor(3) == 0.70 and tariff_factor(12) == 1.0 and tariff_factor(19) == 1.35
    assert tariff_factor(23.5) == 1.0 and tariff_factor(24 + 19) == 1.35
    mean = sum(tariff_factor(h + 0.5) for h in range(24)) / 24
    assert mean == pytest.approx(0.985, abs=0.001)
    assert price_usd_per_gpu_hour(10.0, 19) == pytest.approx(13.5)
    winter = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
    summer = dt.datetime(2026, 7, 15, 12, 0, tzinfo=dt.UTC)
    assert local_hour(winter, 0, "Europe/Berlin") == pytest.approx(13.0)
    assert local_hour(summer, 0, "Europe/Berlin") == pytest.approx(14.0)  # DST
    assert local_hour(winter, 1800, "Asia/Bangkok") == pytest.approx(19.5)


def _grid(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "grid.cli", "sim", "--duration", "5s", "--rate-scale", "0.1", "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_user_policy_runs_in_grid_sim():
    out = _grid("--policy", "tests.routing.user_policy:FarthestFirst", "--json")
    assert out.returncode == 0, out.stderr
    assert '"policy": "farthest_first"' in out.stdout


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("tests.routing.user_policy:Raising", "boom from a user policy"),
        ("tests.routing.user_policy:BadIndex", "a zone index must be an int"),
        ("tests.routing.user_policy:Missing", "has no class 'Missing'"),
        ("no_such_policy", "known: nearest"),
    ],
)
def test_bad_policies_are_reported_by_grid_sim(spec, needle):
    out = _grid("--policy", spec)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert needle in out.stderr
    assert f"policy {spec!r}" in out.stderr or f"unknown policy {spec!r}" in out.stderr  # names the policy


def test_latency_aware_counts_its_own_sends_between_stale_reports():
    """Between two reports the router must not herd: its own sends raise a zone's estimated load."""
    near, far = zone(0, "a", utilization=0.0, cap=10.0), zone(1, "b", utilization=0.0, cap=10.0)
    v = view([near, far], [10.0, 60.0])
    policy = policies.LatencyAware()
    picks = []
    for _ in range(20):
        choice = policy.choose(req(), v.candidates[0], v)
        v.zones[choice].sent_since_report += 1  # what the driver does after each decision
        picks.append(choice)
    assert picks[0] == 0  # the nearer zone first
    assert abs(picks.count(0) - picks.count(1)) <= 2  # then each send's backlog spreads the load: no herd


def test_estimated_utilization_decays_with_report_age():
    z = zone(0, "a", utilization=0.8)
    v = view([z], [10.0], now_s=1.0)
    assert policies.estimated_utilization(v, 0) == pytest.approx(0.8 * math.exp(-1.0))


def test_a_slowed_zone_reports_more_utilization_for_the_same_work():
    from grid.scenario import load_scenario
    from grid.serving.zone import Zone

    profile = load_scenario().gpus["h100"]
    normal, slow = Zone(profile, 2, 100), Zone(profile, 2, 100)
    slow.set_slow_factor(4.0, 0.0)
    for i in range(10):
        normal.admit(Request(i, 0, 500, 100, 0.0), 0.0)
        slow.admit(Request(i, 0, 500, 100, 0.0), 0.0)
    assert slow.utilization(0.0) == pytest.approx(4 * normal.utilization(0.0))


def test_latency_aware_skips_only_zones_that_cannot_win():
    """Candidates come nearest first and a prediction is at least RTT + the grid's lowest no-load floor, so
    `choose` stops at the first zone whose bound cannot beat the best by 1 ms. The same decisions as
    without the bound (a floor of −inf never stops) on random views: mixed GPUs, loads, staleness, RTTs,
    half of them lightly loaded with RTTs close together, where a farther zone often wins by a little
    (a bound 0.5 ms too high changes decisions here)."""
    rng = random.Random(5)
    out_of_reach = 0
    for trial in range(3000):
        light = trial % 2 == 0
        n = rng.randint(2, 12)
        gpus = [(rng.choice((2e-5, 5e-5, 1e-4)), rng.choice((0.02, 0.05, 0.08))) for _ in range(n)]
        zones = [
            ZoneView(i, f"z-{i}", "r", rng.randint(1, 8), rng.uniform(5, 80), *gpus[i], 2.0, 300.0) for i in range(n)
        ]
        for z in zones:
            z.utilization = rng.uniform(0, 0.3) if light else rng.choice((0.1, 0.5, 0.7, 0.9, 1.2))
            z.waiting, z.sent_since_report = (0, 0) if light else (rng.randint(0, 30), rng.randint(0, 5))
            z.report_s = rng.uniform(0, 9)
        rtt_ms = [
            rng.uniform(0, 40) if light else rng.choice((1, 5, 10, 30, 80, 150, 250)) + rng.random() for _ in zones
        ]
        v = view(zones, rtt_ms, now_s=10.0)
        request = req(prompt=rng.choice((50, 500, 3000)))
        policy = make_policy("latency_aware", trial)
        chosen = policy.choose(request, v.candidates[0], v)
        floor_s = v.floor_base_s + request.prompt_tokens * v.floor_per_token_s
        best_s = min(policies.predicted_ttft_s(request, v, z, 5.0) for z in v.candidates[0])
        out_of_reach += v.rtt_s[0][v.candidates[0][-1]] + floor_s >= best_s  # the farthest zone's bound
        v.floor_base_s = -math.inf
        assert chosen == policy.choose(request, v.candidates[0], v), trial
    assert out_of_reach > 800, out_of_reach  # views where the bound can cut are among them
