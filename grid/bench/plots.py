"""PNG plots of a bench (matplotlib, Agg backend: no display needed).

- `ttft_cdf.png`: TTFT CDF per policy at the first load, from the simulator's full TTFT histograms
  (1%-wide log buckets over every completed request, pooled over seeds) — not from three quantiles.
- `p99_vs_load.png`: p99 TTFT (mean ± 95% CI over seeds) per policy versus load.
- `zone_utilization.png`: each zone's reported utilization over time, one panel per policy (seed 0,
  first load), sampled every 10 simulated seconds from the router's view.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from grid.bench.runner import bucket_mid_s
from grid.plotting import cost_vs_slo, pyplot


def plot_all(runs: list[dict[str, Any]], summary: dict, out: Path, title: str) -> list[Path]:
    return [
        _ttft_cdf(runs, out / "ttft_cdf.png", title),
        _p99_vs_load(summary, out / "p99_vs_load.png", title),
        _utilization(runs, out / "zone_utilization.png", title),
        _cost_vs_slo(summary, out / "cost_vs_slo.png", title),
    ]


def _policies(runs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["policy"] for r in runs))


def _ttft_cdf(runs, path: Path, title: str) -> Path:
    plt = pyplot()
    first_load = runs[0]["load"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for policy in _policies(runs):
        counts: dict[int, int] = {}
        for r in runs:
            if r["policy"] == policy and r["load"] == first_load:
                for b, c in zip(r["ttft_hist"]["bucket"], r["ttft_hist"]["count"], strict=True):
                    counts[b] = counts.get(b, 0) + c
        if not counts:
            continue
        buckets = np.array(sorted(counts))
        cum = np.cumsum([counts[b] for b in buckets]) / sum(counts.values())
        ax.step(bucket_mid_s(buckets) * 1000, cum, where="post", label=policy)
    ax.set_xscale("log")
    ax.set_xlabel("TTFT at the client (ms, log)")
    ax.set_ylabel("share of completed requests")
    ax.axhline(0.99, color="grey", lw=0.5, ls=":")
    ax.set_title(f"{title}: TTFT CDF (load × {first_load:g}, all seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cost_vs_slo(summary: dict, path: Path, title: str) -> Path:
    """Each policy (and autoscaler) at each load: what its fleet cost against its SLO attainment."""
    points = [
        (m["fleet_usd"]["mean"], m["slo_attainment_pct"]["mean"], f"{policy} ×{load}")
        for load in sorted(summary, key=float)
        for policy, m in summary[load].items()
        if not (math.isnan(m["fleet_usd"]["mean"]) or math.isnan(m["slo_attainment_pct"]["mean"]))
    ]
    return cost_vs_slo(points, path, title)


def _p99_vs_load(summary: dict, path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    loads = sorted(summary, key=float)
    policies = list(dict.fromkeys(p for load in loads for p in summary[load]))
    for policy in policies:
        xs, ys, es = [], [], []
        for load in loads:
            m = summary[load].get(policy, {}).get("ttft_p99_ms")
            if m and not math.isnan(m["mean"]):
                xs.append(float(load))
                ys.append(m["mean"])
                es.append(0.0 if math.isnan(m["ci95"]) else m["ci95"])
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=policy)
    ax.set_yscale("log")
    ax.set_xlabel("load (× the scenario's nominal arrival rate)")
    ax.set_ylabel("p99 TTFT (ms, log), mean ± 95% CI")
    ax.set_title(f"{title}: p99 TTFT versus load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _utilization(runs, path: Path, title: str) -> Path:
    plt = pyplot()
    first_load, seed = runs[0]["load"], min(r["seed"] for r in runs)
    chosen = [r for r in runs if r["load"] == first_load and r["seed"] == seed]
    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, run in zip(axes.flat, chosen, strict=False):
        series = run["utilization_series"]
        samples = np.array(series["samples"], dtype=float)
        if len(samples):
            for i, zone in enumerate(series["zones"]):
                ax.plot(samples[:, 0] / 60, samples[:, i + 1] * 100, lw=1, label=zone)
        ax.set_title(run["policy"], fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(chosen) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    for ax in axes[:, 0]:
        ax.set_ylabel("utilization %")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(9, len(labels)), fontsize=7)
    fig.suptitle(f"{title}: zone utilization (router's view, seed {seed}, load × {first_load:g})")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
