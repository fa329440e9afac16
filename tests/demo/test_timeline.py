"""The demo's timeline (a sink both clocks fill) and its HTML report, on the simulator."""

from __future__ import annotations

import math

import pytest

from grid.demo.html_report import fault_windows, render
from grid.demo.land_outline import land_rings
from grid.demo.timeline import Timeline
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation
from grid.world import build_world


@pytest.fixture(scope="module")
def demo_run():
    scenario = load_scenario("demo")
    timeline = Timeline(build_world(scenario))
    report = Simulation(scenario, None, scenario.seed, scenario.duration_s, 1.0, sinks=[timeline]).run()
    return scenario, timeline, report


def test_the_windows_add_up_to_the_report(demo_run):
    scenario, timeline, report = demo_run
    assert len(timeline.windows) == math.ceil(scenario.duration_s / timeline.window_s)
    assert sum(w.arrivals for w in timeline.windows) == report.grid.arrivals
    assert sum(w.completed for w in timeline.windows) == report.grid.completed == int(timeline.flows.sum())
    assert sum(w.failed for w in timeline.windows) == report.grid.failed
    spilled = sum(w.spilled for w in timeline.windows)
    assert spilled / report.grid.completed == pytest.approx(report.totals["cross_region_share"], abs=1e-9)


def test_the_demo_world_shows_what_the_demo_is_for(demo_run):
    """Sized so the evening's peak fills the fleet (≥ 50% in some window), with spill, and Frankfurt's
    three zones down from 60 s to 100 s, as the windows say."""
    scenario, timeline, _ = demo_run
    peak = max(timeline.grid_utilization(w) for w in timeline.windows)
    assert 0.5 <= peak <= 0.9
    frankfurt = {i for i, z in enumerate(timeline.world.zone_ids) if z.startswith("frankfurt")}
    for w in timeline.windows:
        assert (w.down == frankfurt) == (60 <= w.start_s < 100), (w.start_s, w.down)
    assert all(w.spilled > 0 for w in timeline.windows)
    assert fault_windows(scenario) == [(60.0, 100.0, "frankfurt-1, frankfurt-2, frankfurt-3 down")]


def test_the_html_report_is_self_contained(demo_run):
    scenario, timeline, _ = demo_run
    page = render(scenario, scenario.duration_s, timeline, timeline, ["✓ a check"], "the table")
    assert page.count("<svg") == 3 and "frankfurt-1, frankfurt-2, frankfurt-3 down" in page
    assert page.count("<polygon") >= len(land_rings()) - 5 > 100  # Natural Earth's land (Antarctica left out)
    assert "http" not in page.replace("http://www.w3.org", "")  # nothing to fetch
    assert "✓ a check" in page and "the table" in page
