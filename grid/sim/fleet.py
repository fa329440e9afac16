"""Autoscaling in virtual time: the shared controller's decisions carried out on the simulator's zones.

The rules (policy, bounds, delays, pools, the on-demand/spot split) are the controller's
(grid/scaling/controller.py); how a zone changes is the serving model's (grid/serving/fleet.py);
which events a decision makes is `FleetDriver`'s (grid/scaling/driver.py), shared with the live
gateway (grid/live/autoscaling.py). This only calls them at the simulator's times.
"""

from __future__ import annotations

from grid.routing.view import GridView
from grid.scaling.driver import FleetDriver
from grid.scenario import Scenario
from grid.serving.zone import Zone
from grid.world import World


class SimFleet(FleetDriver):
    def __init__(self, scenario: Scenario, world: World, zones: list[Zone], autoscaler: str | None) -> None:
        super().__init__(scenario, world, autoscaler)
        self.zones = zones
        for zone, (on_demand, spot) in zip(zones, self.orders(), strict=True):
            zone.set_replicas(on_demand, spot, 0.0, cold_start_s=0.0)  # the initial fleet, in its spot mix, warm

    def decide(self, now_s: float, view: GridView) -> list[int]:
        """One decision of the control loop, then every zone brought to its target (replacing what a
        preemption took); returns the zones that changed."""
        actions = self.plan(now_s, view, [zone.in_system_seconds(now_s) for zone in self.zones])
        cold_start_s = self.settings.cold_start_s
        results = [
            zone.set_replicas(on_demand, spot, now_s, cold_start_s)
            for zone, (on_demand, spot) in zip(self.zones, self.orders(), strict=True)
        ]
        return self.settle(actions, results, now_s)

    def preempt(self, zone: int, replicas: int, now_s: float) -> None:
        self.preempted(zone, self.zones[zone].preempt_spot(replicas, now_s, self.settings.spot_notice_s), now_s)
