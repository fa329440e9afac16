"""One decision of the autoscaling loop carried out, for both drivers: which events it makes.

`FleetDriver` holds the controller and the events; a driver (grid/sim/fleet.py on its zones,
grid/live/autoscaling.py through its zone actors) calls `plan` every `settings.interval_s` of its
clock, brings EVERY zone to `orders()` (its target split into on demand and spot: a preemption's
loss is replaced here), and hands what each zone answered, `(started, retired)`, to `settle`. So the
rule "bring every zone to its target and say which events happened" is written once, whether the
zones change by a method call (virtual time) or by an actor call (wall time).
"""

from __future__ import annotations

from collections.abc import Sequence

from grid.dispatch.sinks import Sink
from grid.routing.view import GridView
from grid.scaling.controller import POLICY_ERROR, PREEMPTED, REPLACE, ScalingAction, ScalingController, ScalingEvent
from grid.scaling.registry import make_autoscaler
from grid.scaling.settings import ScalingSettings
from grid.scenario import Scenario
from grid.world import World


class FleetDriver:
    def __init__(self, scenario: Scenario, world: World, autoscaler: str | None) -> None:
        self.sinks: Sink = Sink()  # the run's sinks, set by the driver once it has them
        self.settings = ScalingSettings.from_scenario(scenario, world, autoscaler)
        self.controller = ScalingController(
            self.settings, make_autoscaler(self.settings.policy, self.settings, scenario), len(world.population_ids)
        )
        self.zone_ids = world.zone_ids
        self.events: list[ScalingEvent] = []
        self.enabled = self.settings.policy != "static"  # a static fleet needs no decisions

    def plan(
        self, now_s: float, view: GridView, in_system_s: Sequence[float | None] | None = None
    ) -> dict[int, ScalingAction]:
        """The controller's decision at `now_s` (a policy error recorded); the actions by zone.
        `in_system_s`: each zone's ∫ in-system dt so far, read from the zones (`Zone.in_system_seconds`)."""
        errors = self.controller.policy_errors
        actions = {action.zone: action for action in self.controller.decide(now_s, view, in_system_s)}
        if self.controller.policy_errors > errors:
            self.record(-1, POLICY_ERROR, -1, now_s)
        return actions

    def orders(self) -> list[tuple[int, int]]:
        """Every zone's target as (on demand, spot): what each zone is to be brought to."""
        return [self.settings.split(target) for target in self.controller.targets]

    def settle(
        self, actions: dict[int, ScalingAction], results: Sequence[tuple[int, int] | None], now_s: float
    ) -> list[int]:
        """Record what the decision did, zone by zone: an action's reason, or REPLACE when a zone
        started replicas without one (what a preemption took); `results[zi]` is zone `zi`'s
        `set_replicas` answer (None: not asked, or it did not answer). Returns the zones that changed."""
        changed = []
        for zi, result in enumerate(results):
            started, retired = result if result is not None else (0, 0)
            action = actions.get(zi)
            if action is not None:
                self.record(zi, action.reason, self.controller.targets[zi], now_s)
            elif started:
                self.record(zi, REPLACE, self.controller.targets[zi], now_s)
            if started or retired:
                changed.append(zi)
        return changed

    def preempted(self, zone: int, taken: int, now_s: float) -> None:
        """The spot market took `taken` replicas of `zone` (its `preempt_spot` answer)."""
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
