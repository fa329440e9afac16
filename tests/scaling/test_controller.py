"""The autoscaling controller's rules (grid.scaling.controller), the same in both clocks: bounds,
Ray Serve's upscale/downscale delays, regional pools, containment of a failing policy; and billing."""

from __future__ import annotations

import datetime as dt

import pytest

from grid.routing.view import GridView, ZoneView
from grid.scaling.billing import fleet_cost_usd, replica_hours
from grid.scaling.controller import DOWN, MANUAL, STOCKOUT, UP, ScalingController
from grid.scaling.policies import Autoscaler, TargetUtilization
from grid.scaling.settings import ScalingSettings, ZoneScaling


def settings(**changes) -> ScalingSettings:
    zones = tuple(
        ZoneScaling(1, 10, 2, region=0, capacity_rps_per_replica=10.0, target_qps_per_replica=7.0) for _ in range(2)
    )
    values = dict(
        policy="target_utilization", interval_s=10.0, look_back_s=10.0, upscale_delay_s=30.0, downscale_delay_s=60.0,
        target_ongoing_requests=10.0, target_utilization=0.7, cold_start_s=100.0, spot_share=0.0,
        spot_on_demand_base=0, spot_discount=0.6, spot_notice_s=30.0, zones=zones, pools=(None,),
    )  # fmt: skip
    return ScalingSettings(**(values | changes))


def view(outstanding: list[int]) -> GridView:
    zones = []
    for i, n in enumerate(outstanding):
        zv = ZoneView(i, f"z{i}", "r", 2, 20.0, 0.0, 0.0, 1.0, 0.0)
        zv.outstanding = n
        zones.append(zv)
    return GridView(zones=zones, rtt_s=[[0.01, 0.01]], candidates=[[0, 1]])


def run(controller: ScalingController, loads: list[int], until_s: float, start_s: float = 10.0):
    actions = []
    t = start_s
    while t <= until_s:
        actions += [(t, a) for a in controller.decide(t, view(loads))]
        t += 10.0
    return actions


def test_upscale_waits_for_the_upscale_delay_and_stays_within_max():
    s = settings()
    controller = ScalingController(s, TargetUtilization(s), 1)
    actions = run(controller, [200, 20], until_s=60.0)  # zone 0 wants 20 (max 10); zone 1 wants 2 (has 2)
    assert [(t, a.zone, a.replicas, a.reason) for t, a in actions] == [(40.0, 0, 10, UP)]  # first wished at 10


def test_downscale_waits_longer_and_respects_min():
    s = settings()
    controller = ScalingController(s, TargetUtilization(s), 1)
    actions = run(controller, [0, 0], until_s=80.0)
    assert {(t, a.zone, a.replicas, a.reason) for t, a in actions} == {(70.0, 0, 1, DOWN), (70.0, 1, 1, DOWN)}


def test_a_wish_that_flips_restarts_its_delay():
    s = settings()
    controller = ScalingController(s, TargetUtilization(s), 1)
    assert run(controller, [200, 20], until_s=30.0) == []
    assert run(controller, [20, 20], until_s=40.0, start_s=40.0) == []  # back to what it has: delay reset
    assert run(controller, [200, 20], until_s=70.0, start_s=50.0) == []  # 50 + 30 s not reached yet
    assert [a.reason for _, a in run(controller, [200, 20], until_s=80.0, start_s=80.0)] == [UP]


def test_a_pool_cuts_a_scale_up_and_says_stockout():
    s = settings(pools=(7,), upscale_delay_s=0.0)
    controller = ScalingController(s, TargetUtilization(s), 1)
    (action,) = controller.decide(10.0, view([80, 20]))  # wants 8; the region holds 7, zone 1 has 2
    assert (action.zone, action.replicas, action.reason) == (0, 5, STOCKOUT)
    manual = controller.set_target(1, 9)
    assert (manual.replicas, manual.reason) == (2, STOCKOUT)  # the pool binds a manual target too
    assert controller.set_target(1, 1).reason == MANUAL


class Raises(Autoscaler):
    name = "raises"

    def desired(self, signals, now_s):
        raise RuntimeError("boom")


def test_a_policy_that_raises_is_contained_and_counted():
    s = settings()
    controller = ScalingController(s, Raises(s), 1)
    assert controller.decide(10.0, view([100, 100])) == []
    assert controller.policy_errors == 1 and controller.targets == [2, 2]


def test_split_keeps_a_base_on_demand():
    s = settings(spot_share=0.5, spot_on_demand_base=2)
    assert [s.split(n) for n in (1, 2, 4, 7)] == [(1, 0), (2, 0), (3, 1), (4, 3)]


def test_billing_integrates_the_timeline_at_the_tariff():
    timeline = [(0.0, 2, 0), (3600.0, 1, 2)]
    assert replica_hours(timeline, 7200.0) == (3.0, 2.0)
    start = dt.datetime(2026, 1, 1, 0, tzinfo=dt.UTC)  # 00:00–02:00 UTC: off-peak (×0.70) in UTC
    cost = fleet_cost_usd(timeline, 7200.0, 10.0, "UTC", start, spot_discount=0.5)
    assert cost == pytest.approx((2 + 1 + 2 * 0.5) * 10.0 * 0.70)
    day = fleet_cost_usd([(0.0, 1, 0)], 86400.0, 10.0, "Europe/Paris", start, 0.0)
    assert day == pytest.approx(10.0 * (7 * 0.70 + 12 * 1.0 + 5 * 1.35))  # the tariff's bands over a day


def test_predictive_rounds_up_per_region_not_per_zone():
    from grid.scaling.policies import region_rounded

    # Three zones in region 0 needing 2.3, 1.4 and 0.2 replicas: 4 in all (not 3 + 2 + 1 = 6); the
    # largest remainders take the extra ones. Region 1's zone rounds up alone.
    assert region_rounded([2.3, 1.4, 0.2, 0.1], [0, 0, 0, 1]) == [2, 2, 0, 1]
    assert region_rounded([3.0, 1.0], [0, 0]) == [3, 1]


def test_ongoing_requests_are_the_intervals_mean_from_the_zones_integrals():
    """Ray Serve's semantics: the mean over the interval (∫ in-system dt from the zones), not the count
    the view holds at the decision instant; a zone whose integral restarts (a new actor) counts from 0."""
    s = settings(upscale_delay_s=0.0)
    controller = ScalingController(s, TargetUtilization(s), 1)
    quiet = view([0, 0])  # at the instant of the decision both zones hold nothing …
    (up,) = controller.decide(10.0, quiet, [350.0, 100.0])  # … but zone 0 averaged 35 over the 10 s: 4 replicas
    assert (up.zone, up.replicas, up.reason) == (0, 4, UP)
    signals = controller.signals(20.0, quiet, [400.0, 30.0])  # zone 0: 50 in 10 s; zone 1 restarted: 30 from 0
    assert [sig.ongoing_mean for sig in signals] == pytest.approx([5.0, 3.0])  # look-back: one interval
    fallback = controller.signals(30.0, view([7, 0]), None)  # no integrals: the view's count stands in
    assert fallback[0].ongoing_mean == 7.0
