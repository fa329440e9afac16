"""Autoscaling policies: how many replicas each zone wants, from what the router sees.

A policy is a plug-in like a routing policy: a class with `name` and `desired(signals, now_s)`
returning one replica count per zone (or None for "no opinion": keep the current target). The
controller (grid/scaling/controller.py) applies the bounds, the delays and the pools, and both
drivers carry the result out, so a policy never touches a zone. Users pass `module:Class`.

Built in:
- `static`: today's fixed fleet (the controller does not even run).
- `target_utilization`: Ray Serve's default policy: replicas = ceil(ongoing requests averaged over
  the look-back window / `target_ongoing_requests`), ongoing = running + queued in the zone.
- `qps`: SkyServe's: replicas = ceil(requests per second over the look-back window /
  `target_qps_per_replica`).
- `predictive`: forecasts each zone's arrivals from the diurnal shape of the populations it is
  serving now (their share of its traffic × how their demand will change) over the next cold start
  plus one interval, and provisions for the highest point, so capacity is ready before the demand;
  replicas are rounded up per region, whose zones share its demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grid.demand.arrivals import DemandModel
from grid.scaling.settings import ScalingSettings


@dataclass
class ZoneSignals:
    """What a policy sees of one zone at a decision (the router's view, the dispatch core's counts)."""

    serving: int
    warming: int
    draining: int
    target: int  # replicas asked for (serving + warming, as the controller last set it)
    ongoing_mean: float  # running + queued, averaged over the look-back window
    qps: float  # requests routed to it per second over the look-back window
    qps_by_population: np.ndarray  # the same, per population


class Autoscaler:
    name = "autoscaler"

    def __init__(self, settings: ScalingSettings, demand: DemandModel | None = None) -> None:
        self.settings = settings
        self.demand = demand

    def desired(self, signals: list[ZoneSignals], now_s: float) -> list[int | None]:
        raise NotImplementedError


class Static(Autoscaler):
    name = "static"

    def desired(self, signals: list[ZoneSignals], now_s: float) -> list[int | None]:
        return [None] * len(signals)


class TargetUtilization(Autoscaler):
    name = "target_utilization"

    def desired(self, signals: list[ZoneSignals], now_s: float) -> list[int | None]:
        target = self.settings.target_ongoing_requests
        return [math.ceil(s.ongoing_mean / target - 1e-9) for s in signals]


class Qps(Autoscaler):
    name = "qps"

    def desired(self, signals: list[ZoneSignals], now_s: float) -> list[int | None]:
        zones = self.settings.zones
        return [math.ceil(s.qps / zones[i].target_qps_per_replica - 1e-9) for i, s in enumerate(signals)]


class Predictive(Autoscaler):
    """Scales ahead of the daily curve; without a diurnal demand it is the `qps` policy."""

    name = "predictive"
    STEPS = 6  # points checked across the horizon
    upscales_at_once = True  # it already looks a cold start ahead: waiting out an upscale delay would be late

    def desired(self, signals: list[ZoneSignals], now_s: float) -> list[int | None]:
        horizon_s = self.settings.cold_start_s + self.settings.interval_s
        model = self.demand
        now_rates = model.rates_rps(now_s) if model is not None else None
        peaks = np.ones_like(now_rates) if now_rates is not None else None
        if model is not None and now_rates is not None:
            for k in range(1, self.STEPS + 1):
                peaks = np.maximum(peaks, model.rates_rps(now_s + horizon_s * k / self.STEPS) / now_rates)
        need = [  # replicas each zone's forecast asks for, unrounded
            (s.qps if peaks is None else float(np.dot(s.qps_by_population, peaks))) / z.target_qps_per_replica
            for s, z in zip(signals, self.settings.zones, strict=True)
        ]
        return region_rounded(need, [z.region for z in self.settings.zones])


def region_rounded(need: list[float], regions: list[int]) -> list[int | None]:
    """Whole replicas per zone for fractional needs, rounded up per region rather than per zone: a
    region's zones share its demand (the router moves it between them), so the region needs
    ceil(Σ need), not Σ ceil(need). Largest remainders get the extra replicas."""
    out: list[int | None] = [math.floor(n) for n in need]
    for region in set(regions):
        zones = [i for i, r in enumerate(regions) if r == region]
        extra = math.ceil(sum(need[i] for i in zones) - 1e-9) - sum(out[i] for i in zones)  # type: ignore[misc]
        for i in sorted(zones, key=lambda i: need[i] - math.floor(need[i]), reverse=True)[:extra]:
            out[i] += 1  # type: ignore[operator]
    return out


BUILT_IN: dict[str, type[Autoscaler]] = {c.name: c for c in (Static, TargetUtilization, Qps, Predictive)}
