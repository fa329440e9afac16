"""The autoscaling control loop, one for both drivers: signals in, replica targets out.

Every `interval_s` of the driver's clock the driver calls `decide(now_s, view, in_system_s)`. The
controller averages each zone's ongoing requests over the interval (Ray Serve's semantics) from the
zones' own ∫ in-system dt (`Zone.in_system_seconds`, which each driver reads from its zones at the
decision: exact in virtual time, one call per zone actor live; without it, the count in the router's
view at the decision), counts what the dispatch core routed (it is a sink), asks the policy what it
wants and applies the rules that are the same whatever the policy:
- bounds: min/max replicas per zone;
- delays (Ray Serve's semantics): a wish to scale up must hold for `upscale_delay_s`, down for
  `downscale_delay_s`, before it is acted on (a policy may scale up at once: `upscales_at_once`);
- pools: a region holds at most its pool's replicas; a scale-up beyond is cut (a "stockout" event);
- containment: a policy that raises is reported once per decision and the targets stay as they were.
It returns `ScalingAction`s; the driver carries them out (the simulator on its zones, the gateway
through its zone actors) and both record the same events in their sinks.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grid.dispatch.sinks import Sink
from grid.routing.view import GridView
from grid.scaling.policies import Autoscaler, ZoneSignals
from grid.scaling.settings import ScalingSettings
from grid.serving.request import Request

log = logging.getLogger(__name__)

UP, DOWN, STOCKOUT, MANUAL = "up", "down", "stockout", "manual"
PREEMPTED, REPLACE, POLICY_ERROR = "preempted", "replace", "policy_error"


@dataclass(frozen=True)
class ScalingAction:
    zone: int
    replicas: int  # the new target (serving + warming)
    on_demand: int
    spot: int
    reason: str  # up | down | manual | stockout (an up cut by the pool)


@dataclass(frozen=True)
class ScalingEvent:
    """One change of a zone's fleet, as both drivers record it (`--json`, metrics, records)."""

    t_s: float
    zone: str
    reason: str  # up | down | manual | stockout | preempted | replace (what a preemption took) | policy_error
    replicas: int  # the target after it


