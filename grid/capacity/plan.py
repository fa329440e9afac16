"""`grid plan`: the cheapest replicas per zone that meet an SLO at peak demand, N-1 secure.

    grid plan --scenario default --slo ttft_p99=1s --attainment 0.99 --contingency n-1 --duration 5m

Power grids plan for the N-1 criterion: the system must survive the loss of any single element.
Here the element is a region (all its zones at 0 replicas), and the question is the cheapest fleet
that holds the SLO at the scenario's peak demand with every region up and with any one region down.

1. **Peak.** The demand model's rates (`DemandModel.rates_rps`) are scanned over the scenario's day
   (every minute, plus flash-crowd edges); the planner holds the busiest instant's per-population
   rates constant (diurnal curve, flash crowds and the scenario's own faults removed).
2. **Fast model** — a security-constrained fluid LP, one flow block per contingency k:

       minimize   Σ_z price_z · gpus_z · n_z
       subject to Σ_z x[k,p,z] = λ_p                        every population served, in every k
                  Σ_p x[k,p,z] ≤ u_max · cap_z · n_z         zones below the planning utilization
                  x[k,p,z] = 0  if z is down in k, or if the pair's tail TTFT exceeds the SLO

   `cap_z` is one replica's saturated throughput (`grid.serving.capacity.replica_capacity_rps`);
   `u_max` (default 1/1.4, the headroom `latency_aware` keeps) is where a batching engine still
   answers promptly. A pair's tail TTFT is its round trip at the jitter's quantile plus the zone's
   frontend and the prefill of the quantile-size prompt. The LP's n is rounded up, then each zone is
   lowered while every contingency's flow LP stays feasible (most expensive zones first).
3. **Verification.** Every contingency is simulated at the peak over `--seeds` seeds (Ray tasks, via
   the cached point runner). A contingency holds when every seed meets every SLO quantile and the
   attainment. Where simulation disagrees, the busiest zone of a failing contingency gains replicas
   and all contingencies are simulated again.
4. **Minimality.** The binding contingency is the one with the least slack in simulation; its
   busiest zone is the binding zone. One replica fewer there is simulated: if the SLO still holds
   in every contingency, the planner takes the saving and repeats; otherwise the plan is shown
   minimal at that zone, and the contingency that broke is reported.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from grid.capacity.fluid_model import HEADROOM_UTILIZATION, fast_model, impossible_contingencies, solve_fast
from grid.capacity.plan_inputs import SLO_KEYS, contingencies, peak_demand, peak_overrides
from grid.capacity.plan_report import Plan, fmt_ms, fmt_pct
from grid.capacity.plan_verification import Verifier, first_broken, minimality_record
from grid.errors import GridInputError
from grid.scenario import scenario_raw, set_path, validate_scenario


def make_plan(
    scenario_arg: str,
    slo: dict[str, float],
    *,
    attainment: float = 0.99,
    contingency: str = "n-1",
    overrides: tuple[tuple[str, Any], ...] = (),
    policy: str | None = None,
    seeds: int = 2,
    duration_s: float = 600.0,
    u_max: float = HEADROOM_UTILIZATION,
    max_rounds: int = 6,
    max_growth: float = 4.0,
    minimality_steps: int = 12,
    cache_dir=None,
    ray_address: str | None = None,
    progress: bool = False,
    log=None,
) -> Plan:
    """Plan, verify, adjust and show minimality (see the module docstring)."""
    from grid.bench.runner import ray_session
    from grid.capacity.point_runs import PointCache

    say = log or (lambda _msg: None)
    if not 0 < attainment < 1:
        raise GridInputError(f"--attainment {attainment}: must be between 0 and 1 (e.g. 0.99)")
    raw, origins = scenario_raw(scenario_arg)
    for path, value in overrides:
        set_path(raw, path, value)
        origins[tuple(path.split("."))] = ("--set", None)
    scenario = validate_scenario(copy.deepcopy(raw), origins)
    cases = contingencies(scenario, contingency)
    peak = peak_demand(scenario)
    slo_fields = {SLO_KEYS[k.split("_")[0]]: v for k, v in slo.items()}
    base_overrides = peak_overrides(scenario, peak) + [(f"slo.{name}", v) for name, v in slo_fields.items()]
    quantile = max(float(k.split("_p")[1]) / 100 for k in slo) if slo else 0.99
    model = fast_model(scenario, peak, slo, max(quantile, attainment), u_max)
    impossible = impossible_contingencies(model, cases)
    if impossible:
        lines = [f"contingency {name!r} cannot meet the SLO at any size: {why}" for name, why in impossible.items()]
        raise GridInputError("\n".join(lines))
    lp_n, n = solve_fast(model, cases)
    zone_ids = model.zone_ids
    price_of = dict(zip(zone_ids, model.usd_per_replica_hour.tolist(), strict=True))
    fast = dict(zip(zone_ids, n.tolist(), strict=True))
    say(f"fast model: {sum(fast.values())} replicas, ${float(n @ model.usd_per_replica_hour):,.2f}/h")
    limit = {z: max(4, math.ceil(max_growth * max(1, v))) for z, v in fast.items()}
    cache = PointCache(cache_dir)
    verifier = Verifier(raw, scenario, base_overrides, slo, attainment, policy, seeds, duration_s, cache,
                         ray_address, progress)  # fmt: skip
    replicas = dict(fast)
    adjustments: list[str] = []
    with ray_session(ray_address):
        results = verifier.check(replicas, cases)
        rounds = 0
        while not all(r.ok for r in results):
            rounds += 1
            failing = [r for r in results if not r.ok]
            grown = False
            for r in failing:
                zone = r.busiest_zone
                if zone is None or replicas[zone] >= limit[zone]:
                    continue
                step = max(1, math.ceil(0.1 * replicas[zone]))
                replicas[zone] = min(limit[zone], replicas[zone] + step)
                grown = True
                adjustments.append(f"+{step} {zone} ({r.name}: simulation missed the SLO, slack {r.slack:+.2f})")
                say(f"adjust: {adjustments[-1]}")
            if not grown or rounds > max_rounds:
                names = ", ".join(repr(r.name) for r in failing)
                raise GridInputError(
                    f"contingency {names} cannot meet the SLO at any size tried: after {rounds} rounds of "
                    f"adding replicas to the busiest zone (up to {max_growth:g}× the fast model's plan per zone), "
                    f"simulation still misses it (worst: p99 TTFT "
                    f"{fmt_ms(failing[0].worst.get('ttft_p99_s'))}, attainment "
                    f"{fmt_pct(failing[0].worst.get('slo_attainment'))})"
                )
            results = verifier.check(replicas, cases)
        # Simulation may allow less than the fast model: lower zones one replica at a time while every
        # contingency still holds (the binding zone first, then the most expensive), within a budget.
        shown: dict[str, dict[str, Any]] = {}
        budget = minimality_steps
        tight = min(results, key=lambda r: r.slack)
        order = [tight.busiest_zone] if tight.busiest_zone else []
        order += sorted((z for z in zone_ids if z not in order), key=lambda z: -price_of[z])
        for zone in order:
            while budget > 0 and replicas[zone] > 0:
                budget -= 1
                fewer = dict(replicas)
                fewer[zone] -= 1
                broken = first_broken(verifier, fewer, results, scenario.zones[zone].region)
                if broken is not None:
                    shown[zone] = minimality_record(zone, replicas, fewer, broken)
                    break
                adjustments.append(f"-1 {zone} (the SLO still held in every contingency with one fewer)")
                say(f"adjust: {adjustments[-1]}")
                replicas = fewer
                results = verifier.check(replicas, cases)  # from the cache: every case was just simulated
        tight = min(results, key=lambda r: r.slack)
        binding, binding_zone = tight.name, tight.busiest_zone
        minimality = None
        if binding_zone is not None and replicas[binding_zone] > 0:
            # Re-shown on the final plan (other zones may have been lowered since): cached if unchanged.
            fewer = dict(replicas)
            fewer[binding_zone] -= 1
            broken = first_broken(verifier, fewer, results, scenario.zones[binding_zone].region)
            minimality = (
                minimality_record(binding_zone, replicas, fewer, broken)
                if broken is not None
                else {"zone": binding_zone, "shown": False}
            )
            if broken is not None:
                binding = broken.name
    return Plan(
        scenario=scenario.name,
        slo=slo,
        attainment=attainment,
        contingency=contingency,
        peak=peak,
        replicas=replicas,
        fast_replicas=fast,
        lp_replicas={z: round(float(v), 3) for z, v in zip(zone_ids, lp_n, strict=True)},
        cost_usd_per_hour=sum(price_of[z] * n for z, n in replicas.items()),
        fast_cost_usd_per_hour=sum(price_of[z] * n for z, n in fast.items()),
        cases=results,
        binding=binding,
        binding_zone=binding_zone,
        minimality=minimality,
        adjustments=adjustments,
        seeds=seeds,
        duration_s=duration_s,
        sim_runs=verifier.runs,
    )
