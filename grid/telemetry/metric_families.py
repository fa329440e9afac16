"""The metric families of the grid: their fixed label values and buckets, and `MetricFamilies`, which
registers every family on a registry and pre-creates every series known in advance. The catalog, and
what feeds each family, is in `grid.telemetry.metrics`."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from grid.scenario import Scenario
from grid.serving.request import CANCELLED, ERROR, LENGTH, REJECTED, STOP

# --- fixed label sets ------------------------------------------------------------------------

STATUSES = (STOP, LENGTH, ERROR, REJECTED, CANCELLED)  # grid_requests_total{status}
FINISHED_REASONS = ("stop", "length", "abort", "error")  # vllm:request_success_total{finished_reason}
# the finished_reason of each status (a rejected request never ran: it has none)
FINISHED_REASON_BY_STATUS = {STOP: "stop", LENGTH: "length", CANCELLED: "abort", ERROR: "error"}
RETRY_REASONS = ("busy", "down", "error", "timeout")  # why an attempt at a zone was retried elsewhere
HEDGE_OUTCOMES = ("won", "lost", "failed")  # of a hedge copy: its first token came first; the other's; it failed
NO_ZONE = "none"  # grid_requests_total{zone} of a request no zone could take
REPLICA_STATES = ("serving", "warming", "draining")  # grid_zone_replicas{state}: grid/serving/fleet.py's life cycle
# grid_scaling_events_total{reason}: grid.scaling.controller's zone events (policy_error names no zone)
SCALING_REASONS = ("up", "down", "manual", "stockout", "preempted", "replace")

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


class MetricFamilies:
    """Every metric family of one grid, registered on `registry`, with each series known in advance
    pre-created and its label child kept, so that recording an observation (`GridMetrics`) is a dict
    lookup and an increment."""

    def __init__(
        self,
        registry: CollectorRegistry,
        scenario: Scenario,
        model_name: str | None = None,
        policy: str | None = None,
        hedging: bool = False,
    ) -> None:
        """`hedging`: register `grid_hedges_total` with its series pre-created; without it the family
        is not exported at all."""
        self.registry = registry
        self.model_name = model_name or scenario.model.name
        self.policy = policy or scenario.routing.policy
        self.zone_ids = list(scenario.zones)
        self.population_ids = list(scenario.populations)
        self.region_ids = list(scenario.regions)
        self.zone_region = {z: scenario.zones[z].region for z in self.zone_ids}

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
        # vLLM's prefix-cache counters (v1: tokens queried and hit, counted when a request is scheduled)
        self.prefix_cache_queries = Counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", vl, registry=r
        )
        self.prefix_cache_hits = Counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", vl, registry=r
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
        self.zone_replicas = Gauge(
            "grid_zone_replicas",
            "Replicas of the zone by state: serving, warming (cold start), draining (no new admissions).",
            (*zl, "state"),
            registry=r,
        )
        self.scaling_events = Counter(
            "grid_scaling_events",
            "Changes of a zone's fleet (up, down, manual, stockout, preempted, replace).",
            ("zone", "reason"),
            registry=r,
        )
        self.zone_cost_per_hour = Gauge(
            "grid_zone_cost_usd_per_hour",
            "What the zone's replicas paid for now cost per hour: list price × the local hour's tariff, spot "
            "discounted.",
            zl,
            registry=r,
        )
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
                "cache_queries": self.prefix_cache_queries.labels(*labels),
                "cache_hits": self.prefix_cache_hits.labels(*labels),
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
            children["replicas"] = {state: self.zone_replicas.labels(zone, region, state) for state in REPLICA_STATES}
            children["replicas"]["serving"].set(scenario.zones[zone].replicas)
            children["scaling"] = {reason: self.scaling_events.labels(zone, reason) for reason in SCALING_REASONS}
            children["cost_per_hour"] = self.zone_cost_per_hour.labels(zone, region)
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
