"""Reference bounds for routing: fluid assignments of each population's demand to zones.

**The fluid bound** (`lp_bound`, zone_model "no_load") is an LP per time slice:

    minimize   Σ_p,z x[p,z] · (rtt[p,z] · (1 + jitter_ratio) + no_load_ttft[z])     (req/s · s)
    subject to Σ_z x[p,z] = λ_p            every population is served
               Σ_p x[p,z] ≤ cap_z          every zone within its capacity
               x ≥ 0

Divided by Σ λ_p this is the mean TTFT of a router with perfect knowledge and no queueing: every
request's client TTFT is at least its round trip (the mean jitter is exponential with mean
`jitter_ratio` × RTT) plus its zone's no-load time to first token — the API frontend plus one prefill
of the request's prompt, (prefill_base_s + prefill_per_token_s · prompt) · slow_factor; the term is
linear in the prompt, so the mean prompt gives its exact mean. Waiting for a running decode step,
batching with other prompts and queueing only add to it, so the LP is a true lower bound on any
policy's mean TTFT for the same demand (a fluid relaxation: it ignores the variance that makes
queues). At high load it is far from reachable: a zone at 80% load has queueing no router removes.

**The load-aware reference** (zone_model "load_aware") prices each zone at its measured TTFT at
the load the assignment gives it, f_z(λ_z / cap_z) from `grid.bench.zone_curve` (the serving model
driven by Poisson arrivals of the scenario's sizes):

    minimize   Σ_p,z x[p,z] · rtt[p,z] · (1 + jitter_ratio)  +  Σ_z λ_z · f_z(λ_z / cap_z),  λ_z = Σ_p x[p,z]

λ·f(λ/cap) is convex (f rises ever faster), so its piecewise-linear interpolation between the
measured points is the maximum of its secants: an LP again, with one epigraph variable per zone.
Its optimum is the mean TTFT of the best *static* split with perfect knowledge of mean demand —
what "a router with perfect knowledge" can be held to at high load. It is not a strict lower bound:
a router that reads live load smooths the arrivals each zone sees and can beat Poisson splitting,
so a policy slightly below it is possible and not an error.

Demand varies (diurnal curve, flash crowds) and zones fail, so both are solved per time slice on the
slice's mean rates and live capacities; the result is the arrival-weighted mean. `capacity_rps` is
`grid.world.build_world(s).capacity_rps` (saturated completions at mean sizes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from grid.bench.zone_curve import zone_ttft_curve
from grid.demand.arrivals import DemandModel
from grid.scenario import Scenario
from grid.world import build_world


@dataclass(frozen=True)
class LpBound:
    zone_model: str  # "no_load" (the fluid lower bound) or "load_aware" (the static-split reference)
    mean_ttft_s: float  # arrival-weighted mean over slices; NaN if any slice is infeasible
    mean_rtt_s: float  # its network part
    cross_region_share: float  # share of demand served outside the home region
    infeasible_slices: int
    slices: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


ZONE_MODELS = ("no_load", "load_aware")


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


# A zone's convex cost λ·f(λ/cap) as secants: cost ≥ intercept + slope · λ for every row (req/s·s, s).
Secants = tuple[np.ndarray, np.ndarray]


def solve_assignment(
    demand_rps: np.ndarray,
    latency_s: np.ndarray,
    capacity_rps: np.ndarray,
    zone_cost: list[Secants | None] | None = None,
) -> tuple[np.ndarray | None, float]:
    """The LP on one slice: x[p,z] ≥ 0 minimizing Σ x·latency (+ each zone's convex cost, given as
    secants); (None, NaN) when demand exceeds capacity."""
    n_pop, n_zone = latency_s.shape
    n_x = n_pop * n_zone
    cost_zones = [z for z in range(n_zone) if zone_cost is not None and zone_cost[z] is not None]
    n_var = n_x + len(cost_zones)  # x, then one epigraph variable per priced zone
    usable = np.isfinite(latency_s)
    objective = np.concatenate([np.where(usable, latency_s, 0.0).ravel(), np.ones(len(cost_zones))])
    a_eq = np.zeros((n_pop, n_var))
    for p in range(n_pop):
        a_eq[p, p * n_zone : (p + 1) * n_zone] = 1.0
    load = np.zeros((n_zone, n_var))  # row z · variables = λ_z
    for z in range(n_zone):
        load[z, z:n_x:n_zone] = 1.0
    rows, bounds_ub = [load], [capacity_rps]
    for k, z in enumerate(cost_zones):  # slope · λ_z − t_z ≤ −intercept
        intercept, slope = zone_cost[z]
        rows.append(slope[:, None] * load[z][None, :])
        rows[-1][:, n_x + k] = -1.0
        bounds_ub.append(-intercept)
    bounds = [(0.0, None if usable.ravel()[k] else 0.0) for k in range(n_x)] + [(0.0, None)] * len(cost_zones)
    res = linprog(
        objective,
        A_ub=np.vstack(rows),
        b_ub=np.concatenate(bounds_ub),
        A_eq=a_eq,
        b_eq=demand_rps,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        return None, math.nan
    return res.x[:n_x].reshape(n_pop, n_zone), float(res.fun)


def secants(load_rps: np.ndarray, cost: np.ndarray) -> Secants:
    """Secants of the lower convex hull of (0, 0) and the points (load, cost): the piecewise-linear
    convex function through them, as `cost ≥ intercept + slope · load` rows."""
    hull = [(0.0, 0.0)]
    for point in zip(load_rps.tolist(), cost.tolist(), strict=True):
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) <= 0.0:
            hull.pop()  # the middle point lies on or above the chord: not on the convex hull
        hull.append(point)
    (x0, y0), (x1, y1) = np.array(hull[:-1]).T, np.array(hull[1:]).T
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def _cross(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _zone_costs(scenario: Scenario, world, slow: np.ndarray, up: np.ndarray) -> tuple[list[Secants | None], np.ndarray]:
    """Each up zone's secants of λ·f(λ/cap) and its load limit (the curve's last measured point)."""
    costs: list[Secants | None] = []
    limits = np.zeros(len(world.zone_ids))
    for z, zone_id in enumerate(world.zone_ids):
        if not up[z]:
            costs.append(None)
            continue
        zone = scenario.zones[zone_id]
        utilizations, ttft_s = zone_ttft_curve(
            scenario.gpus[zone.gpu],
            zone.replicas,
            scenario.demand.sizes,
            world.mean_prompt_tokens,
            world.mean_output_tokens,
            float(slow[z]),
        )
        load_rps = np.array(utilizations) * world.capacity_rps[z] / slow[z]
        costs.append(secants(load_rps, load_rps * np.array(ttft_s)))
        limits[z] = load_rps[-1]
    return costs, limits


def lp_bound(
    scenario: Scenario,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    zone_model: str = "no_load",
    slice_s: float = 60.0,
) -> LpBound:
    """The fluid bound (`no_load`) or the load-aware reference (`load_aware`) on mean client TTFT
    for a scenario run (see the module docstring)."""
    if zone_model not in ZONE_MODELS:
        raise ValueError(f"zone_model must be one of {ZONE_MODELS}, not {zone_model!r}")
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
        if zone_model == "load_aware":
            zone_cost, capacity = _zone_costs(scenario, world, slow, up)
            latency = rtt.copy()
        else:
            zone_cost, capacity = None, np.where(up, world.capacity_rps / slow, 0.0)
            latency = rtt + (frontend + (base_latency - frontend) * slow)[None, :]
        latency[:, ~up] = np.inf
        x, value = solve_assignment(rates, latency, capacity, zone_cost)
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
        return LpBound(zone_model, nan, nan, nan, infeasible, n)
    return LpBound(
        zone_model, float(total_ttft / total_w), float(total_rtt / total_w), float(total_cross / total_w), 0, n
    )
