"""The real Prometheus server scrapes a live grid under load; every dashboard query returns data.

Needs Debian's `prometheus` (`make test` installs it). Prometheus listens and scrapes on 127.0.0.1 only.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.telemetry.prometheus_server import prometheus_server
from tests.telemetry.promql import dashboard_queries

from .conftest import wait_until

# Scrapes (1 s apart) of the gateway under load before the queries run: rate() over a 1m window needs
# two samples, histogram_quantile() a bucket that grew between them; six leave margin for both.
MIN_SCRAPES = 6
SCRAPES_TIMEOUT_S = 60.0


def _send_load(url: str, model: str, populations: list[str], stop: threading.Event) -> int:
    """Closed-loop chat requests from every population (streamed and not) until `stop`."""
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            population = populations[sent % len(populations)]
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "How far is the nearest zone? " * (1 + sent % 5)}],
                "max_tokens": 8 + sent % 20,
                "stream": sent % 2 == 0,
            }
            client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": population})
            sent += 1
    return sent


@pytest.fixture(scope="module")
def prometheus(live, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prometheus")
    target = live.url.removeprefix("http://")
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: grid\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    with prometheus_server(workdir, config, workdir / "data") as api:
        stop = threading.Event()
        populations = list(live.scenario.populations)
        workers = [
            threading.Thread(target=_send_load, args=(live.url, live.model, populations, stop)) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        wait_until(  # the load started with Prometheus: these scrapes span it
            lambda: _scrapes(api) >= MIN_SCRAPES, SCRAPES_TIMEOUT_S, f"{MIN_SCRAPES} scrapes of the gateway", 0.5
        )
        yield api
        stop.set()
        for worker in workers:
            worker.join(30)


def _scrapes(api: str) -> int:
    """How many scrapes of the gateway Prometheus stored in the last minute."""
    result = _query(api, 'count_over_time(up{job="grid"}[1m])')
    return int(float(result[0]["value"][1])) if result else 0


def _query(api: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


def test_prometheus_scrapes_the_gateway(prometheus):
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets


def test_every_dashboard_query_returns_data(prometheus):
    queries = dashboard_queries()
    assert len(queries) > 20
    empty = [expr for expr in queries if not _query(prometheus, expr)]
    assert not empty, f"{len(empty)} of {len(queries)} dashboard queries returned no series:\n" + "\n".join(empty)


def test_vllm_style_quantiles_by_model_name(prometheus, live):
    for family in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"):
        result = _query(prometheus, f"histogram_quantile(0.99, sum by (le, model_name) (rate({family}_bucket[1m])))")
        assert [r["metric"]["model_name"] for r in result] == [live.model]
        assert float(result[0]["value"][1]) > 0, family


def test_labels_come_from_the_scenario_not_from_requests(prometheus, live):
    """A request with user text in every field it can carry adds no series."""
    before = live.client.get("/metrics").text.count("\n")
    for population in ("berlin", "nowhere"):
        live.client.post(
            "/v1/chat/completions",
            json={"model": live.model, "messages": [{"role": "user", "content": "prompt-zq7x"}], "user": "user-zq7x"},
            headers={"X-Grid-Population": population},
        )
    text = live.client.get("/metrics").text
    assert "zq7x" not in text and "nowhere" not in text
    assert text.count("\n") == before
    allowed = set(live.scenario.populations) | set(live.scenario.zones) | set(live.scenario.regions)
    for series in _query(prometheus, "grid_requests_total"):
        assert {series["metric"]["population"], series["metric"]["zone"]} <= allowed | {"none"}


def test_metrics_text_is_bounded(live):
    lines = live.client.get("/metrics").text.count("\n")
    assert lines < 20_000  # fixed by the scenario's zones × populations, not by traffic
