"""Run statistics, defined once and fed by both drivers (simulated and live).

Per finished request the drivers append a few numbers to buffers; every `FLUSH_EVERY` requests the
buffers are binned with NumPy into log-spaced histograms (1% relative resolution) per population and
per zone. Memory is fixed by the number of groups, not the number of requests: the histograms are
kept per population and per zone (populations + zones rows, not populations × zones: 90 zones and 60
populations would need 270 MB), the counts per (population, zone).

Metric definitions (vLLM's, client side: network round trip included):
TTFT = first token at client − send; TPOT = (E2E − TTFT) / (output_tokens − 1);
E2E = last token at client − send; goodput = requests that finish meeting every SLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from grid.scenario import Slo

FLUSH_EVERY: Final = 65_536
_LOG_BASE = math.log(1.01)
_V_MIN_S = 1e-4
_N_BUCKETS = int(math.ceil(math.log(1e5 / _V_MIN_S) / _LOG_BASE)) + 1
METRICS = ("ttft_s", "tpot_s", "e2e_s")
QUANTILES = (0.5, 0.9, 0.99)


def _bucket_upper_s() -> np.ndarray:
    return _V_MIN_S * np.exp(_LOG_BASE * (np.arange(_N_BUCKETS) + 1))


_UPPER_S = _bucket_upper_s()

# What a RunStats holds beyond its constructor's arguments (see `RunStats.__reduce__`).
_STATE = (
    "arrivals", "rejected", "context_rejected", "failed", "completed", "retries", "good", "output_tokens",
    "prompt_tokens", "cached_tokens", "hist_by_population", "hist_by_zone", "_buf_group", "_buf", "_buf_tokens",
    "_buf_prompt", "_buf_cached",
)  # fmt: skip


class RunStats:
    """Counts and latency histograms per population and per zone."""

    def __init__(self, n_populations: int, n_zones: int, slo: Slo) -> None:
        self.slo = slo
        self.n_populations = n_populations
        self.n_zones = n_zones
        self.slo_ttft_s = slo.ttft_s
        self.slo_tpot_s = slo.tpot_s
        self.slo_e2e_s = slo.e2e_s if slo.e2e_s is not None else math.inf
        self.arrivals = [0] * n_populations
        # Ended requests by (population, zone); zone -1 (never routed) is the last column.
        self.rejected = np.zeros((n_populations, n_zones + 1), dtype=np.int64)
        self.context_rejected = np.zeros(n_populations, dtype=np.int64)  # of those: prompt over the context
        self.failed = np.zeros((n_populations, n_zones + 1), dtype=np.int64)
        self.completed = np.zeros((n_populations, n_zones), dtype=np.int64)
        # Retries by (population, zone the failed attempt was on): attempts tried again elsewhere.
        # Not an outcome: a retried request still ends once, as completed, rejected or failed.
        self.retries = np.zeros((n_populations, n_zones), dtype=np.int64)
        self.good = np.zeros((n_populations, n_zones), dtype=np.int64)
        self.output_tokens = np.zeros((n_populations, n_zones), dtype=np.int64)
        self.prompt_tokens = np.zeros((n_populations, n_zones), dtype=np.int64)
        self.cached_tokens = np.zeros((n_populations, n_zones), dtype=np.int64)  # prompt tokens from prefix caches
        self.hist_by_population = np.zeros((len(METRICS), n_populations, _N_BUCKETS), dtype=np.int64)
        self.hist_by_zone = np.zeros((len(METRICS), n_zones, _N_BUCKETS), dtype=np.int64)
        self._buf_group: list[int] = []
        self._buf: tuple[list[float], list[float], list[float]] = ([], [], [])
        self._buf_tokens: list[int] = []
        self._buf_prompt: list[int] = []
        self._buf_cached: list[int] = []

    # Copies (the live gateway's window snapshots) and pickles go through the constructor and this state:
    # compiled (`make native`), a RunStats has no instance dict for the default protocol to fill.
    def __reduce__(self) -> tuple[type[RunStats], tuple[int, int, Slo], dict[str, Any]]:
        state = {name: getattr(self, name) for name in _STATE}
        return RunStats, (self.n_populations, self.n_zones, self.slo), state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def finished(
        self,
        population: int,
        zone: int,
        ttft_s: float,
        tpot_s: float,
        e2e_s: float,
        prompt: int,
        output: int,
        cached: int = 0,
    ) -> None:
        """A completed request; `tpot_s` is NaN for one-token answers (no inter-token time); `cached`:
        its prompt tokens served from its zone's prefix cache."""
        self._buf_group.append(population * self.n_zones + zone)
        ttft, tpot, e2e = self._buf
        ttft.append(ttft_s)
        tpot.append(tpot_s)
        e2e.append(e2e_s)
        self._buf_tokens.append(output)
        self._buf_prompt.append(prompt)
        self._buf_cached.append(cached)
        if len(ttft) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._buf_group:
            return
        groups = np.asarray(self._buf_group, dtype=np.int64)
        n_groups = self.n_populations * self.n_zones
        values = [np.asarray(b, dtype=float) for b in self._buf]
        populations, zones = np.divmod(groups, self.n_zones)
        for m, v in enumerate(values):
            ok = ~np.isnan(v)
            idx = np.clip(
                (np.log(np.maximum(v[ok], _V_MIN_S) / _V_MIN_S) / _LOG_BASE).astype(np.int64), 0, _N_BUCKETS - 1
            )
            for hist, group in ((self.hist_by_population, populations), (self.hist_by_zone, zones)):
                rows = hist.shape[1]
                hist[m] += np.bincount(group[ok] * _N_BUCKETS + idx, minlength=rows * _N_BUCKETS).reshape(rows, -1)
        ttft, tpot, e2e = values
        good = (ttft <= self.slo_ttft_s) & ~(tpot > self.slo_tpot_s) & (e2e <= self.slo_e2e_s)
        self.completed += np.bincount(groups, minlength=n_groups).reshape(self.completed.shape)
        self.good += np.bincount(groups, weights=good, minlength=n_groups).astype(np.int64).reshape(self.good.shape)
        tokens = np.asarray(self._buf_tokens, dtype=float)
        self.output_tokens += (
            np.bincount(groups, weights=tokens, minlength=n_groups).astype(np.int64).reshape(self.output_tokens.shape)
        )
        prompt = np.asarray(self._buf_prompt, dtype=float)
        self.prompt_tokens += (
            np.bincount(groups, weights=prompt, minlength=n_groups).astype(np.int64).reshape(self.prompt_tokens.shape)
        )
        cached = np.asarray(self._buf_cached, dtype=float)
        self.cached_tokens += (
            np.bincount(groups, weights=cached, minlength=n_groups).astype(np.int64).reshape(self.cached_tokens.shape)
        )
        self._buf_group = []
        self._buf = ([], [], [])
        self._buf_tokens = []
        self._buf_prompt = []
        self._buf_cached = []

    def quantiles(self, metric: str, populations: slice | list[int], zones: slice | list[int]) -> dict[str, float]:
        """p50/p90/p99 (bucket upper edges) over the given populations across every zone, or the given
        zones across every population; NaN when empty."""
        return quantiles_from_counts(self.counts(metric, populations, zones))

    def counts(self, metric: str, populations: slice | list[int], zones: slice | list[int]) -> np.ndarray:
        """The histogram (counts per bucket) of `metric` over populations × zones, one side whole."""
        m = METRICS.index(metric)
        pops = np.arange(self.n_populations)[populations]
        zone_ids = np.arange(self.n_zones)[zones]
        if len(set(zone_ids.tolist())) == self.n_zones:
            return self.hist_by_population[m, pops].sum(axis=0)
        if len(set(pops.tolist())) == self.n_populations:
            return self.hist_by_zone[m, zone_ids].sum(axis=0)
        raise ValueError("latency quantiles are kept per population and per zone: take every zone or every population")


