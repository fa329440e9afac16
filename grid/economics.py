"""What a zone's GPUs cost, draw and emit: the one formula behind the report, the live metrics, the
bench's usage cost and the capacity planner.

- cost = GPUs × the region's price per GPU-hour × time, busy or idle (provisioned capacity is paid for);
- power = GPUs × (idle + (max − idle) × utilization), the GPU profile's `power_idle_w`/`power_max_w`;
- energy = power × time;
- carbon = energy × the region's grid intensity (g per kWh).

Pure functions with the unit in every name, and `ZoneEconomics`, a zone's figures read once from the
scenario. Each function keeps the order of operations its callers always used, so their numbers are
unchanged to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from grid.scenario import Scenario

S_PER_H = 3600.0
W_PER_KW = 1000.0
J_PER_KWH = 3.6e6


def gpu_hours(gpus: float, duration_s: float) -> float:
    """GPU-hours of `gpus` GPUs (a fractional count for the used share) held for `duration_s`."""
    return gpus * duration_s / S_PER_H


def cost_usd(gpu_hours: float, price_usd_per_gpu_hour: float) -> float:
    """What `gpu_hours` GPU-hours cost at a price per GPU-hour."""
    return gpu_hours * price_usd_per_gpu_hour


def cost_usd_per_hour(gpus: float, price_usd_per_gpu_hour: float) -> float:
    """What `gpus` GPUs cost per hour, busy or idle."""
    return gpus * price_usd_per_gpu_hour


def power_w(gpus: float, power_idle_w: float, power_max_w: float, utilization: float) -> float:
    """Power drawn by `gpus` GPUs at `utilization` (0 = idle power, 1 = max power)."""
    return gpus * (power_idle_w + (power_max_w - power_idle_w) * utilization)


def energy_j(power_w: float, duration_s: float) -> float:
    """Energy of `power_w` watts over `duration_s` seconds, in joules."""
    return power_w * duration_s


def energy_kwh(power_w: float, duration_s: float) -> float:
    """Energy of `power_w` watts over `duration_s` seconds, in kWh."""
    return power_w * (duration_s / S_PER_H / W_PER_KW)


def carbon_g(energy_kwh: float, carbon_g_per_kwh: float) -> float:
    """Grams of CO2-eq emitted by `energy_kwh` on a grid of intensity `carbon_g_per_kwh`."""
    return energy_kwh * carbon_g_per_kwh


@dataclass(frozen=True)
class ZoneEconomics:
    """A zone's provisioned GPUs with its GPU profile's power and its region's price and grid intensity.

    The per-second methods (`cost_usd`, `energy_j`, `carbon_g`) are the same rules as the functions
    above, in SI units, for callers that accrue small intervals (`GridMetrics.tick`)."""

    gpus: int
    price_usd_per_gpu_hour: float
    power_idle_w: float
    power_max_w: float
    carbon_g_per_kwh: float

    @classmethod
    def of(cls, scenario: Scenario, zone_id: str) -> ZoneEconomics:
        spec = scenario.zones[zone_id]
        region, profile = scenario.regions[spec.region], scenario.gpus[spec.gpu]
        return cls(
            gpus=spec.replicas * spec.gpus_per_replica,
            price_usd_per_gpu_hour=region.price_usd_per_gpu_hour,
            power_idle_w=profile.power_idle_w,
            power_max_w=profile.power_max_w,
            carbon_g_per_kwh=region.carbon_g_per_kwh,
        )

    @property
    def price_usd_per_gpu_s(self) -> float:
        return self.price_usd_per_gpu_hour / S_PER_H

    @property
    def carbon_g_per_j(self) -> float:
        return self.carbon_g_per_kwh / J_PER_KWH

    @property
    def cost_usd_per_hour(self) -> float:
        """What the zone's GPUs cost per hour, busy or idle."""
        return cost_usd_per_hour(self.gpus, self.price_usd_per_gpu_hour)

    def cost_usd(self, duration_s: float) -> float:
        """What the zone's GPUs cost over `duration_s`, busy or idle."""
        return self.gpus * self.price_usd_per_gpu_s * duration_s

    def power_w(self, utilization: float) -> float:
        return power_w(self.gpus, self.power_idle_w, self.power_max_w, utilization)

    def energy_j(self, utilization: float, duration_s: float) -> float:
        return energy_j(self.power_w(utilization), duration_s)

    def energy_kwh(self, utilization: float, duration_s: float) -> float:
        return energy_kwh(self.power_w(utilization), duration_s)

    def carbon_g(self, energy_j: float) -> float:
        """Grams of CO2-eq emitted by `energy_j` joules drawn in this zone's region."""
        return energy_j * self.carbon_g_per_j


def zone_economics(scenario: Scenario) -> dict[str, ZoneEconomics]:
    """`ZoneEconomics` of every zone of the scenario, by zone id (the scenario's order)."""
    return {zone_id: ZoneEconomics.of(scenario, zone_id) for zone_id in scenario.zones}
