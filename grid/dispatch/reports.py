"""A zone's load report into the router's view: one rule for both drivers.

The view keeps what the zone said and when; `sent_since_report` restarts at 0 (what the router sends
after the report is its own, exact count; what was on its way when the report was taken is in
neither, in both drivers alike).
"""

from __future__ import annotations

from grid.routing.view import ZoneView


def apply_load_report(
    zv: ZoneView,
    outstanding: int,
    waiting: int,
    kv_usage: float,
    utilization: float,
    ttft_ewma_s: float,
    report_s: float,
) -> None:
    zv.outstanding = outstanding
    zv.waiting = waiting
    zv.running = outstanding - waiting
    zv.kv_usage = kv_usage
    zv.utilization = utilization
    zv.zone_ttft_s = ttft_ewma_s
    zv.report_s = report_s
    zv.sent_since_report = 0
