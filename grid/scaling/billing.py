"""What a zone's fleet cost: its billing timeline priced at the region's time-of-use tariff.

`Zone.billing` (grid/serving/fleet.py) lists `(time, on-demand replicas, spot replicas)` paid for,
one entry per change. A replica costs `gpus_per_replica` × the region's price per GPU-hour at the
local hour (grid/routing/tariff.py), spot ones × (1 − discount). Integrated hour by hour, since the
tariff changes on the hour.
"""

from __future__ import annotations

import datetime as dt
import math

from grid.routing.tariff import local_hour, tariff_factor

S_PER_H = 3600.0


def replica_hours(billing: list[tuple[float, int, int]], end_s: float) -> tuple[float, float]:
    """Replica-hours paid for up to `end_s`: (on demand, spot)."""
    on_demand = spot = 0.0
    for (t, a, b), t_next in zip(billing, [*(entry[0] for entry in billing[1:]), end_s], strict=True):
        span_h = max(0.0, min(t_next, end_s) - t) / S_PER_H
        on_demand += a * span_h
        spot += b * span_h
    return on_demand, spot


def fleet_cost_usd(
    billing: list[tuple[float, int, int]],
    end_s: float,
    usd_per_replica_hour: float,
    tz: str,
    start_utc: dt.datetime | None,
    spot_discount: float,
) -> float:
    """What the timeline costs at the tariff (list price × the local hour's factor)."""
    total = 0.0
    epoch0_s = start_utc.timestamp() if start_utc is not None else 0.0
    for (t, a, b), t_next in zip(billing, [*(entry[0] for entry in billing[1:]), end_s], strict=True):
        t_next = min(t_next, end_s)
        while t < t_next:
            hour_end = (math.floor((epoch0_s + t) / S_PER_H) + 1) * S_PER_H - epoch0_s  # the tariff moves on the hour
            span = min(hour_end, t_next) - t
            factor = tariff_factor(local_hour(start_utc, t, tz))
            total += (a + b * (1.0 - spot_discount)) * usd_per_replica_hour * factor * span / S_PER_H
            t += span
    return total
