"""The simulator on a replayed trace: the run's end (cut or drain), prefix hashes on requests, offered load."""

import json
from pathlib import Path

import pytest

from grid.dispatch.sinks import Sink
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation


def trace(tmp_path: Path, n: int = 200, prompt: int = 3000, output: int = 400) -> Path:
    path = tmp_path / "t.jsonl"
    rows = [
        {"timestamp": 500 * i, "input_length": prompt, "output_length": output, "hash_ids": [1, 2 + i % 7, 100 + i]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scenario(path: Path, **trace_fields):
    overrides = {"demand.trace": {"path": str(path), "block_tokens": 1000, **trace_fields}, "faults": []}
    return load_scenario("default", overrides)


def test_cut_ends_the_run_at_the_trace_end(tmp_path):
    sim = Simulation(scenario(trace(tmp_path)), duration_s=3600.0)
    report = sim.run()
    assert report.meta["duration_s"] == pytest.approx(99.5)  # its last row, not the hour asked for
    assert report.grid.arrivals == 200
    assert report.totals["in_flight"] > 0  # the last requests are cut, not finished
    assert "arrival_window_s" not in report.meta


def test_drain_stops_arrivals_and_lets_the_grid_finish(tmp_path):
    sim = Simulation(scenario(trace(tmp_path), end="drain"), duration_s=3600.0)
    report = sim.run()
    assert report.totals["in_flight"] == 0
    assert report.grid.completed + report.grid.rejected + report.grid.failed == 200
    assert report.meta["arrival_window_s"] == pytest.approx(99.5)
    assert 99.5 < report.meta["duration_s"] < 99.5 + 60  # the last answers took a few seconds more
    # Offered load counts arrivals over the time they came, not the drained run.
    assert report.totals["offered_load"] == pytest.approx(200 / 99.5 / sim.world.total_capacity_rps)


def test_drain_ends_even_when_nothing_is_left_in_flight_early(tmp_path):
    sim = Simulation(scenario(trace(tmp_path, n=3, output=2), end="drain"), duration_s=600.0)
    report = sim.run()
    assert report.totals["in_flight"] == 0 and report.meta["duration_s"] < 5.0


class Seen(Sink):
    def __init__(self) -> None:
        self.requests = []

    def routed(self, request, *args) -> None:  # noqa: ANN001, ANN002
        self.requests.append(request)


def test_requests_carry_the_trace_block_hashes(tmp_path):
    seen = Seen()
    Simulation(scenario(trace(tmp_path, n=20)), duration_s=60.0, sinks=[seen]).run()
    first = seen.requests[0]
    assert first.prefix_block_tokens == 1000
    assert first.prefix_hashes == (1, 2, 100)  # 3000 tokens: three full 1000-token blocks


def test_default_world_requests_have_no_prefix():
    seen = Seen()
    Simulation(load_scenario("default"), duration_s=2.0, sinks=[seen]).run()
    assert seen.requests and all(r.prefix_hashes is None and r.prefix_block_tokens == 0 for r in seen.requests)


def test_session_workload_runs_deterministically():
    s = load_scenario("sessions")
    a = Simulation(s, duration_s=30.0, seed=4).run()
    b = Simulation(s, duration_s=30.0, seed=4).run()
    assert a.grid.arrivals == b.grid.arrivals > 500
    assert a.grid.ttft_s == b.grid.ttft_s
    assert a.meta["demand"]["kind"] == "sessions"


def test_prefix_cache_hit_rate_is_reported_and_exported():
    """The report's hit rate is cached / prompt tokens of completed requests, per zone and for the grid,
    and the Prometheus counters (vLLM's prefix_cache_queries/hits) agree with it; 0 without prefixes."""
    from prometheus_client import CollectorRegistry

    from grid.telemetry import GridMetrics
    from grid.telemetry.sink import MetricsSink

    s = load_scenario("sessions")
    metrics = GridMetrics(CollectorRegistry(), s)
    report = Simulation(s, duration_s=30.0, seed=4, sinks=[MetricsSink(metrics)]).run()
    grid_rate = report.grid.extra["prefix_cache_hit_rate"]
    assert 0.3 < grid_rate < 1.0  # conversations resend their history
    assert any(z.extra["prefix_cache_hit_rate"] > 0 for z in report.zones)
    assert report.to_dict()["grid"]["prefix_cache_hit_rate"] == pytest.approx(grid_rate)
    samples = {(m.name, m.labels.get("zone")): m.value for f in metrics.registry.collect() for m in f.samples}
    hits = sum(v for (name, _), v in samples.items() if name == "vllm:prefix_cache_hits_total")
    queries = sum(v for (name, _), v in samples.items() if name == "vllm:prefix_cache_queries_total")
    assert queries > 0 and hits / queries == pytest.approx(grid_rate, rel=0.05)  # requests still running differ
    plain = Simulation(load_scenario("default"), duration_s=2.0).run()
    assert plain.grid.extra["prefix_cache_hit_rate"] == 0.0
