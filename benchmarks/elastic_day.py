"""A simulated day of follow-the-sun demand under one fleet policy: cost, replica-hours, SLO.

Issue 17's goal: on the default world's 24 h (`follow-the-sun`), `predictive` costs ≥ 30% less than
the static N-1 plan (`grid plan`, docs/capacity.md: 59 replicas) at SLO attainment ≥ 99% with p99
TTFT ≤ 1 s. Every run starts from the plan's fleet; `static` keeps it all day. Costs are at each
region's time-of-use tariff (grid/routing/tariff.py), so both pay the same prices by the hour.

    .venv/bin/python benchmarks/elastic_day.py --autoscaler static --out /tmp/day-static.json
    .venv/bin/python benchmarks/elastic_day.py --autoscaler predictive --out /tmp/day-predictive.json
    .venv/bin/python benchmarks/elastic_day.py --compare /tmp/day-static.json /tmp/day-predictive.json

`--set FIELD=VALUE` overrides scenario fields (e.g. autoscaling.target_utilization=0.85,
autoscaling.spot.share=0.5); `--duration 2h` shortens the day for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.scenario import load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402
from grid.units import parse_duration_s  # noqa: E402

# `grid plan --scenario default --slo ttft_p99=1s --attainment 0.99 --contingency n-1` (docs/capacity.md)
N1_PLAN = {
    "frankfurt-1": 2,
    "frankfurt-2": 4,
    "frankfurt-3": 8,
    "paris-1": 8,
    "paris-2": 6,
    "london-1": 11,
    "london-2": 4,
    "mexico-1": 14,
    "thailand-1": 2,
}


def run(autoscaler: str, duration_s: float | None, sets: list[str], scenario_name: str = "follow-the-sun") -> dict:
    overrides: dict = {}
    if scenario_name == "follow-the-sun":  # the day starts from the N-1 plan's fleet
        overrides = {f"zones.{z}.replicas": n for z, n in N1_PLAN.items()}
        overrides["autoscaling.max_replicas"] = 24  # the plan's fleet spills across zones; a zone may need more alone
    for item in sets:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    scenario = load_scenario(scenario_name, overrides)
    t0, cpu0 = time.time(), time.process_time()
    report = Simulation(scenario, duration_s=duration_s, autoscaler=autoscaler).run().to_dict()
    grid = report["grid"]
    events = report["meta"].get("scaling", {}).get("events", [])
    reasons: dict[str, int] = {}
    for event in events:
        reasons[event["reason"]] = reasons.get(event["reason"], 0) + 1
    return {
        "autoscaler": autoscaler,
        "scenario": scenario_name,
        "sets": sets,
        "failed": grid["failed"],
        "rejected": grid["rejected"],
        "retries": grid["retries"],
        "duration_s": report["meta"]["duration_s"],
        "completed": grid["completed"],
        "slo_attainment": grid["slo_attainment"],
        "ttft_p99_s": grid["ttft_s"]["p99"],
        "ttft_p50_s": grid["ttft_s"]["p50"],
        "cost_usd": grid["cost_usd"],
        "replica_hours": grid["replica_hours"],
        "spot_replica_hours": grid["spot_replica_hours"],
        "scaling_events": reasons,
        "worst_populations": {  # by SLO attainment: where a fleet too small or too late shows first
            p["name"]: {"slo_attainment": p["slo_attainment"], "ttft_p99_s": p["ttft_s"]["p99"]}
            for p in sorted(report["populations"], key=lambda p: p["slo_attainment"])[:3]
        },
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.time() - t0,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": os.getloadavg(),
    }


def compare(paths: list[str]) -> None:
    rows = [json.loads(Path(p).read_text()) for p in paths]
    base = rows[0]
    print(f"{'run':<44}{'cost $':>10}{'vs first':>10}{'replica-h':>11}{'SLO att.':>10}{'p99 TTFT':>10}{'failed':>8}")
    for r in rows:
        name = r["autoscaler"] + (" " + " ".join(r["sets"]) if r["sets"] else "")
        print(
            f"{name[:43]:<44}{r['cost_usd']:>10.0f}{r['cost_usd'] / base['cost_usd'] - 1:>+10.1%}"
            f"{r['replica_hours'] + r['spot_replica_hours']:>11.1f}{r['slo_attainment']:>10.4f}{r['ttft_p99_s']:>9.3f}s"
            f"{r.get('failed', 0):>8}"
        )
        worst = ", ".join(
            f"{k} {v['slo_attainment']:.3f}/{v['ttft_p99_s']:.2f}s" for k, v in r.get("worst_populations", {}).items()
        )
        print(f"    worst populations (attainment/p99 TTFT): {worst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoscaler", default="static")
    parser.add_argument("--scenario", default="follow-the-sun", help="another preset starts from its own fleet")
    parser.add_argument("--duration", type=parse_duration_s, help="default: the scenario's 24 h")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--out", help="write the summary as JSON here")
    parser.add_argument("--compare", nargs="+", metavar="JSON", help="print a table of earlier runs' summaries")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
    summary = run(args.autoscaler, args.duration, args.set, args.scenario)
    text = json.dumps(summary, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
