"""The compiled core against the interpreted one and against SimPy, in one run (issue 18's goals).

Each measurement is a fresh process pinned to one core (`taskset -c 0` where there is one), its run
timed in CPU seconds: the interpreted build (the repository's `grid/`), the compiled one
(`build/native`, `make native`), and the idiomatic SimPy model (`benchmarks/simpy_baseline.py`, on the
interpreted build, as issue 2 measured it). Rounds alternate the builds; the best of each is kept.
"Cold" is a process's first run (imports, first calls); "warm" a second identical run in it, whose
report must equal the first's. SimPy implements the unchunked serving model only, so the ratio
against it compares both on `baseline_scenario` (unchunked prefill), as `benchmarks/sim_throughput.py`.

    make native && .venv/bin/python benchmarks/native_speed.py                 # latency_aware and p2c, 3 rounds
    .venv/bin/python benchmarks/native_speed.py --policies p2c --rounds 5 --seconds 60

A change to the compiled core, A/B: keep the build before it beside the new one (`build/<name>`: its
`regions` link is relative), then measure both in the same rounds:

    cp -r build/native build/native_before && <change> && make native
    .venv/bin/python benchmarks/native_speed.py --also build/native_before --policies latency_aware
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "native"


def worker(kind: str, policy: str, seconds: float) -> dict:
    """One process's measurement: req/CPU-s cold and warm, and which build ran."""
    sys.path.append(str(ROOT))  # after PYTHONPATH: `grid` is the build asked for, `benchmarks` the repository's
    import grid.sim.simulator as simulator
    from benchmarks.simpy_baseline import SimpyGrid, baseline_scenario
    from grid.scenario import load_scenario

    scenario = load_scenario("default")
    if kind != "ours":
        scenario = baseline_scenario(scenario)

    def once() -> tuple[int, float, dict]:
        started = time.process_time()
        if kind == "simpy":
            grid = SimpyGrid(scenario, policy=policy, duration_s=seconds, seed=0, engine="step").run()
            return int(sum(grid.stats.arrivals)), time.process_time() - started, {}
        report = simulator.Simulation(scenario, policy, 0, seconds).run()
        return report.grid.arrivals, time.process_time() - started, report.to_dict()

    n, cold_s, first = once()
    _, warm_s, second = once()
    assert first == second, "a second run in the same process gave another report"
    return {"requests": n, "cold": n / cold_s, "warm": n / warm_s, "compiled": simulator.__file__.endswith(".so")}


def measure(kind: str, build: Path, policy: str, seconds: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(build), "PYTHONSAFEPATH": "1"}
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    command = [*pin, sys.executable, str(Path(__file__).resolve()), "--worker", kind, policy, str(seconds)]
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="latency_aware,p2c")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated seconds per run")
    parser.add_argument("--also", action="append", default=[], help="another compiled tree to measure (unchunked)")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "POLICY", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, policy, seconds = args.worker
        print(json.dumps(worker(kind, policy, float(seconds))))
        return 0
    if not list((TREE / "grid" / "sim").glob("simulator.*.so")):
        print("no compiled build at build/native: run `make native` first", file=sys.stderr)
        return 2
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · load average {os.getloadavg()[0]:.1f}")
    runs = {  # name: (kind, build)
        "interpreted": ("ours", ROOT),
        "compiled": ("ours", TREE),
        "compiled, unchunked": ("ours_baseline", TREE),
        "SimPy (interpreted)": ("simpy", ROOT),
        **{f"{Path(tree).name}, unchunked": ("ours_baseline", Path(tree).resolve()) for tree in args.also},
    }
    for policy in args.policies.split(","):
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, (kind, build) in runs.items():
                m = measure(kind, build, policy, args.seconds)
                assert m["compiled"] == (build != ROOT), f"{name}: the wrong build was imported"
                if name not in best or m["warm"] > best[name]["warm"]:
                    best[name] = m
        print(f"\n{policy}, default world, {args.seconds:g} simulated s, best of {args.rounds} (req/CPU-s)")
        for name, m in best.items():
            print(f"  {name:22s} {m['requests']:>8,} requests  cold {m['cold']:>9,.0f}  warm {m['warm']:>9,.0f}")
        interpreted, compiled = best["interpreted"], best["compiled"]
        simpy = best["SimPy (interpreted)"]
        print(
            f"  compiled / interpreted: cold {compiled['cold'] / interpreted['cold']:.2f}×, "
            f"warm {compiled['warm'] / interpreted['warm']:.2f}× · compiled / SimPy (same unchunked model): "
            f"warm {best['compiled, unchunked']['warm'] / simpy['warm']:.2f}×"
        )
        for tree in args.also:
            ratio = best["compiled, unchunked"]["warm"] / best[f"{Path(tree).name}, unchunked"]["warm"]
            print(f"  compiled / {Path(tree).name} (unchunked): warm {ratio:.3f}×")
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} at the end (nproc {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
