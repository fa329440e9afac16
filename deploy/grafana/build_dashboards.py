#!/usr/bin/env python3
"""Build the Grafana dashboards of the grid as JSON from plain Python dicts (no dashboard library).

    python deploy/grafana/build_dashboards.py           # (re)write deploy/grafana/dashboards/*.json
    python deploy/grafana/build_dashboards.py --check   # exit 1 if the committed JSON is stale

Every query uses only families defined in grid/telemetry/metrics.py (a test checks it). Conventions
(../shared/CONVENTIONS.md): datasource uid `prometheus`, stable uids, schemaVersion 39, percentiles as
`histogram_quantile(q, sum by (le, zone) (rate(H_bucket[$__rate_interval])))`, ratios divided by
`(denominator > 0)`, SLO attainment read at a bucket boundary, heatmaps from `increase` of buckets.
The geomap joins rates to the `grid_zone_info` / `grid_population_info` gauges with `group_left`,
queried as instant tables, with a `convertFieldType` transformation because lat/lon are labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"
# SLOs of the default scenario (regions/default.yaml: slo), read at these bucket boundaries of vLLM's
# TTFT and TPOT histograms (a test checks both are boundaries and match the default scenario).
SLO_TTFT_LE = "1.0"
SLO_TPOT_LE = "0.1"
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))

Json = dict[str, Any]


# --- building blocks -----------------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", *, fmt: str = "time_series", instant: bool = False) -> Json:
    return {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "format": fmt,
        "instant": instant,
        "range": not instant,
    }


def rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum "
    return f"{grouping}(rate({metric}{selector}[{RI}]))"


def quantile(q: str, histogram: str, by: str = "zone", selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{selector}[{RI}])))"


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / ({denominator} > 0)"


def refs(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def panel(kind: str, title: str, targets: list[Json], w: int, h: int, *, unit: str = "", description: str = "") -> Json:
    p: Json = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"w": w, "h": h, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if description:
        p["description"] = description
    return p


def timeseries(title: str, exprs: list[tuple[str, str]], unit: str = "", w: int = 12, h: int = 8, **kw: Any) -> Json:
    targets = [target(e, legend, ref) for (e, legend), ref in zip(exprs, refs(len(exprs)), strict=True)]
    p = panel("timeseries", title, targets, w, h, unit=unit, **kw)
    p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return p


def percentiles(title: str, histogram: str, selector: str = "", by: str = "zone", w: int = 8) -> Json:
    exprs = [(quantile(q, histogram, by, selector), f"{{{{{by}}}}} {name}") for q, name in QUANTILES]
    return timeseries(title, exprs, unit="s", w=w)


def heatmap(title: str, histogram: str, selector: str = "", unit: str = "s", w: int = 8) -> Json:
    expr = f"sum by (le) (increase({histogram}_bucket{selector}[{RI}]))"
    p = panel("heatmap", title, [target(expr, "{{le}}", fmt="heatmap")], w, 8)
    p["options"] = {
        "calculate": False,
        "yAxis": {"unit": unit},
        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
        "cellGap": 1,
        "tooltip": {"show": True, "yHistogram": True},
        "legend": {"show": True},
    }
    return p


def stat(title: str, expr: str, unit: str = "", w: int = 4, decimals: int | None = None) -> Json:
    p = panel("stat", title, [target(expr, title)], w, 4, unit=unit)
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    return p


def up_timeline(title: str, expr: str, w: int = 12) -> Json:
    p = panel("state-timeline", title, [target(expr, "{{zone}}")], w, 8)
    p["fieldConfig"]["defaults"]["mappings"] = [
        {
            "type": "value",
            "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}},
        }
    ]
    p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    p["fieldConfig"]["defaults"]["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
    }
    p["options"] = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}
    return p


def marker_layer(name: str, ref: str, size_field: str | None, color: Json, text_field: str, opacity: float) -> Json:
    size = {"fixed": 6, "min": 4, "max": 28}
    if size_field:
        size["field"] = size_field
    return {
        "type": "markers",
        "name": name,
        "config": {
            "showLegend": True,
            "style": {
                "color": color,
                "opacity": opacity,
                "size": size,
                "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                "text": {"mode": "field", "field": text_field, "fixed": ""},
                "textConfig": {"fontSize": 10, "offsetX": 0, "offsetY": -14, "textAlign": "center"},
            },
        },
        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
        "filterData": {"id": "byRefId", "options": ref},
        "tooltip": True,
    }


def grid_map() -> Json:
    """Zones sized by request rate (A) and coloured by p99 TTFT (B); populations sized by rate (C).

    Each layer reads one query (`filterData` by refId), so no merge of differently shaped tables is
    needed: the p99 dot sits on top of the rate circle of the same zone."""
    zone_join = " * on (zone) group_left (region, lat, lon) grid_zone_info"
    targets = [
        target(f"({rate('grid_requests_total', 'zone')}){zone_join}", "", "A", fmt="table", instant=True),
        target(
            f"({quantile('0.99', 'vllm:time_to_first_token_seconds')}){zone_join}", "", "B", fmt="table", instant=True
        ),
        target(
            f"({rate('grid_requests_total', 'population')}) * on (population) group_left (lat, lon) "
            "grid_population_info",
            "",
            "C",
            fmt="table",
            instant=True,
        ),
    ]
    p = panel(
        "geomap",
        "Grid map: zones (circle = request rate, dot colour = p99 TTFT) and populations (request rate)",
        targets,
        24,
        14,
    )
    p["transformations"] = [
        {
            "id": "convertFieldType",
            "options": {
                "fields": {},
                "conversions": [
                    {"targetField": "lat", "destinationType": "number"},
                    {"targetField": "lon", "destinationType": "number"},
                ],
            },
        }
    ]
    p["fieldConfig"] = {
        "defaults": {"color": {"mode": "thresholds"}},
        "overrides": [
            {
                "matcher": {"id": "byName", "options": "Value #B"},
                "properties": [
                    {"id": "unit", "value": "s"},
                    {"id": "displayName", "value": "p99 TTFT"},
                    {
                        "id": "thresholds",
                        "value": {
                            "mode": "absolute",
                            "steps": [
                                {"color": "green", "value": None},
                                {"color": "yellow", "value": 0.5},
                                {"color": "orange", "value": 1.0},
                                {"color": "red", "value": 2.5},
                            ],
                        },
                    },
                ],
            },
            {
                "matcher": {"id": "byName", "options": "Value #A"},
                "properties": [{"id": "unit", "value": "reqps"}, {"id": "displayName", "value": "zone requests/s"}],
            },
            {
                "matcher": {"id": "byName", "options": "Value #C"},
                "properties": [
                    {"id": "unit", "value": "reqps"},
                    {"id": "displayName", "value": "population requests/s"},
                ],
            },
        ],
    }
    p["options"] = {
        "view": {"id": "coords", "lat": 25, "lon": 10, "zoom": 1.6, "allLayers": True},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True, "showScale": False},
        "basemap": {"type": "default", "name": "Basemap", "config": {}},
        "layers": [
            marker_layer("Populations (request rate)", "C", "Value #C", {"fixed": "purple"}, "population", 0.35),
            marker_layer("Zones (request rate)", "A", "Value #A", {"fixed": "blue"}, "zone", 0.3),
            marker_layer("Zones (p99 TTFT)", "B", None, {"field": "Value #B", "fixed": "green"}, "zone", 0.9),
        ],
        "tooltip": {"mode": "details"},
    }
    return p


def routing_matrix(selector: str = "") -> Json:
    expr = f"sum by (population, zone) (rate(grid_requests_total{selector}[{RI}]))"
    p = panel(
        "table",
        "Routing matrix: requests/s from each population (rows) to each zone (columns)",
        [target(expr, "", fmt="table", instant=True)],
        24,
        12,
        unit="reqps",
    )
    p["transformations"] = [
        {"id": "groupingToMatrix", "options": {"rowField": "population", "columnField": "zone", "valueField": "Value"}}
    ]
    p["fieldConfig"]["defaults"]["decimals"] = 2
    p["fieldConfig"]["defaults"]["custom"] = {"cellOptions": {"type": "color-background", "mode": "gradient"}}
    p["fieldConfig"]["defaults"]["color"] = {"mode": "continuous-GrYlRd"}
    return p


def layout(panels: list[Json]) -> list[Json]:
    """Place panels left to right in rows of 24 columns; give each a stable id."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        p["id"] = i
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(uid: str, title: str, panels: list[Json], templating: list[Json] | None = None, **kw: Any) -> Json:
    return {
        "uid": uid,
        "title": title,
        "tags": ["inference-grid", "vllm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "templating": {"list": templating or []},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(panels),
        **kw,
    }


# --- the dashboards ------------------------------------------------------------------------------


def fleet_panels() -> list[Json]:
    """Elastic zones (grid.scaling): replicas by state against the demand they follow, per region; the
    autoscaler's events; what the fleet costs per hour at the time-of-use tariff."""
    replicas = timeseries(
        "Replicas by state against request rate, per region",
        [
            ("sum by (region, state) (grid_zone_replicas)", "{{region}} {{state}}"),
            (rate("vllm:request_success_total", "region"), "{{region}} req/s"),
        ],
        description="Serving, warming (cold start) and draining replicas per region (left axis) and the "
        "requests each region completes per second (right axis): scale-ups lag demand by the cold start.",
    )
    replicas["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byRegexp", "options": ".* req/s"},
            "properties": [
                {"id": "custom.axisPlacement", "value": "right"},
                {"id": "unit", "value": "reqps"},
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            ],
        }
    ]
    return [
        replicas,
        timeseries(
            "Scaling events by zone and reason",
            [(f"sum by (zone, reason) (increase(grid_scaling_events_total[{RI}]))", "{{zone}} {{reason}}")],
            w=6,
        ),
        timeseries(
            "Fleet cost by zone (USD/h, time-of-use tariff)",
            [("sum by (zone) (grid_zone_cost_usd_per_hour)", "{{zone}}")],
            "currencyUSD",
            w=6,
        ),
    ]


