"""Autoscaling in wall time: the shared controller's decisions carried out through the zone actors.

The simulator's `SimFleet` and this `LiveFleet` are both a `grid.scaling.driver.FleetDriver`: every
`settings.interval_s` of the gateway's clock the control loop asks the controller (a sink of the
dispatch core, so it counts what is routed), brings EVERY zone to its target with the zone actor's
`scale(on_demand, spot, cold_start_s)` (`Zone.set_replicas` at the actor's clock: the same warm-up),
and records the same events (`Sink.scaled`, hence `grid_scaling_events_total`). The router hears of
the new replicas from the zones' load reports (`HealthMonitor.apply_fleet`), as in the simulator.

Also here: targets set by hand (`POST /admin/zones/{zone}/replicas`, `grid scale ZONE N`) and spot
preemptions (the `spot_preempt` fault), which work whichever autoscaler runs (with `static` nothing
replaces what a preemption took, as in the simulator).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grid.live import openai_api as api
from grid.live.security import check_admin
from grid.scaling.controller import ScalingAction
from grid.scaling.driver import FleetDriver

if TYPE_CHECKING:
    from grid.live.gateway_state import GatewayState

log = logging.getLogger(__name__)

SCALE_CALL_S = 5.0  # one zone actor's scale call; a zone that does not answer is brought up next decision
MAX_MANUAL_REPLICAS = 10_000  # a typo's bound, far above any pool


class LiveFleet(FleetDriver):
    """The gateway's autoscaler (`gateway.fleet`); `enabled` unless the autoscaler is `static`."""

    def __init__(self, gateway: GatewayState, autoscaler: str | None) -> None:
        super().__init__(gateway.scenario, gateway.world, autoscaler)
        self.gateway = gateway
        self.sinks = gateway.sinks
        if self.enabled:
            gateway.sinks.add(self.controller)  # it counts what is routed where

    async def start(self) -> None:
        """The initial fleet in its spot mix, warm, as the simulator's (`SimFleet`): a zone actor
        starts with the scenario's replicas on demand; those with spot in their split are brought to it."""
        orders = self.orders()
        await asyncio.gather(*(self._scale(zi, 0.0) for zi, (_, spot) in enumerate(orders) if spot))

    async def restored(self, zone: int) -> None:
        """A zone whose actor was restarted (a `zone_down` fault) comes back with the scenario's
        replicas; in the simulator a zone keeps its fleet while down: bring it back to its target, warm."""
        await self._scale(zone, 0.0)

    async def run(self, epoch_s: float = 0.0) -> None:
        """The control loop: a decision every `interval_s` after `epoch_s` of the gateway's clock (the
        scenario's t = 0, as the simulator's from its start); a late wake-up skips the ones it missed."""
        interval_s = self.settings.interval_s
        self.controller.begin(epoch_s)  # rates over the time since the epoch, as the simulator's since 0
        next_s = epoch_s + interval_s
        while True:
            await asyncio.sleep(max(0.0, next_s - self.gateway.now()))
            try:  # the decision due at `next_s`, as the simulator's: its rates over whole intervals (a
                # wake-up a few ms late would otherwise divide counts by 1.997 s or 2.003 s and move
                # a rate sitting exactly on a threshold, as integer counts over whole intervals often do)
                await self.decide(next_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one decision
                log.exception("autoscaling: the decision failed; the next one runs on time")
            now = self.gateway.now()
            next_s += interval_s
            while next_s <= now:
                next_s += interval_s

    async def decide(self, now_s: float) -> list[int]:
        """One decision, then every zone brought to its target; returns the zones that changed."""
        view = self.gateway.view
        view.now_s = now_s
        in_system_s = await asyncio.gather(*(self._in_system_s(zi) for zi in range(len(self.zone_ids))))
        actions = self.plan(now_s, view, in_system_s)
        results = await asyncio.gather(*(self._scale(zi) for zi in range(len(self.zone_ids))))
        return self.settle(actions, results, now_s)

    async def set_target(self, zone: int, replicas: int) -> ScalingAction:
        """A target set by hand (the controller's `set_target`), carried out at once."""
        now_s = self.gateway.now()
        action = self.controller.set_target(zone, replicas)
        results: list[tuple[int, int] | None] = [None] * len(self.zone_ids)
        results[zone] = await self._scale(zone)
        self.settle({zone: action}, results, now_s)
        return action

    async def preempt(self, zone: int, replicas: int) -> int:
        """The spot market takes back up to `replicas` of `zone`'s spot replicas (after the notice,
        `autoscaling.spot.notice_s`); returns how many it took."""
        now_s = self.gateway.now()
        actor = self.gateway.links[zone].actor
        async with asyncio.timeout(SCALE_CALL_S):
            taken = await actor.preempt_spot.remote(replicas, self.settings.spot_notice_s)
        self.preempted(zone, taken, now_s)
        return taken

    async def _in_system_s(self, zi: int) -> float | None:
        """Zone `zi`'s ∫ in-system dt so far, from its actor (None if it did not answer: then the view's
        count stands in, as the controller says)."""
        try:
            async with asyncio.timeout(SCALE_CALL_S):
                return await self.gateway.links[zi].actor.in_system_seconds.remote()
        except asyncio.CancelledError:
            raise
        except Exception:
            return None

    async def _scale(self, zi: int, cold_start_s: float | None = None) -> tuple[int, int] | None:
        """Zone `zi` brought to its current target: (started, retired), None if its actor did not answer."""
        on_demand, spot = self.orders()[zi]
        actor = self.gateway.links[zi].actor
        cold_start_s = self.settings.cold_start_s if cold_start_s is None else cold_start_s
        try:
            async with asyncio.timeout(SCALE_CALL_S):
                return await actor.scale.remote(on_demand, spot, cold_start_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # down or restarting: the next decision asks again
            log.warning("autoscaling: zone %s did not take its target: %r", self.zone_ids[zi], exc)
            return None

    def to_dict(self) -> dict:
        """What `/grid/zones` and the admin API say about the fleet."""
        return {
            "autoscaler": self.controller.policy.name,
            "interval_s": self.settings.interval_s,
            "cold_start_s": self.settings.cold_start_s,
            "targets": dict(zip(self.zone_ids, self.controller.targets, strict=True)),
            "policy_errors": self.controller.policy_errors,
            "events": len(self.events),
        }


class ReplicasRequest(BaseModel):
    """`POST /admin/zones/{zone}/replicas` body."""

    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(ge=0, le=MAX_MANUAL_REPLICAS, strict=True)


def add_scaling_routes(app: FastAPI, fleet: LiveFleet, token: str) -> None:
    """Route the manual-target endpoint on `app`, guarded by the admin `token`."""

    @app.post("/admin/zones/{zone}/replicas", include_in_schema=False)
    async def admin_replicas(zone: str, request: Request):
        check_admin(request.headers, token)
        zone_ids = list(fleet.zone_ids)
        if zone not in zone_ids:
            raise api.ApiError(
                404,
                f"Unknown zone {zone!r}; valid: {', '.join(zone_ids)}",
                type_="not_found_error",
                param="zone",
                code="zone_not_found",
            )
        try:
            spec = ReplicasRequest.model_validate_json((await request.body()) or b"null")
        except ValidationError as exc:
            raise api.validation_error(exc.errors()) from None
        zi = zone_ids.index(zone)
        action = await fleet.set_target(zi, spec.replicas)
        log.warning("admin: zone %s target %d replicas (%s)", zone, action.replicas, action.reason)
        return {
            "zone": zone,
            "replicas": action.replicas,
            "on_demand": action.on_demand,
            "spot": action.spot,
            "reason": action.reason,
        }
