"""The `autoscaling:` section of a scenario: which autoscaler, its bounds, delays and targets, the
replicas' cold start, spot capacity and the regions' pools. Validated once with the scenario;
`grid.scaling.settings` resolves it per zone for both drivers.

Defaults and where they come from:
- delays and look-back are Ray Serve's `AutoscalingConfig` defaults (upscale_delay_s 30,
  downscale_delay_s 600, look_back_period_s 30; docs.ray.io, serve/advanced-guides/advanced-autoscaling);
  SkyServe's are upscale 300 s / downscale 1200 s (docs.skypilot.co, serving/service-yaml-spec).
- `target_ongoing_requests`: Ray Serve's default is 2, for replicas that serve one request at a time.
  A vLLM replica batches hundreds; 40 is what one replica of the default H100 profile holds at about
  70% utilization on the default (Azure conversation) sizes (benchmarks/RESULTS.md, issue 17).
- cold start = provisioning (a GPU VM or node, `provision_s`) + loading the weights
  (`weights_gb / load_gb_per_s`: Qwen3-8B is 16.4 GB in BF16, read from a local cache at ~2 GB/s) +
  the engine's start (`engine_init_s`: torch.compile and CUDA-graph capture, "tens of seconds to
  minutes", Foundry, arXiv 2604.06664; vLLM's start is CPU-bound, arXiv 2606.07362).
- spot: a discount off the on-demand price and a preemption notice (GCP gives 30 s, AWS 2 min).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from grid.units import parse_duration_s

if TYPE_CHECKING:
    from grid.scenario import Scenario

Seconds = Annotated[float, BeforeValidator(parse_duration_s), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColdStart(_Strict):
    provision_s: Seconds = 60.0
    weights_gb: float = Field(default=16.4, ge=0, description="the model's weights (Qwen3-8B, BF16)")
    load_gb_per_s: float = Field(default=2.0, gt=0, description="weights read into GPU memory per second")
    engine_init_s: Seconds = 30.0

    @property
    def total_s(self) -> float:
        """From asking for a replica to its first admission."""
        return self.provision_s + self.weights_gb / self.load_gb_per_s + self.engine_init_s


class Spot(_Strict):
    share: float = Field(default=0.0, ge=0, le=1, description="share of replicas above on_demand_base bought as spot")
    on_demand_base: int = Field(default=0, ge=0, description="replicas per zone always on demand (SkyServe's base)")
    discount: float = Field(default=0.6, ge=0, lt=1, description="spot price = on-demand × (1 − discount)")
    notice_s: Seconds = 30.0


class ZoneBounds(_Strict):
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)


class Autoscaling(_Strict):
    policy: str = Field(default="static", description="static | target_utilization | qps | predictive | mod:Class")
    interval_s: Seconds = Field(default=10.0, description="one decision per zone every interval")
    look_back_s: Seconds = 30.0
    upscale_delay_s: Seconds = 30.0
    downscale_delay_s: Seconds = 600.0
    min_replicas: int = Field(default=1, ge=0, description="per zone, unless zones.<id> says otherwise")
    max_replicas: int | None = Field(default=None, ge=0, description="per zone; default: 4 × its initial replicas")
    zones: dict[str, ZoneBounds] = {}
    pools: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default={}, description="region → most replicas it can hold at once (stock-out)"
    )
    target_ongoing_requests: float = Field(default=40.0, gt=0)
    target_utilization: float = Field(default=0.7, gt=0, le=1, description="qps and predictive: load per replica")
    target_qps_per_replica: float | None = Field(default=None, gt=0, description="qps; default from the profile")
    cold_start: ColdStart = ColdStart()
    spot: Spot = Spot()

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        return self


def autoscaling_problems(s: Scenario) -> list[tuple[tuple[str, ...], str]]:
    """Checks across sections (grid.scenario runs them with its own): bounds per zone that cannot
    hold, pools smaller than their zones' floors, unknown ids."""
    a = s.autoscaling
    problems: list[tuple[tuple[str, ...], str]] = []
    floors: dict[str, int] = {}
    for zone_id in sorted(set(a.zones) - set(s.zones)):
        problems.append((("autoscaling", "zones", zone_id), f"unknown zone; known: {', '.join(sorted(s.zones))}"))
    for zone_id, zone in s.zones.items():
        bounds = a.zones.get(zone_id)
        low = bounds.min_replicas if bounds and bounds.min_replicas is not None else a.min_replicas
        high = bounds.max_replicas if bounds and bounds.max_replicas is not None else a.max_replicas
        if high is not None and low > high:
            where = ("autoscaling", "zones", zone_id) if bounds else ("autoscaling",)
            problems.append((where, f"min_replicas ({low}) > max_replicas ({high}) for zone {zone_id}"))
        floors[zone.region] = floors.get(zone.region, 0) + low
    for region, pool in a.pools.items():
        if region not in s.regions:
            problems.append(
                (("autoscaling", "pools", region), f"unknown region; known: {', '.join(sorted(s.regions))}")
            )
        elif pool < floors.get(region, 0):
            problems.append(
                (
                    ("autoscaling", "pools", region),
                    f"pool of {pool} replicas is smaller than its zones' floor ({floors[region]})",
                )
            )
    return problems
