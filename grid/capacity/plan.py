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
   the sweep's cached runner). A contingency holds when every seed meets every SLO quantile and the
   attainment. Where simulation disagrees, the busiest zone of a failing contingency gains replicas
   and all contingencies are simulated again.
4. **Minimality.** The binding contingency is the one with the least slack in simulation; its
   busiest zone is the binding zone. One replica fewer there is simulated: if the SLO still holds
   in every contingency, the planner takes the saving and repeats; otherwise the plan is shown
   minimal at that zone, and the contingency that broke is reported.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog

from grid.economics import cost_usd_per_hour
from grid.errors import GridInputError
from grid.scenario import Scenario, scenario_raw, set_path, validate_scenario
from grid.units import parse_duration_s

SLO_KEYS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}
QUANTILES = ("p50", "p90", "p99")
HEADROOM_UTILIZATION = 1 / 1.4
ALL_UP = "all up"


# --- inputs -----------------------------------------------------------------------------------


def parse_slo(text: str) -> dict[str, float]:
    """`ttft_p99=1s[,tpot_p99=100ms,...]` → {"ttft_p99": 1.0, ...} (metrics ttft/tpot/e2e; p50/p90/p99)."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        metric, _, quantile = key.strip().partition("_")
        if not sep or metric not in SLO_KEYS or quantile not in QUANTILES:
            raise GridInputError(
                f"--slo {item!r}: expected METRIC_QUANTILE=DURATION with METRIC one of "
                f"{', '.join(SLO_KEYS)} and QUANTILE one of {', '.join(QUANTILES)}, e.g. ttft_p99=1s"
            )
        try:
            seconds = parse_duration_s(value.strip())
        except ValueError as exc:
            raise GridInputError(f"--slo {item!r}: {exc}") from None
        if not seconds > 0:
            raise GridInputError(f"--slo {item!r}: the bound must be > 0")
        out[key.strip()] = seconds
    if not out:
        raise GridInputError("--slo: give at least one bound, e.g. ttft_p99=1s")
    return out


@dataclass(frozen=True)
class Peak:
    t_s: float  # since the scenario's start
    utc: dt.datetime
    rates_rps: np.ndarray  # per population
    total_rps: float


def peak_demand(scenario: Scenario, step_s: float = 60.0) -> Peak:
    """The busiest instant of the scenario's day by the demand model's rates (flash crowds included)."""
    from grid.demand.arrivals import DemandModel

    if scenario.demand.trace is not None:
        raise GridInputError(
            "demand.trace: grid plan needs the demand model's rates; this scenario replays a trace "
            "(plan on a Poisson scenario with the trace's rate, or sweep the trace with grid sweep)"
        )
    model = DemandModel(scenario.demand, scenario.populations)
    horizon = max(86_400.0, max((c.at_s + c.duration_s for c in scenario.demand.flash_crowds), default=0.0))
    times = set(np.arange(0.0, horizon, step_s).tolist())
    times |= {t for c in scenario.demand.flash_crowds for t in (c.at_s, c.at_s + c.duration_s / 2)}
    best_t, best = 0.0, None
    for t in sorted(times):
        rates = model.rates_rps(t)
        if best is None or rates.sum() > best.sum() + 1e-9:
            best_t, best = t, rates
    assert best is not None
    start = scenario.demand.start_utc
    return Peak(best_t, start + dt.timedelta(seconds=best_t), best, float(best.sum()))


def peak_overrides(scenario: Scenario, peak: Peak) -> list[tuple[str, Any]]:
    """Hold the peak's per-population rates constant; no diurnal drift, flash crowds or faults."""
    out: list[tuple[str, Any]] = [
        ("demand.rate_rps", peak.total_rps),
        ("demand.scale", 1.0),
        ("demand.diurnal", None),
        ("demand.flash_crowds", []),
        ("faults", []),
    ]
    share = peak.rates_rps / peak.total_rps if peak.total_rps > 0 else peak.rates_rps
    out += [(f"populations.{p}.demand_share", float(s)) for p, s in zip(scenario.populations, share, strict=True)]
    return out


def contingencies(scenario: Scenario, mode: str) -> list[tuple[str, str | None]]:
    """(name, region down) pairs: every region up, then (for n-1) each region down in turn."""
    out: list[tuple[str, str | None]] = [(ALL_UP, None)]
    if mode == "n-1":
        out += [(f"{region} down", region) for region in scenario.regions]
    elif mode != "none":
        raise GridInputError(f"--contingency {mode!r}: expected n-1 or none")
    return out


# --- the fast model ---------------------------------------------------------------------------


