"""The plots of `grid sweep`: the heatmap over the first two varied fields and the latency-versus-load
curves with each curve's knee marked."""

from __future__ import annotations

from pathlib import Path

from grid.capacity.variations import Variation
from grid.plotting import cost_vs_slo, pyplot

LOAD_FIELDS = ("demand.scale", "demand.rate_rps")


def knee_index(x: list[float], y: list[float]) -> int | None:
    """The knee of a convex, rising latency-vs-load curve (Kneedle, Satopää et al. 2011): with both
    axes scaled to [0, 1], the point farthest below the chord's diagonal — where latency starts to
    climb. None for fewer than 3 points or a curve that never rises."""
    pts = sorted((a, b, i) for i, (a, b) in enumerate(zip(x, y, strict=True)) if a is not None and b is not None)
    if len(pts) < 3:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    dx, dy = xs[-1] - xs[0], max(ys) - min(ys)
    if dx <= 0 or dy <= 0:
        return None
    diff = [(a - xs[0]) / dx - (b - min(ys)) / dy for a, b in zip(xs, ys, strict=True)]
    best = max(range(len(pts)), key=lambda k: diff[k])
    return pts[best][2] if diff[best] > 0 else None


def plot_sweep(points, variations: list[Variation], out: Path, title: str, slo_ttft_s: float) -> list[Path]:
    files = [_latency_vs_load(points, variations, out / "latency_vs_load.png", title, slo_ttft_s)]
    if len(variations) >= 2:
        files.append(_heatmap(points, variations, out / "heatmap.png", title))
    files.append(_cost_vs_slo(points, variations, out / "cost_vs_slo.png", title))
    return files


def _cost_vs_slo(points, variations: list[Variation], path: Path, title: str) -> Path:
    """Every point's fleet cost against its SLO attainment (an autoscaler varied: which buys what)."""
    rows = [
        (
            row["cost_usd"],
            100 * row["slo_attainment"],
            ", ".join(f"{v.path.split('.')[-1]}={row[v.path]}" for v in variations),
        )
        for row in points
        if row.get("cost_usd") is not None and row.get("slo_attainment") is not None
    ]
    return cost_vs_slo(rows, path, title)


def _heatmap(points, variations: list[Variation], path: Path, title: str) -> Path:
    """SLO attainment and p99 TTFT over the first two varied fields; any further varied fields are
    collapsed to their worst case (lowest attainment, highest p99)."""
    import numpy as np

    plt = pyplot()
    ya, xa = variations[0], variations[1]
    att = np.full((len(ya.values), len(xa.values)), np.nan)
    p99 = np.full_like(att, np.nan)
    for row in points:
        i, j = ya.values.index(row[ya.path]), xa.values.index(row[xa.path])
        a, q = row["slo_attainment_min"], row["ttft_p99_s"]
        if a is not None:
            att[i, j] = a if np.isnan(att[i, j]) else min(att[i, j], a)
        if q is not None:
            p99[i, j] = q if np.isnan(p99[i, j]) else max(p99[i, j], q)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = [
        (axes[0], att * 100, "SLO attainment, worst seed (%)", "RdYlGn", "{:.1f}"),
        (axes[1], p99, "p99 TTFT, mean over seeds (s)", "viridis_r", "{:.2f}"),
    ]
    for ax, data, label, cmap, fmt in panels:
        finite = data[np.isfinite(data)]
        limits = {}
        if "attainment" in label and finite.size:
            limits = {"vmin": min(float(finite.min()), 99.0) - 1.0, "vmax": 100.0}
        im = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, **limits)
        ax.set_xticks(range(len(xa.values)), [f"{v:g}" if isinstance(v, int | float) else str(v) for v in xa.values])
        ax.set_yticks(range(len(ya.values)), [f"{v:g}" if isinstance(v, int | float) else str(v) for v in ya.values])
        ax.set_xlabel(xa.path)
        ax.set_ylabel(ya.path)
        ax.set_title(label, fontsize=10)
        fig.colorbar(im, ax=ax)
        if data.size <= 150:
            for (i, j), value in np.ndenumerate(data):
                if not np.isnan(value):
                    ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7, backgroundcolor="w")
    extra = f" (worst over {', '.join(v.path for v in variations[2:])})" if len(variations) > 2 else ""
    fig.suptitle(f"{title}: sweep{extra}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _load_variation(variations: list[Variation]) -> Variation | None:
    for v in variations:
        if v.path in LOAD_FIELDS:
            return v
    return None


def _latency_vs_load(points, variations: list[Variation], path: Path, title: str, slo_ttft_s: float) -> Path:
    """p99 TTFT versus the offered load each point measured (arrivals / saturated capacity), one
    curve per combination of the varied fields other than the load field (`demand.scale` or
    `demand.rate_rps` if varied, else the last one), with each curve's knee marked."""
    plt = pyplot()
    load = _load_variation(variations) or variations[-1]
    others = [v for v in variations if v is not load]
    curves: dict[tuple, list[dict]] = {}
    for row in points:
        curves.setdefault(tuple(row[v.path] for v in others), []).append(row)
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, rows in curves.items():
        rows = sorted(rows, key=lambda r: (r["offered_load"] is None, r["offered_load"] or 0.0))
        x = [r["offered_load"] for r in rows]
        y = [r["ttft_p99_s"] for r in rows]
        keep = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
        if not keep:
            continue
        name = ", ".join(f"{v.path.split('.')[-2] if v.path.count('.') else ''}.{v.path.split('.')[-1]}={value}"
                         for v, value in zip(others, label, strict=True)) or "p99 TTFT"  # fmt: skip
        (line,) = ax.plot([a for a, _ in keep], [b for _, b in keep], marker="o", label=name.lstrip("."))
        k = knee_index([a for a, _ in keep], [b for _, b in keep])
        if k is not None:
            ax.plot(keep[k][0], keep[k][1], marker="*", markersize=16, color=line.get_color(), markeredgecolor="k")
            ax.annotate(f"knee {keep[k][0]:.2f}", keep[k], textcoords="offset points", xytext=(-10, 10), fontsize=8)
    ax.axhline(slo_ttft_s, color="red", linestyle="--", linewidth=1, label=f"TTFT SLO {slo_ttft_s:g} s")
    ax.set_xlabel(f"offered load (arrivals / saturated capacity; varied: {load.path})")
    ax.set_ylabel("p99 TTFT, client side (s)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: latency versus load (★ = knee)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
