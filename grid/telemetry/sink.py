"""The sink that feeds `GridMetrics` from dispatch events: one mapping, whichever driver runs.

`grid sim` (virtual clock) and `grid up` (the gateway's clock) both emit the `grid.dispatch.sinks`
events; `MetricsSink` turns them into the Prometheus families of `grid.telemetry.metrics`, so the
families are defined once and fed the same way by both drivers. It reads no clock: durations come
from the events (`Outcome`, `rtt_s`, `decision_s`) and `now_s` only dates reports and ticks.

| event | GridMetrics call |
|---|---|
| `routed` | `observe_route(population, zone, decision_s, rtt_s)` |
| `retried` | `observe_retry(from_zone, reason, to_zone)` |
| `hedged` | `observe_hedge(population, zone, outcome)` (only when the metrics were built with hedging) |
| `ended` | `observe_request_end(...)` with the outcome's status, TTFT and E2E |
| `zone_reported` | `observe_zone_report(...)` from the `ZoneView`, age = `now_s - view.report_s` |
| | and `observe_zone_fleet(...)` from its replicas by state |
| `zone_health` | `set_zone_up(zone, up)` |
| `scaled` | `observe_scaling(zone, reason)` |
| `tick` | `tick(now_s)` (cost, energy, carbon) and each reported zone's report age now |
"""

from __future__ import annotations

import logging
import math

from prometheus_client import CollectorRegistry

from grid.dispatch.sinks import Outcome, Sink
from grid.routing.view import ZoneView
from grid.serving.request import CANCELLED, REJECTED, Request
from grid.telemetry.metrics import GridMetrics

log = logging.getLogger(__name__)

# Spellings of a withdrawn request that GridMetrics counts as `cancelled` (vLLM's `abort`).
_STATUS_ALIASES = {"abort": CANCELLED, "aborted": CANCELLED}


def _seconds(value: float) -> float | None:
    """An `Outcome` time, or None when there was none (NaN, negative)."""
    return value if value is not None and not math.isnan(value) and value >= 0.0 else None


class MetricsSink(Sink):
    """Feeds one `GridMetrics` from the dispatch events of either driver (see the module docstring).

    `unattributed` counts requests that ended without a zone although they were not rejected (a
    client that gave up before any attempt): GridMetrics has no series for them, so they are left
    out of `grid_requests_total` and counted here instead (logged once).
    """

    def __init__(self, metrics: GridMetrics) -> None:
        self.metrics = metrics
        self.hedging = metrics.hedges is not None
        self.unattributed = 0
        self._views: dict[int, ZoneView] = {}  # each zone's view as last reported: its report ages between ticks

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def routed(self, request: Request, zone: int, rtt_s: float, decision_s: float, now_s: float) -> None:
        self.metrics.observe_route(request.population, zone, max(0.0, decision_s), max(0.0, rtt_s))

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        self.metrics.observe_retry(from_zone, reason, to_zone if to_zone is not None and to_zone >= 0 else None)

    def hedged(self, request: Request, zone: int, outcome: str, now_s: float) -> None:
        if self.hedging:
            self.metrics.observe_hedge(request.population, zone, outcome)

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        status = _STATUS_ALIASES.get(outcome.status, outcome.status)
        zone: int | None = outcome.zone
        if zone is None or zone < 0:
            if status != REJECTED:
                if not self.unattributed:
                    log.warning("a %s request ended without a zone: not counted in grid_requests_total", status)
                self.unattributed += 1
                return
            zone = None
        self.metrics.observe_request_end(
            request,
            request.population,
            zone,
            _seconds(outcome.ttft_s),
            _seconds(outcome.e2e_s),
            outcome.itl_s,  # None (simulated, not streamed): the request's TPOT repeated
            status,
        )

    def zone_reported(self, zone: int, view: ZoneView, now_s: float) -> None:
        self._views[zone] = view
        self.metrics.observe_zone_report(
            zone,
            view.up,
            view.running,
            view.waiting,
            view.kv_usage,
            view.utilization,
            max(0.0, now_s - view.report_s),
        )
        self.metrics.observe_zone_fleet(zone, view.replicas, view.warming, view.draining, now_s, view.spot)

    def zone_health(self, zone: int, up: bool, now_s: float) -> None:
        self.metrics.set_zone_up(zone, up)

    def scaled(self, zone: int, reason: str, replicas: int, now_s: float) -> None:
        self.metrics.observe_scaling(zone, reason)

    def tick(self, now_s: float) -> None:
        self.metrics.tick(now_s)
        for zone, view in self._views.items():  # a report not renewed grows old: stale signals show
            self.metrics.observe_report_age(zone, max(0.0, now_s - view.report_s))
