"""Live vs simulated on sessions (issue 15): the same turns, 25 s, real Ray + HTTP.

The load generator replays the simulator's session draw as token-id prompts whose 16-token blocks
share exactly as the turns' prefix hashes do (grid.live.loadgen), and the gateway's own block hashing
finds that sharing. Targets: cache hit rate within 3 points of the simulator's, TTFT p50 within 10%.
The issue's 2 points hold on the 60 s runs of benchmarks/session_fidelity.py (RESULTS.md); in 25 s a
few turns that `prefix_aware` places differently live (timing) move the rate by up to ≈3 points.
"""

from __future__ import annotations

from grid.live.experiment import FIDELITY_TARGETS, hit_rate_row, run_live, run_simulated
from grid.scenario import load_scenario

from .conftest import HERE

SHORT_RUN_HIT_RATE_POINTS = 3.0


def test_live_sessions_hit_the_cache_as_simulated(ray_session):
    scenario = load_scenario(str(HERE / "sessions.yaml"))
    duration_s, seed = 25.0, scenario.seed
    live = run_live(scenario, None, duration_s, 1.0, seed, drain_s=10.0, log=lambda *a, **k: None)
    sim = run_simulated(scenario, None, duration_s, 1.0, seed)
    assert live.report.grid.arrivals == sim.grid.arrivals > 100
    assert live.report.grid.rejected == live.report.grid.failed == 0
    assert live.report.totals["utilization"] <= 0.6
    _, live_hit, sim_hit, diff = hit_rate_row(live.report, sim)
    assert sim_hit > 0.5  # sessions reuse most of each prompt
    assert abs(diff) <= SHORT_RUN_HIT_RATE_POINTS / 100, (live_hit, sim_hit)
    live_p50, sim_p50 = live.report.grid.ttft_s["p50"], sim.grid.ttft_s["p50"]
    assert abs(live_p50 / sim_p50 - 1.0) <= FIDELITY_TARGETS["p50"], (live_p50, sim_p50)