@dataclass
class FastModel:
    """The fluid model of the module docstring, precomputed for one scenario and SLO."""

    zone_ids: list[str]
    zone_region: list[str]
    cap_rps: np.ndarray  # [zone] one replica's saturated throughput
    usd_per_replica_hour: np.ndarray  # [zone]
    tail_ttft_s: np.ndarray  # [population, zone] tail TTFT of the pair at no load
    demand_rps: np.ndarray  # [population]
    population_ids: list[str]
    ttft_bound_s: float
    u_max: float

    def admissible(self, down: str | None) -> np.ndarray:
        ok = self.tail_ttft_s <= self.ttft_bound_s
        if down is not None:
            ok[:, [r == down for r in self.zone_region]] = False
        return ok

    def feasible(self, replicas: np.ndarray, down: str | None) -> bool:
        from grid.bench.lp_bound import solve_assignment

        ok = self.admissible(down)
        if not ok.any(axis=1).all():
            return False
        latency = np.where(ok, self.tail_ttft_s, np.inf)
        x, _ = solve_assignment(self.demand_rps, latency, self.u_max * self.cap_rps * replicas)
        return x is not None


def fast_model(scenario: Scenario, peak: Peak, slo: dict[str, float], quantile: float, u_max: float) -> FastModel:
    from grid.demand.arrivals import size_sampler
    from grid.world import build_world

    world = build_world(scenario.model_copy(update={"zones": {z: v.model_copy(update={"replicas": 1})
                                                              for z, v in scenario.zones.items()}}))  # fmt: skip
    prompts, _ = size_sampler(scenario.demand.sizes)(np.random.default_rng(12345), 200_000)
    prompt_q = float(np.quantile(prompts, quantile))
    jitter_q = 1.0 + scenario.network.jitter_ratio * math.log(1.0 / (1.0 - quantile))
    zone_s = []
    for zone_id in world.zone_ids:
        g = scenario.gpus[scenario.zones[zone_id].gpu]
        zone_s.append(g.frontend_s + g.prefill_base_s + g.prefill_per_token_s * prompt_q)
    tail = world.rtt_s * jitter_q + np.array(zone_s)[None, :]
    price = np.array(
        [
            cost_usd_per_hour(
                scenario.zones[z].gpus_per_replica, scenario.regions[scenario.zones[z].region].price_usd_per_gpu_hour
            )
            for z in world.zone_ids
        ]
    )
    ttft_bound = min((v for k, v in slo.items() if k.startswith("ttft_")), default=math.inf)
    return FastModel(
        zone_ids=world.zone_ids,
        zone_region=[scenario.zones[z].region for z in world.zone_ids],
        cap_rps=world.capacity_rps.astype(float),
        usd_per_replica_hour=price,
        tail_ttft_s=tail,
        demand_rps=peak.rates_rps,
        population_ids=world.population_ids,
        ttft_bound_s=ttft_bound,
        u_max=u_max,
    )


def impossible_contingencies(model: FastModel, cases: list[tuple[str, str | None]]) -> dict[str, str]:
    """Contingencies no fleet can meet in the fast model: a population with demand has no up zone
    whose tail TTFT is within the bound, however many replicas it has."""
    out = {}
    for name, down in cases:
        ok = model.admissible(down)
        stranded = [p for p in range(len(model.population_ids)) if model.demand_rps[p] > 0 and not ok[p].any()]
        if stranded:
            p = stranded[0]
            up = [z for z, r in enumerate(model.zone_region) if r != down]
            best = min(up, key=lambda z: model.tail_ttft_s[p, z]) if up else None
            why = (
                f"the best up zone for {model.population_ids[p]} is {model.zone_ids[best]} at a tail TTFT of "
                f"{model.tail_ttft_s[p, best] * 1000:.0f} ms (network + prefill) > {model.ttft_bound_s * 1000:.0f} ms"
                if best is not None
                else "no zone is up"
            )
            others = f" (and {len(stranded) - 1} more populations)" if len(stranded) > 1 else ""
            out[name] = f"{why}{others}"
    return out


