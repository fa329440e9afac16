"""Every Prometheus metric family of the grid, defined once; both drivers feed the same object.

`GridMetrics(registry, scenario)` registers the families on a registry you own (no import-time
globals) and pre-creates every series that is known in advance, so a fresh grid exports zeros and
dashboards show flat lines instead of "no data". Label values come only from the scenario (zone,
region and population ids) and from fixed sets (`STATUSES`, `FINISHED_REASONS`, `RETRY_REASONS`,
`HEDGE_OUTCOMES`); a value outside them raises `ValueError` — `/metrics` stays bounded whatever clients send.

vLLM families (names, types and buckets as vLLM exports them, so vLLM's dashboards and PromQL work
unchanged; counters are declared without `_total` and exposed with it), each labelled
`model_name`, `region`, `zone`:

- gauges `vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (0–1),
  set by `observe_zone_report`;
- counters `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`,
  `vllm:request_success_total{finished_reason=stop|length|abort|error}` (`observe_request_end`) and
  `vllm:num_preemptions_total` (the serving model never preempts: it stays 0);
- histograms, all fed by `observe_request_end`: `vllm:time_to_first_token_seconds`,
  `vllm:inter_token_latency_seconds` and the legacy `vllm:time_per_output_token_seconds` (same
  samples), `vllm:request_time_per_output_token_seconds` (per request),
  `vllm:e2e_request_latency_seconds`, `vllm:request_{queue,prefill,decode,inference}_time_seconds`,
  `vllm:request_prompt_tokens` and `vllm:request_generation_tokens` (1-2-5 buckets up to the context).

Grid families (base units, bounded labels):

| family | type | labels | fed by |
|---|---|---|---|
| `grid_requests_total` | counter | population, zone (`none`: no zone took it), status | `observe_request_end` |
| `grid_routing_decision_seconds` | histogram | policy | `observe_route` |
| `grid_rtt_applied_seconds` | summary (`_sum`, `_count`) | population, region | `observe_route` |
| `grid_zone_up` | gauge 1/0 | zone, region | `observe_zone_report`, `set_zone_up` |
| `grid_zone_utilization` | gauge (ratio; >1 = overload) | zone, region | `observe_zone_report` |
| `grid_load_report_age_seconds` | gauge | zone, region | `observe_zone_report` |
| `grid_retries_total` | counter | zone (that refused/failed), reason | `observe_retry` |
| `grid_failovers_total` | counter | from_zone, to_zone | `observe_retry` |
| `grid_hedges_total` | counter | model_name, population, zone (the copy's), outcome | `observe_hedge` (hedging grids) |
| `grid_cost_usd_total`, `grid_energy_joules_total`, `grid_carbon_grams_total` | counter | zone, region | `tick` |
| `grid_zone_replicas` | gauge | zone, region | constructor |
| `grid_slo_seconds` | gauge | slo (ttft, tpot[, e2e]) | constructor |
| `grid_zone_info` | gauge = 1 | zone, region, lat, lon | constructor |
| `grid_population_info` | gauge = 1 | population, lat, lon | constructor |

Zones of one region share its coordinates; `grid_zone_info` places them on a small ring (≈0.6°)
around the region so that a map shows each of them.

Which clock: every duration is passed in, in seconds; this module reads no clock. The vLLM latency
families take what the gateway measures for the client (arrival at the gateway → first/last token
sent back), so they include the network round trip the gateway applies; the queue/prefill/decode
families are zone-side (`Request` timestamps on the zone's clock, or the explicit `*_s` arguments).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from grid.economics import zone_economics
from grid.scenario import Scenario
from grid.serving.request import CANCELLED, ERROR, LENGTH, REJECTED, STOP, Request

# --- fixed label sets ------------------------------------------------------------------------

STATUSES = (STOP, LENGTH, ERROR, REJECTED, CANCELLED)  # grid_requests_total{status}
FINISHED_REASONS = ("stop", "length", "abort", "error")  # vllm:request_success_total{finished_reason}
_FINISHED_REASON = {STOP: "stop", LENGTH: "length", CANCELLED: "abort", ERROR: "error"}  # rejected: never ran
RETRY_REASONS = ("busy", "down", "error", "timeout")  # why an attempt at a zone was retried elsewhere
HEDGE_OUTCOMES = ("won", "lost", "failed")  # of a hedge copy: its first token came first; the other's; it failed
NO_ZONE = "none"  # grid_requests_total{zone} of a request no zone could take
CONTENT_TYPE = CONTENT_TYPE_LATEST  # of `GridMetrics.exposition()`

# --- buckets (CONVENTIONS.md: vLLM's, exactly) --------------------------------------------------

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
ROUTING_DECISION_BUCKETS = (
    1e-6,
    2.5e-6,
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    0.01,
    0.025,
    0.05,
    0.1,
)


def buckets_1_2_5(max_value: int) -> list[int]:
    """vLLM's `build_1_2_5_buckets`: 1, 2, 5, 10, 20, 50, … while ≤ max_value."""
    buckets: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return buckets
            buckets.append(value)
        exponent += 1


