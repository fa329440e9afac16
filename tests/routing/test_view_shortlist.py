"""The view's candidate shortlist (issue 18): each population's nearest k zones plus spill picks with
headroom, so a decision costs O(k); with k covering every zone, decisions are exactly as without."""

from __future__ import annotations

import math

from grid.routing.view import GridView, ZoneView
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation


def zone(i: int, utilization: float = 0.1) -> ZoneView:
    z = ZoneView(i, f"z-{i}", f"r{i}", 2, 30.0, 0.00005, 0.05, 10.0, 300.0)
    z.utilization = utilization
    return z


def view(rtt_ms: list[float], shortlist: int, spill: int, utilization: dict[int, float] | None = None) -> GridView:
    zones = [zone(i, (utilization or {}).get(i, 0.1)) for i in range(len(rtt_ms))]
    v = GridView(zones, [[ms / 1000 for ms in rtt_ms]], [], shortlist_zones=shortlist, spill_zones=spill)
    v.refresh_candidates()
    return v


def test_a_shortlist_covering_every_zone_changes_nothing():
    v = view([30, 10, 20, 40], shortlist=4, spill=2)
    assert v.candidates == v.reachable == [[1, 2, 0, 3]]
    assert v.spill_due_s == math.inf  # nothing to refresh


def test_the_nearest_k_and_the_nearest_others_with_headroom_nearest_first():
    rtt = [50, 10, 20, 30, 40, 60]
    v = view(rtt, shortlist=2, spill=2, utilization={3: 0.9})  # zone 3 (30 ms) is busy: skipped for spill
    assert v.candidates == [[1, 2, 4, 0]]
    assert v.spill_due_s == 1.0


def test_spill_picks_follow_load_at_their_refresh():
    v = view([50, 10, 20, 30, 40], shortlist=2, spill=1)
    assert v.candidates == [[1, 2, 3]]
    v.zones[3].utilization = 0.95
    assert v.candidates == [[1, 2, 3]]  # until the refresh
    v.refresh_spill(1.0)
    assert v.candidates == [[1, 2, 4]] and v.spill_due_s == 2.0


def test_when_every_other_zone_is_busy_the_nearest_busy_ones_spill():
    v = view([50, 10, 20, 30, 40], shortlist=2, spill=1, utilization={0: 0.9, 3: 0.9, 4: 0.9})
    assert v.candidates == [[1, 2, 3]]


def test_a_down_zone_leaves_the_shortlist_and_the_next_nearest_joins():
    v = view([50, 10, 20, 30, 40], shortlist=2, spill=1)
    v.zones[1].up = False
    v.refresh_candidates()
    assert v.candidates == [[2, 3, 4]]


def test_the_default_world_routes_the_same_with_and_without_the_shortlist():
    """candidate_zones 12 (the default) covers the default world's 9 zones: every decision, hence the
    whole report, is what routing over all zones gives; a shortlist of 3 + 1 changes them."""
    reports = {}
    for k, spill in ((12, 4), (0, 0), (3, 1)):
        scenario = load_scenario("default", {"routing.candidate_zones": k, "routing.spill_zones": spill})
        reports[k] = Simulation(scenario, None, 0, 60.0, 1.0).run().to_dict()
    assert reports[12] == reports[0]
    assert reports[3]["grid"] != reports[0]["grid"]