def grid_overview() -> Json:
    requests = "grid_requests_total"
    ended = f'{requests}{{status!="rejected"}}'
    ttft_ok = ratio(
        rate("vllm:time_to_first_token_seconds_bucket", "zone", f'{{le="{SLO_TTFT_LE}"}}'),
        rate("vllm:time_to_first_token_seconds_count", "zone"),
    )
    tpot_ok = ratio(
        rate("vllm:request_time_per_output_token_seconds_bucket", "zone", f'{{le="{SLO_TPOT_LE}"}}'),
        rate("vllm:request_time_per_output_token_seconds_count", "zone"),
    )
    panels = [
        grid_map(),
        stat("Requests/s", rate(requests), "reqps", decimals=1),
        stat("p99 TTFT (grid)", quantile("0.99", "vllm:time_to_first_token_seconds", "model_name"), "s"),
        stat(
            f"TTFT ≤ {SLO_TTFT_LE} s (grid)",
            ratio(
                rate("vllm:time_to_first_token_seconds_bucket", selector=f'{{le="{SLO_TTFT_LE}"}}'),
                rate("vllm:time_to_first_token_seconds_count"),
            ),
            "percentunit",
        ),
        stat("Zones up", "sum(grid_zone_up)", "", decimals=0),
        stat("Cost (USD/h)", f"{rate('grid_cost_usd_total')} * 3600", "currencyUSD"),
        stat("Carbon (kg CO2e/h)", f"{rate('grid_carbon_grams_total')} * 3600 / 1000", "", decimals=1),
        timeseries("Request rate by zone", [(rate(requests, "zone"), "{{zone}}")], "reqps"),
        timeseries("Request rate by population", [(rate(requests, "population"), "{{population}}")], "reqps"),
        routing_matrix(),
        percentiles("TTFT p50 / p95 / p99 by zone", "vllm:time_to_first_token_seconds"),
        percentiles("Inter-token latency p50 / p95 / p99 by zone", "vllm:inter_token_latency_seconds"),
        percentiles("E2E latency p50 / p95 / p99 by zone", "vllm:e2e_request_latency_seconds"),
        heatmap("TTFT heatmap", "vllm:time_to_first_token_seconds"),
        heatmap("Inter-token latency heatmap", "vllm:inter_token_latency_seconds"),
        heatmap("E2E latency heatmap", "vllm:e2e_request_latency_seconds"),
        timeseries(
            f"SLO attainment by zone (TTFT ≤ {SLO_TTFT_LE} s, TPOT ≤ {SLO_TPOT_LE} s)",
            [(ttft_ok, "{{zone}} TTFT"), (tpot_ok, "{{zone}} TPOT")],
            "percentunit",
            description="Share of requests under the SLO, read at the histogram bucket equal to the SLO.",
        ),
        timeseries(
            "Running and waiting requests by zone",
            [
                ("sum by (zone) (vllm:num_requests_running)", "{{zone}} running"),
                ("sum by (zone) (vllm:num_requests_waiting)", "{{zone}} waiting"),
            ],
        ),
        timeseries("KV-cache usage by zone", [("max by (zone) (vllm:kv_cache_usage_perc)", "{{zone}}")], "percentunit"),
        timeseries(
            "Prefix-cache hit rate by zone",
            [
                (
                    ratio(
                        rate("vllm:prefix_cache_hits_total", "zone"), rate("vllm:prefix_cache_queries_total", "zone")
                    ),
                    "{{zone}}",
                )
            ],
            "percentunit",
            description="Share of prompt tokens served from the zone's prefix cache (0 for workloads without "
            "prefix information: the default Poisson world).",
        ),
        timeseries(
            "Utilization by zone (offered load / saturated capacity)",
            [("max by (zone) (grid_zone_utilization)", "{{zone}}")],
            "percentunit",
        ),
        timeseries(
            "Rejections, errors and retries",
            [
                (rate(requests, "zone", '{status="rejected"}'), "{{zone}} rejected"),
                (rate(requests, "zone", '{status="error"}'), "{{zone}} error"),
                (rate("grid_retries_total", "zone, reason"), "{{zone}} retry ({{reason}})"),
            ],
            "reqps",
        ),
        timeseries(
            "Failovers (retries sent to another zone)",
            [(rate("grid_failovers_total", "from_zone, to_zone"), "{{from_zone}} → {{to_zone}}")],
            "reqps",
        ),
        up_timeline("Zone up / down", "max by (zone) (grid_zone_up)"),
        *fleet_panels(),
        timeseries(
            "Error ratio by zone",
            [(ratio(rate(requests, "zone", '{status="error"}'), rate(ended, "zone")), "{{zone}}")],
            "percentunit",
        ),
        timeseries(
            "Cost rate by region (USD/h)",
            [(f"{rate('grid_cost_usd_total', 'region')} * 3600", "{{region}}")],
            "currencyUSD",
            w=8,
        ),
        timeseries(
            "Carbon rate by region (kg CO2e/h)",
            [(f"{rate('grid_carbon_grams_total', 'region')} * 3600 / 1000", "{{region}}")],
            w=8,
        ),
        timeseries(
            "Cost and carbon per 1M output tokens",
            [
                (
                    f"{ratio(rate('grid_cost_usd_total'), rate('vllm:generation_tokens_total'))} * 1e6",
                    "USD per 1M tokens",
                ),
                (
                    f"{ratio(rate('grid_carbon_grams_total'), rate('vllm:generation_tokens_total'))} * 1e6",
                    "g CO2e per 1M tokens",
                ),
            ],
            w=8,
        ),
        timeseries(
            "Mean RTT applied by population",
            [
                (
                    ratio(
                        rate("grid_rtt_applied_seconds_sum", "population"),
                        rate("grid_rtt_applied_seconds_count", "population"),
                    ),
                    "{{population}}",
                )
            ],
            "s",
            w=8,
        ),
        timeseries(
            "Routing decision time (p50 / p99)",
            [
                (quantile("0.5", "grid_routing_decision_seconds", "policy"), "{{policy}} p50"),
                (quantile("0.99", "grid_routing_decision_seconds", "policy"), "{{policy}} p99"),
            ],
            "s",
            w=8,
        ),
        timeseries("Load-report age by zone", [("max by (zone) (grid_load_report_age_seconds)", "{{zone}}")], "s", w=8),
        timeseries(
            "Gateway's own delay: intake and event-loop lag p99",
            [
                (quantile("0.99", "grid_gateway_intake_seconds", by="instance"), "intake (first byte to handler)"),
                (quantile("0.99", "grid_gateway_event_loop_lag_seconds", by="instance"), "event-loop lag"),
            ],
            "s",
            w=8,
            description="Latency the gateway adds itself (the simulator does not model it): rising under load "
            "means the gateway, not the zones, is the bottleneck.",
        ),
    ]
    return dashboard("grid-overview", "Grid overview", panels)