ZONE_RING_DEG = 0.6  # radius of the ring on which a region's zones are drawn


def zone_coordinates(scenario: Scenario) -> dict[str, tuple[float, float]]:
    """(lat, lon) per zone: its region's, spread on a small ring when a region has several zones."""
    by_region: dict[str, list[str]] = {}
    for zone_id, zone in scenario.zones.items():
        by_region.setdefault(zone.region, []).append(zone_id)
    coords = {}
    for region_id, zone_ids in by_region.items():
        region = scenario.regions[region_id]
        for k, zone_id in enumerate(zone_ids):
            if len(zone_ids) == 1:
                coords[zone_id] = (region.lat, region.lon)
                continue
            angle = 2.0 * math.pi * k / len(zone_ids)
            lat = region.lat + ZONE_RING_DEG * math.sin(angle)
            lon = region.lon + ZONE_RING_DEG * math.cos(angle) / max(0.2, math.cos(math.radians(region.lat)))
            coords[zone_id] = (max(-90.0, min(90.0, lat)), (lon + 180.0) % 360.0 - 180.0)
    return coords


def _observe_many(histogram_child, values: Iterable[float]) -> None:
    """Observe many values with one increment per bucket (an ITL list can hold thousands of gaps).

    Uses prometheus_client's histogram child internals (`_upper_bounds`, `_buckets`, `_sum`, stable
    since 0.4); falls back to one `observe` per value if they change.
    """
    try:
        bounds = histogram_child._upper_bounds
        buckets = histogram_child._buckets
        total = histogram_child._sum
    except AttributeError:  # pragma: no cover - a future prometheus_client
        for value in values:
            histogram_child.observe(value)
        return
    counts: dict[int, int] = {}
    acc = 0.0
    for value in values:
        i = bisect_left(bounds, value)  # first bound ≥ value (`le` is inclusive); +Inf is last
        counts[i] = counts.get(i, 0) + 1
        acc += value
    if not counts:
        return
    total.inc(acc)
    for i, n in counts.items():
        buckets[i].inc(n)