def quantiles_from_counts(counts: np.ndarray) -> dict[str, float]:
    total = int(counts.sum())
    if total == 0:
        return {f"p{round(q * 100)}": math.nan for q in QUANTILES}
    cumulative = np.cumsum(counts)
    return {
        f"p{round(q * 100)}": float(_UPPER_S[int(np.searchsorted(cumulative, q * total, side="left"))])
        for q in QUANTILES
    }


@dataclass
class GroupSummary:
    """One row of the report: a population, a zone, or the whole grid."""

    name: str
    arrivals: int = 0
    completed: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    slo_attainment: float = math.nan
    ttft_s: dict[str, float] = field(default_factory=dict)
    tpot_s: dict[str, float] = field(default_factory=dict)
    e2e_s: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # figures, and a few names (home_region, region)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "arrivals": self.arrivals,
            "completed": self.completed,
            "rejected": self.rejected,
            "failed": self.failed,
            "retries": self.retries,
            "slo_attainment": _clean(self.slo_attainment),
            "ttft_s": {k: _clean(v) for k, v in self.ttft_s.items()},
            "tpot_s": {k: _clean(v) for k, v in self.tpot_s.items()},
            "e2e_s": {k: _clean(v) for k, v in self.e2e_s.items()},
            **{k: _clean(v) for k, v in self.extra.items()},
        }


def _clean(value: object) -> object:
    """JSON has no NaN: empty groups report null."""
    return None if isinstance(value, float) and math.isnan(value) else value
