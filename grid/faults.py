"""Fault semantics shared by the simulator and the live grid.

A scenario's faults become a timeline of start/end actions. Zone faults act on a zone's serving model
(`zone_down`: every admitted request fails and the zone refuses work until `zone_up`; `zone_slow`:
steps take `factor` times longer). Network faults act on the client↔region paths in `NetworkState`
(`link_delay` adds to the RTT; `partition` makes the region unreachable from that population).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from grid.scenario import Fault
from grid.world import World

ZONE_DOWN, ZONE_UP, ZONE_SLOW, LINK_DELAY, PARTITION = "zone_down", "zone_up", "zone_slow", "link_delay", "partition"
SPOT_PREEMPT = "spot_preempt"


@dataclass(frozen=True)
class FaultAction:
    at_s: float
    kind: str
    zone: int = -1
    population: int = -1
    region: int = -1
    value: float = 0.0  # slow factor (1 = healthy), added delay in s (0 = none), partition 1/0, replicas preempted


def fault_timeline(faults: list[Fault], world: World) -> list[FaultAction]:
    """Start and end actions of every fault, in time order (ends before starts at the same time)."""
    zone = {z: i for i, z in enumerate(world.zone_ids)}
    pop = {p: i for i, p in enumerate(world.population_ids)}
    region = {r: i for i, r in enumerate(world.region_ids)}
    actions: list[tuple[float, int, FaultAction]] = []
    for fault in faults:
        end = fault.at_s + fault.duration_s if fault.duration_s is not None else math.inf
        if fault.kind == "zone_down":
            start = FaultAction(fault.at_s, ZONE_DOWN, zone=zone[fault.zone])
            stop = FaultAction(end, ZONE_UP, zone=zone[fault.zone])
        elif fault.kind == "zone_slow":
            start = FaultAction(fault.at_s, ZONE_SLOW, zone=zone[fault.zone], value=fault.factor)
            stop = FaultAction(end, ZONE_SLOW, zone=zone[fault.zone], value=1.0)
        elif fault.kind == "spot_preempt":  # instant: the market takes replicas back, the autoscaler may buy more
            actions.append(
                (fault.at_s, 1, FaultAction(fault.at_s, SPOT_PREEMPT, zone=zone[fault.zone], value=fault.replicas))
            )
            continue
        elif fault.kind == "link_delay":
            where = {"population": pop[fault.population], "region": region[fault.region]}
            start = FaultAction(fault.at_s, LINK_DELAY, value=fault.add_ms / 1000.0, **where)
            stop = FaultAction(end, LINK_DELAY, value=0.0, **where)
        else:
            where = {"population": pop[fault.population], "region": region[fault.region]}
            start = FaultAction(fault.at_s, PARTITION, value=1.0, **where)
            stop = FaultAction(end, PARTITION, value=0.0, **where)
        actions.append((start.at_s, 1, start))
        if math.isfinite(end):
            actions.append((end, 0, stop))
    return [action for _, _, action in sorted(actions, key=lambda item: (item[0], item[1]))]


class NetworkState:
    """Client↔zone RTTs with the network faults in force."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._added_s: dict[tuple[int, int], float] = {}
        self._cut: set[tuple[int, int]] = set()

    def apply(self, action: FaultAction) -> None:
        key = (action.population, action.region)
        if action.kind == LINK_DELAY:
            if action.value > 0:
                self._added_s[key] = action.value
            else:
                self._added_s.pop(key, None)
        elif action.kind == PARTITION:
            if action.value:
                self._cut.add(key)
            else:
                self._cut.discard(key)

    def rtt_s(self) -> list[list[float]]:
        """[population][zone] RTT now: base + added delay, inf where partitioned."""
        world = self._world
        table = world.rtt_s.tolist()
        for p, row in enumerate(table):
            for z, region in enumerate(world.zone_region):
                if (p, region) in self._cut:
                    row[z] = math.inf
                elif (p, region) in self._added_s:
                    row[z] += self._added_s[(p, region)]
        return table