def solve_fast(model: FastModel, cases: list[tuple[str, str | None]]) -> tuple[np.ndarray, np.ndarray]:
    """The security-constrained LP (continuous n), then integers: round up, then lower each zone
    (most expensive first) while every contingency stays feasible. Returns (LP n, integer n)."""
    n_z, n_p, n_k = len(model.zone_ids), len(model.population_ids), len(cases)
    n_x = n_k * n_p * n_z
    cost = np.concatenate([model.usd_per_replica_hour, 1e-6 * np.tile(model.tail_ttft_s.ravel(), n_k)])
    a_eq = np.zeros((n_k * n_p, n_z + n_x))
    a_ub = np.zeros((n_k * n_z, n_z + n_x))
    bounds: list[tuple[float, float | None]] = [(0.0, None)] * n_z
    for k, (_, down) in enumerate(cases):
        ok = model.admissible(down)
        base = n_z + k * n_p * n_z
        for p in range(n_p):
            a_eq[k * n_p + p, base + p * n_z : base + (p + 1) * n_z] = 1.0
        for z in range(n_z):
            a_ub[k * n_z + z, base + z : base + n_p * n_z : n_z] = 1.0
            a_ub[k * n_z + z, z] = -model.u_max * model.cap_rps[z]
        bounds += [(0.0, None if ok[p, z] else 0.0) for p in range(n_p) for z in range(n_z)]
    b_eq = np.tile(model.demand_rps, n_k)
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(n_k * n_z), A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise GridInputError(f"the fast model found no plan ({res.message})")
    lp_n = res.x[:n_z]
    n = np.ceil(lp_n - 1e-6).astype(int)
    for z in np.argsort(-model.usd_per_replica_hour, kind="stable"):
        while n[z] > 0:
            trial = n.copy()
            trial[z] -= 1
            if not all(model.feasible(trial, down) for _, down in cases):
                break
            n = trial
    return lp_n, n


# --- verification by simulation ---------------------------------------------------------------


@dataclass
class CaseResult:
    name: str
    down: str | None
    ok: bool
    slack: float  # min over seeds and SLO terms of the normalized margin (< 0: violated)
    worst: dict[str, Any]  # the worst seed's figures
    busiest_zone: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Plan:
    scenario: str
    slo: dict[str, float]
    attainment: float
    contingency: str
    peak: Peak
    replicas: dict[str, int]
    fast_replicas: dict[str, int]
    lp_replicas: dict[str, float]
    cost_usd_per_hour: float
    fast_cost_usd_per_hour: float
    cases: list[CaseResult]
    binding: str | None
    binding_zone: str | None
    minimality: dict[str, Any] | None
    adjustments: list[str] = field(default_factory=list)
    seeds: int = 1
    duration_s: float = 0.0
    sim_runs: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("peak", "cases")}
        d["peak"] = {"t_s": self.peak.t_s, "utc": self.peak.utc.isoformat(), "total_rps": self.peak.total_rps}
        d["cases"] = [c.to_dict() for c in self.cases]
        return d


class _Verifier:
    """Simulates contingencies of a replica vector at the peak, through the sweep's cached runner."""

    def __init__(self, raw, scenario, base_overrides, slo, attainment, policy, seeds, duration_s, cache, ray_address,
                 progress) -> None:  # fmt: skip
        self.raw, self.scenario, self.base_overrides = raw, scenario, base_overrides
        self.slo, self.attainment = slo, attainment
        self.policy, self.seeds, self.duration_s = policy, seeds, duration_s
        self.cache, self.ray_address, self.progress = cache, ray_address, progress
        self.runs = 0

    def overrides(self, replicas: dict[str, int], down: str | None) -> list[tuple[str, Any]]:
        out = list(self.base_overrides)
        for zone_id, n in replicas.items():
            zero = down is not None and self.scenario.zones[zone_id].region == down
            out.append((f"zones.{zone_id}.replicas", 0 if zero else int(n)))
        return out

    def check(self, replicas: dict[str, int], cases: list[tuple[str, str | None]]) -> list[CaseResult]:
        from grid.capacity.sweep import make_spec, run_cached

        specs = [
            make_spec(self.raw, self.overrides(replicas, down), self.policy, seed, self.duration_s)
            for _, down in cases
            for seed in range(self.seeds)
        ]
        results, computed = run_cached(specs, self.cache, self.ray_address, self.progress, "plan: simulating")
        self.runs += computed
        out = []
        for k, (name, down) in enumerate(cases):
            group = results[k * self.seeds : (k + 1) * self.seeds]
            scored = [(self._slack(r), r) for r in group]
            slack, worst = min(scored, key=lambda item: item[0])
            zones = {z: v for z, v in worst["zones"].items() if v["replicas"] and v["utilization"] is not None}
            busiest = max(zones, key=lambda z: zones[z]["utilization"]) if zones else None
            figures = dict(worst["metrics"]) | {
                "seed": worst["seed"],
                "zone_utilization": {z: round(v["utilization"], 4) for z, v in zones.items()},
            }
            out.append(CaseResult(name, down, slack >= 0, slack, figures, busiest))
        return out

    def _slack(self, run: dict[str, Any]) -> float:
        m = run["metrics"]
        terms = []
        for key, bound in self.slo.items():
            value = m.get(f"{key}_s")
            terms.append(-1.0 if value is None else (bound - value) / bound)
        att = m["slo_attainment"]
        terms.append(-1.0 if att is None else (att - self.attainment) / max(1e-9, 1.0 - self.attainment))
        return min(terms)


