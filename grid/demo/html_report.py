"""The demo's self-contained HTML report: TTFT over time live vs simulated with the failover window
shaded, utilization by region, the routing flows on a world map (Natural Earth land), and the
summary. Inline SVG only: the file opens anywhere, offline, with nothing to fetch."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from grid.demo.land_outline import land_rings
from grid.demo.timeline import Timeline
from grid.scenario import Scenario

LIVE, SIMULATED = "#1f77b4", "#ff7f0e"
CHART_W, CHART_H, PAD = 760, 220, 50
MAP_W, MAP_H = 900, 338  # longitudes −180..180, latitudes 75..−60 (where people and regions are)
MAP_NORTH, MAP_SOUTH = 75.0, -60.0


def fault_windows(scenario: Scenario) -> list[tuple[float, float, str]]:
    """(start s, end s, label) of each zone-down fault, merged per start time."""
    spans: dict[tuple[float, float], list[str]] = {}
    for fault in scenario.faults:
        if fault.kind == "zone_down":
            end = fault.at_s + (fault.duration_s if fault.duration_s is not None else math.inf)
            spans.setdefault((fault.at_s, end), []).append(fault.zone or "?")
    return [(a, b, ", ".join(zones) + " down") for (a, b), zones in sorted(spans.items())]


def _dash(dash: str) -> str:
    return f' stroke-dasharray="{dash}"' if dash else ""


def _polyline(points: Sequence[tuple[float, float]], color: str, dash: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points if y == y)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2"{_dash(dash)} points="{pts}"/>'


def line_chart(
    title: str,
    series: list[tuple[str, str, str, list[tuple[float, float]]]],
    duration_s: float,
    y_label: str,
    shaded: list[tuple[float, float, str]],
) -> str:
    """An SVG chart of (label, colour, dash, [(t s, value)]) lines over [0, duration_s]."""
    values = [v for *_, pts in series for _, v in pts if v == v]
    top = max(values) * 1.1 if values else 1.0
    w, h = CHART_W - 2 * PAD, CHART_H - 2 * PAD

    def xy(t: float, v: float) -> tuple[float, float]:
        return PAD + w * t / duration_s, PAD + h * (1 - v / top) if v == v else math.nan

    parts = [f'<svg width="{CHART_W}" height="{CHART_H}" font-family="sans-serif" font-size="11">']
    for a, b, label in shaded:
        x0, x1 = xy(a, 0)[0], xy(min(b, duration_s), 0)[0]
        parts.append(f'<rect x="{x0:.1f}" y="{PAD}" width="{x1 - x0:.1f}" height="{h}" fill="#d62728" opacity="0.12"/>')
        parts.append(f'<text x="{x0 + 3:.1f}" y="{PAD + 12}" fill="#d62728">{html.escape(label)}</text>')
    parts.append(f'<rect x="{PAD}" y="{PAD}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for i in range(5):
        v = top * i / 4
        y = xy(0, v)[1]
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for t in range(0, int(duration_s) + 1, 30):
        parts.append(f'<text x="{xy(t, 0)[0]:.1f}" y="{PAD + h + 14}" text-anchor="middle">{t} s</text>')
    parts.append(f'<text x="{PAD}" y="{PAD - 24}" font-size="13" font-weight="bold">{html.escape(title)}</text>')
    parts.append(f'<text x="{PAD}" y="{PAD - 8}">{html.escape(y_label)}</text>')
    for i, (label, color, dash, pts) in enumerate(series):
        parts.append(_polyline([xy(t, v) for t, v in pts], color, dash))
        x = PAD + w - 150
        y = PAD + 14 + 14 * i
        parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}" stroke="{color}"{_dash(dash)}/>')
        parts.append(f'<text x="{x + 24}" y="{y}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _map_xy(lon: float, lat: float) -> tuple[float, float]:
    """Equirectangular: longitude and latitude straight onto x and y."""
    return (lon + 180.0) / 360.0 * MAP_W, (MAP_NORTH - lat) / (MAP_NORTH - MAP_SOUTH) * MAP_H


def _unwrapped(ring: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """A ring that crosses the antimeridian, made continuous and drawn once on each side (the SVG
    clips what falls outside); others as they are. Antarctica (south of the map) is left out."""
    if max(lat for _, lat in ring) < MAP_SOUTH:
        return []
    out, shift = [ring[0]], 0.0
    for (a, _), (b, lat) in zip(ring, ring[1:], strict=False):
        shift += -360.0 if b - a > 180 else 360.0 if a - b > 180 else 0.0
        out.append((b + shift, lat))
    if not any(abs(lon) > 180 for lon, _ in out):
        return [ring]
    return [out, [(lon - 360.0, lat) for lon, lat in out], [(lon + 360.0, lat) for lon, lat in out]]


def flow_map(scenario: Scenario, timeline: Timeline, title: str) -> str:
    """Land, regions (circles sized by requests served), populations (dots) and a line per population →
    region flow, its width by the flow's share of the run; flows away from home drawn in red."""
    world = timeline.world
    parts = [
        f'<svg width="{MAP_W}" height="{MAP_H}" font-family="sans-serif" font-size="10">',
        f'<rect width="{MAP_W}" height="{MAP_H}" fill="#eef4fa"/>',
    ]
    for ring in land_rings():
        for drawn in _unwrapped(ring):
            pts = " ".join("{:.1f},{:.1f}".format(*_map_xy(lon, lat)) for lon, lat in drawn)
            parts.append(f'<polygon points="{pts}" fill="#d9d9d4" stroke="#bbb" stroke-width="0.5"/>')
    total = max(int(timeline.flows.sum()), 1)
    for p, pop_id in enumerate(world.population_ids):
        pop = scenario.populations[pop_id]
        x0, y0 = _map_xy(pop.lon, pop.lat)
        for r, region_id in enumerate(world.region_ids):
            count = int(timeline.flows[p, r])
            if not count:
                continue
            region = scenario.regions[region_id]
            x1, y1 = _map_xy(region.lon, region.lat)
            color = "#2c7fb8" if r == timeline.home_region[p] else "#d62728"
            width = 0.4 + 12 * count / total
            parts.append(
                f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{color}" '
                f'stroke-width="{width:.2f}" opacity="0.45"><title>{pop_id} → {region_id}: {count}</title></line>'
            )
        parts.append(f'<circle cx="{x0:.1f}" cy="{y0:.1f}" r="2" fill="#333"><title>{pop_id}</title></circle>')
    served = timeline.flows.sum(axis=0)
    labels: list[tuple[float, float]] = []  # where labels went: a close one moves down a line
    for r, region_id in sorted(enumerate(world.region_ids), key=lambda item: -scenario.regions[item[1]].lat):
        region = scenario.regions[region_id]
        x, y = _map_xy(region.lon, region.lat)
        radius = 4 + 14 * math.sqrt(served[r] / total)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="#31a354" opacity="0.8"/>')
        ly = y + 3
        while any(abs(ly - oy) < 12 and abs(x - ox) < 120 for ox, oy in labels):
            ly += 12
        labels.append((x, ly))
        parts.append(f'<text x="{x + 20:.1f}" y="{ly:.1f}">{html.escape(region.name)} {served[r]}</text>')
    parts.append(f'<text x="8" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>')
    parts.append(
        f'<text x="8" y="{MAP_H - 8}">blue: served in the home region · red: spilled to another region · '
        "land: Natural Earth 1:110m (public domain)</text></svg>"
    )
    return "\n".join(parts)


