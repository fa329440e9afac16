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
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.experiment import arrival_schedule, live_interval_scenario, run_simulated  # noqa: E402
from grid.live.gateway import GatewaySettings  # noqa: E402
from grid.live.loadgen import LoadProcess  # noqa: E402
from grid.live.server import build_live_grid, free_port, run_async, uvicorn_server, wait_started  # noqa: E402
from grid.report import Report, ZoneFigures, build_report  # noqa: E402
from grid.scenario import Scenario, load_scenario  # noqa: E402

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


def run_live(scenario: Scenario, policy: str, duration_s: float, rate_scale: float, seed: int, args) -> dict:
    """One live run (as grid.live.experiment.run_live, plus the gateway's hedge counts)."""
    schedule = arrival_schedule(scenario, duration_s, rate_scale, seed)
    scenario = live_interval_scenario(scenario)
    grid = build_live_grid(
        scenario,
        GatewaySettings(policy=policy, seed=seed),
        stream_interval_s=args.stream_interval_s,
        num_cpus=2,
    )
    try:
        return run_async(_serve_and_load(grid, scenario, schedule, policy, duration_s, rate_scale, seed, args))
    finally:
        grid.close()


async def _serve_and_load(grid, scenario, schedule, policy, duration_s, rate_scale, seed, args) -> dict:
    port = free_port()
    server = uvicorn_server(grid.app, "127.0.0.1", port)
    server_task = asyncio.create_task(server.serve())
    try:
        await wait_started(server, server_task)
        gateway = grid.gateway
        load = LoadProcess(f"http://127.0.0.1:{port}", scenario.model.name, schedule, args.stream_share, 30.0, seed)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, load.start)
        print(f"  live {policy}: {len(schedule)} requests over {duration_s:.0f} s", flush=True)
        gateway.reset_stats()
        before = await gateway.zone_figures()
        t_go = gateway.now()
        load.go()
        await asyncio.sleep(duration_s)
        stats, in_flight = gateway.snapshot_stats()
        after = await gateway.zone_figures()
        client = await loop.run_in_executor(None, load.result, 60.0)
        figures = [
            ZoneFigures(a.work_s - b.work_s, a.area_queued - b.area_queued, a.area_in_system - b.area_in_system)
            for a, b in zip(after, before, strict=True)
        ]
        meta = {"clock": "live (wall clock)", "policy": policy, "seed": seed, "rate_scale": rate_scale}
        report = build_report(scenario, gateway.world, stats, figures, duration_s, meta, in_flight)
        hedges = dict(gateway.hedging.counts) if gateway.hedging is not None else None
        reports = [await link.actor.report.remote() for link in gateway.links]
        return {
            "report": report,
            "client": client,
            "hedges": hedges,
            "cancelled_at_zones": sum(r["cancelled"] for r in reports),
            "outstanding_after": sum(r["outstanding"] for r in reports),
            "wall_s": gateway.now() - t_go,
        }
    finally:
        server.should_exit = True
        await server_task


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
        live = run_live(scenario, policy, args.duration_s, args.rate_scale, seed, args)
        sim = run_simulated(scenario, policy, args.duration_s, args.rate_scale, seed)
        sim_hedges = sim.meta.get("hedges")
        rows.append(row(policy, "live", live["report"], live["hedges"], live["client"].get("client_ttft_s")))
        rows.append(row(policy, "simulated", sim, sim_hedges))
        extras[policy] = {k: live[k] for k in ("hedges", "cancelled_at_zones", "outstanding_after", "wall_s", "client")}
        extras[policy]["simulated_hedges"] = sim_hedges
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
