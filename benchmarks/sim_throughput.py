"""Issue 2's benchmark: simulated requests per wall-clock second, ours vs an idiomatic SimPy model.

    python benchmarks/sim_throughput.py                      # ours vs SimPy, same run, one core
    python benchmarks/sim_throughput.py --requests 10000000  # ~10M requests, no records: wall time, peak RSS
    python benchmarks/sim_throughput.py --profile            # where our simulator's time goes (cProfile)

The default world (regions/default.yaml) at its nominal load (the scenario's rate, 500 req/s daily
mean, starting at the European evening peak), routed by `p2c`, seed 0. Both simulators run in this
process pinned to one core, alternating, best of `--repeat`; the ratio is what to trust on a shared
machine. Throughput is arrivals per CPU second of this process (time.process_time): on a shared
machine wall time includes time the core gave to other processes (wall figures are printed too).
SimPy runs a shorter stretch of the same scenario (it is slower). The 10M mode should run as its
own process so its RSS is its own.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.simpy_baseline import SimpyGrid, baseline_scenario  # noqa: E402
from grid.demand.arrivals import DemandModel  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402


def pin_one_core() -> int | None:
    """Pin this process to one core (the last one we may use); None where affinity isn't supported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "date": dt.date.today().isoformat(),
    }


def run_ours(scenario, duration_s: float, policy: str, seed: int) -> tuple[int, float, float]:
    """(requests, wall s, CPU s) of one run of our simulator."""
    t, c = time.perf_counter(), time.process_time()
    report = Simulation(scenario, policy=policy, duration_s=duration_s, seed=seed).run()
    return report.grid.arrivals, time.perf_counter() - t, time.process_time() - c


def run_simpy(scenario, duration_s: float, policy: str, seed: int, engine: str) -> tuple[int, float, float]:
    """(requests, wall s, CPU s) of one run of the SimPy baseline."""
    t, c = time.perf_counter(), time.process_time()
    grid = SimpyGrid(scenario, policy=policy, duration_s=duration_s, seed=seed, engine=engine).run()
    return int(sum(grid.stats.arrivals)), time.perf_counter() - t, time.process_time() - c


def duration_for(scenario, n_requests: int) -> float:
    """Simulated seconds in which the scenario's demand curve is expected to send `n_requests`."""
    model = DemandModel(scenario.demand, scenario.populations)
    t, expected, step = 0.0, 0.0, 10.0
    while expected < n_requests:
        expected += float(model.rates_rps(t + 0.5 * step).sum()) * step
        t += step
    return t


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def compare(args) -> dict:
    """Alternating runs, best of `--repeat` each; req/s on CPU time (a shared machine steals wall time).
    Both run the serving model the SimPy baseline implements (`baseline_scenario`: unchunked prefill)."""
    scenario = baseline_scenario(load_scenario(args.scenario))
    runs = {
        "ours": lambda: run_ours(scenario, args.duration, args.policy, args.seed),
        "simpy_step": lambda: run_simpy(scenario, args.simpy_duration, args.policy, args.seed, "step"),
    }
    if args.simpy_batch:
        runs["simpy_batch"] = lambda: run_simpy(scenario, args.simpy_duration, args.policy, args.seed, "batch")
    best: dict[str, tuple[int, float, float]] = {}
    for _ in range(args.repeat):
        for name, run in runs.items():
            n, wall, cpu = run()
            if name not in best or n / cpu > best[name][0] / best[name][2]:
                best[name] = (n, wall, cpu)
    result: dict = {"scenario": args.scenario, "policy": args.policy, "repeat": args.repeat}
    for name, (n, wall, cpu) in best.items():
        sim_s = args.duration if name == "ours" else args.simpy_duration
        result[name] = {
            "sim_s": sim_s,
            "requests": n,
            "wall_s": wall,
            "cpu_s": cpu,
            "req_per_s": n / cpu,
            "req_per_wall_s": n / wall,
        }
    for name in runs:
        if name != "ours":
            result[f"ratio_vs_{name}"] = result["ours"]["req_per_s"] / result[name]["req_per_s"]
    return result


def big_run(args) -> dict:
    scenario = load_scenario(args.scenario)
    duration_s = duration_for(scenario, args.requests)
    n, wall, cpu = run_ours(scenario, duration_s, args.policy, args.seed)
    return {
        "scenario": args.scenario,
        "policy": args.policy,
        "sim_s": duration_s,
        "requests": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "req_per_s": n / cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def profile(args) -> str:
    scenario = load_scenario(args.scenario)
    simulation = Simulation(scenario, policy=args.policy, duration_s=args.duration, seed=args.seed)
    profiler = cProfile.Profile()
    profiler.enable()
    report = simulation.run()
    profiler.disable()
    out = io.StringIO()
    out.write(f"{report.grid.arrivals} requests, {args.duration:g} simulated s (times inflated by cProfile)\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--policy", default="p2c")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds for our simulator")
    parser.add_argument("--simpy-duration", type=float, default=120.0, help="simulated seconds for SimPy")
    parser.add_argument("--simpy-batch", action="store_true", help="also time SimPy with per-batch-change engines")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs; the best of each is kept")
    parser.add_argument("--requests", type=int, help="one long run of ~this many requests: wall time, peak RSS")
    parser.add_argument("--profile", action="store_true", help="cProfile one run of our simulator")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    core = pin_one_core()
    info = {"machine": machine(), "pinned_core": core}
    if args.profile:
        print(profile(args))
        return 0
    result = big_run(args) if args.requests else compare(args)
    result.update(info)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = info["machine"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, Python {m['python']}, pinned to core {core}, {m['date']}")
    if args.requests:
        print(
            f"ours: {result['requests']:,} requests ({result['sim_s']:,.0f} simulated s) in {result['wall_s']:.1f} s "
            f"wall, {result['cpu_s']:.1f} s CPU = {result['req_per_s']:,.0f} req/CPU-s; "
            f"peak RSS {result['peak_rss_mb']:,.0f} MB"
        )
        return 0
    for key in ("ours", "simpy_step", "simpy_batch"):
        if key in result:
            r = result[key]
            print(
                f"{key:12s} {r['requests']:>9,} requests ({r['sim_s']:g} sim s) / {r['cpu_s']:6.2f} CPU s "
                f"= {r['req_per_s']:>9,.0f} req/s  ({r['wall_s']:.2f} s wall)"
            )
    print(f"ratio ours / SimPy (per-step engines): {result['ratio_vs_simpy_step']:.2f}x")
    if "ratio_vs_simpy_batch" in result:
        print(f"ratio ours / SimPy (per-batch-change engines): {result['ratio_vs_simpy_batch']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
