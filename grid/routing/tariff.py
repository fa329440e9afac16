"""Compute priced like electricity: a region's GPU-hour price by local hour (a time-of-use tariff).

The scenario gives each region one list price (`price_usd_per_gpu_hour`, on-demand). Spot and
reserved-capacity markets move with demand, which follows the local day, so we shape the list price
like a three-band time-of-use electricity tariff (the shape of e.g. UK Economy 7 / German HT-NT and
most utility TOU plans):

    off-peak  00:00–07:00 local  × 0.70
    shoulder  07:00–17:00 local  × 1.00
    peak      17:00–22:00 local  × 1.35
    shoulder  22:00–24:00 local  × 1.00

The daily mean is (7·0.70 + 12·1.00 + 5·1.35)/24 ≈ 0.985 of the list price, so a run that uses a region
evenly over a day pays about its list price. Pure functions: no clock, no state.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

OFF_PEAK_FACTOR = 0.70
PEAK_FACTOR = 1.35
OFF_PEAK_HOURS = (0.0, 7.0)
PEAK_HOURS = (17.0, 22.0)


def tariff_factor(local_hour: float) -> float:
    """Price multiplier at a local hour of day (0 ≤ hour < 24; other values wrap)."""
    hour = local_hour % 24.0
    if OFF_PEAK_HOURS[0] <= hour < OFF_PEAK_HOURS[1]:
        return OFF_PEAK_FACTOR
    if PEAK_HOURS[0] <= hour < PEAK_HOURS[1]:
        return PEAK_FACTOR
    return 1.0


def price_usd_per_gpu_hour(base_usd_per_gpu_hour: float, local_hour: float) -> float:
    """A region's GPU-hour price at a local hour, from its list (base) price."""
    return base_usd_per_gpu_hour * tariff_factor(local_hour)


@lru_cache(maxsize=4096)
def _utc_offset_h(tz: str, utc_hour_index: int) -> float:
    """Offset of `tz` from UTC (hours) during one UTC hour (cached: DST changes on the hour)."""
    moment = dt.datetime.fromtimestamp(utc_hour_index * 3600, tz=dt.UTC)
    offset = moment.astimezone(zoneinfo.ZoneInfo(tz)).utcoffset()
    return offset.total_seconds() / 3600.0 if offset is not None else 0.0


def local_hour(start_utc: dt.datetime | None, now_s: float, tz: str) -> float:
    """Local hour of day in `tz` at `now_s` seconds after `start_utc` (UTC midnight when unknown)."""
    epoch_s = (start_utc.timestamp() if start_utc is not None else 0.0) + now_s
    return (epoch_s / 3600.0 + _utc_offset_h(tz, int(epoch_s // 3600))) % 24.0
