"""The gateway's state and lifecycle: everything `GridGateway` holds besides the request path.

`GatewayState` builds the world, the policy, the routing view, the zone links, the health monitor,
the retry budget, the stats and the fault controller; it owns the gateway clock (`now`), starts and
stops the background tasks, snapshots the stats, and applies network faults. The request path
(`grid.live.gateway.GridGateway`, its subclass) provides `deliver` and `fail_admitted`, which route
zone updates and losses to the requests they concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram

from grid.dispatch.core import Dispatch
from grid.dispatch.recording import StatsSink
from grid.dispatch.settings import DispatchSettings, build_view, client_zone_rtt_s
from grid.dispatch.sinks import Sinks
from grid.faults import NetworkState
from grid.live.autoscaling import LiveFleet
from grid.live.cluster import ZoneHandles
from grid.live.decisions import DecisionLog
from grid.live.fault_control import FaultController
from grid.live.health import ZoneHealth
from grid.live.health_monitor import HealthMonitor, zone_down_figures
from grid.live.hedging import Hedging
from grid.live.intake import Intake
from grid.live.loop_lag import LoopLag
from grid.live.responses import RequestRecord
from grid.live.security import ApiKeys
from grid.live.zone_link import ZoneLink, report_within
from grid.report import ZoneFigures
from grid.routing.registry import make_policy
from grid.scenario import Scenario
from grid.stats import RunStats
from grid.telemetry.metrics import GridMetrics
from grid.telemetry.sink import MetricsSink
from grid.world import World, build_world

if TYPE_CHECKING:
    from grid.live.gateway import GatewaySettings, _Live

METRICS_TICK_S = 1.0  # cost, energy and carbon accrue this often
# A full garbage collection this often. Every closed connection leaves reference cycles (uvicorn's
# protocol and request cycle, uvloop's transport) holding its buffers, and with young collections
# made rare (grid.live.server.freeze_heap) full ones are rarer still: under the hostile soak the
# gateway's RSS grew 18% in 150 s. The start-up heap is frozen, so a full collection walks only what
# was made since: 4 ms median, 9 ms at most under that soak (benchmarks/hostile_soak.py).
FULL_GC_EVERY_S = 10.0
INTAKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def intake_histogram(registry: CollectorRegistry) -> Histogram:
    """`grid_gateway_intake_seconds`: a request's first byte at the server to its handler starting."""
    return Histogram(
        "grid_gateway_intake_seconds",
        "From a request's first byte reaching the server to its handler starting (the gateway's own wait).",
        buckets=INTAKE_BUCKETS,
        registry=registry,
    )


