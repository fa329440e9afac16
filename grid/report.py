"""The run report: per population, per zone and for the whole grid; as a table or as JSON.

Cost is what the provisioned GPUs cost while the run lasts (busy or idle), per hour and per million
generated tokens. Carbon is the GPUs' energy — idle power plus the busy share of the rest — times
the region's grid intensity, per million generated tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grid.economics import ZoneEconomics, carbon_g, cost_usd_per_hour
from grid.scaling.billing import fleet_cost_usd, replica_hours
from grid.scenario import Scenario
from grid.stats import GroupSummary, RunStats
from grid.world import World


@dataclass
class Report:
    meta: dict[str, Any]
    grid: GroupSummary
    populations: list[GroupSummary]
    zones: list[GroupSummary]
    totals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "grid": self.grid.to_dict() | {k: _json(v) for k, v in self.totals.items()},
            "populations": [p.to_dict() for p in self.populations],
            "zones": [z.to_dict() for z in self.zones],
        }


def _json(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _group(stats: RunStats, name: str, pops: list[int], zones: list[int]) -> GroupSummary:
    completed = int(stats.completed[np.ix_(pops, zones)].sum())
    rejected = int(stats.rejected[np.ix_(pops, zones)].sum())
    failed = int(stats.failed[np.ix_(pops, zones)].sum())
    retries = int(stats.retries[np.ix_(pops, zones)].sum())
    ended = completed + rejected + failed
    good = int(stats.good[np.ix_(pops, zones)].sum())
    prompt = int(stats.prompt_tokens[np.ix_(pops, zones)].sum())
    cached = int(stats.cached_tokens[np.ix_(pops, zones)].sum())
    summary = GroupSummary(
        name=name,
        completed=completed,
        rejected=rejected,
        failed=failed,
        retries=retries,
        slo_attainment=good / ended if ended else math.nan,
        ttft_s=stats.quantiles("ttft_s", pops, zones),
        tpot_s=stats.quantiles("tpot_s", pops, zones),
        e2e_s=stats.quantiles("e2e_s", pops, zones),
    )
    # vLLM's prefix-cache hit rate: the share of completed requests' prompt tokens served from cache
    summary.extra["prefix_cache_hit_rate"] = cached / prompt if prompt else math.nan
    return summary


@dataclass(frozen=True)
class ZoneFigures:
    """What a driver measured inside one zone's serving model over the run."""

    work_s: float  # Zone.work_s: admitted work at saturated efficiency
    area_queued: float  # Zone.area_queued: ∫ queued dt
    area_in_system: float  # Zone.area_in_system: ∫ in_system dt
    billing: list[tuple[float, int, int]] | None = None  # Zone.billing: (t, on-demand, spot) replicas paid for


