"""`MetricsSink` feeds GridMetrics from dispatch events; `OpenMetricsRecorder` writes a run's scrapes as
an OpenMetrics file that parses, only moves forward, and — backfilled with the real `promtool` into a
real `prometheus` — answers every query of the provisioned Grafana dashboards."""

from __future__ import annotations

import math
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from grid.dispatch.sinks import Outcome, Sink
from grid.routing.view import ZoneView
from grid.scenario import load_scenario
from grid.serving.request import CANCELLED, ERROR, LENGTH, REJECTED, STOP, Request
from grid.sim.simulator import Simulation
from grid.telemetry import GridMetrics
from grid.telemetry.openmetrics import OpenMetricsRecorder, open_recorder, start_unix_s
from grid.telemetry.sink import MetricsSink
from tests.telemetry.prometheus_server import binary, prometheus_server
from tests.telemetry.promql import dashboard_queries

COUNTER_LIKE = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


SMALL_SCENARIO = Path(__file__).resolve().parents[1] / "live" / "small.yaml"  # 3 zones, 3 populations


@pytest.fixture(scope="module")
def scenario():
    """The small world for the unit tests: every family, few series."""
    return load_scenario(str(SMALL_SCENARIO))


@pytest.fixture(scope="module")
def default_scenario():
    """`grid sim`'s default world (9 zones, 21 populations) for the run Prometheus answers from."""
    return load_scenario()


# --- a hand-made run: the events a driver emits, shaped like a short `grid sim` -------------------


def _views(scenario) -> list[ZoneView]:
    return [
        ZoneView(i, zone_id, spec.region, spec.replicas, 20.0 * spec.replicas, 1e-4, 0.02, 2.5, 300.0)
        for i, (zone_id, spec) in enumerate(scenario.zones.items())
    ]


def _request(request_id: int, population: int, t: float, prompt: int = 400, output: int = 120) -> Request:
    request = Request(request_id, population, prompt, output, t)
    request.admit_s, request.scheduled_s = t + 0.01, t + 0.05 + 0.01 * (request_id % 7)
    request.first_token_s = request.scheduled_s + 0.04 * (1 + request_id % 5)
    request.finish_s = request.first_token_s + 0.02 * output
    return request


def drive_by_hand(sink: Sink, scenario, duration_s: int = 120, per_second: int = 6, hedges: bool = False) -> None:
    """Every second: each zone's load report, `per_second` requests routed and completed (TTFT, E2E),
    then a tick; every 10 s a busy retry that fails over, an error, a rejection nobody took, a
    cancelled copy; zone 2 down from 60 s to 80 s."""
    views = _views(scenario)
    n_zones, n_pops = len(views), len(scenario.populations)
    next_id = 0
    sink.tick(0.0)
    for second in range(duration_s):
        for k in range(per_second):
            t = second + k / per_second
            population = next_id % n_pops
            zone = next_id % n_zones
            if not views[zone].up:
                zone = (zone + 1) % n_zones
            request = _request(next_id, population, t, output=20 + next_id % 200)
            next_id += 1
            sink.routed(request, zone, 0.01 + 0.002 * zone, 2e-5, t)
            ttft = 0.15 + 0.05 * (request.id % 9)
            e2e = ttft + 0.02 * (request.output_tokens - 1)
            status = LENGTH if request.id % 11 == 0 else STOP
            sink.ended(request, Outcome(status, zone, ttft, (e2e - ttft) / (request.output_tokens - 1), e2e), t)
        if second % 10 == 5:
            t = second + 0.5
            request = _request(next_id, 0, t)
            next_id += 1
            sink.routed(request, 0, 0.012, 2e-5, t)
            sink.retried(request, 0, "busy", 1, t + 0.01)
            sink.routed(request, 1, 0.014, 3e-5, t + 0.01)
            if hedges:
                sink.hedged(request, 2, "lost", t + 0.4)
            sink.ended(request, Outcome(STOP, 1, 0.5, 0.02, 2.9, retries=1), t + 0.4)
            failed = _request(next_id, 1, t)
            failed.first_token_s = failed.finish_s = -1.0
            next_id += 1
            sink.routed(failed, 1, 0.02, 2e-5, t)
            sink.ended(failed, Outcome(ERROR, 1, reason="error"), t + 0.4)
            rejected = Request(next_id, 2, 300, 50, t)
            next_id += 1
            sink.ended(rejected, Outcome(REJECTED, -1, reason="busy"), t + 0.4)
            cancelled = _request(next_id, 2, t)
            next_id += 1
            sink.routed(cancelled, 2 % n_zones, 0.02, 2e-5, t)
            sink.ended(cancelled, Outcome(CANCELLED, 2 % n_zones, 0.3), t + 0.4)
        if second == 60:
            views[2].up = False
            sink.zone_health(2, False, second + 0.2)
        if second == 80:
            views[2].up = True
            sink.zone_health(2, True, second + 0.2)
        now = second + 1.0
        for zone, view in enumerate(views):
            if view.up:
                view.running = 3 + (second + zone) % 5
                view.waiting = (second * (zone + 1)) % 4
                view.kv_usage = 0.1 + 0.05 * ((second + zone) % 10)
                view.utilization = 0.3 + 0.04 * ((second + 2 * zone) % 12)
                view.report_s = now - 0.1 * (1 + zone % 3)
                sink.zone_reported(zone, view, now)
        sink.tick(now)


