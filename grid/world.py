"""A scenario compiled for the drivers: ordered ids, index tables and RTT matrices in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.demand.plan import mean_request_tokens
from grid.scenario import Scenario, region_rtt_ms
from grid.serving.capacity import replica_capacity_rps


@dataclass(frozen=True)
class World:
    zone_ids: list[str]
    region_ids: list[str]
    population_ids: list[str]
    zone_region: list[int]  # region index of each zone
    population_region_rtt_s: np.ndarray  # [population, region]
    rtt_s: np.ndarray  # [population, zone]: client ↔ zone round trip, before jitter and faults
    region_rtt_s: np.ndarray  # [region, region]
    home_region: np.ndarray  # [population]: the nearest region
    capacity_rps: np.ndarray  # [zone]: saturated completions per second at the demand's mean sizes
    gpus: np.ndarray  # [zone]: GPUs provisioned
    mean_prompt_tokens: float
    mean_output_tokens: float

    @property
    def total_capacity_rps(self) -> float:
        return float(self.capacity_rps.sum())


def build_world(s: Scenario, mean_tokens: tuple[float, float] | None = None) -> World:
    """`mean_tokens` (prompt, output) sets the request size capacity is computed at (default: the
    scenario's demand, `grid.demand.plan.mean_request_tokens`)."""
    zone_ids = list(s.zones)
    region_ids = list(s.regions)
    population_ids = list(s.populations)
    region_index = {r: i for i, r in enumerate(region_ids)}
    zone_region = [region_index[s.zones[z].region] for z in zone_ids]
    pop_region = (
        np.array([[s.network.population_rtt_ms[p][r] for r in region_ids] for p in population_ids], dtype=float)
        / 1000.0
    )
    rtt = pop_region[:, zone_region]
    region_rtt = (
        np.array([[region_rtt_ms(s.network, a, b) for b in region_ids] for a in region_ids], dtype=float) / 1000.0
    )
    mean_prompt, mean_output = mean_tokens or mean_request_tokens(s)  # a trace's own sizes, the sessions'
    capacity = np.array(
        [s.zones[z].replicas * replica_capacity_rps(s.gpus[s.zones[z].gpu], mean_prompt, mean_output) for z in zone_ids]
    )
    gpus = np.array([s.zones[z].replicas * s.zones[z].gpus_per_replica for z in zone_ids], dtype=float)
    return World(
        zone_ids=zone_ids,
        region_ids=region_ids,
        population_ids=population_ids,
        zone_region=zone_region,
        population_region_rtt_s=pop_region,
        rtt_s=rtt,
        region_rtt_s=region_rtt,
        home_region=np.argmin(pop_region, axis=1),
        capacity_rps=capacity,
        gpus=gpus,
        mean_prompt_tokens=mean_prompt,
        mean_output_tokens=mean_output,
    )
