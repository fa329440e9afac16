"""Fidelity of the live grid: one scenario at moderate load, run live (Ray + HTTP) and simulated.

Both runs see the same arrivals (the scenario's generator, same seed). Targets: p50 TTFT and E2E
within 10% of the simulator's, p99 within 20%, as the gateway measures them and as the load
generator (the client, its own process) does. Prints both tables, the comparison and the verdict.

    .venv/bin/python benchmarks/live_fidelity.py                      # tests/live/fidelity.yaml, 60 s
    .venv/bin/python benchmarks/live_fidelity.py --scenario default --rate-scale 0.04 --duration-s 60
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.experiment import fidelity_misses, print_side_by_side, run_live, run_simulated  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "tests" / "live" / "fidelity.yaml"))
    parser.add_argument("--policy", default=None)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--rate-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stream-interval-s", type=float, default=0.02)
    parser.add_argument("--stream-share", type=float, default=1.0, help="share of requests sent with stream=true")
    parser.add_argument("--json", default=None, help="write both reports here")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    seed = scenario.seed if args.seed is None else args.seed
    started = time.monotonic()
    live = run_live(
        scenario,
        args.policy,
        args.duration_s,
        args.rate_scale,
        seed,
        stream_share=args.stream_share,
        stream_interval_s=args.stream_interval_s,
    )
    sim = run_simulated(scenario, args.policy, args.duration_s, args.rate_scale, seed)
    print_side_by_side(live.report, sim, live.client)
    summary = {k: v for k, v in live.client.items() if k != "per_request"}  # the per-request lists are long
    print(f"load generator: {summary}")
    print(f"gateway intake (first byte to handler): {live.intake_s}")
    misses = fidelity_misses(live.report, sim, live.client)
    load = os.getloadavg()
    print(
        f"\nfidelity: {'PASS' if not misses else 'MISS'} · wall {time.monotonic() - started:.0f} s · "
        f"machine load average {load[0]:.1f} (nproc {os.cpu_count()})"
    )
    for miss in misses:
        print("  miss:", miss)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"live": live.report.to_dict(), "simulated": sim.to_dict(), "client": live.client}, indent=2)
        )
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
