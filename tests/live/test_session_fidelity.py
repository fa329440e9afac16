"""Live vs simulated on sessions (issue 15): the same turns, 25 s, real Ray + HTTP.

The load generator replays the simulator's session draw as token-id prompts whose 16-token blocks
share exactly as the turns' prefix hashes do (grid.live.loadgen), and the gateway's own block hashing
finds that sharing. The cache model is checked request by request: a turn served by the same zone in
both clocks hits exactly the same cached tokens, unless an earlier turn of its session went elsewhere
in one clock (89–96% of them exact in runs so far). The run's hit rate also moves with placement:
`prefix_aware` breaks ties between zones by load, which shifts with timing live (a third to 60% of
the turns land elsewhere), and in 25 s (~130 turns) those move it by up to ≈3.3 points (a CI run,
2026-12-02). The issue's 2 points is measured on the 60 s runs of benchmarks/session_fidelity.py.
Placement, hits and latency follow wall-clock timing: a run that misses one of them is measured once
more (`meets_timing_targets`); arrivals and losses are rules, asserted in every run.
"""

from __future__ import annotations

from grid.live.agreement import describe_split, simulate_logged, split_by_zone
from grid.live.experiment import FIDELITY_TARGETS, arrival_schedule, hit_rate_row, run_live
from grid.scenario import load_scenario

from .conftest import HERE, meets_timing_targets

SAME_ZONE_EXACT_SHARE = 0.75  # the cache model: same zone and earlier turns → the same hits (89–96% seen)
SAME_ZONE_REQUESTS = 20  # enough turns routed alike to judge the cache model by (49–85 of ~127 seen)
SHORT_RUN_HIT_RATE_POINTS = 5.0  # the whole run, placement included


def test_live_sessions_hit_the_cache_as_simulated(ray_session):
    scenario = load_scenario(str(HERE / "sessions.yaml"))
    duration_s, seed = 25.0, scenario.seed
    sim, sim_log, zone_ids = simulate_logged(scenario, None, duration_s, 1.0, seed)
    prompts = arrival_schedule(scenario, duration_s, 1.0, seed).prompt_tokens
    sim_hit = sim.grid.extra["prefix_cache_hit_rate"]
    assert sim_hit > 0.5  # sessions reuse most of each prompt

    def run_once() -> list[str]:
        live = run_live(scenario, None, duration_s, 1.0, seed, drain_s=10.0, log=lambda *a, **k: None)
        assert live.report.grid.arrivals == sim.grid.arrivals > 100  # rules: in every run
        assert live.report.grid.rejected == live.report.grid.failed == 0
        assert live.report.totals["utilization"] <= 0.6
        # Placement and latency follow wall-clock timing: a miss is measured again.
        groups = split_by_zone(live.client, sim_log, zone_ids, prompts)
        same, why = groups[True], describe_split(groups)
        _, live_hit, _, diff = hit_rate_row(live.report, sim)
        live_p50, sim_p50 = live.report.grid.ttft_s["p50"], sim.grid.ttft_s["p50"]
        checks = {
            f"turns served by the same zone: {same.requests} < {SAME_ZONE_REQUESTS}": same.requests
            >= SAME_ZONE_REQUESTS,
            f"exact cache hits among them: {same.exact} < {SAME_ZONE_EXACT_SHARE:.0%} of them": same.exact
            >= SAME_ZONE_EXACT_SHARE * same.requests,
            f"hit rate live {live_hit:.1%} vs sim {sim_hit:.1%}": abs(diff) <= SHORT_RUN_HIT_RATE_POINTS / 100,
            f"TTFT p50 live {live_p50 * 1000:.0f} ms vs sim {sim_p50 * 1000:.0f} ms": abs(live_p50 / sim_p50 - 1.0)
            <= FIDELITY_TARGETS["p50"],
        }
        misses = [what for what, ok in checks.items() if not ok]
        return [*misses, why] if misses else []

    meets_timing_targets(run_once)
