"""GridMetrics on a fresh registry: vLLM names, types and buckets, bounded labels, pre-created series."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from grid.scenario import load_scenario
from grid.serving.request import Request
from grid.telemetry import GridMetrics
from grid.telemetry.metric_families import (
    HEDGE_OUTCOMES,
    NO_ZONE,
    RETRY_REASONS,
    STATUSES,
    buckets_1_2_5,
    zone_coordinates,
)
from grid.telemetry.prometheus_extras import observe_many

TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
        160.0, 640.0, 2560.0]  # fmt: skip
TPOT = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
           960.0, 1920.0, 7680.0]  # fmt: skip

# CONVENTIONS.md, "Prometheus metrics": family → (type, buckets or None)
VLLM_FAMILIES = {
    "vllm:num_requests_running": ("gauge", None),
    "vllm:num_requests_waiting": ("gauge", None),
    "vllm:kv_cache_usage_perc": ("gauge", None),
    "vllm:prompt_tokens": ("counter", None),
    "vllm:generation_tokens": ("counter", None),
    "vllm:request_success": ("counter", None),
    "vllm:num_preemptions": ("counter", None),
    "vllm:time_to_first_token_seconds": ("histogram", TTFT),
    "vllm:inter_token_latency_seconds": ("histogram", TPOT),
    "vllm:request_time_per_output_token_seconds": ("histogram", TPOT),
    "vllm:time_per_output_token_seconds": ("histogram", TPOT),
    "vllm:e2e_request_latency_seconds": ("histogram", LATENCY),
    "vllm:request_queue_time_seconds": ("histogram", LATENCY),
    "vllm:request_prefill_time_seconds": ("histogram", LATENCY),
    "vllm:request_decode_time_seconds": ("histogram", LATENCY),
    "vllm:request_inference_time_seconds": ("histogram", LATENCY),
    "vllm:request_prompt_tokens": ("histogram", [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]),
    "vllm:request_generation_tokens": (
        "histogram",
        [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000],
    ),
}
GRID_FAMILIES = {
    "grid_requests": "counter",
    "grid_routing_decision_seconds": "histogram",
    "grid_rtt_applied_seconds": "summary",
    "grid_zone_up": "gauge",
    "grid_zone_utilization": "gauge",
    "grid_load_report_age_seconds": "gauge",
    "grid_retries": "counter",
    "grid_failovers": "counter",
    "grid_cost_usd": "counter",
    "grid_energy_joules": "counter",
    "grid_carbon_grams": "counter",
    "grid_zone_replicas": "gauge",
    "grid_slo_seconds": "gauge",
    "grid_zone_info": "gauge",
    "grid_population_info": "gauge",
}


@pytest.fixture(scope="module")
def scenario():
    return load_scenario()


@pytest.fixture
def metrics(scenario):
    return GridMetrics(CollectorRegistry(), scenario)


def families(metrics: GridMetrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def samples(metrics: GridMetrics, name: str, **labels: str) -> list:
    """Samples straight from the registry (the text exposition is parsed in the tests above)."""
    return [
        s
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(metrics: GridMetrics, name: str, **labels: str) -> float:
    found = samples(metrics, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def finished_request(prompt: int = 200, output: int = 101) -> Request:
    request = Request(7, 0, prompt, output, 0.0)
    request.admit_s, request.scheduled_s, request.first_token_s, request.finish_s = 0.0, 0.05, 0.1, 1.1
    return request


def test_vllm_families_have_exact_names_types_and_buckets(metrics):
    exposed = families(metrics)
    for name, (kind, buckets) in VLLM_FAMILIES.items():
        assert name in exposed, name
        family = exposed[name]
        assert family.type == kind, name
        if buckets is not None:
            one_zone = {"zone": "paris-1"}
            les = [
                s.labels["le"] for s in family.samples if s.name == name + "_bucket" and s.labels["zone"] == "paris-1"
            ]
            assert les == [*(str(float(b)) for b in buckets), "+Inf"], name
            assert samples(metrics, name + "_count", **one_zone) and samples(metrics, name + "_sum", **one_zone)


def test_every_vllm_series_is_labelled_model_region_zone(metrics, scenario):
    exposed = families(metrics)  # parsed once: the exposition is the same for every family
    for name in VLLM_FAMILIES:
        family = exposed[name]
        zones = set()
        for s in family.samples:
            assert {"model_name", "region", "zone"} <= set(s.labels), (name, s.labels)
            assert s.labels["model_name"] == "Qwen/Qwen3-8B"
            assert s.labels["region"] == scenario.zones[s.labels["zone"]].region
            zones.add(s.labels["zone"])
        assert zones == set(scenario.zones), name  # pre-created for every zone


def test_counters_are_declared_without_total_and_exposed_with_it(metrics):
    exposed = families(metrics)
    counters = [f for f in exposed.values() if f.type == "counter"]
    assert {f.name for f in counters} >= {"vllm:prompt_tokens", "vllm:request_success", "grid_requests"}
    for family in counters:
        assert not family.name.endswith("_total")
        assert family.samples and all(s.name == family.name + "_total" for s in family.samples), family.name
    text = metrics.exposition().decode()
    assert "vllm:request_success_total{" in text and "_created" not in text


def test_grid_families_and_their_types(metrics):
    exposed = families(metrics)
    for name, kind in GRID_FAMILIES.items():
        assert exposed[name].type == kind, name
    assert not [n for n in exposed if not (n.startswith("vllm:") or n.startswith("grid_"))]


def test_series_known_in_advance_are_precreated_at_zero(metrics, scenario):
    requests = samples(metrics, "grid_requests_total")
    per_pop = len(scenario.zones) * len(STATUSES) + 1  # + (zone none, rejected)
    assert len(requests) == len(scenario.populations) * per_pop
    assert all(s.value == 0 for s in requests)
    assert value(metrics, "grid_requests_total", population="tokyo", zone=NO_ZONE, status="rejected") == 0
    success = samples(metrics, "vllm:request_success_total")
    assert {s.labels["finished_reason"] for s in success} == {"stop", "length", "abort", "error"}
    assert len(success) == 4 * len(scenario.zones)
    assert len(samples(metrics, "grid_retries_total")) == len(RETRY_REASONS) * len(scenario.zones)
    assert len(samples(metrics, "grid_failovers_total")) == len(scenario.zones) * (len(scenario.zones) - 1)
    assert len(samples(metrics, "grid_rtt_applied_seconds_count")) == len(scenario.populations) * len(scenario.regions)
    assert len(samples(metrics, "grid_routing_decision_seconds_count", policy="latency_aware")) == 1
    for zone in scenario.zones:
        assert value(metrics, "grid_zone_up", zone=zone) == 1
        assert value(metrics, "grid_cost_usd_total", zone=zone) == 0
        assert value(metrics, "grid_zone_replicas", zone=zone, state="serving") == scenario.zones[zone].replicas
        assert value(metrics, "grid_zone_replicas", zone=zone, state="warming") == 0
    assert value(metrics, "grid_slo_seconds", slo="ttft") == scenario.slo.ttft_s


def test_info_gauges_carry_coordinates_for_maps(metrics, scenario):
    zones = samples(metrics, "grid_zone_info")
    assert {s.labels["zone"] for s in zones} == set(scenario.zones)
    for s in zones:
        assert s.value == 1
        region = scenario.regions[s.labels["region"]]
        lat, lon = float(s.labels["lat"]), float(s.labels["lon"])
        assert abs(lat - region.lat) < 1.0 and abs(lon - region.lon) < 1.5  # near its region
    points = {(s.labels["lat"], s.labels["lon"]) for s in zones}
    assert len(points) == len(scenario.zones)  # no two zones drawn on the same spot
    pops = samples(metrics, "grid_population_info")
    assert len(pops) == len(scenario.populations)
    tokyo = next(s for s in pops if s.labels["population"] == "tokyo")
    assert (float(tokyo.labels["lat"]), float(tokyo.labels["lon"])) == (35.68, 139.69)
    assert zone_coordinates(scenario)["mexico-1"] == (20.59, -100.39)  # alone in its region: exact


def test_observe_request_end_feeds_the_vllm_and_grid_families(metrics):
    request = finished_request(prompt=200, output=101)
    metrics.observe_request_end(request, "london", "paris-1", 0.3, 1.3, None, "stop")
    z = {"zone": "paris-1"}
    assert value(metrics, "grid_requests_total", population="london", zone="paris-1", status="stop") == 1
    assert value(metrics, "vllm:request_success_total", finished_reason="stop", **z) == 1
    assert value(metrics, "vllm:prompt_tokens_total", **z) == 200
    assert value(metrics, "vllm:generation_tokens_total", **z) == 101
    assert value(metrics, "vllm:time_to_first_token_seconds_bucket", le="0.5", **z) == 1
    assert value(metrics, "vllm:time_to_first_token_seconds_bucket", le="0.25", **z) == 0
    assert value(metrics, "vllm:e2e_request_latency_seconds_sum", **z) == pytest.approx(1.3)
    assert value(metrics, "vllm:request_time_per_output_token_seconds_sum", **z) == pytest.approx(0.01)
    # ITL derived from TPOT: one sample per gap, in both the new and the legacy family
    assert value(metrics, "vllm:inter_token_latency_seconds_count", **z) == 100
    assert value(metrics, "vllm:time_per_output_token_seconds_count", **z) == 100
    assert value(metrics, "vllm:inter_token_latency_seconds_bucket", le="0.01", **z) == 100
    # zone-side phases from the request's timestamps
    assert value(metrics, "vllm:request_queue_time_seconds_sum", **z) == pytest.approx(0.05)
    assert value(metrics, "vllm:request_prefill_time_seconds_sum", **z) == pytest.approx(0.05)
    assert value(metrics, "vllm:request_decode_time_seconds_sum", **z) == pytest.approx(1.0)
    assert value(metrics, "vllm:request_inference_time_seconds_sum", **z) == pytest.approx(1.05)
    assert value(metrics, "vllm:request_prompt_tokens_bucket", le="200.0", **z) == 1
    assert value(metrics, "vllm:request_generation_tokens_bucket", le="100.0", **z) == 0
    # other zones untouched
    assert value(metrics, "vllm:time_to_first_token_seconds_count", zone="paris-2") == 0


def test_explicit_itl_samples_and_phases(metrics):
    request = Request(1, 3, 50, 4, 0.0)  # no zone timestamps: the gateway passes the phases
    metrics.observe_request_end(request, 3, 0, 0.2, 0.5, [0.05, 0.1, 0.15], "length", decode_s=0.3, prefill_s=0.1)
    z = {"zone": "frankfurt-1"}
    assert value(metrics, "grid_requests_total", population="madrid", zone="frankfurt-1", status="length") == 1
    assert value(metrics, "vllm:request_success_total", finished_reason="length", **z) == 1
    assert value(metrics, "vllm:inter_token_latency_seconds_count", **z) == 3
    assert value(metrics, "vllm:inter_token_latency_seconds_bucket", le="0.1", **z) == 2
    assert value(metrics, "vllm:request_decode_time_seconds_sum", **z) == pytest.approx(0.3)
    assert value(metrics, "vllm:request_inference_time_seconds_sum", **z) == pytest.approx(0.4)
    assert value(metrics, "vllm:request_queue_time_seconds_count", **z) == 0


def test_failed_rejected_and_cancelled_requests(metrics):
    failed = Request(2, 0, 100, 50, 0.0)
    metrics.observe_request_end(failed, "london", "london-1", None, None, None, "error")
    metrics.observe_request_end(Request(3, 0, 100, 50, 0.0), "london", "london-1", None, None, None, "rejected")
    metrics.observe_request_end(Request(4, 0, 100, 50, 0.0), "london", None, None, None, None, "rejected")
    metrics.observe_request_end(Request(5, 0, 100, 50, 0.0), "london", "london-1", 0.1, None, None, "cancelled")
    z = {"zone": "london-1"}
    assert value(metrics, "vllm:request_success_total", finished_reason="error", **z) == 1
    assert value(metrics, "vllm:request_success_total", finished_reason="abort", **z) == 1
    assert value(metrics, "grid_requests_total", population="london", zone="london-1", status="rejected") == 1
    assert value(metrics, "grid_requests_total", population="london", zone=NO_ZONE, status="rejected") == 1
    assert value(metrics, "vllm:e2e_request_latency_seconds_count", **z) == 0  # only completed requests
    assert value(metrics, "vllm:time_to_first_token_seconds_count", **z) == 1  # the cancelled one had a token
    assert value(metrics, "vllm:generation_tokens_total", **z) == 0


def test_labels_stay_bounded_whatever_the_input(metrics):
    before = len(metrics.exposition().splitlines())
    request = finished_request()
    for bad in ({"population": "<script>"}, {"zone": "zone-from-header"}, {"status": "weird"}, {"zone": 99}):
        args = {"population": "london", "zone": "paris-1", "status": "stop", **bad}
        with pytest.raises(ValueError):
            metrics.observe_request_end(request, args["population"], args["zone"], 0.1, 1.0, None, args["status"])
    with pytest.raises(ValueError):
        metrics.observe_request_end(request, "london", None, 0.1, 1.0, None, "stop")  # must name a zone
    with pytest.raises(ValueError):
        metrics.observe_route("nowhere", "paris-1", 1e-5, 0.01)
    with pytest.raises(ValueError):
        metrics.observe_retry("paris-1", "because")
    with pytest.raises(ValueError):
        metrics.observe_zone_report("atlantis-1", True, 0, 0, 0.0, 0.0, 0.0)
    for i in range(200):  # many requests, routes, reports: no new series
        metrics.observe_request_end(finished_request(), i % 22, i % 9, 0.1 * i, 1.0 + i, None, "stop")
        metrics.observe_route(i % 22, i % 9, 1e-5, 0.05)
        metrics.observe_retry(i % 9, "busy", (i + 1) % 9)
        metrics.observe_zone_report(i % 9, True, i, i, 0.5, 0.7, 0.2)
    metrics.tick(0.0)
    metrics.tick(10.0)
    assert len(metrics.exposition().splitlines()) == before


def test_route_retry_and_zone_report(metrics):
    metrics.observe_route("tokyo", "thailand-1", 2e-5, 0.101)
    metrics.observe_route("tokyo", "thailand-1", 3e-5, 0.103)
    assert value(metrics, "grid_rtt_applied_seconds_count", population="tokyo", region="thailand") == 2
    assert value(metrics, "grid_rtt_applied_seconds_sum", population="tokyo", region="thailand") == pytest.approx(0.204)
    assert value(metrics, "grid_routing_decision_seconds_bucket", policy="latency_aware", le="2.5e-05") == 1
    metrics.observe_retry("paris-1", "down", "paris-2")
    metrics.observe_retry("paris-1", "busy")
    metrics.observe_retry("paris-1", "error", "paris-1")  # same zone: a retry, not a failover
    assert value(metrics, "grid_retries_total", zone="paris-1", reason="down") == 1
    assert value(metrics, "grid_retries_total", zone="paris-1", reason="busy") == 1
    assert value(metrics, "grid_failovers_total", from_zone="paris-1", to_zone="paris-2") == 1
    assert sum(s.value for s in samples(metrics, "grid_failovers_total")) == 1
    metrics.observe_zone_report("london-2", False, 3, 4, 0.25, 0.8, 1.5)
    z = {"zone": "london-2"}
    assert value(metrics, "grid_zone_up", **z) == 0
    assert value(metrics, "vllm:num_requests_running", **z) == 3
    assert value(metrics, "vllm:num_requests_waiting", **z) == 4
    assert value(metrics, "vllm:kv_cache_usage_perc", **z) == 0.25
    assert value(metrics, "grid_zone_utilization", **z) == 0.8
    assert value(metrics, "grid_load_report_age_seconds", **z) == 1.5
    metrics.set_zone_up("london-2", True)
    assert value(metrics, "grid_zone_up", **z) == 1


def test_tick_accrues_cost_energy_and_carbon(metrics, scenario):
    metrics.observe_zone_report("paris-1", True, 0, 0, 0.0, 0.5, 0.0)  # half busy
    metrics.observe_zone_report("mexico-1", True, 0, 0, 0.0, 3.0, 0.0)  # overloaded: power capped at max
    metrics.tick(100.0)  # origin only
    assert value(metrics, "grid_cost_usd_total", zone="paris-1") == 0
    metrics.tick(3700.0)  # one hour
    metrics.tick(3000.0)  # a clock going back is ignored
    paris = scenario.regions["paris"]
    gpus = scenario.zones["paris-1"].replicas
    assert value(metrics, "grid_cost_usd_total", zone="paris-1") == pytest.approx(gpus * paris.price_usd_per_gpu_hour)
    h100 = scenario.gpus["h100"]
    joules = gpus * (h100.power_idle_w + 0.5 * (h100.power_max_w - h100.power_idle_w)) * 3600
    assert value(metrics, "grid_energy_joules_total", zone="paris-1") == pytest.approx(joules)
    assert value(metrics, "grid_carbon_grams_total", zone="paris-1") == pytest.approx(
        joules / 3.6e6 * paris.carbon_g_per_kwh
    )
    mexico_gpus = scenario.zones["mexico-1"].replicas
    assert value(metrics, "grid_energy_joules_total", zone="mexico-1") == pytest.approx(
        mexico_gpus * h100.power_max_w * 3600
    )
    idle = scenario.zones["london-1"].replicas * h100.power_idle_w * 3600
    assert value(metrics, "grid_energy_joules_total", zone="london-1") == pytest.approx(idle)


def test_observe_many_matches_observe(scenario):
    a, b = GridMetrics(CollectorRegistry(), scenario), GridMetrics(CollectorRegistry(), scenario)
    values = [0.0, 0.01, 0.0100001, 0.05, 0.1, 0.099, 79.9, 80.0, 80.1, 1e9]
    child_a = a.inter_token_latency.labels(a.model_name, "paris", "paris-1")
    child_b = b.inter_token_latency.labels(b.model_name, "paris", "paris-1")
    observe_many(child_a, values)
    observe_many(child_a, [])
    for v in values:
        child_b.observe(v)
    assert a.exposition() == b.exposition()


def test_1_2_5_buckets_follow_vllm():
    assert buckets_1_2_5(32768) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    assert buckets_1_2_5(100) == [1, 2, 5, 10, 20, 50, 100]


def test_model_name_and_policy_come_from_the_scenario_or_the_caller(scenario):
    custom = GridMetrics(CollectorRegistry(), scenario, model_name="my-model", policy="p2c")
    assert value(custom, "vllm:num_requests_running", zone="paris-1", model_name="my-model") == 0
    assert samples(custom, "grid_routing_decision_seconds_count", policy="p2c")


def test_two_instances_on_separate_registries_do_not_collide(scenario):
    registries = [CollectorRegistry(), CollectorRegistry()]
    for registry in registries:
        GridMetrics(registry, scenario)
    with pytest.raises(ValueError):  # one registry holds one definition of each family
        GridMetrics(registries[0], scenario)


def test_exposition_parses_and_stays_small(metrics):
    text = metrics.exposition().decode()
    parsed = list(text_string_to_metric_families(text))
    assert parsed
    assert all(not math.isnan(s.value) for f in parsed for s in f.samples)
    assert len(text.splitlines()) < 5000  # default world: 9 zones × 22 populations


def test_hedges_by_population_copy_zone_and_outcome_only_on_a_hedging_grid(scenario):
    plain = GridMetrics(CollectorRegistry(), scenario)
    assert "grid_hedges" not in families(plain)  # a grid that never hedges looks as before
    with pytest.raises(ValueError):
        plain.observe_hedge("london", "paris-1", "won")
    hedging = GridMetrics(CollectorRegistry(), scenario, hedging=True)
    assert families(hedging)["grid_hedges"].type == "counter"
    precreated = samples(hedging, "grid_hedges_total")
    assert len(precreated) == len(scenario.populations) * len(scenario.zones) * len(HEDGE_OUTCOMES)
    assert all(s.value == 0 for s in precreated)
    before = len(hedging.exposition().splitlines())
    hedging.observe_hedge("london", "paris-1", "won")
    hedging.observe_hedge(0, 1, "lost")  # indices, as the gateway passes them
    labels = {"model_name": scenario.model.name, "population": "london", "zone": "paris-1", "outcome": "won"}
    assert value(hedging, "grid_hedges_total", **labels) == 1
    assert sum(s.value for s in samples(hedging, "grid_hedges_total")) == 2
    for bad in (("london", "paris-1", "tied"), ("<script>", "paris-1", "won"), ("london", "zone-from-header", "won")):
        with pytest.raises(ValueError):
            hedging.observe_hedge(*bad)
    assert len(hedging.exposition().splitlines()) == before < 5000
