"""The `autoscaling:` section resolved once, per zone, for both drivers (`ScalingSettings`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from grid.scenario import Scenario
from grid.serving.capacity import replica_capacity_rps
from grid.world import World

DEFAULT_CEILING_FACTOR = 4  # max_replicas when unset: this many times a zone's initial replicas


@dataclass(frozen=True)
class ZoneScaling:
    min_replicas: int
    max_replicas: int
    initial: int
    region: int  # index into the world's regions
    capacity_rps_per_replica: float  # saturated completions per second at the demand's mean sizes
    target_qps_per_replica: float


@dataclass(frozen=True)
class ScalingSettings:
    policy: str
    interval_s: float
    look_back_s: float
    upscale_delay_s: float
    downscale_delay_s: float
    target_ongoing_requests: float
    target_utilization: float
    cold_start_s: float
    spot_share: float
    spot_on_demand_base: int
    spot_discount: float
    spot_notice_s: float
    zones: tuple[ZoneScaling, ...]
    pools: tuple[int | None, ...]  # per region: most replicas paid for at once, None = no limit

    @classmethod
    def from_scenario(cls, scenario: Scenario, world: World, policy: str | None = None) -> ScalingSettings:
        a = scenario.autoscaling
        zones = []
        for zone_id in world.zone_ids:
            spec = scenario.zones[zone_id]
            bounds = a.zones.get(zone_id)
            low = bounds.min_replicas if bounds and bounds.min_replicas is not None else a.min_replicas
            high = bounds.max_replicas if bounds and bounds.max_replicas is not None else a.max_replicas
            if high is None:
                high = max(low, DEFAULT_CEILING_FACTOR * spec.replicas, 1)
            capacity = replica_capacity_rps(scenario.gpus[spec.gpu], world.mean_prompt_tokens, world.mean_output_tokens)
            zones.append(
                ZoneScaling(
                    min_replicas=low,
                    max_replicas=high,
                    initial=spec.replicas,
                    region=world.region_ids.index(spec.region),
                    capacity_rps_per_replica=capacity,
                    target_qps_per_replica=a.target_qps_per_replica or capacity * a.target_utilization,
                )
            )
        return cls(
            policy=policy or a.policy,
            interval_s=a.interval_s,
            look_back_s=a.look_back_s,
            upscale_delay_s=a.upscale_delay_s,
            downscale_delay_s=a.downscale_delay_s,
            target_ongoing_requests=a.target_ongoing_requests,
            target_utilization=a.target_utilization,
            cold_start_s=a.cold_start.total_s,
            spot_share=a.spot.share,
            spot_on_demand_base=a.spot.on_demand_base,
            spot_discount=a.spot.discount,
            spot_notice_s=a.spot.notice_s,
            zones=tuple(zones),
            pools=tuple(a.pools.get(region) for region in world.region_ids),
        )

    def split(self, replicas: int) -> tuple[int, int]:
        """A zone's replicas as (on demand, spot): the base on demand, `spot_share` of the rest spot."""
        spot = math.floor(max(0, replicas - self.spot_on_demand_base) * self.spot_share + 0.5)
        return replicas - spot, spot
