"""What the built-in dashboard and `/grid/zones` show: per-zone state, recent outcomes, flows and the map.

`zones_json(gateway)` is the body of `/grid/zones` (the routing view, health and load of every zone,
plus the gateway's counters); `DashboardStats` adds per-zone ended-request counters, recent client
TTFTs and population × zone flows; `world_json` is the scenario's geography for the map.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from grid.demo.land_outline import land_rings
from grid.live.responses import ABORT, RequestRecord
from grid.scenario import Scenario
from grid.serving.request import ERROR, LENGTH, STOP
from grid.world import World

if TYPE_CHECKING:
    from grid.live.gateway import GridGateway


def zones_json(gateway: GridGateway) -> dict:
    """Every zone's routing view, health and last load report, and the gateway's counters."""
    view = gateway.view
    monitor = gateway.monitor
    now = gateway.now()
    zones = []
    for i, zv in enumerate(view.zones):
        report = monitor.reports[i] or {}
        zones.append(
            {
                "zone": zv.zone_id,
                "region": zv.region,
                "up": zv.up,
                "reachable": report != {},
                "health": gateway.health[i].to_dict(now),
                "replicas": zv.replicas,  # serving; warming and draining ones do not take work
                "warming": zv.warming,
                "draining": zv.draining,
                "target": gateway.fleet.controller.targets[i],  # the autoscaler's (or a manual) target
                "capacity_rps": zv.capacity_rps,
                "outstanding": zv.outstanding,
                "waiting": zv.waiting,
                "running": zv.running,
                "kv_usage": zv.kv_usage,
                "utilization": zv.utilization,
                "ttft_ewma_s": zv.zone_ttft_s,
                "slow_factor": report.get("slow_factor", 1.0),
                "sent_since_report": zv.sent_since_report,
                "report_age_s": max(0.0, now - zv.report_s),
                "sent_total": monitor.sent_total[i],
            }
        )
    return {
        "policy": getattr(gateway.policy, "name", type(gateway.policy).__name__),
        "report_interval_s": gateway.report_interval_s,
        "model": gateway.model_name,
        "in_flight": len(gateway.live),
        "retrying": gateway.dispatch.budget.retrying,
        "placed_by_region": gateway.zones.placed_by_region,
        "counts": dict(gateway.counts),
        "autoscaling": gateway.fleet.to_dict(),
        **({"hedges": dict(gateway.hedging.counts)} if gateway.hedging is not None else {}),
        "zones": zones,
    }


class DashboardStats:
    """What the built-in dashboard (`/dashboard`) reads beyond `zones_json`: per-zone ended-request
    counters, each zone's recent client TTFTs (bounded) and the population × zone flow counters.
    Bounded by the scenario: every key is a scenario id, never request text."""

    RECENT_TTFT = 256  # TTFTs kept per zone for the p99

    def __init__(self, world: World) -> None:
        self.world = world
        self.zone_index = {z: i for i, z in enumerate(world.zone_ids)}
        self.pop_index = {p: i for i, p in enumerate(world.population_ids)}
        n_p, n_z = len(world.population_ids), len(world.zone_ids)
        self.completed = np.zeros((n_p, n_z), dtype=np.int64)
        self.failed = np.zeros(n_z, dtype=np.int64)
        self.prompt_tokens = np.zeros(n_z, dtype=np.int64)  # of completed requests, for the cache hit rate
        self.cached_tokens = np.zeros(n_z, dtype=np.int64)
        self.ttft: list[deque[float]] = [deque(maxlen=self.RECENT_TTFT) for _ in range(n_z)]

    def observe(self, record: RequestRecord) -> None:
        zi = self.zone_index.get(record.zone) if record.zone is not None else None
        pi = self.pop_index.get(record.population)
        if zi is None or pi is None:
            return
        if record.status in (STOP, LENGTH):
            self.completed[pi, zi] += 1
            self.prompt_tokens[zi] += record.prompt_tokens
            self.cached_tokens[zi] += record.cached_tokens
            if math.isfinite(record.ttft_s):
                self.ttft[zi].append(record.ttft_s)
        elif record.status in (ERROR, ABORT):
            self.failed[zi] += 1

    def zone_fields(self, zi: int) -> dict:
        recent = self.ttft[zi]
        p99 = float(np.quantile(np.fromiter(recent, float), 0.99)) if recent else None
        return {
            "completed_total": int(self.completed[:, zi].sum()),
            "failed_total": int(self.failed[zi]),
            "ttft_p99_s": p99,
            # share of prompt tokens served from the zone's prefix cache (as `grid sim` reports it)
            "prefix_cache_hit_rate": (
                float(self.cached_tokens[zi] / self.prompt_tokens[zi]) if self.prompt_tokens[zi] else None
            ),
        }

    def flows(self) -> list[dict]:
        w = self.world
        return [
            {"population": w.population_ids[p], "zone": w.zone_ids[z], "completed_total": int(self.completed[p, z])}
            for p in range(len(w.population_ids))
            for z in range(len(w.zone_ids))
        ]


def world_json(scenario: Scenario, world: World) -> dict:
    """The scenario's geography for the dashboard map: regions, zones and populations with lat/lon,
    and the land's outline (Natural Earth 1:110m, grid.demo.land_outline) to draw them on."""
    return {
        "land": land_rings(),
        "regions": [
            {"region": r, "name": reg.name, "lat": reg.lat, "lon": reg.lon}
            for r, reg in ((r, scenario.regions[r]) for r in world.region_ids)
        ],
        "zones": [{"zone": z, "region": scenario.zones[z].region} for z in world.zone_ids],
        "populations": [
            {
                "population": p,
                "name": scenario.populations[p].name,
                "lat": scenario.populations[p].lat,
                "lon": scenario.populations[p].lon,
            }
            for p in world.population_ids
        ],
    }
