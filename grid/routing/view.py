"""What a router knows when it decides: a GridView, refreshed by the driver.

Load signals (`outstanding`, `waiting`, `running`, `kv_usage`) and the prefix-cache summary
(`cached_units`) come from the zones' load reports and are as old as `report_age_s(zone)` says — real
routers see stale load. `sent_since_report` is the router's own count of requests it sent to a zone
after that zone's last report, always exact.
RTTs are per population and include network faults (edge routers measure their paths).
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections.abc import Callable, Container, Hashable
from dataclasses import dataclass, field
from typing import Final


class ZoneView:
    """One zone as the router sees it. Static fields never change during a run."""

    __slots__ = (
        "index",
        "zone_id",
        "region",
        "replicas",
        "capacity_rps",
        "prefill_s_per_token",
        "first_token_floor_s",
        "price_usd_per_gpu_hour",
        "carbon_g_per_kwh",
        "tz",
        "kv_cache_tokens",
        "capacity_rps_per_replica",
        "kv_tokens_per_replica",
        "warming",
        "draining",
        "spot",
        "up",
        "outstanding",
        "waiting",
        "running",
        "kv_usage",
        "utilization",
        "zone_ttft_s",
        "report_s",
        "sent_since_report",
        "cached_units",
        "cached_units_s",
    )

    def __init__(
        self,
        index: int,
        zone_id: str,
        region: str,
        replicas: int,
        capacity_rps: float,
        prefill_s_per_token: float,
        first_token_floor_s: float,
        price_usd_per_gpu_hour: float,
        carbon_g_per_kwh: float,
        tz: str = "UTC",
        kv_cache_tokens: int = 0,
        capacity_rps_per_replica: float | None = None,
        kv_tokens_per_replica: int | None = None,
    ) -> None:
        self.index = index
        self.zone_id = zone_id
        self.region = region
        self.replicas = replicas
        self.capacity_rps = capacity_rps  # completions per second at saturation, typical sizes
        self.prefill_s_per_token = prefill_s_per_token
        self.first_token_floor_s = first_token_floor_s  # frontend + one decode step: TTFT at no load
        self.price_usd_per_gpu_hour = price_usd_per_gpu_hour
        self.carbon_g_per_kwh = carbon_g_per_kwh
        self.tz = tz  # the region's IANA time zone: its local hour sets its tariff (grid.routing.tariff)
        self.kv_cache_tokens = kv_cache_tokens  # KV-cache room of all its replicas: what a prefix cache can hold
        # Its fleet (grid.dispatch.reports.apply_replicas): `replicas` serve; others warm up or drain.
        per = max(replicas, 1)
        self.capacity_rps_per_replica = (
            capacity_rps / per if capacity_rps_per_replica is None else capacity_rps_per_replica
        )
        self.kv_tokens_per_replica = kv_cache_tokens // per if kv_tokens_per_replica is None else kv_tokens_per_replica
        self.warming = 0
        self.draining = 0
        self.spot = 0  # of the replicas paid for, those bought as spot (prices its cost; routing ignores it)
        self.up = True
        self.outstanding = 0  # admitted and unfinished, as last reported
        self.waiting = 0
        self.running = 0
        self.kv_usage = 0.0
        self.utilization = 0.0  # share of saturated capacity used over the last report window
        self.zone_ttft_s = 0.0  # the zone's recent time to first token, network excluded
        self.report_s = 0.0
        self.sent_since_report = 0
        # The zone's prefix-cache summary (`Zone.cached_units`): containers of unit hashes, a unit cached
        # when any holds it; as old as `cached_units_s` says (the report that carried it).
        self.cached_units: tuple[Container[Hashable], ...] = ()  # unit hashes (grid.serving.kv_cache.UnitHash)
        self.cached_units_s = 0.0

    @property
    def load(self) -> float:
        """Reported outstanding requests per replica (inf for a zone without replicas)."""
        return self.outstanding / self.replicas if self.replicas else math.inf


# Utilization at which a zone has no headroom left (1/1.4: Envoy's overprovisioning factor): latency_aware
# and its kin use it only when no zone has headroom, and a shortlist's spill picks skip it likewise.
HEADROOM_UTILIZATION: Final = 1 / 1.4


def _nearest_first(row: list[float]) -> Callable[[int], tuple[float, int]]:
    """Sort key over zone indexes: lowest RTT in `row` first, ties by index."""
    return lambda i: (row[i], i)


def _headroom_first(zones: list[ZoneView], row: list[float]) -> Callable[[int], tuple[bool, float, int]]:
    """Sort key over zone indexes: zones with headroom first, then nearest first."""
    return lambda i: (zones[i].utilization >= HEADROOM_UTILIZATION, row[i], i)


@dataclass
class GridView:
    """The snapshot a policy decides on.

    `candidates[population]` is what a decision considers: every zone up and reachable, nearest first,
    or with a shortlist (`shortlist_zones` > 0, the scenario's `routing.candidate_zones`) the population's
    nearest `shortlist_zones` of them plus `spill_zones` others with headroom (the nearest whose reported
    utilization is below `HEADROOM_UTILIZATION`), so that a decision costs O(k), not O(zones), and
    a population whose nearby zones are full still sees where load can go. The spill picks follow load:
    the dispatch core refreshes them every `spill_refresh_s` (`refresh_spill`); the shortlist follows
    health and the network (`refresh_candidates`). A shortlist at least as long as the reachable zones
    leaves the candidates exactly as without one."""

    zones: list[ZoneView]
    rtt_s: list[list[float]]  # [population][zone]: current base RTT (inf = unreachable)
    candidates: list[list[int]]  # [population]: the zones a decision considers, nearest first
    now_s: float = 0.0
    start_utc: dt.datetime | None = None  # wall-clock time of now_s = 0 (for tariffs by local hour)
    slo_ttft_s: float | None = None  # the scenario's TTFT objective, for policies that aim at it
    shortlist_zones: int = 0  # 0: every reachable zone is a candidate
    spill_zones: int = 0
    spill_refresh_s: float = 1.0
    spill_due_s: float = math.inf  # when the spill picks are next refreshed (inf: no shortlist cuts anything)
    reachable: list[list[int]] = field(default_factory=list)  # [population]: up and reachable, nearest first
    # The lowest no-load floor over the zones (`first_token_floor_s`, `prefill_s_per_token`: their GPU
    # profiles', fixed), taken by `refresh_candidates`: a prompt's TTFT anywhere is at least the zone's RTT
    # plus base + prompt tokens × per-token (0 and 0 until then: still a lower bound).
    floor_base_s: float = 0.0
    floor_per_token_s: float = 0.0

    def report_age_s(self, zone: int) -> float:
        return self.now_s - self.zones[zone].report_s

    def refresh_candidates(self) -> None:
        """Recompute each population's reachable, up zones (after a health, fleet or network change)."""
        if self.zones:
            self.floor_base_s = min(z.first_token_floor_s for z in self.zones)
            self.floor_per_token_s = min(z.prefill_s_per_token for z in self.zones)
        self.reachable = [
            sorted(
                (z.index for z in self.zones if z.up and z.replicas > 0 and math.isfinite(row[z.index])),
                key=_nearest_first(row),
            )
            for row in self.rtt_s
        ]
        k = self.shortlist_zones
        if k <= 0 or all(len(zones) <= k for zones in self.reachable):
            self.candidates, self.spill_due_s = self.reachable, math.inf
        else:
            self.refresh_spill(self.now_s)

    def refresh_spill(self, now_s: float) -> None:
        """Each population's shortlist with its spill picks as the zones' load reports stand now."""
        k, m = self.shortlist_zones, self.spill_zones
        zones = self.zones
        candidates = []
        for row, reachable in zip(self.rtt_s, self.reachable, strict=True):
            if len(reachable) <= k:
                candidates.append(reachable)
                continue
            spill = heapq.nsmallest(m, reachable[k:], key=_headroom_first(zones, row))
            candidates.append(sorted(reachable[:k] + spill, key=_nearest_first(row)))
        self.candidates = candidates
        self.spill_due_s = now_s + self.spill_refresh_s
