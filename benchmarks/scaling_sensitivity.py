"""How much of a scaling timeline a millisecond can move (issue 17's live-vs-simulated goal).

`benchmarks/elastic_live.py` compares the live replica timeline with the simulator's on the same
arrivals. What it cannot tell is how much two runs of one clock would differ if each request were
only a little late, as every live request is (the load generator's send, the gateway's intake: about
1 ms). This runs the simulator alone: the same scenario and arrivals, then the arrivals each delayed
by a random draw of that size, and counts the events that keep their reason and target within one
decision interval, with the rule `elastic_live.py` uses. Same routing, same clock: whatever differs
is the autoscaler's sensitivity to its inputs.

    .venv/bin/python benchmarks/scaling_sensitivity.py                        # nearest and latency_aware
    .venv/bin/python benchmarks/scaling_sensitivity.py --delay-ms 0.3 --trials 20
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from elastic_live import OVERRIDES, events_by_zone  # noqa: E402

from grid.scenario import load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402


def matched_within(a: dict, b: dict, interval_s: float) -> tuple[int, int, int]:
    """(events in the larger timeline, same reason and target, and also within one interval)."""
    matched = within = 0
    for zone in set(a) | set(b):
        pairs = list(zip(a.get(zone, []), b.get(zone, []), strict=False))
        matched += sum(x[1:] == y[1:] for x, y in pairs)
        within += sum(x[1:] == y[1:] and abs(x[0] - y[0]) <= interval_s for x, y in pairs)
    return max(sum(map(len, a.values())), sum(map(len, b.values()))), matched, within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="nearest,latency_aware")
    parser.add_argument("--autoscaler", default="qps")
    parser.add_argument("--duration-s", type=float, default=90.0)
    parser.add_argument("--delay-ms", type=float, default=1.0, help="mean of each arrival's exponential delay")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    crowd = [{"population": "berlin", "at_s": 20, "duration_s": 40, "factor": 4.0}]
    overrides = {**OVERRIDES, "autoscaling.policy": args.autoscaler, "demand.flash_crowds": crowd}
    scenario = load_scenario(str(ROOT / "loadtests/grid.yaml"), overrides)
    interval_s = scenario.autoscaling.interval_s
    base_sim = Simulation(scenario, None, scenario.seed, args.duration_s)
    chunks = list(base_sim.scenario_arrivals(np.random.default_rng(scenario.seed)))
    for policy in args.policies.split(","):
        base = Simulation(scenario, policy, scenario.seed, args.duration_s, arrivals=lambda rng: iter(chunks))
        ref = events_by_zone(base.run().meta["scaling"]["events"])
        totals = np.zeros(3, dtype=int)
        for trial in range(args.trials):
            rng = np.random.default_rng([trial, 17])
            late = [
                replace(c, arrival_s=np.sort(c.arrival_s + rng.exponential(args.delay_ms / 1e3, len(c))))
                for c in chunks
            ]
            sim = Simulation(
                scenario, policy, scenario.seed, args.duration_s, arrivals=lambda rng, late=late: iter(late)
            )
            totals += matched_within(ref, events_by_zone(sim.run().meta["scaling"]["events"]), interval_s)
        n, matched, within = totals
        print(
            f"{policy:>14}: {args.trials} trials, arrivals late by Exp(mean {args.delay_ms:g} ms): {n} events, "
            f"{matched} same reason and target ({matched / n:.0%}), "
            f"{within} also within {interval_s:g} s ({within / n:.0%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
