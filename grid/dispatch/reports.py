"""A zone's load report into the router's view: one rule for both drivers.

The view keeps what the zone said and when; `sent_since_report` restarts at 0 (what the router sends
after the report is its own, exact count; what was on its way when the report was taken is in
neither, in both drivers alike).

A report may carry the zone's prefix-cache summary (`Zone.cached_units`: containers of the unit
hashes its caches hold, as KV events tell llm-d's and Dynamo's routers). It is taken when the report
is and ages with it; a report without one (None) leaves the last summary in place, so a driver may
send it less often than load (`cached_units_s` says how old it is). A zone that restarts reports `()`.
"""

from __future__ import annotations

from collections.abc import Container, Hashable

from grid.routing.view import ZoneView


def apply_load_report(
    zv: ZoneView,
    outstanding: int,
    waiting: int,
    kv_usage: float,
    utilization: float,
    ttft_ewma_s: float,
    report_s: float,
    cached_units: tuple[Container[Hashable], ...] | None = None,
) -> None:
    zv.outstanding = outstanding
    zv.waiting = waiting
    zv.running = outstanding - waiting
    zv.kv_usage = kv_usage
    zv.utilization = utilization
    zv.zone_ttft_s = ttft_ewma_s
    zv.report_s = report_s
    zv.sent_since_report = 0
    if cached_units is not None:
        zv.cached_units = cached_units
        zv.cached_units_s = report_s


def apply_replicas(zv: ZoneView, serving: int, warming: int, draining: int, spot: int | None = None) -> bool:
    """A zone's fleet into the router's view (part of its load report in both drivers): capacity and
    KV room follow the serving replicas; `spot` of those paid for are spot (None: as last reported).
    True when whether it serves at all changed (candidates)."""
    was_serving = zv.replicas > 0
    if spot is not None:
        zv.spot = spot
    zv.replicas = serving
    zv.warming = warming
    zv.draining = draining
    zv.capacity_rps = zv.capacity_rps_per_replica * serving
    zv.kv_cache_tokens = zv.kv_tokens_per_replica * serving
    return was_serving != (serving > 0)
