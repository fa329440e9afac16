"""Gateway overhead: the live gateway (routing + Ray zone actors) vs a bare FastAPI/uvicorn endpoint.

Both servers run in their own processes on the same HTTP stack (FastAPI on uvicorn; httptools and
uvloop when installed); the bare one returns a fixed chat completion. The gateway serves the small
test world (3 zones) with zero RTT, no jitter and near-zero service time (a scenario override), so
what is left is the gateway's own cost: parsing, routing, a share of one batched Ray submit (whose
answer carries the finished request's update) and the bookkeeping per request. Measured in one run
with one client (aiohttp, async, in this process; installed with ray[default] — httpx tops out near
330 req/s on this machine, below what the servers carry, so it would measure itself):
1. throughput: closed loop, `--concurrency` requests in flight for `--seconds`;
2. latency at a fixed open-loop rate (`--rate`, default 500 req/s): p50/p99, and the gateway's
   added latency = gateway quantile − bare quantile.
Targets (issue 3): ≥ 50% of the bare throughput, ≤ 10 ms added p99 at 500 req/s.

    .venv/bin/python benchmarks/gateway_overhead.py [--rate 500] [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import Request  # noqa: E402  (module level: FastAPI resolves annotations here)

SCENARIO = ROOT / "tests" / "live" / "small.yaml"
ZERO_RTT = {"frankfurt": 0.0, "mexico": 0.0}
OVERRIDES = {
    "network.jitter_ratio": 0.0,
    "network.population_rtt_ms": {"berlin": ZERO_RTT, "new_york": ZERO_RTT, "dallas": ZERO_RTT},
    "gpus.h100.frontend_s": 0.0,
    "gpus.h100.prefill_base_s": 0.0,
    "gpus.h100.prefill_per_token_s": 0.0,
    "gpus.h100.decode_base_s": 1e-6,
    "gpus.h100.decode_per_seq_s": 0.0,
}
FIXED = {
    "id": "chatcmpl-bare",
    "object": "chat.completion",
    "created": 0,
    "model": "grid-test/tiny-8B",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None, "finish_reason": "length"}
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 1, "total_tokens": 15},
}


def serve_bare(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        await request.body()
        return JSONResponse(FIXED)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_gateway(port: int) -> None:
    from grid.live.gateway import GatewaySettings
    from grid.live.server import build_live_grid, run_async, uvicorn_server
    from grid.scenario import load_scenario

    scenario = load_scenario(str(SCENARIO), OVERRIDES)
    grid = build_live_grid(scenario, GatewaySettings(), num_cpus=2)
    try:
        run_async(uvicorn_server(grid.app, "127.0.0.1", port).serve())
    finally:
        grid.close()


BODY = {"model": "grid-test/tiny-8B", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
BODY_EOS = {**BODY, "ignore_eos": True}


async def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(url) as client:
        while time.monotonic() < deadline:
            try:
                async with client.post("/v1/chat/completions", json=BODY_EOS) as r:
                    await r.read()
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not come up")


def _session(url: str, connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def closed_loop(url: str, concurrency: int, seconds: float) -> dict:
    done = errors = 0
    async with _session(url, concurrency) as client:
        end = time.monotonic() + seconds

        async def worker():
            nonlocal done, errors
            while time.monotonic() < end:
                async with client.post("/v1/chat/completions", json=BODY_EOS) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
                    else:
                        errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"rps": done / elapsed, "errors": errors}


async def open_loop(url: str, rate: float, seconds: float) -> dict:
    n = int(rate * seconds)
    latencies: list[float] = []
    lateness: list[float] = []
    errors = 0
    async with _session(url, 2048) as client:

        async def one():
            nonlocal errors
            sent = time.monotonic()
            async with client.post("/v1/chat/completions", json=BODY_EOS) as r:
                await r.read()
                if r.status == 200:
                    latencies.append(time.monotonic() - sent)
                else:
                    errors += 1

        tasks = []
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(time.monotonic() - start - i / rate)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    array = np.asarray(latencies)
    return {
        "achieved_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(array, 50) * 1000),
        "p99_ms": float(np.percentile(array, 99) * 1000),
        "errors": errors,
        "send_lateness_p99_ms": float(np.percentile(lateness, 99) * 1000),
    }


async def measure(name: str, url: str, args) -> dict:
    await wait_ready(url)
    await closed_loop(url, args.concurrency, 2.0)  # warm up
    throughput = await closed_loop(url, args.concurrency, args.seconds)
    await asyncio.sleep(1.0)
    latency = await open_loop(url, args.rate, args.seconds)
    print(f"{name}: {throughput} · at {args.rate:.0f} req/s: {latency}", flush=True)
    return {"throughput": throughput, "latency": latency}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    from grid.live.server import free_port, run_async

    ctx = mp.get_context("spawn")
    results = {}
    for name, target in (("bare", serve_bare), ("gateway", serve_gateway)):
        port = free_port()
        process = ctx.Process(target=target, args=(port,), daemon=True)
        process.start()
        try:
            results[name] = run_async(measure(name, f"http://127.0.0.1:{port}", args))
        finally:
            process.terminate()
            process.join(30)
            if process.is_alive():
                process.kill()
    bare, gw = results["bare"], results["gateway"]
    share = gw["throughput"]["rps"] / bare["throughput"]["rps"]
    added_p50 = gw["latency"]["p50_ms"] - bare["latency"]["p50_ms"]
    added_p99 = gw["latency"]["p99_ms"] - bare["latency"]["p99_ms"]
    print()
    print(f"date {dt.datetime.now().isoformat(timespec='seconds')} · nproc {os.cpu_count()} · CPU {cpu_model()}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"{'':<10}{'max req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'achieved':>10}  (at {args.rate:.0f} req/s)")
    for name, r in results.items():
        lat = r["latency"]
        print(
            f"{name:<10}{r['throughput']['rps']:>11.0f}{lat['p50_ms']:>9.1f}{lat['p99_ms']:>9.1f}{lat['achieved_rps']:>10.0f}"
        )
    verdict_tp = "PASS" if share >= 0.5 else "MISS"
    verdict_p99 = "PASS" if added_p99 <= 10.0 else "MISS"
    print(f"gateway throughput {share * 100:.0f}% of bare (target ≥ 50%: {verdict_tp})")
    print(f"added latency p50 {added_p50:+.1f} ms, p99 {added_p99:+.1f} ms (target ≤ 10 ms p99: {verdict_p99})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