class ScalingController(Sink):
    def __init__(self, settings: ScalingSettings, policy: Autoscaler, n_populations: int) -> None:
        self.settings = settings
        self.policy = policy
        n = len(settings.zones)
        self.targets = [z.initial for z in settings.zones]
        self._routed = np.zeros((n, n_populations))  # since the last decision
        self._qps_window: list[deque[tuple[float, np.ndarray]]] = [deque() for _ in range(n)]
        self._ongoing: list[deque[tuple[float, float]]] = [deque() for _ in range(n)]
        self._in_system_s = [0.0] * n  # each zone's ∫ in-system dt at the last decision
        self._up_since: list[float | None] = [None] * n
        self._down_since: list[float | None] = [None] * n
        self._last_s = 0.0
        self.policy_errors = 0

    def begin(self, now_s: float) -> None:
        """The scenario's timeline starts at `now_s` (0 in the simulator; the load's start live): the
        first decision's rates are over the time since, and nothing routed before counts."""
        self._last_s = now_s
        self._routed[:] = 0.0

    # --- a sink of the dispatch core: what was routed where ------------------------------------

    def routed(self, request: Request, zone: int, rtt_s: float, decision_s: float, now_s: float) -> None:
        if request.attempts <= 1 and not request.twin:  # arrivals, not their retries or hedge copies
            self._routed[zone, request.population] += 1

    # --- the loop ------------------------------------------------------------------------------

    def signals(
        self, now_s: float, view: GridView, in_system_s: Sequence[float | None] | None = None
    ) -> list[ZoneSignals]:
        """Each zone's signals at `now_s`; `in_system_s[zone]`: its ∫ in-system dt so far (None: unknown,
        then the count in the view stands for the interval)."""
        look_back = self.settings.look_back_s
        elapsed = max(now_s - self._last_s, 1e-9)
        out = []
        for zi, zv in enumerate(view.zones):
            window = self._qps_window[zi]
            window.append((now_s, self._routed[zi] / elapsed))
            area = in_system_s[zi] if in_system_s is not None else None
            if area is not None:
                last, self._in_system_s[zi] = self._in_system_s[zi], area
                mean = (area - last if area >= last else area) / elapsed  # a restarted zone counts from 0
            else:
                mean = float(zv.outstanding + zv.sent_since_report)
            ongoing = self._ongoing[zi]
            ongoing.append((now_s, mean))
            while window and window[0][0] < now_s - look_back + 1e-9 and len(window) > 1:
                window.popleft()
            while ongoing and ongoing[0][0] < now_s - look_back + 1e-9 and len(ongoing) > 1:
                ongoing.popleft()
            by_pop = sum(rates for _, rates in window) / len(window)
            out.append(
                ZoneSignals(
                    serving=zv.replicas,
                    warming=zv.warming,
                    draining=zv.draining,
                    target=self.targets[zi],
                    ongoing_mean=sum(v for _, v in ongoing) / len(ongoing),
                    qps=float(by_pop.sum()),
                    qps_by_population=by_pop,
                )
            )
        self._routed[:] = 0.0
        self._last_s = now_s
        return out

    def decide(
        self, now_s: float, view: GridView, in_system_s: Sequence[float | None] | None = None
    ) -> list[ScalingAction]:
        signals = self.signals(now_s, view, in_system_s)
        try:
            wishes = self.policy.desired(signals, now_s)
            if len(wishes) != len(signals):
                raise ValueError(f"desired() gave {len(wishes)} counts for {len(signals)} zones")
        except Exception as exc:  # a user's policy must not stop the grid
            self.policy_errors += 1
            log.error("autoscaler %s failed at t=%.1f s: %r; targets kept", self.policy.name, now_s, exc)
            return []
        actions = []
        s = self.settings
        up_delay = 0.0 if getattr(self.policy, "upscales_at_once", False) else s.upscale_delay_s
        for zi, wish in enumerate(wishes):
            if wish is None:
                continue
            bounds = s.zones[zi]
            want = min(max(int(wish), bounds.min_replicas), bounds.max_replicas)
            have = self.targets[zi]
            if want > have:
                self._down_since[zi] = None
                since = self._up_since[zi] = self._up_since[zi] if self._up_since[zi] is not None else now_s
                if now_s - since + 1e-9 >= up_delay:
                    actions.append(self._to(zi, want, UP))
            elif want < have:
                self._up_since[zi] = None
                since = self._down_since[zi] = self._down_since[zi] if self._down_since[zi] is not None else now_s
                if now_s - since + 1e-9 >= s.downscale_delay_s:
                    actions.append(self._to(zi, want, DOWN))
            else:
                self._up_since[zi] = self._down_since[zi] = None
        return actions

    def set_target(self, zone: int, replicas: int) -> ScalingAction:
        """A target set by hand (`grid scale`, the admin API): outside the bounds, inside the pool."""
        return self._to(zone, replicas, MANUAL)

    def _to(self, zi: int, want: int, reason: str) -> ScalingAction:
        """Target `want` replicas at zone `zi`, or as many as its region's pool has room for."""
        s = self.settings
        pool = s.pools[s.zones[zi].region]
        if pool is not None and want > self.targets[zi]:
            others = sum(t for z, t in enumerate(self.targets) if z != zi and s.zones[z].region == s.zones[zi].region)
            if want > pool - others:
                want, reason = max(pool - others, self.targets[zi]), STOCKOUT
        self.targets[zi] = want
        self._up_since[zi] = self._down_since[zi] = None
        on_demand, spot = s.split(want)
        return ScalingAction(zi, want, on_demand, spot, reason)
