"""`grid demo`'s machinery on a real local Ray and gateway, shortened: 30 s of the demo world with
Frankfurt down from 10 s to 20 s; both clocks' timelines printed every 10 s and the HTML report."""

from __future__ import annotations

import re
import subprocess
import sys

from grid.demo.run import run_demo
from grid.scenario import load_scenario
from grid.sim.replay import read_records
from grid.sim.simulator import Simulation

FAULTS = [{"at_s": 10, "kind": "zone_down", "zone": f"frankfurt-{i}", "duration_s": 10} for i in (1, 2, 3)]


def test_a_short_demo_tells_both_clocks_story(ray_session, tmp_path):
    scenario = load_scenario("demo", {"faults": FAULTS})
    lines: list[str] = []
    html = tmp_path / "demo.html"
    records = tmp_path / "live.csv"
    run = run_demo(
        scenario, None, 30.0, 1.0, scenario.seed, html, 0.05, out=lambda *a: lines.append(" ".join(a)),
        records_path=records,
    )  # fmt: skip
    clocks = [m.group(1) for line in lines if (m := re.match(r"^\s*(?:\d+–\d+)?\s+(sim|live)\s", line))]
    assert clocks == ["sim", "live"] * 3, lines  # a window of each clock every 10 s
    frankfurt = {i for i, z in enumerate(run.live_timeline.world.zone_ids) if z.startswith("frankfurt")}
    for timeline in (run.sim_timeline, run.live_timeline):
        assert timeline.windows[1].down == frankfurt, timeline.windows[1].down
        assert max(timeline.grid_utilization(w) for w in timeline.windows) > 0.2  # zones report load in both
    checks = dict((text.split(":")[0], ok) for text, ok in run.checks)
    assert checks["failover"], run.checks  # no request lost
    assert html.read_text().count("<svg") == 3
    # the live run's records replay in the simulator: every arrival, times on the load's clock
    recorded = read_records(records, len(scenario.populations))
    assert len(recorded.ids) == run.live.client["sent"]
    assert recorded.arrivals.arrival_s[0] >= 0 and recorded.arrivals.arrival_s[-1] <= 31.0
    replayed = Simulation(scenario, None, scenario.seed, 30.0, 1.0, replay=recorded.arrivals).run()
    assert replayed.grid.arrivals == len(recorded.ids)


def test_grid_demo_runs_from_the_command_line(tmp_path):
    """The main job as `make demo` runs it (shortened): exit 0, the timeline, the checks, the report."""
    html = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "grid.cli", "demo", "--duration", "10s", "--html", str(html)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0–10 sim" in done.stdout and "failover:" in done.stdout and f"report: {html}" in done.stdout
    assert html.read_text().count("<svg") == 3
