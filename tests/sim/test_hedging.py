"""Hedged requests in the simulator: bounded extra work, losers cancelled, every request counted once."""

import pytest

from grid.routing.policies import Hedged
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation


@pytest.fixture(scope="module")
def hedged_run():
    scenario = load_scenario(
        "london-degraded", {"faults": [{"at_s": 20, "kind": "zone_down", "zone": "paris-1", "duration_s": 40}]}
    )
    sim = Simulation(scenario, policy="hedged", duration_s=120, seed=4)
    return sim, sim.run()


def test_extra_work_stays_within_the_budget(hedged_run):
    sim, report = hedged_run
    hedges = report.meta["hedges"]
    assert hedges["sent"] > 0
    assert hedges["sent"] <= Hedged.hedge_budget * report.grid.arrivals + 1


def test_every_losing_copy_is_cancelled(hedged_run):
    sim, report = hedged_run
    hedges = report.meta["hedges"]
    # Each copy's race ends once: won or lost (the other copy cancelled), or failed before a token;
    # as live (`grid.dispatch.core.HEDGE_OUTCOMES`). A race still open at the end of the run has none.
    ended = hedges["won"] + hedges["lost"] + hedges["failed"]
    assert ended <= hedges["sent"]
    assert hedges["won"] + hedges["lost"] >= 0.9 * hedges["sent"]
    assert 0 < hedges["won"] < hedges["sent"]
    for zone in sim.zones:  # nothing cancelled lingers in a zone
        assert zone.in_system >= 0 and zone.queued >= 0


def test_each_request_is_counted_once(hedged_run):
    _, report = hedged_run
    g = report.grid
    assert g.arrivals == g.completed + g.rejected + g.failed + report.totals["in_flight"]
    assert g.failed > 0  # the outage failed requests whose copies had nowhere else to go


def test_hedging_is_deterministic():
    scenario = load_scenario("london-degraded")
    a = Simulation(scenario, policy="hedged", duration_s=30, seed=2).run().to_dict()
    b = Simulation(scenario, policy="hedged", duration_s=30, seed=2).run().to_dict()
    assert a["meta"]["hedges"]["won"] > 0 and a["meta"]["hedges"]["lost"] > 0  # races of both outcomes (~600 copies)
    assert a == b
