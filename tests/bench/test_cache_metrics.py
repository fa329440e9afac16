"""Cache figures in `grid bench` (issue 16): the single-global-cache bound, hits, balance, the table."""

from __future__ import annotations

import math

import pytest

from grid.bench.runner import RunSpec, run_one
from grid.bench.summary import markdown, run_metrics, summarize
from grid.demand.reuse import GlobalCacheBound, reuse_bound
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation


def test_the_bound_counts_leading_units_seen_before_capped_below_the_prompt():
    bound = GlobalCacheBound(engine_block_tokens=16)
    assert bound.add(40, (1, 2), 16) == 0  # nothing seen yet
    assert bound.add(50, (1, 2, 3), 16) == 32  # units 1-2 seen
    assert bound.add(50, (1, 9, 3), 16) == 16  # a chain breaks at its first unseen unit
    assert bound.add(32, (1, 2), 16) == 16  # never the last prompt token: its block is computed
    assert bound.add(20, None, 16) == 0  # no prefix information: counted, never a hit
    assert bound.hit_rate == pytest.approx(64 / 192)
    # Units past the prompt (an answer) are brought in, but never hit for the request that has them.
    assert reuse_bound([(16, (5, 6, 7)), (48, (5, 6, 7, 8))], 16) == pytest.approx(47 / 64)


def test_a_bench_run_reports_hits_beside_the_bound_and_a_cache_free_run_none():
    run = run_one(RunSpec("mooncake", (("routing.report_interval_s", "2s"),), "kv_aware", 0, 20.0, 15.0))
    metrics = run_metrics(run)
    assert 0 < metrics["cache_hit_pct"] <= metrics["bound_hit_pct"] < 100
    assert metrics["hit_of_bound_pct"] == pytest.approx(100 * metrics["cache_hit_pct"] / metrics["bound_hit_pct"])
    assert metrics["prefill_saved_mtok"] == pytest.approx(run["cache"]["hit_tokens"] / 1e6)
    assert metrics["busiest_admitted"] >= 1 and metrics["busiest_done"] >= 1
    table = markdown(summarize([run]), {}, {"scenario": "mooncake", "seeds": 1, "duration_s": 15.0})
    assert "| kv_aware | " in table and "**single global cache** (bound)" in table

    plain = run_metrics(run_one(RunSpec("baseline", (), "latency_aware", 0, 0.2, 5.0)))
    assert math.isnan(plain["cache_hit_pct"]) and math.isnan(plain["busiest_done"])


def test_stale_summaries_are_copies_taken_at_reports_and_only_for_policies_that_read_them():
    scenario = load_scenario("mooncake", {"routing.report_interval_s": 2.0})
    kv = Simulation(scenario, policy="kv_aware", seed=0, duration_s=5.0, rate_scale=20.0)
    kv.run()
    summaries = [zv.cached_units for zv in kv.view.zones]
    assert all(type(c) is dict for s in summaries for c in s)  # snapshots, not the live indexes
    assert any(len(c) for s in summaries for c in s)
    (taken_s,) = {zv.cached_units_s for zv in kv.view.zones}  # the last report (the run drains after 5 s) …
    assert taken_s > 0 and taken_s % 2.0 == 0  # … on the 2 s report grid
    other = Simulation(scenario, policy="latency_aware", seed=0, duration_s=5.0, rate_scale=20.0)
    other.run()
    assert all(zv.cached_units == () for zv in other.view.zones)
