"""Issue 18: the simulator's cost per request as the world grows in zones, with and without the
router's candidate shortlist (`routing.candidate_zones`).

A world of N zones is the default world with each zone repeated N/9 times (same region, RTTs and
replicas) and demand scaled by the same factor, so each zone sees the default world's load; the
cost per request is CPU time over arrivals. `all` routes over every zone (`candidate_zones: 0`),
`shortlist` with the scenario default (12 nearest + 4 spill). Runs alternate, best of `--repeat`:
compare ratios from one run, the machine is shared. `--scenario global` measures a preset instead.

    python benchmarks/zone_scaling.py                       # 9, 18, 45, 90 zones, latency_aware
    python benchmarks/zone_scaling.py --scenario global --zones 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid.scenario import Scenario, load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402

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
    report = Simulation(scenario, policy, 0, duration_s, 1.0).run()
    return (time.process_time() - cpu) / report.grid.arrivals * 1e6, report.grid.arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", default="9,18,45,90", help="world sizes (multiples of 9); 0 with --scenario")
    parser.add_argument("--scenario", default=None, help="a preset to measure as it is (e.g. global)")
    parser.add_argument("--policy", default="latency_aware")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.zones.split(",")]
    best: dict[tuple[int, str], float] = {}
    arrivals: dict[int, int] = {}
    for _ in range(args.repeat):
        for n in sizes:
            for mode, overrides in MODES.items():
                if args.scenario:
                    scenario = load_scenario(args.scenario, overrides)
                else:
                    scenario = repeated_world(n // 9, overrides)
                us, arrivals[n] = cost_us_per_request(scenario, args.policy, args.duration_s)
                best[n, mode] = min(best.get((n, mode), float("inf")), us)
    base = best[sizes[0], "shortlist"]
    print(f"{args.policy}, {args.duration_s:g} simulated s, best of {args.repeat}; load {os.getloadavg()[0]:.2f}")
    print("| zones | requests | all zones µs/req | shortlist µs/req | shortlist vs all | vs first row |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        a, s = best[n, "all"], best[n, "shortlist"]
        label = args.scenario or n
        print(f"| {label} | {arrivals[n]:,} | {a:.1f} | {s:.1f} | {s / a:.2f} | {s / base:.2f} |")


if __name__ == "__main__":
    main()