def ttft_series(timeline: Timeline, q: float) -> list[tuple[float, float]]:
    return [(w.start_s + timeline.window_s / 2, w.ttft_quantile_s(q) * 1000) for w in timeline.windows]


def utilization_series(timeline: Timeline) -> list[tuple[float, float]]:
    return [(w.start_s + timeline.window_s / 2, timeline.grid_utilization(w) * 100) for w in timeline.windows]


def render(
    scenario: Scenario,
    duration_s: float,
    live: Timeline,
    sim: Timeline,
    summary_lines: list[str],
    table_text: str,
) -> str:
    shaded = fault_windows(scenario)
    ttft = line_chart(
        "Time to first token, live vs simulated (per 10 s window)",
        [
            ("live p50", LIVE, "", ttft_series(live, 0.5)),
            ("live p99", LIVE, "5,3", ttft_series(live, 0.99)),
            ("simulated p50", SIMULATED, "", ttft_series(sim, 0.5)),
            ("simulated p99", SIMULATED, "5,3", ttft_series(sim, 0.99)),
        ],
        duration_s,
        "ms",
        shaded,
    )
    util = line_chart(
        "Utilization of the zones that are up",
        [("live", LIVE, "", utilization_series(live)), ("simulated", SIMULATED, "", utilization_series(sim))],
        duration_s,
        "%",
        shaded,
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>grid demo: {html.escape(scenario.name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}pre{{font-size:11px;
background:#f6f6f6;padding:8px;overflow-x:auto}}</style></head><body>
<h1>grid demo — {html.escape(scenario.name)}</h1>
<p>{html.escape(scenario.description or "")}</p>
<ul>{items}</ul>
{ttft}
{util}
{flow_map(scenario, live, "Where the live grid served each population")}
<h2>Summary</h2>
<pre>{html.escape(table_text)}</pre>
</body></html>
"""
