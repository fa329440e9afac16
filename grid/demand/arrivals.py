"""Open-loop arrivals: when each population sends requests, and how large they are.

Rates follow each population's local hour (follow the sun) and flash crowds; within a window the
rate is constant, so each window is an exact Poisson draw. Arrivals come in chunks of NumPy arrays so
the simulator never holds more than one chunk: memory does not grow with the run.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from grid.demand.sizes import SizeDistribution, SizeModel
from grid.scenario import Demand, Population, Sizes, SizeSpec

WINDOW_S = 10.0  # rates are re-evaluated every window; the diurnal curve is smooth at this scale

SizeSampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ArrivalChunk:
    """Requests in time order: arrival time (s), population index, prompt and output tokens."""

    arrival_s: np.ndarray
    population: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass(frozen=True)
class PrefixedChunk(ArrivalChunk):
    """… for workloads with prefix structure (sessions, traces with block hashes): each request's chain
    hashes of its prompt's full blocks (`Request.prefix_hashes`), and the tokens per block. (A subclass,
    so code that handles ArrivalChunk's four arrays field by field keeps working.)"""

    prefix_hashes: list[tuple[int, ...] | None]
    block_tokens: int


def diurnal_factor(
    local_hour: float | np.ndarray, peak_hour: float, trough_ratio: float, trough_hour: float = 4.0
) -> np.ndarray:
    """Demand relative to the daily mean at a local hour: half-cosines rising from the trough hour to
    the peak hour and falling back, so the trough sits at night, not 12 h after the peak. Mean 1."""
    hour = np.asarray(local_hour, dtype=float)
    rise_h = (peak_hour - trough_hour) % 24 or 24.0
    since_trough = (hour - trough_hour) % 24
    rising = 0.5 - 0.5 * np.cos(np.pi * since_trough / rise_h)
    falling = 0.5 + 0.5 * np.cos(np.pi * (since_trough - rise_h) / (24.0 - rise_h))
    swing = np.where(since_trough < rise_h, rising, falling)
    # Each half-cosine averages 1/2 over its span, so the daily mean of `swing` is exactly 1/2.
    return (trough_ratio + (1.0 - trough_ratio) * swing) / (trough_ratio + (1.0 - trough_ratio) * 0.5)


def utc_offsets_h(populations: list[Population], start_utc: dt.datetime) -> np.ndarray:
    """Each population's offset from UTC in hours at the start of the run (DST as on that date)."""
    return np.array(
        [start_utc.astimezone(zoneinfo.ZoneInfo(p.tz)).utcoffset().total_seconds() / 3600 for p in populations]
    )


class DemandModel:
    """Arrival rates per population over time; shares are normalized to sum to 1."""

    def __init__(self, demand: Demand, populations: dict[str, Population]) -> None:
        index = {population_id: i for i, population_id in enumerate(populations)}
        shares = np.array([p.demand_share for p in populations.values()], dtype=float)
        self.shares = shares / shares.sum()
        self.mean_rate_rps = demand.rate_rps * demand.scale
        self.diurnal = demand.diurnal
        start = demand.start_utc if demand.start_utc.tzinfo else demand.start_utc.replace(tzinfo=dt.UTC)
        self.start_hour_utc = start.hour + start.minute / 60 + start.second / 3600
        self.day_speed = demand.day_speed
        self.offsets_h = utc_offsets_h(list(populations.values()), start)
        self.crowds = [(index[c.population], c.at_s, c.at_s + c.duration_s, c.factor) for c in demand.flash_crowds]

    def rates_rps(self, t_s: float) -> np.ndarray:
        """Arrival rate of every population at time `t_s` since the start."""
        rates = self.mean_rate_rps * self.shares
        if self.diurnal is not None:
            local = (self.start_hour_utc + t_s * self.day_speed / 3600 + self.offsets_h) % 24
            d = self.diurnal
            rates = rates * diurnal_factor(local, d.peak_hour_local, d.trough_ratio, d.trough_hour_local)
        for pop, start, end, factor in self.crowds:
            if start <= t_s < end:
                rates = rates.copy()
                rates[pop] *= factor
        return rates

    def window_edges(self, duration_s: float) -> np.ndarray:
        """Window boundaries: every WINDOW_S (shorter for a day sped up past 60×, so that a window
        never spans more than 10 minutes of the day), plus every flash-crowd edge so rates are exact."""
        step_s = WINDOW_S / max(1.0, self.day_speed / 60.0)
        edges = set(np.arange(0.0, duration_s, step_s).tolist()) | {duration_s}
        edges |= {t for _, s, e, _ in self.crowds for t in (s, e) if 0 < t < duration_s}
        return np.array(sorted(edges))


def poisson_arrivals(
    model: DemandModel, sizes: SizeSampler, duration_s: float, rng: np.random.Generator
) -> Iterator[ArrivalChunk]:
    """Piecewise-constant-rate Poisson arrivals for all populations, one window per chunk."""
    return piecewise_poisson(model.rates_rps, model.window_edges(duration_s), sizes, rng)


def piecewise_poisson(
    rates_at: Callable[[float], np.ndarray], edges: np.ndarray, sizes: SizeSampler, rng: np.random.Generator
) -> Iterator[ArrivalChunk]:
    """Poisson arrivals whose per-population rate `rates_at(t)` is taken at each window's midpoint
    and held constant inside it: an exact draw for step rates, one chunk per window."""
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        rates = rates_at(0.5 * (start + end))
        n_pop = len(rates)
        counts = rng.poisson(rates * (end - start))
        total = int(counts.sum())
        if total == 0:
            continue
        times = start + rng.random(total) * (end - start)
        pops = np.repeat(np.arange(n_pop), counts)
        order = np.argsort(times, kind="stable")
        prompt, output = sizes(rng, total)
        yield ArrivalChunk(times[order], pops[order], prompt[order], output[order])


def size_sampler(sizes: Sizes) -> SizeSampler:
    """Joint sampler of (prompt, output) tokens from the scenario's size specs."""
    if sizes.prompt.dist == sizes.output.dist == "lognormal":
        model = SizeModel(_lognormal(sizes.prompt), _lognormal(sizes.output), sizes.rho)
        return model.sample
    prompt, output = _marginal(sizes.prompt), _marginal(sizes.output)
    return lambda rng, n: (prompt(rng, n), output(rng, n))


def mean_tokens(spec: SizeSpec) -> float:
    """Mean of a size spec (for capacity estimates)."""
    if spec.dist == "lognormal":
        return _lognormal(spec).mean
    if spec.dist == "fixed":
        return float(min(max(round(spec.mean), spec.min_tokens), spec.max_tokens))
    return float(spec.mean)


def spec_sampler(spec: SizeSpec) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Token counts (int64) from one size spec."""
    return _marginal(spec)


def _lognormal(spec: SizeSpec) -> SizeDistribution:
    return SizeDistribution(mu=spec.mu, sigma=spec.sigma, min_tokens=spec.min_tokens, max_tokens=spec.max_tokens)


def _marginal(spec: SizeSpec) -> Callable[[np.random.Generator, int], np.ndarray]:
    if spec.dist == "lognormal":
        return _lognormal(spec).sample
    if spec.dist == "fixed":
        value = min(max(round(spec.mean), spec.min_tokens), spec.max_tokens)
        return lambda rng, n: np.full(n, value, dtype=np.int64)
    # Geometric on {1, 2, ...} with this mean: the discrete twin of an exponential service time.
    p = 1.0 / spec.mean
    return lambda rng, n: np.minimum(rng.geometric(p, n), spec.max_tokens).astype(np.int64)
