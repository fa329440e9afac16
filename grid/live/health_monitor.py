"""The gateway's view of its zones: health checks, load reports, the update streams, zone loss.

`HealthMonitor` checks every zone every `HealthSettings.check_interval_s` (its report, with a
timeout) for health, and refreshes the routing view's load from the zones' reports as the scenario's
`routing.report_interval_s` says, by the dispatch core's rule (`grid.dispatch.reports`): every
interval, or, when it is 0 ("fresh"), from the reports each zone sends with its updates after every
admission and model event, plus a refresh of all zones every `UTILIZATION_WINDOW_S`, as the
simulator does. Failed checks, a dead actor, a restarted actor
(new incarnation) and consecutive request failures eject a zone (`grid.live.health`: outlier
ejection, growing ejection time, half-open probation); a zone is routed to only while eligible.
Requests in flight on a zone fail only once it is dead (its actor errored or restarted, or its checks
kept failing): a zone that is merely slow to answer is suspected and keeps serving what it holds.
Check timeouts do not count the gateway's own event-loop stalls (`lag`, `grid.live.loop_lag`).

It also learns each actor's clock offset from the report round trips (NTP-style): the gateway sends
the zone-arrival time with the request on the zone's clock and delivers each update at (zone time it
was produced) + rtt/2 on its own, so a slow Ray hop or a busy CPU shows up as latency only beyond rtt/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable

from grid.dispatch.reports import apply_load_report, apply_replicas
from grid.dispatch.settings import report_tick_s
from grid.dispatch.sinks import Sinks
from grid.live.health import HealthSettings, ZoneHealth
from grid.live.loop_lag import LoopLag
from grid.live.zone_actor import PREEMPTED, REPORT_ID, UPDATE_FAILED
from grid.live.zone_link import ZoneLink, report_within
from grid.routing.view import GridView
from grid.telemetry.metrics import GridMetrics

log = logging.getLogger(__name__)


class HealthMonitor:
    """Health checks, load reports, clock offsets and the update long-poll of every zone link.

    Collaborators: the routing `view` (its zones' load fields and `up`), the `links`, one `ZoneHealth`
    per zone, the gateway clock `now`, `deliver(zone, updates)` (updates to the requests waiting for
    them) and `fail_admitted(zone, keep, dead) -> ids` (fail the requests a lost zone held: all of
    them, those of incarnation `dead`, or those not of incarnation `keep`). `metrics` is set once the
    app has its Prometheus families."""

    def __init__(
        self,
        view: GridView,
        links: list[ZoneLink],
        health: list[ZoneHealth],
        settings: HealthSettings,
        report_interval_s: float,
        poll_wait_s: float,
        now: Callable[[], float],
        deliver: Callable[[int, list], None],
        fail_admitted: Callable[[int, str | None, str | None], list[int]],
        lag: LoopLag | None = None,
        sinks: Sinks | None = None,
    ) -> None:
        self.view = view
        self.sinks = sinks if sinks is not None else Sinks()  # zone reports and health go out as the simulator's
        self.links = links
        self.health = health
        self.settings = settings
        self.report_tick_s = report_tick_s(report_interval_s)  # the load view's refresh period
        self.poll_wait_s = poll_wait_s
        self.now = now
        self.deliver = deliver
        self.fail_admitted = fail_admitted
        self.lag = lag
        self.metrics: GridMetrics | None = None
        # The zones' prefix-cache summaries ride on the periodic reports (not the fresh pushes) when the
        # policy reads them (`Policy.reads_cached_units`): a copy of every cached unit hash each time.
        self.cached_units = False
        n = len(links)
        self.sent_total = [0] * n  # requests sent to each zone (the dispatch side counts them)
        self.reports: list[dict | None] = [None] * n
        # Requests a spot preemption failed, per zone, not yet reported as failed attempts: the market
        # took replicas, the zone is healthy, so they do not count towards outlier ejection.
        self.preempted = [0] * n
        self.clock_offset_s = [0.0] * n  # actor clock − gateway clock, per zone
        self._offset_bound = [math.inf] * n
        self._offset_at = [0.0] * n
        # what the drills read (bounded): (t, zone, eligible, reason)
        self.health_log: deque[tuple[float, int, bool, str]] = deque(maxlen=4096)

    def tasks(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
        """Start the update pumps and the health loops (after a first `refresh_reports`)."""
        tasks = [loop.create_task(self._pump(link)) for link in self.links]
        tasks += [loop.create_task(self._health_loop(i)) for i in range(len(self.links))]
        return tasks + [loop.create_task(self._report_loop(i)) for i in range(len(self.links))]

    async def _timed_report(self, link: ZoneLink) -> tuple[float, dict, float]:
        sent = self.now()
        report = await report_within(link, self.settings.check_timeout_s, self.lag)
        return sent, report, self.now()

    def _learn_offset(self, zi: int, sent: float, report: dict, received: float) -> None:
        """Actor clock − gateway clock, NTP-style from the report round trip; the tightest recent
        round trip wins (its bound loosens by 1 ms per 10 s so a drifting clock is re-learned)."""
        half_rtt = 0.5 * (received - sent)
        bound = self._offset_bound[zi] + (received - self._offset_at[zi]) * 1e-4
        if half_rtt <= bound:
            self.clock_offset_s[zi] = report["report_s"] - 0.5 * (sent + received)
            self._offset_bound[zi] = half_rtt
            self._offset_at[zi] = received

    async def refresh_reports(self) -> None:
        """Check every zone once, and read its load."""
        await asyncio.gather(*(self._check(i) for i in range(len(self.links))))
        for zi, report in enumerate(self.reports):
            if report is not None:
                self._apply(zi, report, report["report_s"] - self.clock_offset_s[zi])

    async def _check(self, zi: int) -> None:
        link, health = self.links[zi], self.health[zi]
        try:
            asked, report, answered = await self._timed_report(link)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            timeout = isinstance(exc, TimeoutError)
            self.reports[zi] = None
            was_reachable = health.reachable
            if health.check_failed(self.now(), timeout):
                log.warning("zone %d: lost (%s)", zi, "checks timed out" if timeout else repr(exc))
                self._fail_zone(zi, keep=None, cancel=True)
            elif was_reachable and not health.reachable:
                log.warning("zone %d: suspected (checks timed out): no new requests", zi)
            self.update_eligibility(zi, health.last_reason or "check failed")
            if self.metrics is not None:
                self.metrics.set_zone_up(zi, False)
            return
        if health.check_ok(report["up"], report["incarnation"], answered):
            log.warning("zone %d: restarted (incarnation %s)", zi, report["incarnation"])
            self._offset_bound[zi] = math.inf  # a new process, a new clock
            self._fail_zone(zi, keep=report["incarnation"], cancel=False)
        self._learn_offset(zi, asked, report, answered)
        self.reports[zi] = report
        self.update_eligibility(zi, "report")

    def _apply(self, zi: int, report: dict, report_s: float) -> None:
        """A load report into the routing view (`report_s` on the gateway's clock)."""
        apply_load_report(
            self.view.zones[zi], report["outstanding"], report["waiting"], report["kv_usage"],
            report["utilization"], report["ttft_ewma_s"], report_s, report.get("cached_units"),
        )  # fmt: skip
        if "replicas" in report:
            self.apply_fleet(zi, report["replicas"], report["paid"][1])
        self.sinks.zone_reported(zi, self.view.zones[zi], self.now())

    def apply_fleet(self, zi: int, counts: tuple[int, int, int], spot: int | None = None) -> None:
        """A zone's replicas (serving, warming, draining) from its report into the view, by the
        dispatch core's rule (`apply_replicas`, as the simulator's reports do); `spot`: how many it pays
        for as spot (a fresh report does not say: the last one stands). Sinks hear of it with the report."""
        if apply_replicas(self.view.zones[zi], *counts, spot):
            self.view.refresh_candidates()

    def on_updates(self, zi: int, updates: list) -> None:
        """Updates from zone `zi`: fresh load reports into the view, the rest to their requests."""
        self.preempted[zi] += sum(1 for u in updates if u[1] == UPDATE_FAILED and u[5] == PREEMPTED)
        if any(update[0] == REPORT_ID for update in updates):
            kept = []
            for update in updates:
                if update[0] != REPORT_ID:
                    kept.append(update)
                    continue
                outstanding, waiting, kv_usage, utilization, ttft_ewma_s = update[2]
                report_s = update[3] - self.clock_offset_s[zi]
                zv = self.view.zones[zi]
                apply_load_report(zv, outstanding, waiting, kv_usage, utilization, ttft_ewma_s, report_s)
                if update[5] is not None:  # the zone's replicas by state
                    self.apply_fleet(zi, update[5])
                self.sinks.zone_reported(zi, zv, self.now())
            updates = kept
        if updates:
            self.deliver(zi, updates)

    async def _report_loop(self, zi: int) -> None:
        """Every `report_tick_s`: the zone's load into the view (a check that fails leaves it as it was)."""
        tick_s = self.report_tick_s
        link = self.links[zi]
        next_s = self.now()
        while True:
            next_s += tick_s
            await asyncio.sleep(max(0.0, next_s - self.now()))
            try:
                report = await report_within(link, self.settings.check_timeout_s, self.lag, self.cached_units)
            except asyncio.CancelledError:
                raise
            except Exception:  # the health loop judges the zone; the view keeps its last report
                continue
            self._apply(zi, report, report["report_s"] - self.clock_offset_s[zi])

    def update_eligibility(self, zi: int, reason: str) -> None:
        zv = self.view.zones[zi]
        eligible = self.health[zi].eligible
        if zv.up != eligible:
            zv.up = eligible
            self.health_log.append((self.now(), zi, eligible, reason))
            self.view.refresh_candidates()
            self.sinks.zone_health(zi, eligible, self.now())

    def request_failed(self, zi: int, reason: str) -> None:
        """A request failed on zone `zi` (passive outlier ejection; not for what a preemption failed)."""
        if reason == "error" and self.preempted[zi] > 0:
            self.preempted[zi] -= 1
            return
        if self.health[zi].request_failed(self.now(), reason):
            log.warning("zone %d: ejected after request failures (%s)", zi, reason)
            self.update_eligibility(zi, f"outlier: {reason}")

    async def _health_loop(self, zi: int) -> None:
        interval = self.settings.check_interval_s
        while True:
            started = self.now()
            try:
                await self._check(zi)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a health loop die
                log.exception("zone %d: health check failed", zi)
            await asyncio.sleep(max(0.0, started + interval - self.now()))

    def link_lost(self, zi: int, fail_admitted: bool = False) -> None:
        """A Ray call to the zone failed: its actor is gone (Ray may be restarting it). A failed
        update stream also fails what the incarnation it was reading held; a failed submit only
        refuses its batch (its error may arrive after the restart, for the old process)."""
        if self.health[zi].lost(self.now(), "actor error"):
            log.warning("zone %d: lost (actor error)", zi)
        if fail_admitted:
            self._fail_zone(zi, keep=None, dead=self.links[zi].incarnation)
        self.update_eligibility(zi, "actor error")

    def _fail_zone(self, zi: int, keep: str | None, dead: str | None = None, cancel: bool = False) -> None:
        """Fail the requests admitted on zone `zi` (see `fail_admitted`) and, with `cancel`, withdraw them."""
        failed = self.fail_admitted(zi, keep, dead)
        if failed and cancel:
            with contextlib.suppress(Exception):
                self.links[zi].actor.cancel.remote(failed)

    async def _pump(self, link: ZoneLink) -> None:
        wait_s = self.poll_wait_s
        zi = link.index
        while True:
            try:
                incarnation, updates = await link.actor.poll.remote(wait_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the actor died: its requests fail
                log.warning("zone %d: update stream failed: %r", zi, exc)
                self.link_lost(zi, fail_admitted=True)
                await asyncio.sleep(0.1)
                continue
            if incarnation != link.incarnation:
                if link.incarnation is not None:  # a restart: what the old process held is lost
                    self._fail_zone(zi, keep=incarnation)
                link.incarnation = incarnation
            if updates:
                self.on_updates(zi, updates)


def zone_down_figures(record, zi: int, now: float, health_log, failover_log, midstream_log) -> dict:
    """Detection and failover figures of one zone_down fault on zone `zi` (grid.live.fault_control)."""
    killed = record.killed_at_s
    if killed is None:
        return {}
    end = record.ended_at_s if record.ended_at_s is not None else now
    detected = next((t for t, z, ok, _ in health_log if z == zi and not ok and t >= killed), None)
    back = None
    if record.ended_at_s is not None:
        back = next((t for t, z, ok, _ in health_log if z == zi and ok and t >= record.ended_at_s), None)
    failovers = [t for t, src, _ in failover_log if src == zi and killed <= t <= end]
    midstream = sum(1 for t, z in midstream_log if z == zi and killed <= t <= end)
    return {
        "killed_at_s": round(killed, 4),
        "restarted_at_s": round(record.restarted_at_s, 4) if record.restarted_at_s is not None else None,
        "detected_at_s": round(detected, 4) if detected is not None else None,
        "detection_s": round(detected - killed, 4) if detected is not None else None,
        "failovers": len(failovers),
        "failover_s": round(max(failovers) - killed, 4) if failovers else None,
        "midstream_failures": midstream,
        "back_up_at_s": round(back, 4) if back is not None else None,
    }
