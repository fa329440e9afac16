"""Hedged requests on the live grid: `latency_aware` vs `hedged` on the same arrivals, live and simulated.

The world is London degraded, scaled down to what 2 cores drive live: tests/live/fidelity.yaml's slow
engine at 16 sequences, five single-replica zones (frankfurt-1..3, london-1..2), both London zones 4x
slower from the start (as regions/scenarios/london-degraded.yaml does from minute 1 on), about
22 req/s for 60 s per policy. Each policy runs live (Ray + HTTP, its own grid) and in the simulator on
the same arrivals and seed. Prints, per policy and clock: p50/p99 TTFT, p99 E2E, hedges sent (and
their share of requests), won, and the client-side TTFT of streamed answers.

    .venv/bin/python benchmarks/live_hedging.py                       # ~3.5 min on 2 cores
    .venv/bin/python benchmarks/live_hedging.py --rate-scale 2 --duration-s 30 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.experiment import run_live, run_simulated  # noqa: E402
from grid.report import Report  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402

POLICIES = ("latency_aware", "hedged")
SLOW_FACTOR = 4.0
DEGRADED = {  # field paths over tests/live/fidelity.yaml
    "name": "london-degraded-small",
    "gpus.slow.max_num_seqs": 16,
    "zones.frankfurt-3": {"region": "frankfurt", "replicas": 1, "gpu": "slow", "max_queue": 512},
    "zones.london-2": {"region": "london", "replicas": 1, "gpu": "slow", "max_queue": 512},
    "faults": [
        {"at_s": 0, "kind": "zone_slow", "zone": "london-1", "factor": SLOW_FACTOR},
        {"at_s": 0, "kind": "zone_slow", "zone": "london-2", "factor": SLOW_FACTOR},
    ],
}


def row(policy: str, clock: str, report: Report, hedges: dict | None, client_ttft: dict | None = None) -> dict:
    g = report.grid
    sent = (hedges or {}).get("sent", 0)
    return {
        "policy": policy,
        "clock": clock,
        "requests": g.arrivals,
        "completed": g.completed,
        "failed": g.failed,
        "rejected": g.rejected,
        "ttft_p50_ms": g.ttft_s["p50"] * 1000,
        "ttft_p99_ms": g.ttft_s["p99"] * 1000,
        "e2e_p99_s": g.e2e_s["p99"],
        "hedges": sent,
        "hedge_share": sent / g.arrivals if g.arrivals else 0.0,
        "won": (hedges or {}).get("won", 0),
        "client_ttft_p99_ms": (client_ttft or {}).get("p99", float("nan")) * 1000,
    }


def format_rows(rows: list[dict]) -> str:
    head = (
        "| policy | clock | requests | completed | TTFT p50 ms | TTFT p99 ms | E2E p99 s | hedges (share) | won | "
        "client TTFT p99 ms (streamed) |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        client = "" if r["client_ttft_p99_ms"] != r["client_ttft_p99_ms"] else f"{r['client_ttft_p99_ms']:.0f}"
        lines.append(
            f"| {r['policy']} | {r['clock']} | {r['requests']} | {r['completed']} | {r['ttft_p50_ms']:.0f} | "
            f"{r['ttft_p99_ms']:.0f} | {r['e2e_p99_s']:.1f} | {r['hedges']} ({r['hedge_share']:.1%}) | {r['won']} | "
            f"{client} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "tests" / "live" / "fidelity.yaml"))
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--rate-scale", type=float, default=2.5, help="× the scenario's rate (fidelity: 9 req/s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stream-share", type=float, default=0.5, help="share of requests sent with stream=true")
    parser.add_argument("--stream-interval-s", type=float, default=0.02)
    parser.add_argument("--json", default=None, help="write the rows and the live extras here")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario, DEGRADED)
    seed = scenario.seed if args.seed is None else args.seed
    started = time.monotonic()
    rows, extras = [], {}
    for policy in POLICIES:
        live = run_live(
            scenario, policy, args.duration_s, args.rate_scale, seed, args.stream_share, 30.0, args.stream_interval_s
        )
        sim = run_simulated(scenario, policy, args.duration_s, args.rate_scale, seed)
        sim_hedges = sim.meta.get("hedges")
        rows.append(row(policy, "live", live.report, live.hedges, live.client.get("client_ttft_s")))
        rows.append(row(policy, "simulated", sim, sim_hedges))
        extras[policy] = {
            "hedges": live.hedges,
            "cancelled_at_zones": sum(r["cancelled"] for r in live.zone_reports),
            "outstanding_after": sum(r["outstanding"] for r in live.zone_reports),
            "client": live.client,
            "simulated_hedges": sim_hedges,
        }
    load = os.getloadavg()
    print(f"\n{scenario.name}: {args.rate_scale * scenario.demand.rate_rps:.1f} req/s offered, {args.duration_s:.0f} s")
    print(format_rows(rows))
    for policy, extra in extras.items():
        print(
            f"{policy}: live hedges {extra['hedges']}, cancelled at zones {extra['cancelled_at_zones']}, "
            f"outstanding after {extra['outstanding_after']}; simulated hedges {extra['simulated_hedges']}; "
            f"client {extra['client'].get('statuses')}"
        )
    print(
        f"\nwall {time.monotonic() - started:.0f} s · machine load average {load[0]:.1f} (nproc {os.cpu_count()}) · "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "live": extras}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
