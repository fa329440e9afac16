"""`grid sweep`: the Cartesian product of scenario-field variations, simulated as Ray tasks.

    grid sweep --scenario eu-evening-peak --vary zones.frankfurt-1.replicas=4..16:4 \
        --vary demand.scale=0.5..1.5:0.25 --seeds 3 --duration 10m --out sweeps/fra

Every point × seed is one simulation (`run_point`), fanned out with the bench runner
(`grid.bench.runner.run_all`) on all local cores or on a Ray cluster. Each finished run is cached
as DIR/cache/<key>.json the moment it returns, keyed by a hash of (the merged scenario, the
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
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from grid.errors import GridInputError
from grid.scenario import get_path, scenario_raw, set_path, validate_scenario

CACHE_VERSION = 2  # 2: the simulator retries (results with faults or full queues changed)
METRIC_KEYS = (
    "slo_attainment", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p99_s", "e2e_p99_s",
    "throughput_rps", "offered_load", "utilization", "cost_usd_per_hour", "arrivals", "completed",
    "rejected", "failed",
)  # fmt: skip
LOAD_FIELDS = ("demand.scale", "demand.rate_rps")


# --- `--vary` ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variation:
    path: str
    values: tuple[Any, ...]


def _number(text: str, what: str, arg: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise GridInputError(f"--vary {arg}: the {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GridInputError(f"--vary {arg}: the {what} {text!r} is not a finite number")
    return value


def parse_vary(text: str) -> Variation:
    """`PATH=A..B:STEP` (inclusive range; STEP defaults to 1) or `PATH=A,B,C` (values read as YAML)."""
    path, sep, spec = text.partition("=")
    path, spec = path.strip(), spec.strip()
    if not sep or not path or not spec:
        raise GridInputError(f"--vary {text!r}: expected FIELD.PATH=A..B:STEP or FIELD.PATH=A,B,C")
    if ".." in spec:
        lo_text, _, rest = spec.partition("..")
        hi_text, _, step_text = rest.partition(":")
        lo, hi = _number(lo_text, "start", text), _number(hi_text, "end", text)
        step = _number(step_text, "step", text) if step_text.strip() else 1
        if step <= 0:
            raise GridInputError(f"--vary {text}: the step must be > 0 (got {step})")
        if hi < lo:
            raise GridInputError(f"--vary {text}: the range {spec} is empty (start {lo} > end {hi})")
        count = math.floor((hi - lo) / step + 1e-9) + 1
        values: list[Any] = [lo + i * step for i in range(count)]
        if not all(isinstance(v, int) for v in (lo, hi, step)):
            values = [round(float(v), 12) for v in values]
    else:
        items = [item.strip() for item in spec.split(",")]
        if any(not item for item in items):
            raise GridInputError(f"--vary {text}: an empty value in the list {spec!r}")
        try:
            values = [yaml.safe_load(item) for item in items]
        except yaml.YAMLError:
            raise GridInputError(f"--vary {text}: cannot read the values {spec!r}") from None
    if len(set(map(repr, values))) != len(values):
        raise GridInputError(f"--vary {text}: a value repeats")
    return Variation(path, tuple(values))


def check_paths(raw: dict[str, Any], scenario, variations: list[Variation]) -> None:
    """Every varied path must name a field of the scenario: one the files set, or one with a
    default (e.g. `zones.paris-1.max_queue`). Errors reuse `get_path`'s message, which lists what
    exists at the level where the path goes wrong."""
    seen: set[str] = set()
    for v in variations:
        if v.path in seen:
            raise GridInputError(f"--vary {v.path}: varied twice")
        seen.add(v.path)
        try:
            get_path(raw, v.path)
        except GridInputError as exc:
            if not _model_has(scenario, v.path):
                raise GridInputError(f"--vary {exc}") from None


def _model_has(node: Any, dotted: str) -> bool:
    for key in dotted.split("."):
        if isinstance(node, dict):
            if key not in node:
                return False
            node = node[key]
        elif isinstance(node, BaseModel) and key in type(node).model_fields:
            node = getattr(node, key)
        else:
            return False
    return True


# --- one point --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointSpec:
    """One simulation: the merged scenario mapping plus overrides, a policy, a seed, a duration."""

    raw: dict[str, Any] = field(repr=False, hash=False, compare=False)
    overrides: tuple[tuple[str, Any], ...]
    policy: str | None
    seed: int
    duration_s: float
    key: str = ""


def point_key(raw: dict[str, Any], overrides, policy: str | None, seed: int, duration_s: float) -> str:
    """Cache key: a hash of the merged scenario (so a change in a base preset counts), the overrides
    (order-independent), the policy, the seed and the duration."""
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "scenario": raw,
            "overrides": sorted([str(p), v] for p, v in overrides),
            "policy": policy,
            "seed": seed,
            "duration_s": float(duration_s),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def make_spec(raw, overrides, policy, seed, duration_s) -> PointSpec:
    overrides = tuple((str(p), v) for p, v in overrides)
    return PointSpec(raw, overrides, policy, seed, duration_s, point_key(raw, overrides, policy, seed, duration_s))


def scenario_for(spec: PointSpec):
    raw = copy.deepcopy(spec.raw)
    for path, value in spec.overrides:
        set_path(raw, path, value)
    return validate_scenario(raw, {})


def run_point(spec: PointSpec) -> dict[str, Any]:
    """Simulate one point (a Ray task); returns the grid figures, per-zone figures and CPU time."""
    from grid.sim.simulator import Simulation

    cpu0, wall0 = time.process_time(), time.perf_counter()
    scenario = scenario_for(spec)
    report = Simulation(scenario, policy=spec.policy, seed=spec.seed, duration_s=spec.duration_s).run().to_dict()
    g = report["grid"]
    metrics = {
        "slo_attainment": g["slo_attainment"],
        "ttft_p50_s": g["ttft_s"]["p50"],
        "ttft_p90_s": g["ttft_s"]["p90"],
        "ttft_p99_s": g["ttft_s"]["p99"],
        "tpot_p99_s": g["tpot_s"]["p99"],
        "e2e_p99_s": g["e2e_s"]["p99"],
        "throughput_rps": g["throughput_rps"],
        "offered_load": g["offered_load"],
        "utilization": g["utilization"],
        "cost_usd_per_hour": g["cost_usd_per_hour"],
        "arrivals": g["arrivals"],
        "completed": g["completed"],
        "rejected": g["rejected"],
        "failed": g["failed"],
    }
    for metric in ("ttft", "tpot", "e2e"):
        for q in ("p50", "p90", "p99"):
            metrics[f"{metric}_{q}_s"] = g[f"{metric}_s"][q]
    zones = {
        z["name"]: {
            "replicas": z["replicas"],
            "utilization": _clean(z["utilization"]),
            "ttft_p99_s": z["ttft_s"]["p99"],
            "slo_attainment": _clean(z["slo_attainment"]),
        }
        for z in report["zones"]
    }
    return {
        "key": spec.key,
        "overrides": [list(o) for o in spec.overrides],
        "policy": report["meta"]["policy"],
        "seed": spec.seed,
        "duration_s": spec.duration_s,
        "metrics": {k: _clean(v) for k, v in metrics.items()},
        "zones": zones,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


# --- cache and fan-out ------------------------------------------------------------------------


class PointCache:
    """Finished runs as DIR/<key>.json, written atomically as each one returns; in memory only when
    `directory` is None."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.memory: dict[str, dict[str, Any]] = {}
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GridInputError(f"{directory}: cannot create the cache directory: {exc.strerror}") from None

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.memory or self.directory is None:
            return self.memory.get(key)
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # missing or torn: compute it again

    def put(self, key: str, result: dict[str, Any]) -> None:
        self.memory[key] = result
        if self.directory is None:
            return
        tmp = self.directory / f".{key}.tmp"
        tmp.write_text(json.dumps(result, default=float))
        tmp.replace(self.directory / f"{key}.json")


