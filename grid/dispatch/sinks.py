"""Where a run's events go: one interface, fed by both drivers through the dispatch core.

A sink receives what happens to requests and zones, stamped with the driver's clock (`now_s`,
seconds: virtual in `grid sim`, the gateway's in `grid up`). Every method has a no-op default, so a
sink overrides only what it needs. Sinks must not raise into the dispatch path: the core calls
them through `Sinks`, which contains a failing sink's error (logged once per sink and method).

`ended` is called exactly once per request that arrived (completed, failed, rejected or
cancelled), with the outcome's client-side figures.
"""

from __future__ import annotations

import logging
import math

from mypy_extensions import mypyc_attr

from grid.routing.explain import Explanation
from grid.routing.view import ZoneView
from grid.serving.request import Request

log = logging.getLogger(__name__)


class Outcome:
    """How a request ended, as its client saw it (times in s; NaN when there was none). One is built
    per request: a plain slotted class, which compiled (`make native`) is a native object."""

    __slots__ = ("status", "zone", "ttft_s", "tpot_s", "e2e_s", "retries", "reason", "itl_s")

    def __init__(
        self,
        status: str,  # grid.serving.request: stop | length | error | rejected | cancelled
        zone: int,  # the zone of its last attempt; -1 when no zone was ever tried
        ttft_s: float = math.nan,
        tpot_s: float = math.nan,
        e2e_s: float = math.nan,
        retries: int = 0,
        reason: str = "",  # why it did not complete (busy, down, error, timeout, context_length, ...)
        itl_s: list[float] | None = None,  # gaps between a stream's chunks as sent (live); None: the TPOT repeated
    ) -> None:
        self.status = status
        self.zone = zone
        self.ttft_s = ttft_s
        self.tpot_s = tpot_s
        self.e2e_s = e2e_s
        self.retries = retries
        self.reason = reason
        self.itl_s = itl_s

    def __repr__(self) -> str:
        return f"Outcome({self.status!r}, zone={self.zone}, ttft_s={self.ttft_s}, reason={self.reason!r})"


@mypyc_attr(allow_interpreted_subclasses=True)  # when compiled (`make native`): other sinks subclass it
class Sink:
    """A consumer of run events (stats, Prometheus families, records, decision logs)."""

    def arrived(self, request: Request, now_s: float) -> None:
        """A request reached the router."""

    def routed(self, request: Request, zone: int, rtt_s: float, decision_s: float, now_s: float) -> None:
        """An attempt (first, retry or hedge copy) left for `zone` with round trip `rtt_s`."""

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        """The attempt at `from_zone` failed with `reason` and the request goes to `to_zone`."""

    def decided(self, request: Request, explanation: Explanation, now_s: float) -> None:
        """Why the policy sent this attempt where it did (`grid.routing.explain`). The dispatch core
        builds explanations only while some sink overrides this: they cost a pass over the candidates."""

    def hedged(self, request: Request, zone: int, outcome: str, now_s: float) -> None:
        """A hedge copy at `zone` ended: won | lost | failed."""

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        """The request ended (exactly once per request)."""

    def zone_reported(self, zone: int, view: ZoneView, now_s: float) -> None:
        """The router's view of `zone` was refreshed from its load report."""

    def zone_health(self, zone: int, up: bool, now_s: float) -> None:
        """`zone` became eligible (up) or not."""

    def scaled(self, zone: int, reason: str, replicas: int, now_s: float) -> None:
        """`zone`'s fleet changed (grid.scaling.controller reasons: up, down, manual, stockout,
        preempted, replace); `replicas` is its target after it. Its counts by state reach sinks in
        its next `zone_reported` view (`replicas`, `warming`, `draining`)."""

    def tick(self, now_s: float) -> None:
        """Time passed (about once a second of the driver's clock)."""


class Sinks(Sink):
    """Fans each event out to several sinks; a sink that raises is logged, never propagated.

    Only the events a sink overrides are sent to it, so a driver pays nothing for the rest; the
    per-request events (arrived, routed, ended) loop inline, as they run for every request."""

    EVENTS = (
        "arrived", "routed", "retried", "decided", "hedged", "ended", "zone_reported", "zone_health", "scaled", "tick",
    )  # fmt: skip

    def __init__(self, sinks: list[Sink] | tuple[Sink, ...] = ()) -> None:
        self.sinks: list[Sink] = []
        self._warned: set[tuple[int, str]] = set()
        self._to: dict[str, list] = {event: [] for event in self.EVENTS}
        self.to_arrived, self.to_routed, self.to_ended = self._to["arrived"], self._to["routed"], self._to["ended"]
        self.to_decided = self._to["decided"]
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)
        for event in self.EVENTS:
            if getattr(type(sink), event, None) is not getattr(Sink, event):
                self._to[event].append(getattr(sink, event))

    def wants(self, event: str) -> bool:
        return bool(self._to[event])

    def _failed(self, method, event: str) -> None:
        key = (id(method.__self__), event)
        if key not in self._warned:
            self._warned.add(key)
            name = type(method.__self__).__name__
            log.exception("sink %s.%s failed (further failures not logged)", name, event)

    def _each(self, event: str, *args) -> None:
        for method in self._to[event]:
            try:
                method(*args)
            except Exception:
                self._failed(method, event)

    def arrived(self, request: Request, now_s: float) -> None:
        for method in self.to_arrived:
            try:
                method(request, now_s)
            except Exception:
                self._failed(method, "arrived")

    def routed(self, request: Request, zone: int, rtt_s: float, decision_s: float, now_s: float) -> None:
        for method in self.to_routed:
            try:
                method(request, zone, rtt_s, decision_s, now_s)
            except Exception:
                self._failed(method, "routed")

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        for method in self.to_ended:
            try:
                method(request, outcome, now_s)
            except Exception:
                self._failed(method, "ended")

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        self._each("retried", request, from_zone, reason, to_zone, now_s)

    def hedged(self, request: Request, zone: int, outcome: str, now_s: float) -> None:
        self._each("hedged", request, zone, outcome, now_s)

    def decided(self, request: Request, explanation: Explanation, now_s: float) -> None:
        self._each("decided", request, explanation, now_s)

    def zone_reported(self, zone: int, view: ZoneView, now_s: float) -> None:
        self._each("zone_reported", zone, view, now_s)

    def zone_health(self, zone: int, up: bool, now_s: float) -> None:
        self._each("zone_health", zone, up, now_s)

    def scaled(self, zone: int, reason: str, replicas: int, now_s: float) -> None:
        self._each("scaled", zone, reason, replicas, now_s)

    def tick(self, now_s: float) -> None:
        self._each("tick", now_s)
