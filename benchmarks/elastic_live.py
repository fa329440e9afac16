"""A compressed elastic run, live and simulated on the same arrivals: does the live grid scale when
and as the simulator says it will?

The load-test world (loadtests/grid.yaml: three slow single-replica zones, ~12 req/s in all) at
4.5 req/s, with Berlin's demand ×4 from 20 s to 60 s: Frankfurt's zone must grow. Autoscaler `qps`
with a 2 s decision interval, a 5 s cold start and a 15 s downscale delay; 90 s in all. Prints both
clocks' scaling events side by side (issue 17's target: the same events, each within one decision
interval), the TTFT figures and the load average. `grid up` shows the same on its dashboard.

    .venv/bin/python benchmarks/elastic_live.py [--autoscaler target_utilization] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.experiment import run_live, run_simulated  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402

OVERRIDES = {
    "demand.rate_rps": 4.5,
    "autoscaling.interval_s": 2,
    "autoscaling.look_back_s": 8,
    "autoscaling.upscale_delay_s": 0,
    "autoscaling.downscale_delay_s": 15,
    "autoscaling.max_replicas": 4,
    "autoscaling.target_qps_per_replica": 2.5,
    "autoscaling.target_ongoing_requests": 3,
    "autoscaling.cold_start": {"provision_s": 3, "weights_gb": 0, "engine_init_s": 2},
}


def events_by_zone(events: list[dict], shift_s: float = 0.0) -> dict[str, list[tuple[float, str, int]]]:
    out: dict[str, list[tuple[float, str, int]]] = {}
    for e in events:
        out.setdefault(e["zone"], []).append((round(e["t_s"] - shift_s, 2), e["reason"], e["replicas"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoscaler", default="qps")
    parser.add_argument("--duration-s", type=float, default=90.0)
    parser.add_argument("--crowd", default="berlin", help="the population whose demand jumps from 20 s to 60 s")
    parser.add_argument(
        "--policy",
        default=None,
        help="routing policy (default: the scenario's latency_aware); `nearest` takes routing noise out, so "
        "each zone counts the same arrivals in both clocks and the comparison is of scaling alone",
    )
    parser.add_argument("--factor", type=float, default=4.0, help="the jump's factor")
    parser.add_argument("--json", help="write both reports' scaling sections and the comparison here")
    args = parser.parse_args()
    crowd = [{"population": args.crowd, "at_s": 20, "duration_s": 40, "factor": args.factor}]
    overrides = {**OVERRIDES, "autoscaling.policy": args.autoscaler, "demand.flash_crowds": crowd}
    scenario = load_scenario(str(ROOT / "loadtests/grid.yaml"), overrides)
    load_start = os.getloadavg()
    sim = run_simulated(scenario, args.policy, args.duration_s, 1.0, scenario.seed)
    live = run_live(scenario, args.policy, args.duration_s, 1.0, scenario.seed, drain_s=10.0)
    interval = scenario.autoscaling.interval_s
    sim_events = events_by_zone(sim.meta["scaling"]["events"])
    live_scaling = live.report.meta["scaling"]
    live_events = events_by_zone(live_scaling["events"], live_scaling["load_started_s"])
    matched = within = 0
    for zone in sorted(set(sim_events) | set(live_events)):
        s, v = sim_events.get(zone, []), live_events.get(zone, [])
        print(f"{zone}:\n  simulated {s}\n  live      {v}")
        pairs = list(zip(s, v, strict=False))
        matched += sum(a[1:] == b[1:] for a, b in pairs)
        within += sum(a[1:] == b[1:] and abs(a[0] - b[0]) <= interval for a, b in pairs)
    total = max(sum(map(len, sim_events.values())), sum(map(len, live_events.values())))
    print(
        f"events: {total} (the larger count); same reason and target: {matched}; also within {interval:g} s: {within}"
    )
    for name, report in (("simulated", sim), ("live", live.report)):
        g = report.grid
        print(f"{name:>9}: TTFT p50 {g.ttft_s['p50'] * 1000:.0f} ms, p99 {g.ttft_s['p99'] * 1000:.0f} ms, "
              f"completed {g.completed}, rejected {g.rejected}, failed {g.failed}")  # fmt: skip
    late = live.client.get("send_lateness_s", {})  # the load generator's own delay: a request sent late counts late
    print(f"live sends late by p50 {late.get('p50', 0) * 1e3:.1f} ms, p99 {late.get('p99', 0) * 1e3:.1f} ms")
    print(f"load average {load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"simulated": sim.meta["scaling"], "live": live_scaling, "matched": matched, "within": within})
        )


if __name__ == "__main__":
    main()