class _WithoutCreated:
    """A registry view that drops the `_created` samples of counters, histograms and summaries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class GridMetrics:
    """All metric families of one grid on one registry; see the module docstring for the list.

    Thread-safe (prometheus_client's values are; `tick` holds a lock), clock-free, and cheap:
    label children are resolved once here, so an observation is a dict lookup and an increment.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        scenario: Scenario,
        model_name: str | None = None,
        policy: str | None = None,
        hedging: bool = False,
    ) -> None:
        """`hedging`: the driver sends hedge copies (its policy hedges), so register `grid_hedges_total`
        with its series pre-created; a grid that never hedges does not export the family at all."""
        self.registry = registry
        self.model_name = model_name or scenario.model.name
        self.policy = policy or scenario.routing.policy
        self.zone_ids = list(scenario.zones)
        self.population_ids = list(scenario.populations)
        self.region_ids = list(scenario.regions)
        self.zone_region = {z: scenario.zones[z].region for z in self.zone_ids}
        self._zone_economics = zone_economics(scenario)
        self._utilization = dict.fromkeys(self.zone_ids, 0.0)
        self._last_tick_s: float | None = None
        self._tick_lock = threading.Lock()

        r = registry
        vl = ("model_name", "region", "zone")
        # vLLM gauges and counters
        self.num_requests_running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", vl, registry=r
        )
        self.num_requests_waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", vl, registry=r
        )
        self.kv_cache_usage_perc = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", vl, registry=r
        )
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", vl, registry=r)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", vl, registry=r
        )
        self.request_success = Counter(
            "vllm:request_success", "Count of successfully processed requests.", (*vl, "finished_reason"), registry=r
        )
        self.num_preemptions = Counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", vl, registry=r
        )
        # vLLM histograms
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            vl,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            vl,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds. DEPRECATED: use vllm:inter_token_latency_seconds.",
            vl,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.request_time_per_output_token = Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            vl,
            buckets=TPOT_BUCKETS,
            registry=r,
        )

        def request_latency(name: str, help_text: str) -> Histogram:
            return Histogram(name, help_text, vl, buckets=REQUEST_LATENCY_BUCKETS, registry=r)

        self.e2e_request_latency = request_latency(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds."
        )
        self.request_queue_time = request_latency(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request."
        )
        self.request_prefill_time = request_latency(
            "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request."
        )
        self.request_decode_time = request_latency(
            "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request."
        )
        self.request_inference_time = request_latency(
            "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request."
        )
        token_buckets = buckets_1_2_5(scenario.model.context_tokens)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            vl,
            buckets=token_buckets,
            registry=r,
        )
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            vl,
            buckets=token_buckets,
            registry=r,
        )

        # grid families
        zl = ("zone", "region")
        self.requests = Counter(
            "grid_requests",
            "Requests ended, by the population that sent them, the zone that had them last, and how they ended.",
            ("population", "zone", "status"),
            registry=r,
        )
        self.routing_decision = Histogram(
            "grid_routing_decision_seconds",
            "Time the routing policy took to choose a zone.",
            ("policy",),
            buckets=ROUTING_DECISION_BUCKETS,
            registry=r,
        )
        self.rtt_applied = Summary(  # _sum and _count: the mean per pair, without 110 × buckets series
            "grid_rtt_applied_seconds",
            "Network round trip applied to a routed request (base RTT, faults and jitter).",
            ("population", "region"),
            registry=r,
        )
        self.zone_up = Gauge("grid_zone_up", "1 if the zone takes work, 0 if it is down.", zl, registry=r)
        self.zone_utilization = Gauge(
            "grid_zone_utilization",
            "Admitted work over saturated capacity, decayed over about 1 s (above 1: overloaded).",
            zl,
            registry=r,
        )
        self.load_report_age = Gauge(
            "grid_load_report_age_seconds", "Age of the load report the router last used.", zl, registry=r
        )
        self.retries = Counter(
            "grid_retries",
            "Attempts at a zone that were refused or failed and retried elsewhere.",
            ("zone", "reason"),
            registry=r,
        )
        self.failovers = Counter(
            "grid_failovers", "Retries sent to another zone.", ("from_zone", "to_zone"), registry=r
        )
        self.hedges = None
        if hedging:
            self.hedges = Counter(
                "grid_hedges",
                "Second copies of slow requests (hedges), by the zone the copy went to and how it ended.",
                ("model_name", "population", "zone", "outcome"),
                registry=r,
            )
        self.cost_usd = Counter("grid_cost_usd", "Cost of the provisioned GPUs, USD.", zl, registry=r)
        self.energy_joules = Counter("grid_energy_joules", "Energy drawn by the zone's GPUs.", zl, registry=r)
        self.carbon_grams = Counter(
            "grid_carbon_grams",
            "CO2e emitted for the zone's GPU energy at the region's grid intensity.",
            zl,
            registry=r,
        )
        self.zone_replicas = Gauge("grid_zone_replicas", "Replicas provisioned in the zone.", zl, registry=r)
        self.slo = Gauge("grid_slo_seconds", "Service-level objectives of the scenario.", ("slo",), registry=r)
        self.zone_info = Gauge(
            "grid_zone_info", "Zone location for maps (always 1).", ("zone", "region", "lat", "lon"), registry=r
        )
        self.population_info = Gauge(
            "grid_population_info", "Population location for maps (always 1).", ("population", "lat", "lon"), registry=r
        )

        # --- pre-create every series known in advance; keep the children for the hot paths ---
        self._z: dict[str, dict[str, object]] = {}
        for zone in self.zone_ids:
            region = self.zone_region[zone]
            labels = (self.model_name, region, zone)
            children = {
                "running": self.num_requests_running.labels(*labels),
                "waiting": self.num_requests_waiting.labels(*labels),
                "kv": self.kv_cache_usage_perc.labels(*labels),
                "prompt_tokens": self.prompt_tokens.labels(*labels),
                "generation_tokens": self.generation_tokens.labels(*labels),
                "preemptions": self.num_preemptions.labels(*labels),
                "ttft": self.time_to_first_token.labels(*labels),
                "itl": self.inter_token_latency.labels(*labels),
                "tpot_legacy": self.time_per_output_token.labels(*labels),
                "tpot": self.request_time_per_output_token.labels(*labels),
                "e2e": self.e2e_request_latency.labels(*labels),
                "queue": self.request_queue_time.labels(*labels),
                "prefill": self.request_prefill_time.labels(*labels),
                "decode": self.request_decode_time.labels(*labels),
                "inference": self.request_inference_time.labels(*labels),
                "prompt_hist": self.request_prompt_tokens.labels(*labels),
                "generation_hist": self.request_generation_tokens.labels(*labels),
                "up": self.zone_up.labels(zone, region),
                "utilization": self.zone_utilization.labels(zone, region),
                "report_age": self.load_report_age.labels(zone, region),
                "cost": self.cost_usd.labels(zone, region),
                "energy": self.energy_joules.labels(zone, region),
                "carbon": self.carbon_grams.labels(zone, region),
            }
            children["success"] = {reason: self.request_success.labels(*labels, reason) for reason in FINISHED_REASONS}
            children["retries"] = {reason: self.retries.labels(zone, reason) for reason in RETRY_REASONS}
            children["up"].set(1)
            self.zone_replicas.labels(zone, region).set(scenario.zones[zone].replicas)
            self._z[zone] = children
        for a in self.zone_ids:
            for b in self.zone_ids:
                if a != b:
                    self.failovers.labels(a, b)
        self._requests = {}
        self._rtt_applied = {}
        for population in self.population_ids:
            for zone in self.zone_ids:
                for status in STATUSES:
                    self._requests[population, zone, status] = self.requests.labels(population, zone, status)
            self._requests[population, NO_ZONE, REJECTED] = self.requests.labels(population, NO_ZONE, REJECTED)
            for region in self.region_ids:  # cached: observe_route runs once per routing decision
                self._rtt_applied[population, region] = self.rtt_applied.labels(population, region)
        self._hedges = {}
        if self.hedges is not None:
            for population in self.population_ids:
                for zone in self.zone_ids:
                    for outcome in HEDGE_OUTCOMES:
                        self._hedges[population, zone, outcome] = self.hedges.labels(
                            self.model_name, population, zone, outcome
                        )
        self._routing_decision = self.routing_decision.labels(self.policy)
        for name, value in (("ttft", scenario.slo.ttft_s), ("tpot", scenario.slo.tpot_s), ("e2e", scenario.slo.e2e_s)):
            if value is not None:
                self.slo.labels(name).set(value)
        for zone, (lat, lon) in zone_coordinates(scenario).items():
            self.zone_info.labels(zone, self.zone_region[zone], f"{lat:.4f}", f"{lon:.4f}").set(1)
        for population, spec in scenario.populations.items():
            self.population_info.labels(population, f"{spec.lat:.4f}", f"{spec.lon:.4f}").set(1)

    # --- label checks -------------------------------------------------------------------------

    def _zone(self, zone: str | int) -> str:
        if isinstance(zone, int) and not isinstance(zone, bool) and 0 <= zone < len(self.zone_ids):
            return self.zone_ids[zone]
        if zone in self._z:
            return zone  # type: ignore[return-value]
        raise ValueError(f"unknown zone {zone!r}: metric labels come from the scenario's zones only")

    def _population(self, population: str | int) -> str:
        if isinstance(population, int) and not isinstance(population, bool):
            if 0 <= population < len(self.population_ids):
                return self.population_ids[population]
        elif population in self.population_ids:
            return population  # type: ignore[return-value]
        raise ValueError(f"unknown population {population!r}: metric labels come from the scenario only")

    # --- what drivers call --------------------------------------------------------------------

    def observe_request_end(
        self,
        request: Request,
        population: str | int,
        zone: str | int | None,
        ttft_s: float | None,
        e2e_s: float | None,
        itl_samples_s: list[float] | None,
        status: str,
        *,
        generated_tokens: int | None = None,
        queue_s: float | None = None,
        prefill_s: float | None = None,
        decode_s: float | None = None,
    ) -> None:
        """Once per request, when it has ended (completed, failed, rejected or cancelled).

        - `population`, `zone`: ids (or indices) from the scenario; `zone=None` for a request that no
          zone took (status must then be `rejected`; counted under zone `none`).
        - `ttft_s`, `e2e_s`: as the gateway measured them (None when there was no first / last token).
        - `itl_samples_s`: gaps between successive tokens as sent; None derives them as the request's
          TPOT repeated (output tokens − 1) times — exact for the serving model, whose decode steps
          are equal between batch changes.
        - `status`: one of `STATUSES` (`grid.serving.request`): stop, length, error, rejected, cancelled.
        - `generated_tokens`: tokens produced; defaults to `request.output_tokens` for stop/length
          and 0 otherwise.
        - `queue_s`, `prefill_s`, `decode_s`: zone-side phases; default from the request's zone-clock
          timestamps (`admit_s`, `scheduled_s`, `first_token_s`, `finish_s`) when they are set.

        Rejected requests never reached an engine: they count in `grid_requests_total` only. vLLM
        histograms of latency (E2E, TPOT, ITL, decode, inference) take only stop/length requests.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        population_id = self._population(population)
        if zone is None or zone == NO_ZONE:
            if status != REJECTED:
                raise ValueError(f"a request with status {status!r} must name its zone")
            self._requests[population_id, NO_ZONE, REJECTED].inc()
            return
        zone_id = self._zone(zone)
        self._requests[population_id, zone_id, status].inc()
        if status == REJECTED:
            return
        z = self._z[zone_id]
        z["success"][_FINISHED_REASON[status]].inc()
        completed = status in (STOP, LENGTH)
        if generated_tokens is None:
            generated_tokens = request.output_tokens if completed else 0
        if ttft_s is not None and ttft_s >= 0.0:
            z["ttft"].observe(ttft_s)
            z["prompt_tokens"].inc(request.prompt_tokens)
            z["prompt_hist"].observe(request.prompt_tokens)
        if generated_tokens > 0:
            z["generation_tokens"].inc(generated_tokens)
        scheduled = request.scheduled_s >= 0.0
        if queue_s is None and scheduled and request.admit_s >= 0.0:
            queue_s = request.scheduled_s - request.admit_s
        if queue_s is not None:
            z["queue"].observe(queue_s)
        if prefill_s is None and scheduled and request.first_token_s >= 0.0:
            prefill_s = request.first_token_s - request.scheduled_s
        if prefill_s is not None:
            z["prefill"].observe(prefill_s)
        if not completed:
            return
        z["generation_hist"].observe(generated_tokens)
        if e2e_s is not None:
            z["e2e"].observe(e2e_s)
        if decode_s is None and request.first_token_s >= 0.0 and request.finish_s >= 0.0:
            decode_s = request.finish_s - request.first_token_s
        if decode_s is not None:
            z["decode"].observe(decode_s)
            if prefill_s is not None:
                z["inference"].observe(prefill_s + decode_s)
        if ttft_s is not None and e2e_s is not None and generated_tokens > 1:
            tpot = max(0.0, e2e_s - ttft_s) / (generated_tokens - 1)
            z["tpot"].observe(tpot)
            samples = itl_samples_s if itl_samples_s is not None else [tpot] * (generated_tokens - 1)
            _observe_many(z["itl"], samples)
            _observe_many(z["tpot_legacy"], samples)
        elif itl_samples_s:
            _observe_many(z["itl"], itl_samples_s)
            _observe_many(z["tpot_legacy"], itl_samples_s)

    def observe_route(self, population: str | int, zone: str | int, decision_s: float, rtt_s: float) -> None:
        """Once per routing decision (retries included): the policy's `choose` time and the round
        trip applied between the population and the chosen zone's region."""
        zone_id = self._zone(zone)
        self._routing_decision.observe(decision_s)
        self._rtt_applied[self._population(population), self.zone_region[zone_id]].observe(rtt_s)

    def observe_zone_report(
        self,
        zone: str | int,
        up: bool,
        running: int,
        waiting: int,
        kv_usage: float,
        utilization: float,
        report_age_s: float,
    ) -> None:
        """Each time the gateway receives (or re-reads) a zone's load report (`ZoneActor.report()`:
        `up`, `running`, `waiting`, `kv_usage`, `utilization`) and the report's age at that moment."""
        zone_id = self._zone(zone)
        z = self._z[zone_id]
        z["up"].set(1 if up else 0)
        z["running"].set(running)
        z["waiting"].set(waiting)
        z["kv"].set(kv_usage)
        z["utilization"].set(utilization)
        z["report_age"].set(report_age_s)
        self._utilization[zone_id] = utilization if up else 0.0

    def set_zone_up(self, zone: str | int, up: bool) -> None:
        """A zone's health changed outside a report (a fault, an actor that stopped answering)."""
        zone_id = self._zone(zone)
        self._z[zone_id]["up"].set(1 if up else 0)
        if not up:
            self._utilization[zone_id] = 0.0

    def observe_retry(self, from_zone: str | int, reason: str, to_zone: str | int | None = None) -> None:
        """An attempt at `from_zone` ended with `reason` (one of `RETRY_REASONS`: busy, down, error,
        timeout) and the request is retried; `to_zone` is where the retry goes, if it goes anywhere."""
        if reason not in RETRY_REASONS:
            raise ValueError(f"unknown retry reason {reason!r}; one of {', '.join(RETRY_REASONS)}")
        from_id = self._zone(from_zone)
        self._z[from_id]["retries"][reason].inc()
        if to_zone is not None:
            to_id = self._zone(to_zone)
            if to_id != from_id:
                self.failovers.labels(from_id, to_id).inc()

    def observe_hedge(self, population: str | int, zone: str | int, outcome: str) -> None:
        """A hedge copy of a `population` request sent to `zone` ended with `outcome` (one of
        `HEDGE_OUTCOMES`): `won` (its first token came first; the original was cancelled), `lost` (the
        original's came first, or the request ended before either; the copy was cancelled) or `failed`
        (refused or failed before a first token; the original carried on)."""
        if self.hedges is None:
            raise ValueError("this grid does not hedge: construct GridMetrics with hedging=True")
        if outcome not in HEDGE_OUTCOMES:
            raise ValueError(f"unknown hedge outcome {outcome!r}; one of {', '.join(HEDGE_OUTCOMES)}")
        self._hedges[self._population(population), self._zone(zone), outcome].inc()

    def tick(self, now_s: float) -> None:
        """Accrue cost, energy and carbon from the previous tick to `now_s` (any monotonic clock,
        seconds; the first call only sets the origin). Call it about once a second and before each
        scrape if you can. Per zone, over the interval (the rules of `grid.economics`):

        - cost = provisioned GPUs × the region's price per GPU-hour (busy or idle, as in the report);
        - energy = GPUs × (idle power + (max − idle) × min(1, last reported utilization)); a down
          zone draws idle power;
        - carbon = energy × the region's grid intensity (g per kWh).
        """
        with self._tick_lock:
            last, self._last_tick_s = self._last_tick_s, now_s
            if last is None or now_s <= last:
                if last is not None and now_s < last:
                    self._last_tick_s = last  # a clock that went back: ignore, keep the origin
                return
            dt = now_s - last
            for zone, z in self._z.items():
                economics = self._zone_economics[zone]
                if not economics.gpus:
                    continue
                busy = min(1.0, max(0.0, self._utilization[zone]))
                joules = economics.energy_j(busy, dt)
                z["cost"].inc(economics.cost_usd(dt))
                z["energy"].inc(joules)
                z["carbon"].inc(economics.carbon_g(joules))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, without prometheus_client's `*_created` series
        (they would double the series Prometheus stores and the scrape time); serve it with
        `CONTENT_TYPE` at /metrics."""
        return generate_latest(_WithoutCreated(self.registry))

    def metric_names(self) -> set[str]:
        """Every sample name this object can expose (`_total`, `_bucket`, `_sum`, `_count`, … included)."""
        names = set()
        for family in self.registry.collect():
            names.add(family.name)
            for sample in family.samples:
                names.add(sample.name)
        return names
