"""What `grid plan` plans against: the SLO bounds given on the command line, the busiest instant of
the scenario's demand (held constant while planning) and the contingencies to survive."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from grid.errors import GridInputError
from grid.scenario import Scenario
from grid.units import parse_duration_s

SLO_KEYS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}
QUANTILES = ("p50", "p90", "p99")
ALL_UP = "all up"


def parse_slo(text: str) -> dict[str, float]:
    """`ttft_p99=1s[,tpot_p99=100ms,...]` → {"ttft_p99": 1.0, ...} (metrics ttft/tpot/e2e; p50/p90/p99)."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        metric, _, quantile = key.strip().partition("_")
        if not sep or metric not in SLO_KEYS or quantile not in QUANTILES:
            raise GridInputError(
                f"--slo {item!r}: expected METRIC_QUANTILE=DURATION with METRIC one of "
                f"{', '.join(SLO_KEYS)} and QUANTILE one of {', '.join(QUANTILES)}, e.g. ttft_p99=1s"
            )
        try:
            seconds = parse_duration_s(value.strip())
        except ValueError as exc:
            raise GridInputError(f"--slo {item!r}: {exc}") from None
        if not seconds > 0:
            raise GridInputError(f"--slo {item!r}: the bound must be > 0")
        out[key.strip()] = seconds
    if not out:
        raise GridInputError("--slo: give at least one bound, e.g. ttft_p99=1s")
    return out


@dataclass(frozen=True)
class Peak:
    t_s: float  # since the scenario's start
    utc: dt.datetime
    rates_rps: np.ndarray  # per population
    total_rps: float


def peak_demand(scenario: Scenario, step_s: float = 60.0) -> Peak:
    """The busiest instant of the scenario's day by the demand model's rates (flash crowds included)."""
    from grid.demand.arrivals import DemandModel

    if scenario.demand.trace is not None:
        raise GridInputError(
            "demand.trace: grid plan needs the demand model's rates; this scenario replays a trace "
            "(plan on a Poisson scenario with the trace's rate, or sweep the trace with grid sweep)"
        )
    model = DemandModel(scenario.demand, scenario.populations)
    horizon = max(86_400.0, max((c.at_s + c.duration_s for c in scenario.demand.flash_crowds), default=0.0))
    times = set(np.arange(0.0, horizon, step_s).tolist())
    times |= {t for c in scenario.demand.flash_crowds for t in (c.at_s, c.at_s + c.duration_s / 2)}
    best_t, best = 0.0, None
    for t in sorted(times):
        rates = model.rates_rps(t)
        if best is None or rates.sum() > best.sum() + 1e-9:
            best_t, best = t, rates
    assert best is not None
    start = scenario.demand.start_utc
    return Peak(best_t, start + dt.timedelta(seconds=best_t), best, float(best.sum()))


def peak_overrides(scenario: Scenario, peak: Peak) -> list[tuple[str, Any]]:
    """Hold the peak's per-population rates constant; no diurnal drift, flash crowds or faults."""
    out: list[tuple[str, Any]] = [
        ("demand.rate_rps", peak.total_rps),
        ("demand.scale", 1.0),
        ("demand.diurnal", None),
        ("demand.flash_crowds", []),
        ("faults", []),
    ]
    share = peak.rates_rps / peak.total_rps if peak.total_rps > 0 else peak.rates_rps
    out += [(f"populations.{p}.demand_share", float(s)) for p, s in zip(scenario.populations, share, strict=True)]
    return out


def contingencies(scenario: Scenario, mode: str) -> list[tuple[str, str | None]]:
    """(name, region down) pairs: every region up, then (for n-1) each region down in turn."""
    out: list[tuple[str, str | None]] = [(ALL_UP, None)]
    if mode == "n-1":
        out += [(f"{region} down", region) for region in scenario.regions]
    elif mode != "none":
        raise GridInputError(f"--contingency {mode!r}: expected n-1 or none")
    return out
