"""A run's story in windows of time: load, where it was served, spill, TTFT, failovers, zones down.

`Timeline` is a sink of the dispatch core, so the simulator and the live gateway fill it from the
same events (one rule for both clocks); `grid demo` prints one row per window for each clock, side
by side, and draws the HTML report from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from grid.dispatch.sinks import Outcome, Sink
from grid.routing.view import ZoneView
from grid.serving.request import ERROR, LENGTH, REJECTED, STOP, Request
from grid.world import World

WINDOW_S = 10.0


@dataclass
class Window:
    """What happened in [start_s, start_s + window): counts by the time each event happened."""

    start_s: float
    n_regions: int
    arrivals: int = 0
    completed: int = 0
    failed: int = 0  # ended in an error (its zone went down mid-stream, or no retry was left)
    rejected: int = 0
    retried: int = 0  # attempts moved to another zone: the failovers
    spilled: int = 0  # completed outside the population's home region
    ttft_s: list[float] = field(default_factory=list)
    served_by_region: list[int] = field(default_factory=list)
    spilled_into_region: list[int] = field(default_factory=list)  # of those, from other regions' populations
    utilization: list[float] = field(default_factory=list)  # per region, mean of its zones' samples
    samples: int = 0
    down: set[int] = field(default_factory=set)  # zones down at any time in the window

    def __post_init__(self) -> None:
        self.served_by_region = [0] * self.n_regions
        self.spilled_into_region = [0] * self.n_regions
        self.utilization = [0.0] * self.n_regions

    def ttft_quantile_s(self, q: float) -> float:
        return float(np.quantile(self.ttft_s, q)) if self.ttft_s else math.nan

    @property
    def spill_share(self) -> float:
        return self.spilled / self.completed if self.completed else math.nan

    def mean_utilization(self, region: int) -> float:
        return self.utilization[region] / self.samples if self.samples else math.nan


class Timeline(Sink):
    """Windows of `window_s` of the driver's clock, and the run's flows (population → region served)."""

    def __init__(self, world: World, window_s: float = WINDOW_S, origin_s: float = 0.0) -> None:
        self.world = world
        self.window_s = window_s
        self.origin_s = origin_s  # the driver's clock when the run began (the live gateway's is older)
        self.windows: list[Window] = []
        self.zone_region = list(world.zone_region)
        self.home_region = [int(r) for r in world.home_region]
        n_regions = len(world.region_ids)
        self.flows = np.zeros((len(world.population_ids), n_regions), dtype=np.int64)
        self._utilization = [0.0] * len(world.zone_ids)  # each zone's last reported utilization
        self._up = [True] * len(world.zone_ids)
        self._zones_in_region = np.bincount(self.zone_region, minlength=n_regions)

    def window(self, now_s: float) -> Window:
        index = max(0, int((now_s - self.origin_s) // self.window_s))
        while len(self.windows) <= index:
            w = Window(len(self.windows) * self.window_s, len(self.world.region_ids))
            w.down = {z for z, up in enumerate(self._up) if not up}
            self.windows.append(w)
        return self.windows[index]

    def arrived(self, request: Request, now_s: float) -> None:
        self.window(now_s).arrivals += 1

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        self.window(now_s).retried += 1

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        w = self.window(now_s)
        if outcome.status in (STOP, LENGTH):
            region = self.zone_region[outcome.zone]
            w.completed += 1
            w.served_by_region[region] += 1
            away = region != self.home_region[request.population]
            w.spilled += away
            w.spilled_into_region[region] += away
            w.ttft_s.append(outcome.ttft_s)
            self.flows[request.population, region] += 1
        elif outcome.status == ERROR:
            w.failed += 1
        elif outcome.status == REJECTED:
            w.rejected += 1

    def zone_reported(self, zone: int, view: ZoneView, now_s: float) -> None:
        self._utilization[zone] = view.utilization

    def zone_health(self, zone: int, up: bool, now_s: float) -> None:
        self._up[zone] = up
        if not up:
            self.window(now_s).down.add(zone)

    def tick(self, now_s: float) -> None:
        """Sample each region's utilization (a down zone counts as idle capacity lost, not as 0%)."""
        w = self.window(now_s)
        sums = [0.0] * len(w.utilization)
        counts = [0] * len(w.utilization)
        for zone, region in enumerate(self.zone_region):
            if self._up[zone]:
                sums[region] += self._utilization[zone]
                counts[region] += 1
        for region, (total, n) in enumerate(zip(sums, counts, strict=True)):
            w.utilization[region] += total / n if n else math.nan
        w.samples += 1

    def grid_utilization(self, w: Window) -> float:
        """The window's utilization of the zones that were up, weighted by zones per region."""
        values = [(w.mean_utilization(r), n) for r, n in enumerate(self._zones_in_region) if n]
        values = [(u, n) for u, n in values if u == u]
        weight = sum(n for _, n in values)
        return sum(u * n for u, n in values) / weight if weight else math.nan
