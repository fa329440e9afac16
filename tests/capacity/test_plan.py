"""`grid plan` on a small world (2 regions × 1 zone): the plan holds in simulation under every
contingency, one replica fewer in the binding zone breaks it, and impossible SLOs are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grid.bench.runner import ray_session
from grid.capacity.plan import make_plan
from grid.capacity.plan_inputs import contingencies, parse_slo, peak_demand
from grid.capacity.point_runs import PointCache, make_spec, run_cached
from grid.errors import GridInputError
from grid.scenario import load_scenario, scenario_raw

SMALL = str(Path(__file__).with_name("small.yaml"))


def test_parse_slo():
    assert parse_slo("ttft_p99=1s") == {"ttft_p99": 1.0}
    assert parse_slo("ttft_p99=800ms, tpot_p90=0.1") == {"ttft_p99": 0.8, "tpot_p90": 0.1}
    for bad in ("ttft=1s", "ttft_p95=1s", "latency_p99=1s", "ttft_p99=soon", "ttft_p99=0s", ""):
        with pytest.raises(GridInputError):
            parse_slo(bad)


def test_peak_is_the_busiest_minute_of_the_day():
    s = load_scenario(SMALL)
    peak = peak_demand(s)
    # Berlin (60%) peaks at 20:00 local = 19:00 UTC; New York (40%) at 01:00 UTC: the sum peaks near Berlin's.
    assert 18 <= peak.utc.hour <= 20
    assert peak.total_rps > s.demand.rate_rps
    assert np.isclose(peak.rates_rps.sum(), peak.total_rps)
    assert [name for name, _ in contingencies(s, "n-1")] == ["all up", "east down", "west down"]


def test_plan_meets_the_slo_in_every_contingency_and_is_minimal_at_the_binding_zone(tmp_path):
    with ray_session():  # one Ray start for the plan and the independent re-check
        _plan_meets_the_slo_and_is_minimal(tmp_path)


def _plan_meets_the_slo_and_is_minimal(tmp_path):
    plan = make_plan(SMALL, {"ttft_p99": 1.0}, attainment=0.99, seeds=2, duration_s=40.0, cache_dir=tmp_path)
    assert [c.name for c in plan.cases] == ["all up", "east down", "west down"]
    assert all(c.ok for c in plan.cases), [c.to_dict() for c in plan.cases]
    assert plan.cost_usd_per_hour == 3.0 * plan.replicas["east-1"] + 2.0 * plan.replicas["west-1"]
    assert plan.binding in ("east down", "west down")  # losing a region is what sizes the fleet
    assert plan.minimality["shown"], plan.minimality
    assert plan.minimality["zone"] == plan.binding_zone
    assert plan.minimality["with_one_fewer"] == plan.replicas[plan.binding_zone] - 1

    # Independently re-simulate the plan and the plan minus one replica in the binding zone.
    raw, _ = scenario_raw(SMALL)
    from grid.capacity.plan_inputs import peak_overrides

    s = load_scenario(SMALL)
    base = peak_overrides(s, peak_demand(s)) + [("slo.ttft_s", 1.0)]
    down = next(c.down for c in plan.cases if c.name == plan.minimality["contingency"])

    def runs(replicas):
        over = base + [(f"zones.{z}.replicas", 0 if s.zones[z].region == down else n) for z, n in replicas.items()]
        specs = [make_spec(raw, over, "latency_aware", seed, 40.0) for seed in (0, 1)]
        return run_cached(specs, PointCache(tmp_path / "recheck"))[0]  # a fresh cache: simulated again

    fewer = dict(plan.replicas)
    fewer[plan.binding_zone] -= 1
    assert all(r["metrics"]["ttft_p99_s"] <= 1.0 for r in runs(plan.replicas))
    broken = runs(fewer)
    assert any(r["metrics"]["ttft_p99_s"] > 1.0 or r["metrics"]["slo_attainment"] < 0.99 for r in broken)


def test_an_impossible_slo_names_the_contingency():
    with pytest.raises(GridInputError, match=r"contingency 'all up' cannot meet the SLO at any size"):
        make_plan(SMALL, {"ttft_p99": 0.03}, duration_s=10.0)
    # Berlin can only reach the west region over 2 s of network: only 'east down' is impossible.
    far = (("network.population_rtt_ms.berlin.west", 2000.0),)
    with pytest.raises(GridInputError) as err:
        make_plan(SMALL, {"ttft_p99": 1.0}, overrides=far, duration_s=10.0)
    message = str(err.value)
    assert "contingency 'east down' cannot meet the SLO at any size" in message
    assert "berlin" in message and "west-1" in message
    assert "all up" not in message and "west down" not in message
