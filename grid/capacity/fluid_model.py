"""The planner's fast model: a security-constrained fluid LP that sizes every zone for the peak under
every contingency, then rounds the replicas to integers; the method is described in
`grid.capacity.plan`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from grid.capacity.plan_inputs import Peak
from grid.economics import cost_usd_per_hour
from grid.errors import GridInputError
from grid.scenario import Scenario

HEADROOM_UTILIZATION = 1 / 1.4


@dataclass
class FastModel:
    """The fluid model of `grid.capacity.plan`, precomputed for one scenario and SLO."""

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
