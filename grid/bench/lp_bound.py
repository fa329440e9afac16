"""The reference bound: a fluid LP that assigns each population's demand to zones.

    minimize   Σ_p,z x[p,z] · (rtt[p,z] · (1 + jitter_ratio) + no_load_ttft[z])     (req/s · s)
    subject to Σ_z x[p,z] = λ_p            every population is served
               Σ_p x[p,z] ≤ u_cap · cap_z  every zone below a utilization cap
               x ≥ 0

Divided by Σ λ_p this is the mean TTFT of a router with perfect knowledge and no queueing: every
request's client TTFT is at least its round trip (the mean jitter is exponential with mean
`jitter_ratio` × RTT) plus its zone's no-load time to first token — the API frontend plus one prefill
of the request's prompt, (prefill_base_s + prefill_per_token_s · prompt) · slow_factor; the term is
linear in the prompt, so the mean prompt gives its exact mean. Waiting for a running decode step,
batching with other prompts and queueing only add to it, so with `u_cap = 1` the LP is a true lower
bound on any policy's mean TTFT for the same demand (a fluid relaxation: it ignores the variance
that makes queues). Demand varies (diurnal curve, flash crowds) and zones fail, so the LP is solved
per time slice on the slice's mean rates and live capacities; the bound is the arrival-weighted mean.
`capacity_rps` is `grid.world.build_world(s).capacity_rps` (saturated completions at mean sizes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from grid.demand.arrivals import DemandModel
from grid.scenario import Scenario
from grid.world import build_world


@dataclass(frozen=True)
class LpBound:
    mean_ttft_s: float  # arrival-weighted mean over slices; NaN if any slice is infeasible
    mean_rtt_s: float  # its network part
    cross_region_share: float  # share of demand served outside the home region
    utilization_cap: float
    infeasible_slices: int
    slices: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def zone_no_load_ttft_s(scenario: Scenario, mean_prompt_tokens: float) -> np.ndarray:
    """Per zone: frontend + one prefill of a mean-size prompt, at full speed."""
    out = []
    for zone in scenario.zones.values():
        g = scenario.gpus[zone.gpu]
        out.append(g.frontend_s + g.prefill_base_s + g.prefill_per_token_s * mean_prompt_tokens)
    return np.array(out)


def _zone_state_at(scenario: Scenario, t_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(up, slow factor) of every zone at `t_s` from the scenario's faults."""
    ids = list(scenario.zones)
    up = np.ones(len(ids), dtype=bool)
    slow = np.ones(len(ids))
    for f in scenario.faults:
        end = f.at_s + f.duration_s if f.duration_s is not None else math.inf
        if f.zone is None or not f.at_s <= t_s < end:
            continue
        if f.kind == "zone_down":
            up[ids.index(f.zone)] = False
        elif f.kind == "zone_slow":
            slow[ids.index(f.zone)] = f.factor
    return up, slow


def solve_assignment(
    demand_rps: np.ndarray, latency_s: np.ndarray, capacity_rps: np.ndarray
) -> tuple[np.ndarray | None, float]:
    """The LP on one slice: x[p,z] ≥ 0 minimizing Σ x·latency; None when demand exceeds capacity."""
    n_pop, n_zone = latency_s.shape
    usable = np.isfinite(latency_s)
    cost = np.where(usable, latency_s, 0.0).ravel()
    a_eq = np.zeros((n_pop, n_pop * n_zone))
    for p in range(n_pop):
        a_eq[p, p * n_zone : (p + 1) * n_zone] = 1.0
    a_ub = np.zeros((n_zone, n_pop * n_zone))
    for z in range(n_zone):
        a_ub[z, z::n_zone] = 1.0
    bounds = [(0.0, None if usable.ravel()[k] else 0.0) for k in range(n_pop * n_zone)]
    res = linprog(cost, A_ub=a_ub, b_ub=capacity_rps, A_eq=a_eq, b_eq=demand_rps, bounds=bounds, method="highs")
    if res.status != 0:
        return None, math.nan
    return res.x.reshape(n_pop, n_zone), float(res.fun)


def lp_bound(
    scenario: Scenario,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    utilization_cap: float = 1.0,
    slice_s: float = 60.0,
) -> LpBound:
    """The fluid bound on mean client TTFT for a scenario run (see the module docstring)."""
    duration_s = scenario.duration_s if duration_s is None else duration_s
    world = build_world(scenario)
    demand = DemandModel(scenario.demand, scenario.populations)
    base_latency = zone_no_load_ttft_s(scenario, world.mean_prompt_tokens)
    frontend = np.array([scenario.gpus[z.gpu].frontend_s for z in scenario.zones.values()])
    rtt = world.rtt_s * (1.0 + scenario.network.jitter_ratio)
    home = np.array(world.zone_region)[None, :] != world.home_region[:, None]
    n = max(1, math.ceil(duration_s / slice_s))
    edges = np.linspace(0.0, duration_s, n + 1)
    total_w = total_ttft = total_rtt = total_cross = 0.0
    infeasible = 0
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        mid = 0.5 * (start + end)
        rates = demand.rates_rps(mid) * rate_scale
        up, slow = _zone_state_at(scenario, mid)
        capacity = np.where(up, world.capacity_rps / slow, 0.0) * utilization_cap
        zone_s = frontend + (base_latency - frontend) * slow
        latency = rtt + zone_s[None, :]
        latency[:, ~up] = np.inf
        x, value = solve_assignment(rates, latency, capacity)
        weight = float(rates.sum()) * (end - start)
        if x is None:
            infeasible += 1
            continue
        served = float(x.sum())
        total_w += weight
        total_ttft += weight * value / served
        total_rtt += weight * float((x * rtt).sum()) / served
        total_cross += weight * float(x[home].sum()) / served
    if infeasible or total_w == 0:
        nan = math.nan
        return LpBound(nan, nan, nan, utilization_cap, infeasible, n)
    return LpBound(
        float(total_ttft / total_w), float(total_rtt / total_w), float(total_cross / total_w), utilization_cap, 0, n
    )
