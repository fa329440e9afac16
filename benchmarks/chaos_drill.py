"""Chaos drill on the live grid: minutes of open-loop load while a random zone is killed every 15 s.

The grid (Ray zone actors + gateway on 127.0.0.1) runs in this process; the load generator and the
killer run in a child process and talk HTTP only (`grid.live.drill`). Each kill is a `zone_down`
through the admin API: the zone's Ray actor is killed, Ray restarts it, it stays down for
`--down-s`, then comes back empty. Checks (exit 1 if any fails):

- zero requests lost or hung: every client got a complete answer before its deadline;
- client-side counts == the gateway's RunStats == the `grid_requests_total` deltas;
- errors only mid-stream on a killed zone (everything else was retried elsewhere), and counted;
- every kill detected within 2 s.

    .venv/bin/python benchmarks/chaos_drill.py                         # 130 s, kill every 15 s
    .venv/bin/python benchmarks/chaos_drill.py --duration-s 30 --json drill.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live import drill  # noqa: E402
from grid.live.gateway import GatewaySettings  # noqa: E402
from grid.live.server import build_live_grid, serving  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402

TOKEN = "chaos-drill-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "tests" / "live" / "small.yaml"))
    parser.add_argument("--duration-s", type=float, default=130.0)
    parser.add_argument("--rate-rps", type=float, default=16.0)
    parser.add_argument("--kill-every-s", type=float, default=15.0)
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--deadline-s", type=float, default=30.0, help="the gateway's per-request deadline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    scenario = load_scenario(args.scenario)
    settings = GatewaySettings(admin_token=TOKEN, request_timeout_s=args.deadline_s)
    grid = build_live_grid(scenario, settings, stream_interval_s=0.02, num_cpus=2)
    gateway = grid.gateway
    populations = list(scenario.populations)
    zones = list(scenario.zones)
    try:
        with serving(grid) as url:
            import httpx

            with httpx.Client(base_url=url) as client:
                before = drill.server_counts(client.get("/metrics").text)
                gateway.reset_stats()
                started = time.monotonic()
                tally = drill.drive_in_process(
                    args.duration_s + args.deadline_s + 120,
                    url=url,
                    model=scenario.model.name,
                    populations=populations,
                    zones=zones,
                    duration_s=args.duration_s,
                    rate_rps=args.rate_rps,
                    admin_token=TOKEN,
                    kill_every_s=args.kill_every_s,
                    first_kill_s=args.kill_every_s / 2,
                    down_s=args.down_s,
                    stream_share=args.stream_share,
                    client_timeout_s=args.deadline_s + 10,
                    seed=args.seed,
                )
                wall_s = time.monotonic() - started
                after = drill.server_counts(client.get("/metrics").text)
                stats, in_flight = gateway.snapshot_stats()
                zones_json = client.get("/grid/zones").json()
    finally:
        grid.close()

    summary = tally.to_dict()
    client_counts = drill.client_counts(tally)
    run_stats = drill.run_stats_counts(stats)
    metrics = drill.diff(after, before)
    counts = summary["counts"]
    detections = [k.get("detection_s") for k in tally.kills]
    checks = {
        "no request lost or hung": counts["lost"] == 0 and counts["unexpected"] == 0,
        "errors only mid-stream": counts["failed"] == 0,
        "mid-stream errors only on killed zones": set(summary["midstream_zones"]) <= {k["zone"] for k in tally.kills},
        "mid-stream errors counted by the gateway": counts["failed_midstream"]
        == sum(k.get("midstream_failures", 0) for k in tally.kills),
        "client == RunStats": client_counts == run_stats and in_flight == 0,
        "client == grid_requests_total": client_counts == metrics,
        "every kill detected in <= 2 s": all(d is not None and d <= 2.0 for d in detections),
    }
    result = {
        "scenario": scenario.name,
        "duration_s": args.duration_s,
        "rate_rps": args.rate_rps,
        "wall_s": round(wall_s, 1),
        "client": summary,
        "client_counts": client_counts,
        "run_stats": run_stats,
        "grid_requests_total_delta": metrics,
        "gateway_counts": zones_json["counts"],
        "checks": checks,
    }
    print(f"chaos drill: {scenario.name}, {args.duration_s:.0f} s at {args.rate_rps} req/s, {len(tally.kills)} kills")
    print(f"  client: {summary['sent']} sent · {counts} · retried {summary['retried']}")
    print(f"  RunStats {run_stats} · grid_requests_total Δ {metrics}")
    print("  kill  zone          detection_s  failover_s  failovers  midstream_failures  restarted_after_s")
    for kill in tally.kills:
        restarted = (kill.get("restarted_at_s") or 0) - (kill.get("killed_at_s") or 0)
        print(
            f"  {kill['at_s']:5.1f} {kill['zone']:<13} {_f(kill.get('detection_s'))}  {_f(kill.get('failover_s'))}"
            f"  {kill.get('failovers', 0):9d}  {kill.get('midstream_failures', 0):18d}  {restarted:17.3f}"
        )
    valid = [d for d in detections if d is not None]
    if valid:
        print(f"  detection: max {max(valid):.3f} s, mean {sum(valid) / len(valid):.3f} s")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


def _f(value) -> str:
    return f"{value:11.3f}" if value is not None else "          -"


if __name__ == "__main__":
    sys.exit(main())