def _first_broken(verifier: _Verifier, replicas: dict[str, int], results: list[CaseResult], region: str):
    """Simulate `replicas` under the contingencies where `region` is up, tightest first; the first
    that misses the SLO, or None if all hold."""
    for case in sorted((r for r in results if r.down != region), key=lambda r: r.slack):
        trial = verifier.check(replicas, [(case.name, case.down)])[0]
        if not trial.ok:
            return trial
    return None


def _minimality_record(zone: str, replicas, fewer, broken: CaseResult) -> dict[str, Any]:
    return {
        "zone": zone,
        "replicas": replicas[zone],
        "with_one_fewer": fewer[zone],
        "contingency": broken.name,
        "slack": broken.slack,
        "figures": broken.worst,
        "shown": True,
    }


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
    from grid.capacity.sweep import PointCache

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
    verifier = _Verifier(raw, scenario, base_overrides, slo, attainment, policy, seeds, duration_s, cache,
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
                    f"{_fmt_s(failing[0].worst.get('ttft_p99_s'))}, attainment "
                    f"{_fmt_pct(failing[0].worst.get('slo_attainment'))})"
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
                broken = _first_broken(verifier, fewer, results, scenario.zones[zone].region)
                if broken is not None:
                    shown[zone] = _minimality_record(zone, replicas, fewer, broken)
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
            broken = _first_broken(verifier, fewer, results, scenario.zones[binding_zone].region)
            minimality = (
                _minimality_record(binding_zone, replicas, fewer, broken)
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


# --- rendering --------------------------------------------------------------------------------


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def format_plan(plan: Plan, scenario: Scenario | None = None) -> str:
    slo = ", ".join(f"{k} ≤ {v:g} s" for k, v in plan.slo.items())
    lines = [
        f"plan for {plan.scenario}: {slo}, attainment ≥ {plan.attainment:.2%}, contingency {plan.contingency}",
        f"peak demand {plan.peak.total_rps:.0f} req/s at {plan.peak.utc:%Y-%m-%d %H:%M} UTC "
        f"(+{plan.peak.t_s / 3600:.1f} h), held for {plan.duration_s:g} s × {plan.seeds} seeds per contingency",
        "",
        f"{'zone':<16}{'region':<12}{'replicas':>9}{'fast model':>12}{'LP':>8}",
    ]
    regions = {}
    if scenario is not None:
        regions = {z: v.region for z, v in scenario.zones.items()}
    for zone, n in plan.replicas.items():
        mark = "  ← binding" if zone == plan.binding_zone else ""
        lines.append(
            f"{zone:<16}{regions.get(zone, ''):<12}{n:>9}{plan.fast_replicas[zone]:>12}"
            f"{plan.lp_replicas[zone]:>8.1f}{mark}"
        )
    lines += [
        f"{'total':<28}{sum(plan.replicas.values()):>9}{sum(plan.fast_replicas.values()):>12}",
        f"cost ${plan.cost_usd_per_hour:,.2f}/h (fast model alone: ${plan.fast_cost_usd_per_hour:,.2f}/h)",
        "",
        f"{'contingency (simulated)':<24}{'p99 TTFT':>10}{'p99 TPOT':>10}{'attainment':>12}{'busiest':>16}"
        f"{'util':>7}{'slack':>8}  result",
    ]
    for c in plan.cases:
        util = c.worst["zone_utilization"].get(c.busiest_zone) if c.busiest_zone else None
        lines.append(
            f"{c.name:<24}{_fmt_s(c.worst.get('ttft_p99_s')):>10}{_fmt_s(c.worst.get('tpot_p99_s')):>10}"
            f"{_fmt_pct(c.worst.get('slo_attainment')):>12}{c.busiest_zone or '-':>16}"
            f"{'-' if util is None else f'{util:.0%}':>7}{c.slack:>+8.2f}  {'meets' if c.ok else 'MISSES'}"
        )
    lines.append("(worst seed of each contingency; slack = least normalized margin over the SLO terms)")
    lines.append("")
    lines.append(f"binding contingency: {plan.binding} (binding zone {plan.binding_zone})")
    m = plan.minimality
    if m and m.get("shown"):
        f = m["figures"]
        lines.append(
            f"minimal there: {m['zone']} at {m['with_one_fewer']} replicas instead of {m['replicas']} breaks the SLO "
            f"under {m['contingency']!r} in simulation (p99 TTFT {_fmt_s(f.get('ttft_p99_s'))}, attainment "
            f"{_fmt_pct(f.get('slo_attainment'))}, seed {f.get('seed')})"
        )
    elif m:
        lines.append(f"minimality at {m.get('zone')} not shown within the step limit")
    for a in plan.adjustments:
        lines.append(f"adjusted: {a}")
    lines.append(f"{plan.sim_runs} simulations run")
    return "\n".join(lines)