def build_report(
    scenario: Scenario,
    world: World,
    stats: RunStats,
    zone_figures: list[ZoneFigures],
    duration_s: float,
    meta: dict[str, Any],
    in_flight: int,
) -> Report:
    """The report of a run, from either driver. `meta` names the run (policy, seed, ...)."""
    n_pop, n_zone = stats.n_populations, stats.n_zones
    all_pops, all_zones = list(range(n_pop)), list(range(n_zone))
    all_zones_unrouted = list(range(n_zone + 1))  # rejections before routing have zone index n_zone
    duration_h = duration_s / 3600.0

    populations = []
    for p, pop_id in enumerate(world.population_ids):
        row = _group(stats, pop_id, [p], all_zones)
        row.arrivals = stats.arrivals[p]
        row.rejected = int(stats.rejected[p].sum())
        row.failed = int(stats.failed[p].sum())
        ended = row.completed + row.rejected + row.failed
        row.slo_attainment = int(stats.good[p].sum()) / ended if ended else math.nan
        home = [z for z in all_zones if world.zone_region[z] == world.home_region[p]]
        away = [z for z in all_zones if z not in home]
        row.extra["cross_region_share"] = (
            float(stats.completed[p, away].sum()) / row.completed if row.completed else math.nan
        )
        row.extra["home_region"] = world.region_ids[int(world.home_region[p])]
        populations.append(row)

    zones = []
    total_cost_usd_per_h = 0.0
    total_carbon_g = 0.0
    fleet_totals = {"cost_usd": 0.0, "replica_hours": 0.0, "spot_replica_hours": 0.0}
    for z, zone_id in enumerate(world.zone_ids):
        spec = scenario.zones[zone_id]
        economics = ZoneEconomics.of(scenario, zone_id)
        figures = zone_figures[z]
        row = _group(stats, zone_id, all_pops, [z])
        row.arrivals = row.completed + row.rejected + row.failed
        fleet = _fleet_figures(scenario, zone_id, figures.billing, duration_s)
        for key, value in fleet.items():
            fleet_totals[key] += value
        scaled = figures.billing is not None and len(figures.billing) > 1  # its replicas changed during the run
        replica_s = (
            (fleet["replica_hours"] + fleet["spot_replica_hours"]) * 3600.0 if scaled else spec.replicas * duration_s
        )
        utilization = figures.work_s / replica_s if replica_s else math.nan
        cost_usd_per_h = economics.cost_usd_per_hour  # at the list price, like a static fleet's
        if scaled:
            spot_factor = 1.0 - scenario.autoscaling.spot.discount
            paid_h = fleet["replica_hours"] + fleet["spot_replica_hours"] * spot_factor
            gpus = paid_h / duration_h * spec.gpus_per_replica  # the mean GPUs paid for
            cost_usd_per_h = cost_usd_per_hour(gpus, economics.price_usd_per_gpu_hour)
        busy = utilization if not math.isnan(utilization) else 0.0
        zone_carbon_g = carbon_g(economics.energy_kwh(busy, duration_s), economics.carbon_g_per_kwh)
        total_cost_usd_per_h += cost_usd_per_h
        total_carbon_g += zone_carbon_g
        row.extra.update(
            region=spec.region,
            replicas=spec.replicas,
            utilization=utilization,
            mean_queue=figures.area_queued / duration_s if duration_s else math.nan,
            mean_in_system=figures.area_in_system / duration_s if duration_s else math.nan,
            capacity_rps=float(world.capacity_rps[z]),
            cost_usd_per_hour=cost_usd_per_h,
            carbon_g=zone_carbon_g,
            **fleet,
        )
        zones.append(row)

    grid_row = _group(stats, "grid", all_pops, all_zones)
    grid_row.arrivals = int(sum(stats.arrivals))
    grid_row.rejected = int(stats.rejected[:, all_zones_unrouted].sum())
    grid_row.failed = int(stats.failed[:, all_zones_unrouted].sum())
    ended = grid_row.completed + grid_row.rejected + grid_row.failed
    grid_row.slo_attainment = int(stats.good.sum()) / ended if ended else math.nan
    output_tokens = float(stats.output_tokens.sum())
    cross = sum((p.extra["cross_region_share"] or 0.0) * p.completed for p in populations if p.completed)
    totals = {
        "in_flight": in_flight,
        "throughput_rps": grid_row.completed / duration_s if duration_s else math.nan,
        "output_tokens_per_s": output_tokens / duration_s if duration_s else math.nan,
        "cross_region_share": cross / grid_row.completed if grid_row.completed else math.nan,
        "utilization": float(
            sum(z.extra["utilization"] * z.extra["replicas"] for z in zones if z.extra["replicas"])
            / max(1, sum(z.extra["replicas"] for z in zones))
        ),
        # Over the time arrivals came (a drained run goes on after them), at the demand's own mean sizes.
        "offered_load": (grid_row.arrivals / meta.get("arrival_window_s", duration_s)) / world.total_capacity_rps
        if duration_s and world.total_capacity_rps
        else math.nan,
        "cost_usd_per_hour": total_cost_usd_per_h,
        "usd_per_1m_output_tokens": total_cost_usd_per_h * duration_h / (output_tokens / 1e6)
        if output_tokens
        else math.nan,
        "carbon_g_per_1m_output_tokens": total_carbon_g / (output_tokens / 1e6) if output_tokens else math.nan,
        **fleet_totals,
    }
    meta = {
        "scenario": scenario.name,
        "duration_s": duration_s,
        "report_interval_s": scenario.routing.report_interval_s,
        "slo": {"ttft_s": scenario.slo.ttft_s, "tpot_s": scenario.slo.tpot_s, "e2e_s": scenario.slo.e2e_s},
        **meta,
    }
    return Report(meta=meta, grid=grid_row, populations=populations, zones=zones, totals=totals)


def _fleet_figures(
    scenario: Scenario, zone_id: str, billing: list[tuple[float, int, int]] | None, duration_s: float
) -> dict[str, float]:
    """A zone's replica-hours (on demand, spot) and what they cost at its region's time-of-use
    tariff (grid.scaling.billing); a driver that keeps no timeline had its replicas all along."""
    spec = scenario.zones[zone_id]
    region = scenario.regions[spec.region]
    timeline = billing if billing is not None else [(0.0, spec.replicas, 0)]
    on_demand_h, spot_h = replica_hours(timeline, duration_s)
    cost = fleet_cost_usd(
        timeline,
        duration_s,
        region.price_usd_per_gpu_hour * spec.gpus_per_replica,
        region.tz,
        scenario.demand.start_utc,
        scenario.autoscaling.spot.discount,
    )
    return {"cost_usd": cost, "replica_hours": on_demand_h, "spot_replica_hours": spot_h}