def run_cached(
    specs: list[PointSpec],
    cache: PointCache | None,
    ray_address: str | None = None,
    progress: bool = False,
    desc: str = "sweep",
    num_cpus: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Results for every spec, from the cache where present; returns (results, how many computed)."""
    from grid.bench.runner import run_all

    results: list[dict[str, Any] | None] = [cache.get(s.key) if cache else None for s in specs]
    missing = [i for i, r in enumerate(results) if r is None]
    todo = list(dict.fromkeys(specs[i].key for i in missing))  # identical points run once
    by_key = {specs[i].key: specs[i] for i in missing}

    def store(i: int, result: dict[str, Any]) -> None:
        if cache is not None:
            cache.put(todo[i], result)

    computed = run_all(
        [by_key[k] for k in todo],
        ray_address=ray_address,
        progress=progress,
        fn=run_point,
        desc=desc,
        unit="point",
        on_result=store,
        num_cpus=num_cpus,
    )
    fresh = dict(zip(todo, computed, strict=True))
    return [r if r is not None else fresh[specs[i].key] for i, r in enumerate(results)], len(todo)


# --- the sweep --------------------------------------------------------------------------------


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
    if not variations:
        raise GridInputError("--vary: give at least one FIELD.PATH=VALUES to vary")
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
    if plots:
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


# --- plots ------------------------------------------------------------------------------------


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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(points, variations: list[Variation], out: Path, title: str, slo_ttft_s: float) -> list[Path]:
    files = [_latency_vs_load(points, variations, out / "latency_vs_load.png", title, slo_ttft_s)]
    if len(variations) >= 2:
        files.append(_heatmap(points, variations, out / "heatmap.png", title))
    return files


def _heatmap(points, variations: list[Variation], path: Path, title: str) -> Path:
    """SLO attainment and p99 TTFT over the first two varied fields; any further varied fields are
    collapsed to their worst case (lowest attainment, highest p99)."""
    import numpy as np

    plt = _plt()
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
    plt = _plt()
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


def format_points(result: SweepResult) -> str:
    names = [v.path for v in result.variations]
    width = max(12, *(len(n) for n in names)) + 2
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


def _eprint(*args) -> None:
    print(*args, file=sys.stderr)
