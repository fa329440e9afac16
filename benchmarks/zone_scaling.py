"""Issue 18: the simulator's cost per request as the world grows in zones, with and without the
router's candidate shortlist (`routing.candidate_zones`).

A world of N zones is the default world with each zone repeated N/9 times (same region, RTTs and
replicas) and demand scaled by the same factor, so each zone sees the default world's load; the
cost per request is CPU time over arrivals. `all` routes over every zone (`candidate_zones: 0`),
`shortlist` with the scenario default (12 nearest + 4 spill). Runs alternate, best of `--repeat`:
compare ratios from one run, the machine is shared. `--scenario` measures presets as they are instead
(a comma list: each a row, the first the base). `PYTHONPATH=build/native` measures the compiled build.

    python benchmarks/zone_scaling.py                       # 9, 18, 45, 90 zones, latency_aware
    python benchmarks/zone_scaling.py --scenario global
    PYTHONSAFEPATH=1 PYTHONPATH=build/native python benchmarks/zone_scaling.py \
        --scenario default,global --modes shortlist
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: it may name the compiled build

import grid.sim.simulator as simulator  # noqa: E402
from grid.scenario import Scenario, load_scenario  # noqa: E402

MODES = {"all": {"routing.candidate_zones": 0}, "shortlist": {}}


def repeated_world(copies: int, overrides: dict) -> Scenario:
    """The default world with each zone `copies` times and demand × `copies`."""
    base = load_scenario("default")
    zones = {
        f"{zone_id}-x{c}" if c else zone_id: zone.model_dump(exclude_unset=True)
        for zone_id, zone in base.zones.items()
        for c in range(copies)
    }
    return load_scenario("default", {"zones": zones, "demand.rate_rps": base.demand.rate_rps * copies, **overrides})


def cost_us_per_request(scenario: Scenario, policy: str, duration_s: float) -> tuple[float, int]:
    cpu = time.process_time()
    report = simulator.Simulation(scenario, policy, 0, duration_s, 1.0).run()
    return (time.process_time() - cpu) / report.grid.arrivals * 1e6, report.grid.arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", default="9,18,45,90", help="world sizes (multiples of 9)")
    parser.add_argument("--scenario", default=None, help="presets to measure as they are (e.g. default,global)")
    parser.add_argument("--modes", default="all,shortlist", help="routing over all zones, the shortlist, or both")
    parser.add_argument("--policy", default="latency_aware")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[str | int] = args.scenario.split(",") if args.scenario else [int(n) for n in args.zones.split(",")]
    modes = args.modes.split(",")
    best: dict[tuple[str | int, str], float] = {}
    arrivals: dict[str | int, int] = {}
    for _ in range(args.repeat):
        for row in rows:
            for mode in modes:
                if isinstance(row, str):
                    scenario = load_scenario(row, MODES[mode])
                else:
                    scenario = repeated_world(row // 9, MODES[mode])
                us, arrivals[row] = cost_us_per_request(scenario, args.policy, args.duration_s)
                best[row, mode] = min(best.get((row, mode), float("inf")), us)
    build = "compiled" if simulator.__file__.endswith(".so") else "interpreted"
    base = best[rows[0], modes[-1]]
    load = os.getloadavg()[0]
    print(f"{args.policy}, {build}, {args.duration_s:g} simulated s, best of {args.repeat}; load {load:.2f}")
    print("| world | requests | " + " | ".join(f"{m} µs/req" for m in modes) + " | vs first row |")
    print("|---:|---:|" + "---:|" * len(modes) + "---:|")
    for row in rows:
        figures = " | ".join(f"{best[row, m]:.1f}" for m in modes)
        print(f"| {row} | {arrivals[row]:,} | {figures} | {best[row, modes[-1]] / base:.2f} |")


if __name__ == "__main__":
    main()