def zone_detail() -> Json:
    sel = '{zone=~"$zone"}'
    variables = [
        {
            "name": "zone",
            "label": "Zone",
            "type": "query",
            "datasource": DS,
            "query": {"query": "label_values(grid_zone_info, zone)", "refId": "zone"},
            "definition": "label_values(grid_zone_info, zone)",
            "refresh": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ".+",
            "current": {},
            "sort": 1,
        },
    ]
    panels = [
        stat("Requests/s", rate("grid_requests_total", selector=sel), "reqps", w=6, decimals=1),
        stat("p99 TTFT", quantile("0.99", "vllm:time_to_first_token_seconds", "model_name", sel), "s", w=6),
        stat("Utilization", f"max(grid_zone_utilization{sel})", "percentunit", w=6),
        stat("Up", f"min(grid_zone_up{sel})", "", w=6, decimals=0),
        percentiles("TTFT p50 / p95 / p99", "vllm:time_to_first_token_seconds", sel),
        percentiles("Inter-token latency p50 / p95 / p99", "vllm:inter_token_latency_seconds", sel),
        percentiles("E2E latency p50 / p95 / p99", "vllm:e2e_request_latency_seconds", sel),
        percentiles("TPOT per request p50 / p95 / p99", "vllm:request_time_per_output_token_seconds", sel),
        percentiles("Queue time p50 / p95 / p99", "vllm:request_queue_time_seconds", sel),
        percentiles("Prefill time p50 / p95 / p99", "vllm:request_prefill_time_seconds", sel),
        heatmap("TTFT heatmap", "vllm:time_to_first_token_seconds", sel),
        heatmap("Prompt tokens per request", "vllm:request_prompt_tokens", sel, unit="short"),
        heatmap("Generated tokens per request", "vllm:request_generation_tokens", sel, unit="short"),
        timeseries(
            "Running, waiting",
            [
                (f"sum by (zone) (vllm:num_requests_running{sel})", "{{zone}} running"),
                (f"sum by (zone) (vllm:num_requests_waiting{sel})", "{{zone}} waiting"),
            ],
            w=8,
        ),
        timeseries(
            "KV-cache usage and utilization",
            [
                (f"max by (zone) (vllm:kv_cache_usage_perc{sel})", "{{zone}} KV"),
                (f"max by (zone) (grid_zone_utilization{sel})", "{{zone}} utilization"),
            ],
            "percentunit",
            w=8,
        ),
        timeseries(
            "Tokens/s",
            [
                (rate("vllm:prompt_tokens_total", "zone", sel), "{{zone}} prompt"),
                (rate("vllm:generation_tokens_total", "zone", sel), "{{zone}} generation"),
            ],
            w=8,
        ),
        timeseries(
            "Requests by status",
            [(rate("grid_requests_total", "zone, status", sel), "{{zone}} {{status}}")],
            "reqps",
            w=8,
        ),
        timeseries(
            "Finished by reason (vLLM)",
            [(rate("vllm:request_success_total", "zone, finished_reason", sel), "{{zone}} {{finished_reason}}")],
            "reqps",
            w=8,
        ),
        timeseries(
            "Requests/s by population",
            [(rate("grid_requests_total", "population", sel), "{{population}}")],
            "reqps",
            w=8,
        ),
        timeseries(
            "Retries by reason",
            [(rate("grid_retries_total", "zone, reason", sel), "{{zone}} {{reason}}")],
            "reqps",
            w=8,
        ),
        up_timeline("Up / down", f"max by (zone) (grid_zone_up{sel})", w=8),
        timeseries("Load-report age", [(f"max by (zone) (grid_load_report_age_seconds{sel})", "{{zone}}")], "s", w=8),
        timeseries(
            "Cost (USD/h) and carbon (kg CO2e/h)",
            [
                (f"{rate('grid_cost_usd_total', 'zone', sel)} * 3600", "{{zone}} USD/h"),
                (f"{rate('grid_carbon_grams_total', 'zone', sel)} * 3600 / 1000", "{{zone}} kg CO2e/h"),
            ],
            w=12,
        ),
        timeseries(
            "Preemptions/s",
            [(rate("vllm:num_preemptions_total", "zone", sel), "{{zone}}")],
            w=12,
        ),
    ]
    return dashboard("grid-zone-detail", "Zone detail", panels, variables)


DASHBOARDS = {"grid-overview.json": grid_overview, "zone-detail.json": zone_detail}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs from the build")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / name
        text = render(build)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.is_file() else None
            if current != text:
                stale.append(path)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        for path in stale:
            print(f"stale: {path} (run: python deploy/grafana/build_dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
