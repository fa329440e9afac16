"""Issue 15's check of the prefix cache against a real trace: on Mooncake's conversation trace, one
replica with a cache that never fills serves exactly what one infinite cache could (the trace's own
reuse bound, computed independently from its `hash_ids`), within 1 point."""

from __future__ import annotations

import pytest

from grid.demand.reuse import reuse_bound
from grid.dispatch.sinks import Sink
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation

REQUESTS = 12_031  # the trace's hour


class Served(Sink):
    """Every completed request's prompt and prefix, in arrival order."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, int, tuple[int, ...], int]] = []

    def ended(self, request, outcome, now_s) -> None:
        if request.finish_s >= 0.0:
            self.rows.append((request.arrival_s, request.prompt_tokens, request.prefix_hashes, request.cached_tokens))


def test_one_unbounded_cache_reaches_the_traces_reuse_bound():
    overrides = {
        "demand.trace.end": "drain",
        "model.context_tokens": 262_144,  # none refused: the bound counts every request
        "gpus.h100.kv_cache_tokens": 2_000_000_000,  # never evicts
        "faults": [],
    }
    for zone in load_scenario("mooncake").zones:
        overrides[f"zones.{zone}.replicas"] = 1 if zone == "frankfurt-1" else 0
    served = Served()
    # One replica serves the whole hour stretched ×5 (the trace's own pace would overload it): 1.6 CPU-s.
    scenario = load_scenario("mooncake", overrides)
    report = Simulation(scenario, duration_s=6 * 3600.0, rate_scale=0.2, seed=1, sinks=[served]).run()
    assert report.grid.rejected == 0 and len(served.rows) == REQUESTS
    rows = sorted(served.rows, key=lambda row: row[0])
    bound = reuse_bound(((prompt, hashes) for _, prompt, hashes, _ in rows), 512, engine_block_tokens=16)
    hit_rate = sum(cached for *_, cached in rows) / sum(prompt for _, prompt, _, _ in rows)
    assert bound == pytest.approx(0.3734, abs=0.001)  # tests/demand/test_replay.py: 37.34% in full blocks
    assert hit_rate == pytest.approx(bound, abs=0.01), (hit_rate, bound)
    assert report.grid.extra["prefix_cache_hit_rate"] == pytest.approx(hit_rate, abs=1e-9)
