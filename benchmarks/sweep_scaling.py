"""Issue 8's benchmark: `grid sweep` throughput (points per second) on 1 and on 2 cores, same run.

    python benchmarks/sweep_scaling.py                          # 12 points × 20 s of the default world
    python benchmarks/sweep_scaling.py --points 16 --duration 30s --cores 1,2
    python benchmarks/sweep_scaling.py --scenario global --seeds 16 --duration 120s   # one point, 16 seeds

The sweep varies `demand.scale` over `--points` values (0.5..1.0) on the default world, one seed (or,
with `--seeds N`, runs one point over N seeds: issue 18's day swept over seeds), `--duration`
simulated per point — the real `grid.capacity.sweep.sweep` path (Ray tasks, cache,
table), plots off, a fresh cache directory per core count. Each core count gets its own Ray
session (`num_cpus` = cores); its workers are warmed with one tiny point per core first, so the
timing is the sweep, not Ray's start-up. Reported per core count: points/s (wall), the CPU seconds
the tasks used (time.process_time inside each task) and the load average around the run. On a shared
machine other processes take cores: the CPU-time column says whether the work itself grew, and the
ratio is depressed when the load average exceeds the cores we asked for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid.bench.runner import ray_session  # noqa: E402
from grid.capacity.point_runs import make_spec, run_cached  # noqa: E402
from grid.capacity.sweep import sweep  # noqa: E402
from grid.capacity.variations import Variation  # noqa: E402
from grid.scenario import scenario_raw  # noqa: E402
from grid.units import parse_duration_s  # noqa: E402


def measure(cores: int, points: int, duration_s: float, scenario: str, seeds: int = 0) -> dict:
    scales = tuple(round(0.5 + 0.5 * i / max(1, points - 1), 6) for i in range(points))
    variations = [] if seeds else [Variation("demand.scale", scales)]
    with ray_session(num_cpus=cores), tempfile.TemporaryDirectory() as tmp:
        raw, _ = scenario_raw(scenario)
        warm = [make_spec(raw, [("demand.scale", 0.01 * (i + 1))], None, 0, 1.0) for i in range(cores)]
        run_cached(warm, None)  # start and import in every worker
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = sweep(scenario, variations, tmp, seeds=max(seeds, 1), duration_s=duration_s, plots=False)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
    points = seeds or points  # runs, one per task
    assert result.computed == points
    cpu = sum(r["cpu_s"] for r in result.runs)
    return {
        "cores": cores,
        "points": points,
        "wall_s": round(wall, 2),
        "points_per_s": round(points / wall, 3),
        "task_cpu_s": round(cpu, 2),
        "cpu_s_per_point": round(cpu / points, 3),
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(load_after, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--duration", default="20s", help="simulated time per point")
    parser.add_argument("--cores", default="1,2", help="core counts to compare, e.g. 1,2")
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seeds", type=int, default=0, help="one point over this many seeds, instead of --points")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    duration_s = parse_duration_s(args.duration)
    rows = [measure(int(c), args.points, duration_s, args.scenario, args.seeds) for c in args.cores.split(",")]
    base = rows[0]
    for row in rows:
        row["speedup"] = round(row["points_per_s"] / base["points_per_s"], 2)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "command": "python " + " ".join(sys.argv),
        "duration_s": duration_s,
        "scenario": args.scenario,
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return 0
    runs = f"1 point × {args.seeds} seeds" if args.seeds else f"{args.points} points"
    print(f"{meta['date']} · {meta['machine']} · {runs} × {args.duration} of {args.scenario}")
    print(f"{'cores':>5}{'wall s':>9}{'points/s':>10}{'task CPU s':>12}{'CPU s/pt':>10}{'load before':>13}"
          f"{'after':>7}{'speedup':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['cores']:>5}{r['wall_s']:>9}{r['points_per_s']:>10}{r['task_cpu_s']:>12}{r['cpu_s_per_point']:>10}"
              f"{r['loadavg_1m_before']:>13}{r['loadavg_1m_after']:>7}{r['speedup']:>9}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
