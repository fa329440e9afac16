"""Autoscaling in virtual time: the shared controller's decisions carried out on the simulator's zones.

The rules (policy, bounds, delays, pools, the on-demand/spot split) are the controller's
(grid/scaling/controller.py); how a zone changes is the serving model's (grid/serving/fleet.py).
This only calls them at the simulator's times and records what happened, as the gateway does live.
"""

from __future__ import annotations

from grid.dispatch.sinks import Sink
from grid.routing.view import GridView
from grid.scaling.controller import POLICY_ERROR, PREEMPTED, REPLACE, ScalingController, ScalingEvent
from grid.scaling.registry import make_autoscaler
from grid.scaling.settings import ScalingSettings
from grid.scenario import Scenario
from grid.serving.zone import Zone
from grid.world import World


class SimFleet:
    def __init__(self, scenario: Scenario, world: World, zones: list[Zone], autoscaler: str | None) -> None:
        self.sinks: Sink = Sink()  # the run's sinks, set by the simulator once it has them
        self.settings = ScalingSettings.from_scenario(scenario, world, autoscaler)
        self.controller = ScalingController(
            self.settings, make_autoscaler(self.settings.policy, self.settings, scenario), len(world.population_ids)
        )
        self.zone_ids = world.zone_ids
        self.zones = zones
        self.events: list[ScalingEvent] = []
        self.enabled = self.settings.policy != "static"  # a static fleet needs no decisions

    def decide(self, now_s: float, view: GridView) -> list[int]:
        """One decision of the control loop, then every zone brought to its target (replacing what a
        preemption took); returns the zones that changed."""
        errors = self.controller.policy_errors
        actions = {action.zone: action for action in self.controller.decide(now_s, view)}
        if self.controller.policy_errors > errors:
            self.record(-1, POLICY_ERROR, -1, now_s)
        changed = []
        for zi, zone in enumerate(self.zones):
            target = self.controller.targets[zi]
            on_demand, spot = self.settings.split(target)
            started, retired = zone.set_replicas(on_demand, spot, now_s, self.settings.cold_start_s)
            action = actions.get(zi)
            if action is not None:
                self.record(zi, action.reason, target, now_s)
            elif started:
                self.record(zi, REPLACE, target, now_s)
            if started or retired:
                changed.append(zi)
        return changed

    def preempt(self, zone: int, replicas: int, now_s: float) -> None:
        taken = self.zones[zone].preempt_spot(replicas, now_s, self.settings.spot_notice_s)
        if taken:
            self.record(zone, PREEMPTED, self.controller.targets[zone], now_s)

    def record(self, zone: int, reason: str, replicas: int, now_s: float) -> None:
        self.events.append(ScalingEvent(now_s, self.zone_ids[zone] if zone >= 0 else "", reason, replicas))
        if zone >= 0:
            self.sinks.scaled(zone, reason, replicas, now_s)

    def meta(self) -> dict:
        return {
            "autoscaler": self.controller.policy.name,
            "policy_errors": self.controller.policy_errors,
            "events": [e.__dict__ for e in self.events],
        }