# --- rendering --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 1000:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def format_table(report: Report) -> str:
    """A readable report: one table per population, one per zone, then grid totals."""
    meta, totals = report.meta, report.totals
    lines = [
        f"scenario {meta['scenario']} · policy {meta.get('policy')} · seed {meta.get('seed')} · "
        f"{meta['duration_s']:.0f} s {meta.get('clock', 'simulated')} · "
        f"SLO TTFT ≤ {meta['slo']['ttft_s']} s, TPOT ≤ {meta['slo']['tpot_s']} s",
        "",
    ]
    head = (
        f"{'':<16}{'requests':>9}{'done':>9}{'rej':>6}{'fail':>6}{'SLO':>7}"
        f"{'TTFT p50':>10}{'p90':>7}{'p99':>7}{'TPOT p50':>10}{'p99':>6}{'E2E p50':>9}{'p99':>7}"
    )

    def row(g: GroupSummary, tail: str) -> str:
        return (
            f"{g.name[:15]:<16}{g.arrivals:>9}{g.completed:>9}{g.rejected:>6}{g.failed:>6}{_pct(g.slo_attainment):>7}"
            f"{_ms(g.ttft_s.get('p50')):>10}{_ms(g.ttft_s.get('p90')):>7}{_ms(g.ttft_s.get('p99')):>7}"
            f"{_ms(g.tpot_s.get('p50')):>10}{_ms(g.tpot_s.get('p99')):>6}"
            f"{_ms(g.e2e_s.get('p50')):>9}{_ms(g.e2e_s.get('p99')):>7}{tail}"
        )

    lines += ["populations (client side, ms)" + " " * 80 + "cross-region", head + f"{'share':>8}"]
    lines += [row(p, f"{_pct(p.extra['cross_region_share']):>8}") for p in report.populations]
    lines += ["", "zones (client side, ms)", head + f"{'util':>7}{'queue':>7}"]
    lines += [row(z, f"{_pct(z.extra['utilization']):>7}{z.extra['mean_queue']:>7.1f}") for z in report.zones]
    lines += ["", row(report.grid, ""), ""]
    lines.append(
        f"throughput {totals['throughput_rps']:.1f} req/s, {totals['output_tokens_per_s']:.0f} output tok/s · "
        f"offered load {_pct(totals['offered_load'])} of capacity · GPU utilization {_pct(totals['utilization'])} · "
        f"cross-region {_pct(totals['cross_region_share'])} · retries {report.grid.retries} · "
        f"in flight at end {totals['in_flight']}"
    )
    lines.append(
        f"cost ${totals['cost_usd_per_hour']:.2f}/h, ${totals['usd_per_1m_output_tokens']:.3f} per 1M output tokens · "
        f"carbon {totals['carbon_g_per_1m_output_tokens']:.0f} gCO2 per 1M output tokens"
    )
    hit_rate = report.grid.extra.get("prefix_cache_hit_rate", math.nan)
    if hit_rate > 0:  # only workloads with prefix information can hit
        by_zone = " · ".join(f"{z.name} {_pct(z.extra['prefix_cache_hit_rate'])}" for z in report.zones)
        lines.append(f"prefix cache hit rate {_pct(hit_rate)} of prompt tokens ({by_zone})")
    demand = meta.get("demand")
    if demand and demand.get("kind") == "trace":
        tail_s = meta["duration_s"] - meta.get("arrival_window_s", meta["duration_s"])
        drained = f", drained {tail_s:.0f} s after its end" if demand["end"] == "drain" else ""
        lines.append(
            f"trace {demand['path']} ({demand['format']}): {demand['requests']:,} requests from "
            f"{demand['rows_read']:,} rows · {demand['failed_rows']:,} failed rows ({demand['failed_rows_policy']}) · "
            f"{demand.get('requests_kept_in_session', 0):,} kept in their session's population · mean sizes "
            f"{demand['mean_prompt_tokens']:.0f}/{demand['mean_output_tokens']:.0f} tokens{drained}"
        )
    elif demand and demand.get("kind") == "sessions":
        lines.append(
            f"sessions ({', '.join(demand['apps'])}): {demand['mean_turns']:.2f} turns per session · mean sizes "
            f"{demand['mean_prompt_tokens']:.0f}/{demand['mean_output_tokens']:.0f} tokens"
        )
    return "\n".join(lines)
