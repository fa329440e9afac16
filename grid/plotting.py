"""What `grid bench` and `grid sweep` plot alike: matplotlib without a screen, and fleet cost
against SLO attainment (one point per run or sweep point)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: CI and servers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cost_vs_slo(points: list[tuple[float, float, str]], path: Path, title: str) -> Path:
    """Each (fleet cost $, SLO attainment %, label) as a labelled point."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for cost_usd, attainment_pct, label in points:
        ax.scatter([cost_usd], [attainment_pct], s=40)
        ax.annotate(label, (cost_usd, attainment_pct), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("fleet cost over the run ($, time-of-use tariff)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(f"{title}: cost versus SLO attainment")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