def _registry_total(registry: CollectorRegistry, sample_name: str) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == sample_name)


def _series_key(sample) -> tuple:
    return sample.name, tuple(sorted(sample.labels.items()))


def _parse(path: Path):
    """The file checked line by line (families contiguous, a series' points in ascending time and
    never interleaved with another series of its family), then every scrape's MetricPoints through
    prometheus_client's OpenMetrics parser. Returns the parsed families of the first scrape and
    family -> (type, series -> [(timestamp s, value)]).

    The reference parser reads one scrape at a time: given several MetricPoints of one histogram or
    summary series, prometheus_client (0.26) drops all but the first sample of each later point as
    a "duplicate due to timestamp truncation" — a limitation of that parser, not of the file (the
    real consumer, promtool, takes it whole in the test below)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-2:] == ["# EOF", ""], lines[-3:]
    lines = lines[:-2]
    family = None
    seen_families: set[str] = set()
    seen_groups: set[tuple] = set()
    group = None
    last_ts: dict[str, float] = {}
    scrapes: dict[str, list[str]] = defaultdict(list)  # timestamp text -> its document
    headers: dict[str, list[str]] = {}
    header_of: dict[str, str] = {}  # the family whose header each scrape document has last
    for line in lines:
        assert line, "a blank line"
        if line.startswith("# HELP "):
            family = line.split(" ", 3)[2]
            assert family not in seen_families, f"{family}: a second block"
            seen_families.add(family)
            headers[family] = [line]
            continue
        if line.startswith("# TYPE "):
            assert line.split(" ")[2] == family
            headers[family].append(line)
            continue
        assert not line.startswith("#"), line
        series, value, ts = line.rsplit(" ", 2)
        assert series.startswith(family), (family, line)
        labels = series.partition("{")[2]  # a histogram's buckets, _count and _sum: one series
        this_group = (family, re.sub(r',?le="[^"]*"', "", labels))
        if this_group != group:
            assert this_group not in seen_groups, f"{series}: interleaved with another series"
            seen_groups.add(this_group)
            group = this_group
        assert float(ts) > last_ts.get(series, -math.inf), f"{series}: timestamps must ascend"
        last_ts[series] = float(ts)
        if header_of.get(ts) != family:
            scrapes[ts].extend(headers[family])
            header_of[ts] = family
        scrapes[ts].append(line)
    series_points: dict[str, tuple[str, dict]] = {}
    first = None
    for ts in sorted(scrapes, key=float):
        families = list(text_string_to_metric_families("\n".join([*scrapes[ts], "# EOF", ""])))
        first = first or families
        for parsed in families:
            typ, points = series_points.setdefault(parsed.name, (parsed.type, defaultdict(list)))
            for sample in parsed.samples:
                assert sample.timestamp is not None, sample
                stamp = float(sample.timestamp.sec) + sample.timestamp.nsec / 1e9
                assert stamp == pytest.approx(float(ts))
                points[_series_key(sample)].append((stamp, sample.value))
    n_lines = sum(len(doc) for doc in scrapes.values()) - sum(1 for doc in scrapes.values() for x in doc if x[0] == "#")
    assert sum(len(p) for _, points in series_points.values() for p in points.values()) == n_lines
    return first, series_points


# --- (a) units ---------------------------------------------------------------------------------------


def test_metrics_sink_maps_every_event(scenario):
    metrics = GridMetrics(CollectorRegistry(), scenario, policy="latency_aware", hedging=True)
    sink = MetricsSink(metrics)
    get = metrics.registry.get_sample_value
    zones, pops = list(scenario.zones), list(scenario.populations)
    region0 = scenario.zones[zones[0]].region
    request = _request(1, 2, 10.0, prompt=500, output=40)
    sink.routed(request, 0, 0.03, 1e-5, 10.0)
    assert get("grid_routing_decision_seconds_count", {"policy": "latency_aware"}) == 1
    assert get("grid_rtt_applied_seconds_sum", {"population": pops[2], "region": region0}) == pytest.approx(0.03)
    sink.retried(request, 0, "busy", 1, 10.1)
    sink.retried(request, 1, "down", None, 10.2)
    assert get("grid_retries_total", {"zone": zones[0], "reason": "busy"}) == 1
    assert get("grid_retries_total", {"zone": zones[1], "reason": "down"}) == 1
    assert get("grid_failovers_total", {"from_zone": zones[0], "to_zone": zones[1]}) == 1
    sink.hedged(request, 2, "won", 10.3)
    labels = {"model_name": metrics.model_name, "population": pops[2], "zone": zones[2], "outcome": "won"}
    assert get("grid_hedges_total", labels) == 1
    sink.ended(request, Outcome(STOP, 0, 0.4, 0.02, 1.18), 11.2)
    vl = {"model_name": metrics.model_name, "region": region0, "zone": zones[0]}
    assert get("grid_requests_total", {"population": pops[2], "zone": zones[0], "status": STOP}) == 1
    assert get("vllm:time_to_first_token_seconds_sum", vl) == pytest.approx(0.4)
    assert get("vllm:e2e_request_latency_seconds_sum", vl) == pytest.approx(1.18)
    assert get("vllm:generation_tokens_total", vl) == 40
    assert get("vllm:request_queue_time_seconds_count", vl) == 1
    # rejected without a zone -> zone "none"; aborted -> cancelled; no TTFT -> no TTFT sample
    sink.ended(Request(2, 0, 10, 10, 12.0), Outcome(REJECTED, -1), 12.0)
    assert get("grid_requests_total", {"population": pops[0], "zone": "none", "status": REJECTED}) == 1
    sink.ended(_request(3, 0, 12.0), Outcome("abort", 1), 12.5)
    assert get("grid_requests_total", {"population": pops[0], "zone": zones[1], "status": CANCELLED}) == 1
    assert get("vllm:request_success_total", {**vl, "zone": zones[1], "finished_reason": "abort"}) == 1
    assert get("vllm:time_to_first_token_seconds_count", {**vl, "zone": zones[1]}) == 0
    sink.ended(_request(4, 0, 12.0), Outcome(CANCELLED, -1), 12.5)  # never reached a zone: not a series
    assert sink.unattributed == 1
    # zone reports and health
    view = _views(scenario)[0]
    view.running, view.waiting, view.kv_usage, view.utilization, view.report_s = 7, 2, 0.25, 0.8, 13.5
    sink.zone_reported(0, view, 14.0)
    zl = {"zone": zones[0], "region": region0}
    assert get("vllm:num_requests_running", vl) == 7 and get("vllm:num_requests_waiting", vl) == 2
    assert get("vllm:kv_cache_usage_perc", vl) == 0.25 and get("grid_zone_utilization", zl) == 0.8
    assert get("grid_load_report_age_seconds", zl) == pytest.approx(0.5)
    sink.zone_health(0, False, 14.5)
    assert get("grid_zone_up", zl) == 0
    sink.tick(0.0)
    sink.tick(16.0)
    assert get("grid_cost_usd_total", zl) > 0
    assert get("grid_load_report_age_seconds", zl) == pytest.approx(2.5)  # no report since: it grew


def test_metrics_sink_ignores_hedges_without_hedging(scenario):
    metrics = GridMetrics(CollectorRegistry(), scenario)
    MetricsSink(metrics).hedged(_request(1, 0, 0.0), 0, "won", 0.0)  # no family, no error
    assert "grid_hedges_total" not in metrics.metric_names()


def test_recorded_file_parses_ascends_and_counters_never_decrease(tmp_path, scenario):
    path = tmp_path / "run.om"
    recorder = open_recorder(scenario, path, "latency_aware", hedging=True, scrape_interval_s=5.0)
    drive_by_hand(recorder, scenario, duration_s=40, per_second=3, hedges=True)
    assert recorder.close() == path
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n# EOF\n") and "_created" not in text and "\n\n" not in text
    families, series = _parse(path)
    names = [f.name for f in families]
    assert len(names) == len(set(names))  # each family once: its samples are contiguous
    assert text.count("# TYPE ") == len(names)
    origin = start_unix_s(scenario)
    assert origin == scenario.demand.start_utc.timestamp()
    expected_times = [origin + t for t in range(0, 41, 5)]  # a scrape at the first tick, then every 5 s
    assert recorder.snapshots == len(expected_times)
    assert "vllm:time_to_first_token_seconds" in series and "grid_hedges" in series
    n_points = 0
    for name, (typ, points) in series.items():
        for key, values in points.items():
            times = [t for t, _ in values]
            assert times == pytest.approx(expected_times), (name, key)
            assert all(a < b for a, b in zip(times, times[1:], strict=False)), (name, key)
            if key[0].endswith(COUNTER_LIKE.get(typ, ())):
                vs = [v for _, v in values]
                assert all(a <= b for a, b in zip(vs, vs[1:], strict=False)), (name, key, vs)
            n_points += len(values)
    assert n_points == recorder.samples_written
    # the last scrape holds the registry's final values
    _, ttft = series["vllm:time_to_first_token_seconds"]
    final = sum(v[-1][1] for k, v in ttft.items() if k[0].endswith("_count"))
    assert final == _registry_total(recorder.registry, "vllm:time_to_first_token_seconds_count") > 0
    _, requests = series["grid_requests"]
    assert sum(v[-1][1] for v in requests.values()) > 0


def test_scrape_cadence_follows_the_driver_clock(tmp_path, scenario):
    recorder = open_recorder(scenario, tmp_path / "a.om", scrape_interval_s=15.0, start_s=1_000_000.0)
    for t in range(0, 63):
        recorder.tick(float(t))
    recorder.tick(100.0)  # a gap: one scrape, back on the 15 s grid
    recorder.tick(104.0)
    recorder.tick(105.5)
    recorder.close()
    _, series = _parse(tmp_path / "a.om")
    times = sorted({t for _, points in series.values() for values in points.values() for t, _ in values})
    assert times == [1_000_000 + t for t in (0, 15, 30, 45, 60, 100, 105.5)]
    with pytest.raises(RuntimeError):
        recorder.snapshot(200.0)


def test_spilled_chunks_write_the_same_file(tmp_path, scenario):
    """A buffer of one row, or of three, spills to the temporary file; the output is byte-identical."""
    probe = open_recorder(scenario, tmp_path / "probe.om")
    probe.snapshot(0.0)
    row_bytes = 8 * len(probe._columns)
    outputs = []
    for rows in (None, 1, 3):
        path = tmp_path / f"rows-{rows}.om"
        recorder = open_recorder(scenario, path, scrape_interval_s=2.0)
        if rows:
            recorder.max_buffer_bytes = rows * row_bytes
        drive_by_hand(recorder, scenario, duration_s=20, per_second=2)
        assert recorder.snapshots == 11
        assert len(recorder._chunks) == (recorder.snapshots // rows if rows else 0)
        recorder.close()
        assert recorder._chunks == [] and recorder._spill is None
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_series_born_mid_run_starts_at_its_first_scrape(tmp_path, scenario):
    registry = CollectorRegistry()
    metrics = GridMetrics(registry, scenario)
    recorder = OpenMetricsRecorder(MetricsSink(metrics), tmp_path / "b.om", 0.0, 1.0)
    recorder.tick(0.0)
    recorder.tick(1.0)
    late = Counter("late_events", "Born after the first scrapes.", ("kind",), registry=registry)
    late.labels("a").inc()
    recorder.tick(2.0)
    late.labels("b").inc(2)
    recorder.tick(3.0)
    recorder.close()
    _, series = _parse(tmp_path / "b.om")
    typ, points = series["late_events"]
    assert typ == "counter"
    assert points["late_events_total", (("kind", "a"),)] == [(2.0, 1.0), (3.0, 1.0)]
    assert points["late_events_total", (("kind", "b"),)] == [(3.0, 2.0)]


# --- (b) the real tools: promtool backfills the file, Prometheus answers the dashboards -------------

# Dashboard queries that cannot have data in a recorded simulation, and why. Every query of the
# provisioned dashboards reads grid_*/vllm:* families that both drivers feed, so none is expected.
CANNOT_HAVE_DATA: dict[str, str] = {}
# The live gateway's own families (its intake wait and event-loop lag): a simulated run has no gateway.
LIVE_GATEWAY_ONLY = ("grid_gateway_intake_seconds", "grid_gateway_event_loop_lag_seconds")


RUN_S = 120.0


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory, default_scenario):
    """`grid sim` of the default world for 2 simulated minutes (at 5 % of its rate: about 3,000
    requests), its metrics recorded at 15 s scrapes through the simulation's sinks."""
    path = tmp_path_factory.mktemp("om") / "run.om"
    policy = default_scenario.routing.policy
    recorder = open_recorder(default_scenario, path, policy, hedging=False, scrape_interval_s=15.0)
    Simulation(default_scenario, duration_s=RUN_S, rate_scale=0.05, sinks=[recorder]).run()
    recorder.close()
    assert recorder.snapshots >= RUN_S / 15 + 1 and recorder.sink.unattributed == 0
    return path, recorder


