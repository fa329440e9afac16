"""The dispatch core's configuration, resolved once from a scenario, and the router's view built from it.

Both drivers build their `GridView` here, so a policy sees the same fields (SLO, tariff start time,
zone economics) in `grid sim` and `grid up`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from grid.routing.view import GridView, ZoneView
from grid.scenario import Scenario
from grid.serving.capacity import replica_capacity_rps
from grid.world import World


@dataclass(frozen=True)
class DispatchSettings:
    """The rules' numbers. `report_interval_s` 0 means fresh load reports (every zone state change
    reaches the router as it happens)."""

    max_retries: int  # attempts = 1 + max_retries, each on another zone
    retry_budget_ratio: float  # Envoy's retry budget: this share of requests in flight …
    retry_budget_min: int  # … but at least this many retrying at once
    context_tokens: int  # the model's context: prompt + answer must fit
    report_interval_s: float
    jitter_ratio: float  # each attempt's RTT × (1 + Exp(jitter_ratio))
    slo_ttft_s: float | None
    start_utc: dt.datetime | None
    gateway_hop_s: float = 0.0  # no client↔zone leg shorter than this (`client_zone_rtt_s`)
    gateway_idle_load: float = 0.0  # the gateway's load-dependent delay (`grid.dispatch.gateway_stage`)
    gateway_cpu_per_request_s: float = 0.0
    gateway_cpu_per_token_s: float = 0.0
    gateway_cores: float = 1.0
    candidate_zones: int = 0  # the view's shortlist per population (0: every zone), + spill_zones
    spill_zones: int = 0
    spill_refresh_s: float = 1.0

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> DispatchSettings:
        routing = scenario.routing
        return cls(
            max_retries=routing.max_retries,
            retry_budget_ratio=routing.retry_budget_ratio,
            retry_budget_min=routing.retry_budget_min,
            context_tokens=scenario.model.context_tokens,
            report_interval_s=routing.report_interval_s,
            jitter_ratio=scenario.network.jitter_ratio,
            slo_ttft_s=scenario.slo.ttft_s,
            start_utc=scenario.demand.start_utc,
            gateway_hop_s=scenario.network.gateway_hop_ms / 1000.0,
            gateway_idle_load=scenario.network.gateway_idle_load,
            gateway_cpu_per_request_s=scenario.network.gateway_cpu_per_request_ms / 1e3,
            gateway_cpu_per_token_s=scenario.network.gateway_cpu_per_token_us / 1e6,
            gateway_cores=scenario.network.gateway_cores,
            candidate_zones=routing.candidate_zones,
            spill_zones=routing.spill_zones,
            spill_refresh_s=routing.spill_refresh_s,
        )

    def with_changes(self, **changes) -> DispatchSettings:
        return replace(self, **changes)

    @property
    def fresh_reports(self) -> bool:
        return self.report_interval_s <= 0.0


UTILIZATION_WINDOW_S = 1.0  # with fresh reports, every zone is still refreshed this often (decay)


def report_tick_s(report_interval_s: float) -> float:
    """How often the router refreshes every zone's load: the interval, or with fresh reports (0) the
    utilization window, so the reported utilization of a quiet zone keeps decaying."""
    return report_interval_s if report_interval_s > 0 else UTILIZATION_WINDOW_S


def build_zone_views(scenario: Scenario, world: World) -> list[ZoneView]:
    """The static part of what a router knows about each zone."""
    views = []
    for i, zone_id in enumerate(world.zone_ids):
        zone = scenario.zones[zone_id]
        region = scenario.regions[zone.region]
        profile = scenario.gpus[zone.gpu]
        views.append(
            ZoneView(
                index=i,
                zone_id=zone_id,
                region=zone.region,
                replicas=zone.replicas,
                capacity_rps=float(world.capacity_rps[i]),
                prefill_s_per_token=profile.prefill_per_token_s,
                first_token_floor_s=profile.frontend_s + profile.prefill_base_s,
                price_usd_per_gpu_hour=region.price_usd_per_gpu_hour,
                carbon_g_per_kwh=region.carbon_g_per_kwh,
                tz=region.tz,
                kv_cache_tokens=profile.kv_cache_tokens * zone.replicas,
                capacity_rps_per_replica=replica_capacity_rps(
                    profile, world.mean_prompt_tokens, world.mean_output_tokens
                ),
                kv_tokens_per_replica=profile.kv_cache_tokens,
            )
        )
    return views


def client_zone_rtt_s(rtt_s: list[list[float]], gateway_hop_s: float) -> list[list[float]]:
    """The [population][zone] RTTs both clocks apply (before jitter): the network's (`NetworkState`,
    faults in force), floored so that neither leg is shorter than the gateway's own hop
    (`network.gateway_hop_ms`: RTT ≥ 2 × hop; unreachable stays inf). The simulator's requests then
    take what the live gateway's path (intake, routing, the Ray call to a zone actor and back) needs."""
    if gateway_hop_s <= 0.0:
        return rtt_s
    floor_s = 2.0 * gateway_hop_s
    return [[max(rtt, floor_s) for rtt in row] for row in rtt_s]


def build_view(scenario: Scenario, world: World, settings: DispatchSettings, rtt_s: list[list[float]]) -> GridView:
    """The router's view at the start of a run: every zone up, candidates from the network (`rtt_s`,
    `NetworkState.rtt_s()`; floored here by `client_zone_rtt_s`)."""
    view = GridView(
        zones=build_zone_views(scenario, world),
        rtt_s=client_zone_rtt_s(rtt_s, settings.gateway_hop_s),
        candidates=[],
        start_utc=settings.start_utc,
        slo_ttft_s=settings.slo_ttft_s,
        shortlist_zones=settings.candidate_zones,
        spill_zones=settings.spill_zones,
        spill_refresh_s=settings.spill_refresh_s,
    )
    view.refresh_candidates()
    return view
