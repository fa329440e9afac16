"""`grid plan` hands its answer to the autoscaler: a scenario overlay that starts every zone at its
planned replicas and bounds the autoscaler with them, as a floor (never below the N-1 plan: outages
stay covered while peaks scale out) or as a ceiling (never above it: the plan's budget caps spend).

    grid plan --scenario default --slo ttft_p99=1s --out plans/default --autoscaling-bounds ceiling
    grid sim --scenario plans/default/autoscaling.yaml --autoscaler predictive
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grid.scenario import DEFAULT_SCENARIO, SCENARIOS_DIR

BOUNDS = ("floor", "ceiling")


def autoscaling_overlay(replicas: dict[str, int], base: str, bound: str) -> dict[str, Any]:
    """The overlay for a plan's `replicas` per zone on scenario `base` (a preset or a file)."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    key = "min_replicas" if bound == "floor" else "max_replicas"
    preset = base == DEFAULT_SCENARIO or (SCENARIOS_DIR / f"{base}.yaml").is_file()
    return {
        "base": base if preset else str(Path(base).resolve()),
        "name": f"{Path(base).stem}-planned-{bound}",
        "description": f"the N-1 plan's replicas per zone as the autoscaler's {bound} (grid plan)",
        "zones": {zone: {"replicas": n} for zone, n in replicas.items()},
        "autoscaling": {"zones": {zone: {key: n} for zone, n in replicas.items()}},
    }
