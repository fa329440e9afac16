"""Across seeds: mean and 95% t-interval of each metric per (load, policy); the Markdown table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as st

from grid.bench.cache_metrics import cache_metrics

# (key, column title, unit transform, format)
METRICS: list[tuple[str, str]] = [
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p99_ms", "TTFT p99 ms"),
    ("ttft_mean_ms", "TTFT mean ms"),
    ("e2e_p99_s", "E2E p99 s"),
    ("slo_attainment_pct", "SLO %"),
    ("rejected_pct", "rejected %"),
    ("cross_region_pct", "cross-region %"),
    ("usd_per_1m_tokens", "$/1M tok (fleet)"),
    ("usage_usd_per_1m_tokens", "$/1M tok (used, tariff)"),
    ("fleet_usd", "fleet $ (tariff)"),
    ("carbon_g_per_1m_tokens", "gCO2/1M tok"),
]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def run_metrics(run: dict[str, Any]) -> dict[str, float]:
    g = run["report"]["grid"]
    arrivals = g["arrivals"] or 0
    return {
        "ttft_p50_ms": _num(g["ttft_s"]["p50"]) * 1000,
        "ttft_p99_ms": _num(g["ttft_s"]["p99"]) * 1000,
        "ttft_mean_ms": _num(run["ttft_mean_s"]) * 1000,
        "e2e_p99_s": _num(g["e2e_s"]["p99"]),
        "slo_attainment_pct": _num(g["slo_attainment"]) * 100,
        "rejected_pct": 100.0 * g["rejected"] / arrivals if arrivals else math.nan,
        "cross_region_pct": _num(g["cross_region_share"]) * 100,
        "usd_per_1m_tokens": _num(g["usd_per_1m_output_tokens"]),
        "usage_usd_per_1m_tokens": _num(run["usage_usd_per_1m_output_tokens"]),
        "carbon_g_per_1m_tokens": _num(g["carbon_g_per_1m_output_tokens"]),
        "fleet_usd": _num(g.get("cost_usd")),  # replicas paid for over the run, at the tariff (autoscaled or not)
        "utilization_pct": _num(g["utilization"]) * 100,
        "offered_load_pct": _num(g["offered_load"]) * 100,
        **cache_metrics(run.get("cache")),
    }


def mean_ci(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and the half-width of its t-interval (NaN half-width for a single seed)."""
    x = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0}
    if len(x) == 1:
        return {"mean": float(x[0]), "ci95": math.nan, "n": 1}
    half = float(st.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": float(x.mean()), "ci95": half, "n": int(len(x))}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{load: {policy: {metric: {mean, ci95, n}}}} over seeds."""
    groups: dict[tuple[float, str], list[dict[str, float]]] = {}
    for run in runs:
        groups.setdefault((run["load"], run["policy"]), []).append(run_metrics(run))
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (load, policy), rows in groups.items():
        out.setdefault(f"{load:g}", {})[policy] = {k: mean_ci([r[k] for r in rows]) for k in rows[0]}
    return out


def _cell(m: dict[str, float]) -> str:
    if math.isnan(m["mean"]):
        return "-"
    digits = 0 if abs(m["mean"]) >= 100 else (1 if abs(m["mean"]) >= 10 else 2)
    text = f"{m['mean']:.{digits}f}"
    return text if math.isnan(m["ci95"]) else f"{text} ± {m['ci95']:.{digits}f}"


BOUND_ROWS = (
    ("no_load", "**fluid bound** (no queueing: a strict lower bound)"),
    ("load_aware", "**load-aware reference** (best static split, zone TTFT(u))"),
)


def _bound_ratios(by_policy: dict[str, dict], bounds: dict[str, dict]) -> list[str]:
    """Each policy's mean TTFT over the fluid bound and over the load-aware reference ("p 1.49 / 0.97"),
    or nothing when either is infeasible."""
    values = [bounds.get(model, {}).get("mean_ttft_s") for model, _ in BOUND_ROWS]
    if any(v is None for v in values):
        return []
    means_s = {policy: m["ttft_mean_ms"]["mean"] / 1000 for policy, m in by_policy.items()}
    return [f"{p} {s / values[0]:.2f} / {s / values[1]:.2f}" for p, s in means_s.items() if not math.isnan(s)]


def markdown(summary: dict, bounds: dict[str, dict], meta: dict[str, Any]) -> str:
    lines = [
        f"### `{meta['scenario']}` — {meta['seeds']} seeds × {meta['duration_s']:.0f} s simulated",
        "",
        "Mean ± 95% t-interval half-width over seeds (common random numbers: every policy sees the same "
        "requests per seed). Fleet cost is the provisioned GPUs (the same for every router); "
        "used cost charges utilized GPU-time at each region's time-of-use tariff.",
        "",
    ]
    for load, by_policy in summary.items():
        any_row = next(iter(by_policy.values()))
        lines.append(f"**load × {load}** (offered {any_row['offered_load_pct']['mean']:.0f}% of capacity)")
        lines.append("")
        lines.append("| policy | " + " | ".join(title for _, title in METRICS) + " |")
        lines.append("|---|" + "---:|" * len(METRICS))
        for policy, metrics in by_policy.items():
            lines.append(f"| {policy} | " + " | ".join(_cell(metrics[k]) for k, _ in METRICS) + " |")
        for model, title in BOUND_ROWS:
            bound = bounds.get(load, {}).get(model)
            if bound is None:
                continue
            cells = ["-"] * len(METRICS)
            if bound.get("mean_ttft_s") is not None:
                cells[2] = f"{bound['mean_ttft_s'] * 1000:.0f}"
                cells[6] = f"{bound['cross_region_share'] * 100:.1f}"
            else:
                cells[2] = "infeasible"
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        ratios = _bound_ratios(by_policy, bounds.get(load, {}))
        if ratios:
            lines += ["", "Mean TTFT ÷ fluid bound / ÷ load-aware reference: " + "; ".join(ratios) + "."]
        lines.append("")
        lines += _cache_table(by_policy)
    return "\n".join(lines)


CACHE_METRICS: list[tuple[str, str]] = [
    ("cache_hit_pct", "cache hit %"),
    ("hit_of_bound_pct", "% of bound"),
    ("prefill_saved_mtok", "prefill saved M tok"),
    ("cross_region_pct", "cross-region %"),
    ("busiest_admitted", "busiest ÷ mean util (admitted)"),
    ("busiest_done", "(work done)"),
]


def _cache_table(by_policy: dict[str, dict]) -> list[str]:
    """Prefix-cache figures beside the single-global-cache bound, for workloads with prefix information."""
    with_cache = {p: m for p, m in by_policy.items() if not math.isnan(m["bound_hit_pct"]["mean"])}
    if not with_cache:
        return []
    lines = [
        "Prefix caches (share of completed requests' prompt tokens served from cache; the bound is one "
        "infinite cache over the same arrivals; utilization admitted counts each prompt's whole prefill, "
        "work done takes the cached part out):",
        "",
        "| policy | " + " | ".join(title for _, title in CACHE_METRICS) + " |",
        "|---|" + "---:|" * len(CACHE_METRICS),
    ]
    for policy, metrics in with_cache.items():
        lines.append(f"| {policy} | " + " | ".join(_cell(metrics[k]) for k, _ in CACHE_METRICS) + " |")
    bound = next(iter(with_cache.values()))["bound_hit_pct"]
    cells = [_cell(bound), "100", *["-"] * (len(CACHE_METRICS) - 2)]
    lines += ["| **single global cache** (bound) | " + " | ".join(cells) + " |", ""]
    return lines