class GatewayState:
    """Runtime state of the gateway: the view, the policy, the zone links, health, the stats.

    `clock` (monotonic seconds) is the only clock the gateway reads (`now`); `wall_clock` dates the
    responses (`created`)."""

    def __init__(
        self,
        scenario: Scenario,
        zones: ZoneHandles,
        settings: GatewaySettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.world: World = build_world(scenario)
        if list(zones.zone_ids) != list(self.world.zone_ids):
            raise ValueError("zone actors do not match the scenario's zones")
        self.zones = zones
        self.seed = scenario.seed
        self.policy = make_policy(scenario.routing.policy, self.seed)
        self.network = NetworkState(self.world)
        self.dispatch_settings = DispatchSettings.from_scenario(scenario)
        self.view = build_view(scenario, self.world, self.dispatch_settings, self.network.rtt_s())
        self.stats = self.new_stats()
        self.stats_sink = StatsSink(self.stats)
        self.sinks = Sinks()
        # Every decision explained (a pass over the candidates each): the x-grid-decision header and
        # /grid/decisions/{id} (grid.live.decisions); off with GatewaySettings.explain_decisions.
        self.decisions = DecisionLog(self.world) if settings.explain_decisions else None
        if self.decisions is not None:
            self.sinks.add(self.decisions)
        self.dispatch = Dispatch(
            self.policy, self.view, self.dispatch_settings, self.stats_sink, self.sinks, self.world.population_ids,
            contain_policy_errors=True,
        )  # fmt: skip
        # decided once: a policy without the hedge hooks never pays for hedging per request
        self.hedging: Hedging | None = Hedging(self) if self.dispatch.hedging else None
        self.report_interval_s = self.dispatch_settings.report_interval_s  # 0: fresh (zones push reports)
        self.intake = Intake(scenario, self.world, self.seed, settings.default_population)
        self.model_name = scenario.model.name
        self.context_tokens = scenario.model.context_tokens
        n = len(zones.actors)
        self.links = [
            ZoneLink(i, actor, self._on_updates, self._link_lost, self.cancel_on_zone)
            for i, actor in enumerate(zones.actors)
        ]
        self.health = [ZoneHealth(settings.health) for _ in range(n)]
        self.loop_lag = LoopLag(self.now)  # the gateway's own stalls, which timeouts on zones don't count
        self.monitor = HealthMonitor(
            self.view,
            self.links,
            self.health,
            settings.health,
            self.report_interval_s,
            settings.poll_wait_s,
            self.now,
            self.deliver,
            self.fail_admitted,
            self.loop_lag,
            self.sinks,
        )
        self.monitor.cached_units = bool(getattr(self.policy, "reads_cached_units", False))
        self.live: dict[int, _Live] = {}
        self.last_id = 0  # request ids are 1, 2, …: also how many requests arrived (the hedge budget's base)
        self._jitter = random.Random(self.seed * 1_000_003 + 1)
        self._jitter_ratio = scenario.network.jitter_ratio
        self._hop_s = self.dispatch_settings.gateway_hop_s  # the least client↔zone leg (client_zone_rtt_s)
        self._id_rng = random.Random(self.seed)
        self._clock = clock
        self._t0 = clock()
        self.wall_t0_s = wall_clock()  # the wall-clock time of `now()` = 0: dates each answer (`created`)
        self.created = int(self.wall_t0_s)  # the gateway's start: the served model's `created`
        self._tasks: list[asyncio.Task] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once started
        self.on_request_end: list[Callable[[RequestRecord], None]] = []
        self._metrics: GridMetrics | None = None  # set by create_app: the Prometheus families
        self.intake_histogram: Histogram | None = None  # set by `register_intake`
        self.api_keys = ApiKeys(settings.api_keys, settings.api_key_rps, settings.api_key_burst)
        self.faults = FaultController(self)
        self.fleet = LiveFleet(self, settings.autoscaler)  # the autoscaler (grid.live.autoscaling)
        # what the drills read (bounded): (t, from, to), (t, zone); the health log is the monitor's
        self.failover_log: deque[tuple[float, int, int]] = deque(maxlen=65536)
        self.midstream_log: deque[tuple[float, int]] = deque(maxlen=65536)
        self.counts = {"retries": 0, "deadline": 0, "reaped": 0, "midstream_failed": 0, "drained": 0}
        self.draining = False  # shutting down: nothing new is admitted (GridGateway.drain)
        w = self.world
        self._route_headers = [  # [population][zone]: the routed answer's fixed headers, built once
            [
                {
                    "x-grid-zone": w.zone_ids[zi],
                    "x-grid-region": w.region_ids[w.zone_region[zi]],
                    "x-grid-population": pop_id,
                }
                for zi in range(n)
            ]
            for pop_id in w.population_ids
        ]

    @property
    def metrics(self) -> GridMetrics | None:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: GridMetrics | None) -> None:
        self._metrics = self.monitor.metrics = metrics
        if metrics is not None:
            self.sinks.add(MetricsSink(metrics))

    # --- clock and lifecycle -------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the gateway started: the only clock the gateway reads."""
        return self._clock() - self._t0

    def register_intake(self, registry: CollectorRegistry) -> None:
        self.intake_histogram = intake_histogram(registry)

    def observe_intake(self, delay_s: float) -> None:
        """The wait between a request reaching the server and its handler starting (parsing, the
        event loop's queue): the gateway's own latency, which the simulator does not model."""
        if self.intake_histogram is not None:
            self.intake_histogram.observe(delay_s)

    def since_start(self, monotonic_s: float | None) -> float | None:
        """A `time.monotonic()` reading (the server's receipt stamp) on the gateway's clock; None
        without one, or when the gateway runs on another clock (a test's)."""
        if monotonic_s is None or self._clock is not time.monotonic:
            return None
        return monotonic_s - self._t0

    async def start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.loop_lag.run())]
        await self.fleet.start()  # the initial fleet in its spot mix, before the first reports
        await self.monitor.refresh_reports()
        self._tasks += self.monitor.tasks(loop)
        self._tasks.append(loop.create_task(self._tick_loop()))
        if self.settings.timeline_on_start:
            self.start_timeline()

    def start_timeline(self) -> None:
        """The scenario's own timeline from now: autoscaling decisions and scheduled faults at the
        scenario's times after it, as the simulator's after its t = 0. `grid up` starts it with the
        gateway; an experiment as its load begins, so that decisions count the same windows of
        arrivals as the simulator's, not windows shifted by however long start-up took."""
        epoch_s = self.now()
        if self.fleet.enabled:
            self._tasks.append(self.loop.create_task(self.fleet.run(epoch_s)))
        if self.settings.apply_faults and self.scenario.faults:
            self._tasks.append(self.loop.create_task(self.faults.run_schedule(self.scenario.faults, epoch_s)))

    async def stop(self) -> None:
        await self.faults.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _tick_loop(self) -> None:
        next_gc_s = self.now() + FULL_GC_EVERY_S
        while True:
            now = self.now()
            self.sinks.tick(now)  # as the simulator's once-a-second tick: metrics accrue cost, timelines sample
            if now >= next_gc_s:
                gc.collect()
                next_gc_s = now + FULL_GC_EVERY_S
            await asyncio.sleep(METRICS_TICK_S)

    # --- stats ---------------------------------------------------------------------------------

    def new_stats(self) -> RunStats:
        return RunStats(len(self.world.population_ids), len(self.world.zone_ids), self.scenario.slo)

    def reset_stats(self) -> None:
        """Start a fresh measurement window (requests already in flight report to the old one)."""
        self.stats = self.new_stats()
        self.stats_sink.new_window(self.stats, self.last_id + 1)

    def snapshot_stats(self) -> tuple[RunStats, int]:
        """A copy of the current window's stats and how many of its requests are still in flight."""
        current = self.stats
        in_flight = sum(1 for rid in self.live if self.stats_sink.counts_in(rid, current))
        snapshot = copy.deepcopy(current)
        snapshot.flush()
        return snapshot, in_flight

    async def zone_figures(self) -> list[ZoneFigures]:
        """Cumulative serving-model integrals of every zone (subtract two for a window)."""
        timeout_s = self.settings.report_timeout_s
        reports = await asyncio.gather(*(report_within(link, timeout_s, self.loop_lag) for link in self.links))
        return [ZoneFigures(r["work_s"], r["area_queued"], r["area_in_system"]) for r in reports]

    # --- zones: updates, loss, faults ----------------------------------------------------------

    def _on_updates(self, zi: int, updates: list) -> None:
        self.monitor.on_updates(zi, updates)

    def _link_lost(self, zi: int) -> None:
        self.monitor.link_lost(zi)

    def cancel_on_zone(self, zi: int, rid: int) -> None:
        """Withdraw request `rid` from zone `zi` (frees its capacity; a no-op if it already ended there)."""
        with contextlib.suppress(Exception):
            self.links[zi].actor.cancel.remote([rid])

    def apply_network(self, action) -> None:
        """A network fault starts or ends (grid.live.fault_control)."""
        self.network.apply(action)
        self.view.rtt_s = client_zone_rtt_s(self.network.rtt_s(), self._hop_s)
        self.view.refresh_candidates()

    def zone_down_figures(self, record) -> dict:
        """Detection and failover figures of one zone_down fault (grid.live.fault_control)."""
        zi = self.world.zone_ids.index(record.zone)
        health_log = self.monitor.health_log
        return zone_down_figures(record, zi, self.now(), health_log, self.failover_log, self.midstream_log)
