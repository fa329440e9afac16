"""deploy/: dashboards are fresh and query only families GridMetrics (or the gateway) defines;
Prometheus, Grafana and compose configuration validate with the real tools: promtool (required:
`make test` installs it) and docker-compose (when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from grid.live.gateway_state import intake_histogram
from grid.live.loop_lag import LoopLag
from grid.scenario import load_scenario
from grid.telemetry import GridMetrics
from grid.telemetry.metric_families import TPOT_BUCKETS, TTFT_BUCKETS
from tests.telemetry.prometheus_server import binary
from tests.telemetry.promql import (
    DASHBOARDS_DIR,
    dashboard_files,
    dashboard_queries,
    metric_names,
    raw_queries,
    substitute,
    variable_queries,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "grafana" / "build_dashboards.py"
sys.path.insert(0, str(BUILD.parent))
import build_dashboards  # noqa: E402


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """GridMetrics' families and the live gateway's own (its event-loop lag and intake delay)."""
    registry = CollectorRegistry()
    names = GridMetrics(registry, load_scenario()).metric_names()
    gateway = CollectorRegistry()
    LoopLag(time.monotonic).register(gateway)
    intake_histogram(gateway)
    return names | {sample.name for family in gateway.collect() for sample in family.samples}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in dashboard_files()}


def test_committed_dashboards_are_fresh():
    result = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_check_fails_on_stale_json(tmp_path):
    assert build_dashboards.main(["--out", str(tmp_path)]) == 0
    assert build_dashboards.main(["--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "zone-detail.json"
    stale.write_text(stale.read_text().replace("Zone detail", "Zone details"))
    assert build_dashboards.main(["--check", "--out", str(tmp_path)]) == 1
    stale.unlink()
    assert build_dashboards.main(["--check", "--out", str(tmp_path)]) == 1


def test_every_query_uses_only_families_grid_metrics_defines(exported_names):
    seen = set()
    for path in dashboard_files():
        for expr in raw_queries(path) + variable_queries(path):
            names = metric_names(expr)
            assert names, f"{path.name}: no grid/vLLM metric in {expr!r}"
            unknown = names - exported_names
            assert not unknown, f"{path.name}: {expr!r} uses {unknown}, which GridMetrics does not export"
            seen |= names
    # the dashboards cover the list
    for needed in (
        "grid_zone_info",
        "grid_population_info",
        "grid_requests_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "grid_zone_utilization",
        "grid_zone_up",
        "grid_retries_total",
        "grid_failovers_total",
        "grid_cost_usd_total",
        "grid_carbon_grams_total",
    ):
        assert needed in seen, needed


def test_dashboard_conventions(dashboards):
    assert set(dashboards) == {"grid-overview.json", "zone-detail.json"}
    uids = {d["uid"] for d in dashboards.values()}
    assert uids == {"grid-overview", "grid-zone-detail"}
    for dashboard in dashboards.values():
        assert dashboard["schemaVersion"] == 39
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            for t in panel["targets"]:
                expr = t["expr"]
                assert t["datasource"]["uid"] == "prometheus"
                assert "[$__rate_interval]" in expr or "rate(" not in expr, expr
                if re.search(r" / [^\d]", expr):  # ratios of series never divide by zero
                    assert re.search(r" / \(.*> 0\)", expr), expr
                if "histogram_quantile" in expr:
                    assert re.search(r"histogram_quantile\(0\.\d+, sum by \(le(, \w+)?\) \(rate\(", expr), expr
                if panel["type"] == "heatmap":
                    assert t["format"] == "heatmap" and t["legendFormat"] == "{{le}}"
                    assert expr.startswith("sum by (le) (increase(") and "_bucket" in expr
    overview = dashboards["grid-overview.json"]
    exprs = [t["expr"] for p in overview["panels"] for t in p["targets"]]
    assert (
        "histogram_quantile(0.99, sum by (le, zone) (rate(vllm:time_to_first_token_seconds_bucket[$__rate_interval])))"
        in exprs
    )
    assert any("routing matrix" in p["title"].lower() for p in overview["panels"])


def test_geomap_joins_info_gauges(dashboards):
    overview = dashboards["grid-overview.json"]
    geomap = next(p for p in overview["panels"] if p["type"] == "geomap")
    by_ref = {t["refId"]: t for t in geomap["targets"]}
    for ref, info in (("A", "grid_zone_info"), ("B", "grid_zone_info"), ("C", "grid_population_info")):
        target = by_ref[ref]
        assert target["format"] == "table" and target["instant"], ref
        assert "group_left" in target["expr"] and info in target["expr"], ref
    assert "time_to_first_token" in by_ref["B"]["expr"] and "0.99" in by_ref["B"]["expr"]
    conversions = [
        c for t in geomap["transformations"] if t["id"] == "convertFieldType" for c in t["options"]["conversions"]
    ]
    assert {(c["targetField"], c["destinationType"]) for c in conversions} == {("lat", "number"), ("lon", "number")}
    layers = {layer["filterData"]["options"]: layer for layer in geomap["options"]["layers"]}
    assert layers["A"]["config"]["style"]["size"]["field"] == "Value #A"  # zones sized by request rate
    assert layers["B"]["config"]["style"]["color"]["field"] == "Value #B"  # coloured by p99 TTFT
    assert layers["C"]["config"]["style"]["size"]["field"] == "Value #C"  # populations
    for layer in layers.values():
        assert layer["location"] == {"mode": "coords", "latitude": "lat", "longitude": "lon"}


def test_zone_detail_has_a_zone_variable(dashboards):
    detail = dashboards["zone-detail.json"]
    variables = {v["name"]: v for v in detail["templating"]["list"]}
    assert variables["zone"]["query"]["query"] == "label_values(grid_zone_info, zone)"
    exprs = [t["expr"] for p in detail["panels"] for t in p["targets"]]
    assert all('zone=~"$zone"' in e for e in exprs)


def test_slo_panels_read_bucket_boundaries_of_the_default_slo():
    slo = load_scenario().slo
    assert float(build_dashboards.SLO_TTFT_LE) == slo.ttft_s and slo.ttft_s in TTFT_BUCKETS
    assert float(build_dashboards.SLO_TPOT_LE) == slo.tpot_s and slo.tpot_s in TPOT_BUCKETS
    # prometheus_client writes le as Python's float repr: the dashboards must quote the same text
    assert str(slo.ttft_s) == build_dashboards.SLO_TTFT_LE and str(slo.tpot_s) == build_dashboards.SLO_TPOT_LE


def test_dashboard_queries_helper_substitutes_macros_and_variables():
    queries = dashboard_queries()
    assert len(queries) >= 40
    assert not [q for q in queries if "$" in q]
    assert any('zone=~".+"' in q for q in queries)
    assert all("[1m]" in q for q in queries if "rate(" in q)
    assert substitute('x{zone=~"$zone"}[$__rate_interval]', {"zone": "paris-1"}) == 'x{zone=~"paris-1"}[1m]'
    with pytest.raises(KeyError):
        substitute("x{a=~'$nope'}")
    assert DASHBOARDS_DIR.is_dir()


# --- the real tools ------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config():
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(ROOT / "deploy" / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_every_dashboard_query(tmp_path):
    """Each query as a recording rule: `promtool check rules` parses its PromQL."""
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(dashboard_queries())],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_scrapes_the_gateway_every_5s():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "5s"
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["grid:8000"]


def test_grafana_provisioning():
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["name"] == "Prometheus" and datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus" and datasource["access"] == "proxy"
    assert datasource["url"] == "http://prometheus:9090" and datasource["isDefault"] is True
    assert datasource["jsonData"]["timeInterval"] == "5s"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_wires_the_services_together():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["grid"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "8000:8000" in services["grid"]["ports"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/grid-overview.json"
    assert (ROOT / "deploy" / "grafana" / "dashboards" / Path(home).name).is_file()
    for name, role in (("locust-master", "--master"), ("locust-worker", "--worker")):
        service = services[name]
        assert service["profiles"] == ["loadtest"]
        assert "/app/loadtests/locustfile.py" in service["command"] and role in service["command"]
    assert "locust-master" in services["locust-worker"]["command"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert '"grid", "up", "--host", "0.0.0.0"' in dockerfile


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose not installed (Debian: apt-get install docker-compose)"
)
def test_docker_compose_validates_the_file():
    result = subprocess.run(
        [DOCKER_COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
