"""Faults on the live grid: the admin API's and the scenario schedule's, with the simulator's semantics.

One `FaultController` per gateway applies a fault now and ends it after `duration_s` (or at
`recover`). What each kind does live (grid/faults.py has the shared semantics):

- `zone_down`: **kills the zone's Ray actor** (`ray.kill(actor, no_restart=False)`). Every request in
  flight on it fails (the gateway notices the dead actor through its update stream and its health
  checks — the controller does not tell the router, so the detection time is real). Ray restarts the
  actor at once (`max_restarts`); the restarted, empty actor starts down (the calls Ray held during
  the restart are refused, not served) and the controller claims it (`hold_down`), so the zone
  refuses work until the window ends, then `restore`s it: it comes back empty and up, as in the
  simulator (`Zone.fail_all` … `Zone.restore`).
- `zone_slow`: the actor's `set_slow_factor(factor)`, back to 1 at the end.
- `link_delay`, `partition`: the gateway's `NetworkState` (added RTT / unreachable path between a
  population and a region), undone at the end.
- `spot_preempt`: instant, like the simulator's: the zone actor's `preempt_spot(replicas, notice)`
  (`grid.live.autoscaling.LiveFleet.preempt`); what the replicas still hold when the notice ends fails
  and is retried elsewhere if it had no first token. The record says how many were `taken`.

A second fault of the same kind on the same target replaces the first (a `zone_down` on a zone that
is already down just moves the end). Records stay in `history` (bounded) with, for a `zone_down`,
when the actor was killed and restarted, when the router detected it (`detection_s`), how many
requests were retried elsewhere and how long that took (`failover_s`), and how many streams failed
mid-way — the chaos drill's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grid.fault_kinds import FAULT_FIELDS, FaultKind, missing_fields, missing_message
from grid.faults import LINK_DELAY, PARTITION, FaultAction
from grid.live import openai_api as api

log = logging.getLogger(__name__)

HOLD_DOWN_TIMEOUT_S = 60.0  # give up waiting for Ray to restart a killed actor after this
HOLD_DOWN_CALL_S = 1.0  # one hold_down call; retried, and well within zone_actor.RESTART_GRACE_S


class FaultRequest(BaseModel):
    """`POST /admin/faults` body."""

    model_config = ConfigDict(extra="ignore")
    kind: FaultKind
    zone: str | None = None
    population: str | None = None
    region: str | None = None
    factor: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    add_ms: float | None = Field(default=None, ge=0, le=600_000, allow_inf_nan=False)
    duration_s: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    replicas: int | None = Field(default=None, ge=1, le=10_000, strict=True)


class RecoverRequest(BaseModel):
    """`POST /admin/recover` body (empty or `{}`: recover everything)."""

    model_config = ConfigDict(extra="ignore")
    zone: str | None = None


@dataclass
class FaultRecord:
    id: int
    kind: str
    source: str  # admin | scenario
    started_at_s: float
    ends_at_s: float
    zone: str | None = None
    population: str | None = None
    region: str | None = None
    factor: float | None = None
    add_ms: float | None = None
    duration_s: float | None = None
    replicas: int | None = None
    taken: int | None = None  # spot_preempt: replicas the market took
    ended_at_s: float | None = None
    killed_at_s: float | None = None
    restarted_at_s: float | None = None
    end_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.ended_at_s is None

    def target(self) -> tuple:
        return (self.kind, self.zone, self.population, self.region)


class FaultController:
    """Applies and ends faults on a running gateway (`grid.live.gateway.GridGateway`)."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.history: deque[FaultRecord] = deque(maxlen=512)
        self._ids = itertools.count(1)

    # --- validation ----------------------------------------------------------------------------

    def parse(self, raw: bytes) -> FaultRequest:
        try:
            spec = FaultRequest.model_validate_json(raw or b"null")
        except ValidationError as exc:
            raise api.validation_error(exc.errors()) from None
        missing = missing_fields(spec)
        if missing:
            raise api.ApiError(400, missing_message(spec.kind, missing), param=missing[0], code="invalid_value")
        world = self.gateway.world
        for name, valid in (
            ("zone", world.zone_ids),
            ("population", world.population_ids),
            ("region", world.region_ids),
        ):
            value = getattr(spec, name)
            if name in FAULT_FIELDS[spec.kind] and value not in valid:
                raise api.ApiError(
                    400, f"Unknown {name} {value!r}; valid: {', '.join(valid)}", param=name, code="invalid_value"
                )
        return spec

    def parse_recover(self, raw: bytes) -> str | None:
        if not raw.strip():
            return None
        try:
            spec = RecoverRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise api.validation_error(exc.errors()) from None
        if spec.zone is not None and spec.zone not in self.gateway.world.zone_ids:
            raise api.ApiError(
                400,
                f"Unknown zone {spec.zone!r}; valid: {', '.join(self.gateway.world.zone_ids)}",
                param="zone",
                code="invalid_value",
            )
        return spec.zone

    # --- applying ------------------------------------------------------------------------------

    def apply(self, spec: FaultRequest, source: str = "admin") -> FaultRecord:
        """Start a fault now (its end is scheduled); returns its record."""
        now = self.gateway.now()
        duration = spec.duration_s
        ends = now + duration if duration is not None else math.inf
        keep = {name: getattr(spec, name) for name in FAULT_FIELDS[spec.kind]}
        target = (spec.kind, keep.get("zone"), keep.get("population"), keep.get("region"))
        current = next((f for f in self.history if f.active and f.target() == target), None)
        if current is not None and spec.kind == "zone_down":
            current.ends_at_s, current.duration_s = ends, duration  # already down: move the end
            return current
        if current is not None:
            self._end(current)
        record = FaultRecord(next(self._ids), spec.kind, source, now, ends, duration_s=duration, **keep)
        self.history.append(record)
        record.task = asyncio.get_running_loop().create_task(self._run(record))
        return record

    def recover(self, zone: str | None = None) -> list[FaultRecord]:
        """End every active fault (of `zone` only, when given)."""
        ended = [f for f in self.history if f.active and (zone is None or f.zone == zone)]
        for record in ended:
            self._end(record)
        return ended

    def _end(self, record: FaultRecord) -> None:
        record.ends_at_s = min(record.ends_at_s, self.gateway.now())
        record.end_event.set()

    async def run_schedule(self, faults, epoch_s: float = 0.0) -> None:
        """Play a scenario's `faults` in wall time, each `at_s` after `epoch_s` of the gateway's clock."""
        for fault in sorted(faults, key=lambda f: f.at_s):
            await asyncio.sleep(max(0.0, epoch_s + fault.at_s - self.gateway.now()))
            spec = FaultRequest(
                kind=fault.kind,
                zone=fault.zone,
                population=fault.population,
                region=fault.region,
                factor=fault.factor,
                add_ms=fault.add_ms,
                duration_s=fault.duration_s,
                replicas=getattr(fault, "replicas", None),
            )
            self.apply(spec, source="scenario")

    async def stop(self) -> None:
        tasks = [f.task for f in self.history if f.task is not None and not f.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _wait_end(self, record: FaultRecord) -> None:
        while not record.end_event.is_set():
            remaining = record.ends_at_s - self.gateway.now()
            if remaining <= 0:
                return
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation (`stop`)
            # that lands as the event is set, and this task would then run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 3600.0)):
                    await record.end_event.wait()

    async def _run(self, record: FaultRecord) -> None:
        gateway = self.gateway
        try:
            if record.kind == "zone_down":
                await self._zone_down(record)
            elif record.kind == "zone_slow":
                actor = gateway.links[gateway.world.zone_ids.index(record.zone)].actor
                await _call(actor.set_slow_factor, record.factor)
                await self._wait_end(record)
                await _call(actor.set_slow_factor, 1.0)
            elif record.kind == "spot_preempt":  # instant: the fleet replaces what it took, if it scales
                zi = gateway.world.zone_ids.index(record.zone)
                record.taken = await gateway.fleet.preempt(zi, record.replicas)
                record.ends_at_s = gateway.now()
            else:
                kind = LINK_DELAY if record.kind == "link_delay" else PARTITION
                world = gateway.world
                where = {
                    "population": world.population_ids.index(record.population),
                    "region": world.region_ids.index(record.region),
                }
                value = record.add_ms / 1000.0 if kind == LINK_DELAY else 1.0
                gateway.apply_network(FaultAction(gateway.now(), kind, value=value, **where))
                await self._wait_end(record)
                gateway.apply_network(FaultAction(gateway.now(), kind, value=0.0, **where))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fault %d (%s) failed", record.id, record.kind)
        finally:
            if record.ended_at_s is None:
                record.ended_at_s = gateway.now()

    async def _zone_down(self, record: FaultRecord) -> None:
        import ray

        gateway = self.gateway
        zi = gateway.world.zone_ids.index(record.zone)
        actor = gateway.links[zi].actor
        old = gateway.health[zi].incarnation
        if old is None:
            old = (await _call(actor.report))["incarnation"]
        record.killed_at_s = gateway.now()
        ray.kill(actor, no_restart=False)
        log.warning("fault %d: zone %s: actor killed", record.id, record.zone)
        give_up = gateway.now() + HOLD_DOWN_TIMEOUT_S
        while gateway.now() < give_up:  # the restarted actor stays down until the window ends
            try:
                if await _call(actor.hold_down, old, timeout_s=HOLD_DOWN_CALL_S):
                    break
            except Exception:  # still restarting
                pass
            await asyncio.sleep(0.05)
        record.restarted_at_s = gateway.now()
        await self._wait_end(record)
        # The window ends now, before the restore: the zone's return is the first healthy check after
        # this moment (stamped after the restore, a fast health check could come first and be missed).
        record.ended_at_s = gateway.now()
        for _ in range(20):
            try:
                await _call(actor.restore)
                break
            except Exception:
                await asyncio.sleep(0.25)
        await gateway.fleet.restored(zi)  # the fleet it had (a restarted actor has the scenario's)
        log.warning("fault %d: zone %s: restored", record.id, record.zone)

    # --- reporting -----------------------------------------------------------------------------

    def to_dict(self, record: FaultRecord) -> dict:
        out = {
            "id": record.id,
            "kind": record.kind,
            "source": record.source,
            "active": record.active,
            "started_at_s": round(record.started_at_s, 4),
            "ends_at_s": round(record.ends_at_s, 4) if math.isfinite(record.ends_at_s) else None,
            "ended_at_s": round(record.ended_at_s, 4) if record.ended_at_s is not None else None,
            "duration_s": record.duration_s,
        }
        for name in ("zone", "population", "region", "factor", "add_ms", "replicas", "taken"):
            value = getattr(record, name)
            if value is not None:
                out[name] = value
        if record.kind == "zone_down":
            out.update(self.gateway.zone_down_figures(record))
        return out


async def _call(method, *args, timeout_s: float = 5.0):
    """One actor call, awaited for at most `timeout_s` (TimeoutError). asyncio.timeout, not wait_for:
    Python 3.11's wait_for swallows a cancellation that lands as the answer arrives."""
    async with asyncio.timeout(timeout_s):
        return await method.remote(*args)
