"""Common random numbers: per seed, every policy faces the same arrivals, sizes and network jitter."""

from __future__ import annotations

import csv

from grid.scenario import load_scenario
from grid.sim.simulator import Simulation
from grid.world import build_world


def _records(tmp_path, policy: str, seed: int):
    path = tmp_path / f"{policy}-{seed}.csv"
    Simulation(load_scenario("baseline"), policy=policy, seed=seed, duration_s=8.0, records_path=path).run()
    with path.open() as f:
        return list(csv.DictReader(f))


def test_policies_see_identical_arrivals_sizes_and_jitter(tmp_path):
    world = build_world(load_scenario("baseline"))
    runs = {p: _records(tmp_path, p, seed=3) for p in ("nearest", "round_robin", "p2c")}
    # Records are written as requests end, so each run lists the ones it finished; compare by id.
    keys = {p: {r["id"]: (r["arrival_s"], r["population"], r["prompt_tokens"], r["output_tokens"]) for r in rows}
            for p, rows in runs.items()}  # fmt: skip
    ids = set(keys["nearest"]) & set(keys["round_robin"]) & set(keys["p2c"])
    assert len(ids) > 500
    assert all(keys["nearest"][i] == keys["round_robin"][i] == keys["p2c"][i] for i in ids)
    # The jitter factor of request i (its RTT over the base RTT to the zone it went to) is the same
    # whichever zone a policy picked.
    factors = {}
    for p, rows in runs.items():
        factors[p] = {
            r["id"]: float(r["rtt_ms"]) / 1000 / world.rtt_s[int(r["population"]), int(r["zone"])]
            for r in rows
            if r["rtt_ms"] and float(r["rtt_ms"]) > 0
        }
    common = set(factors["nearest"]) & set(factors["round_robin"])
    assert len(common) > 100
    # (RTTs are written with 3 decimals of ms: the factors agree to that precision)
    assert all(abs(factors["nearest"][i] - factors["round_robin"][i]) < 1e-3 for i in common)
    assert len({round(f, 3) for f in factors["nearest"].values()}) > 50  # and jitter does vary


def test_another_seed_gives_other_arrivals(tmp_path):
    a = [r["arrival_s"] for r in _records(tmp_path, "nearest", seed=3)[:50]]
    b = [r["arrival_s"] for r in _records(tmp_path, "nearest", seed=4)[:50]]
    assert a != b


def test_the_utilization_sampler_sees_the_hedged_run_unchanged():
    """The sampler is a sink: a hedged run with it hedges exactly as one without it."""
    from grid.bench.runner import UtilizationSampler

    scenario = load_scenario("baseline")
    plain = Simulation(scenario, policy="hedged", seed=2, duration_s=30.0).run().to_dict()
    sim = Simulation(scenario, policy="hedged", seed=2, duration_s=30.0)
    sampler = UtilizationSampler(sim.view, every_s=5.0)
    sim.sinks.append(sampler)
    sampled = sim.run().to_dict()
    assert sampled["grid"] == plain["grid"] and sampled["meta"] == plain["meta"]
    assert [round(s[0]) for s in sampler.samples][:3] == [0, 5, 10]
    assert all(len(s) == 1 + len(scenario.zones) for s in sampler.samples)
