"""`grid sweep`: the Cartesian product of scenario-field variations, simulated as Ray tasks.

    grid sweep --scenario eu-evening-peak --vary zones.frankfurt-1.replicas=4..16:4 \
        --vary demand.scale=0.5..1.5:0.25 --seeds 3 --duration 10m --out sweeps/fra

Every point × seed is one simulation (`grid.capacity.point_runs.run_point`), fanned out with the
bench runner (`grid.bench.runner.run_all`) on all local cores or on a Ray cluster. Each finished run
is cached as DIR/cache/<key>.json the moment it returns, keyed by a hash of (the merged scenario, the
overrides, the policy, the seed, the duration): a rerun — after an interruption, or with a range
widened — only computes what is missing. Outputs: DIR/points.csv (one row per point, means over
seeds), DIR/points.json (the same plus every run), DIR/heatmap.png (SLO attainment and p99 TTFT over
the first two varied fields) and DIR/latency_vs_load.png (p99 TTFT versus offered load, knee marked).

The worker receives the merged scenario mapping, not a file name, so a cluster node needs no copy of
the scenario file.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grid.capacity.point_runs import PointCache, make_spec, run_cached
from grid.capacity.sweep_plots import plot_sweep
from grid.capacity.variations import Variation, check_paths
from grid.errors import GridInputError
from grid.scenario import scenario_raw, set_path, validate_scenario

METRIC_KEYS = (
    "slo_attainment", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p99_s", "e2e_p99_s",
    "throughput_rps", "offered_load", "utilization", "cost_usd_per_hour", "cost_usd", "replica_hours",
    "arrivals", "completed", "rejected", "failed",
)  # fmt: skip


@dataclass
class SweepResult:
    variations: list[Variation]
    points: list[dict[str, Any]]  # one per combination: its values and means over seeds
    runs: list[dict[str, Any]]
    computed: int
    cached: int
    wall_s: float
    files: list[Path]


def sweep(
    scenario: str,
    variations: list[Variation],
    out: str | Path,
    *,
    overrides: tuple[tuple[str, Any], ...] = (),
    policy: str | None = None,
    seeds: int = 1,
    duration_s: float | None = None,
    ray_address: str | None = None,
    progress: bool = False,
    num_cpus: int | None = None,
    plots: bool = True,
) -> SweepResult:
    """Run (or complete) a sweep and write its table and plots to `out`."""
    if not variations and seeds < 2:  # a sweep over seeds alone is one point, its seeds in parallel
        raise GridInputError("--vary: give at least one FIELD.PATH=VALUES to vary (or --seeds N > 1)")
    raw, origins = scenario_raw(scenario)
    for path, value in overrides:
        set_path(raw, path, value)
        origins[tuple(path.split("."))] = ("--set", None)
    base = validate_scenario(copy.deepcopy(raw), origins)
    check_paths(raw, base, variations)
    policy = policy or base.routing.policy
    duration_s = base.duration_s if duration_s is None else duration_s
    combos = list(itertools.product(*(v.values for v in variations)))
    for combo in combos:  # bad values fail here, before Ray starts, naming the point
        trial = copy.deepcopy(raw)
        for v, value in zip(variations, combo, strict=True):
            set_path(trial, v.path, value)
            origins[tuple(v.path.split("."))] = (f"--vary {v.path}={value}", None)
        validate_scenario(trial, origins)
    out = Path(out)
    cache = PointCache(out / "cache")
    specs = [
        make_spec(raw, [(v.path, value) for v, value in zip(variations, combo, strict=True)], policy, seed, duration_s)
        for combo in combos
        for seed in range(seeds)
    ]
    t0 = time.perf_counter()
    runs, computed = run_cached(specs, cache, ray_address, progress, "sweep", num_cpus)
    wall_s = time.perf_counter() - t0
    points = []
    for n, combo in enumerate(combos):
        group = runs[n * seeds : (n + 1) * seeds]
        row: dict[str, Any] = {v.path: value for v, value in zip(variations, combo, strict=True)}
        row["seeds"] = seeds
        for key in METRIC_KEYS:
            values = [r["metrics"][key] for r in group if r["metrics"][key] is not None]
            row[key] = sum(values) / len(values) if values else None
        atts = [r["metrics"]["slo_attainment"] for r in group if r["metrics"]["slo_attainment"] is not None]
        row["slo_attainment_min"] = min(atts) if atts else None
        points.append(row)
    meta = {
        "scenario": base.name,
        "scenario_arg": scenario,
        "overrides": [list(o) for o in overrides],
        "vary": {v.path: list(v.values) for v in variations},
        "policy": policy,
        "seeds": seeds,
        "duration_s": duration_s,
        "slo": {"ttft_s": base.slo.ttft_s, "tpot_s": base.slo.tpot_s, "e2e_s": base.slo.e2e_s},
        "computed": computed,
        "cached": len(specs) - computed,
    }
    files = _write_table(out, points, runs, meta, variations)
    if plots and variations:
        files += plot_sweep(points, variations, out, base.name, base.slo.ttft_s)
    return SweepResult(variations, points, runs, computed, len(specs) - computed, wall_s, files)


def _write_table(out: Path, points, runs, meta, variations) -> list[Path]:
    columns = [v.path for v in variations] + ["seeds", *METRIC_KEYS, "slo_attainment_min"]
    with (out / "points.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in points:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in columns})
    (out / "points.json").write_text(
        json.dumps({"meta": meta, "points": points, "runs": runs}, indent=1, default=float)
    )
    return [out / "points.csv", out / "points.json"]


def format_points(result: SweepResult) -> str:
    names = [v.path for v in result.variations]
    width = max([12, *(len(n) for n in names)]) + 2
    head = "".join(f"{n:>{width}}" for n in names) + f"{'SLO att':>10}{'p50 TTFT':>10}{'p99 TTFT':>10}{'load':>7}"
    lines = [head]
    for row in result.points:
        cells = "".join(f"{row[n]!s:>{width}}" for n in names)
        att = "-" if row["slo_attainment"] is None else f"{row['slo_attainment'] * 100:.1f}%"
        p50 = "-" if row["ttft_p50_s"] is None else f"{row['ttft_p50_s'] * 1000:.0f}ms"
        p99 = "-" if row["ttft_p99_s"] is None else f"{row['ttft_p99_s'] * 1000:.0f}ms"
        load = "-" if row["offered_load"] is None else f"{row['offered_load']:.2f}"
        lines.append(f"{cells}{att:>10}{p50:>10}{p99:>10}{load:>7}")
    return "\n".join(lines)