@pytest.fixture(scope="module")
def backfilled_prometheus(recorded_run, tmp_path_factory):
    path, _ = recorded_run
    workdir = tmp_path_factory.mktemp("prometheus")
    data = workdir / "data"
    result = subprocess.run(
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(p.is_dir() for p in data.iterdir()), result.stdout  # at least one block
    config = "global: {scrape_interval: 15s}\nscrape_configs: []\n"
    # the run is dated in the past: keep its blocks
    with prometheus_server(workdir, config, data, "--storage.tsdb.retention.time=100y") as api:
        yield api


def _query_range(api: str, expr: str, start: float, end: float) -> list[dict]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "15s"}
    answer = httpx.get(f"{api}/api/v1/query_range", params=params, timeout=30).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


def test_every_dashboard_query_returns_data_from_the_backfilled_run(backfilled_prometheus, recorded_run):
    _, recorder = recorded_run
    start = recorder.start_unix_s
    end = start + RUN_S
    queries = dashboard_queries()
    assert len(queries) > 20
    results = {expr: _query_range(backfilled_prometheus, expr, start, end) for expr in queries}
    empty = [
        expr
        for expr, result in results.items()
        if not result and expr not in CANNOT_HAVE_DATA and not any(f in expr for f in LIVE_GATEWAY_ONLY)
    ]
    assert not empty, (
        f"{len(empty)} of {len(queries)} dashboard queries returned no series over the run:\n" + "\n".join(empty)
    )
    # the data is where the run put it: the scrapes' timestamps, the last values of the registry
    (series,) = _query_range(backfilled_prometheus, "sum(grid_requests_total)", start, end)
    times = [float(t) for t, _ in series["values"]]
    assert times[0] == pytest.approx(start) and times[-1] == pytest.approx(end)
    total = _registry_total(recorder.registry, "grid_requests_total")
    assert float(series["values"][-1][1]) == pytest.approx(total) and total > 0
    (p99,) = _query_range(
        backfilled_prometheus,
        "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
        start,
        end,
    )
    finite = [float(v) for _, v in p99["values"] if not math.isnan(float(v))]
    assert finite and all(0 < v < 10 for v in finite)
