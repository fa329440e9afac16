"""Live vs simulated on the fidelity scenario (≈52% utilization): same arrivals, 40 s, real Ray + HTTP.

Targets (issue 3): p50 TTFT and E2E within 10% of the simulator, p99 within 20%; the client (the load
generator's own timings) within 10 ms or 5% of the gateway's measure (issue 14). The full 60 s run
and its figures are in benchmarks/live_fidelity.py and benchmarks/RESULTS.md.

A run that misses a timing target is measured once more (`meets_timing_targets`), and the test fails
only if that run misses too. The p99 of 40 s rests on its 4 slowest requests, the longest prompts,
whose TTFT is mostly the live zone's prefill steps in wall-clock time: on a quiet machine live is
within +3–10% of the simulator (the same requests are slowest in both), but a busy shared machine
delays the zone actors' steps and one CI run measured +23%. A rule that differs between the clocks
misses in every run; the first miss is reported as a warning, with the load average, so it stays visible.
"""

from __future__ import annotations

from grid.live.experiment import fidelity_misses, format_comparison, run_live, run_simulated
from grid.scenario import load_scenario

from .conftest import FIDELITY_SCENARIO, meets_timing_targets


def test_live_matches_simulated_at_moderate_load(ray_session):
    scenario = load_scenario(str(FIDELITY_SCENARIO))
    duration_s, seed = 40.0, scenario.seed
    sim = run_simulated(scenario, None, duration_s, 1.0, seed)

    def run_once() -> list[str]:
        live = run_live(scenario, None, duration_s, 1.0, seed, drain_s=10.0, log=lambda *a, **k: None)
        # The same arrivals, all served: rules, not timing, so they hold in every run.
        assert live.report.grid.arrivals == sim.grid.arrivals
        assert live.report.grid.rejected == live.report.grid.failed == 0
        assert abs(live.report.grid.completed - sim.grid.completed) <= 0.02 * sim.grid.completed + 2
        assert 0.3 <= live.report.totals["utilization"] <= 0.6
        misses = fidelity_misses(live.report, sim) + client_misses(live)
        return [*misses, format_comparison(live.report, sim, live.client)] if misses else []

    meets_timing_targets(run_once)


def client_misses(live) -> list[str]:
    """The gateway's clock is the client's (issue 14): it starts at the request's first byte at the
    server, so the load generator (its own process) sees the same TTFT and E2E but for its loopback hop."""
    misses = []
    for metric in ("ttft_s", "e2e_s"):
        for q in ("p50", "p90"):
            gateway, client = getattr(live.report.grid, metric)[q], live.client[f"client_{metric}"][q]
            if abs(client - gateway) > max(0.010, 0.05 * gateway):
                misses.append(f"client {metric} {q}: {client * 1000:.0f} ms vs gateway {gateway * 1000:.0f} ms")
    return misses
