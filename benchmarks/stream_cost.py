"""What one token per SSE chunk costs the gateway, and what clients see: `grid up` variants side by side.

Each variant is `grid up` in its own process (its own Ray and zone actors) with a source tree and a
`--stream-chunk-tokens` value; the same closed-loop load (`--streams` concurrent streamed chat
completions of `--tokens` tokens each, `ignore_eos`, for `--seconds`) runs against each in turn,
`--rounds` times interleaved (A B A B …) because this machine is shared. Measured per variant:
- the gateway process's CPU time (user + system, psutil) per token generated (`vllm:generation_tokens_total`);
- the gaps between SSE events as the client (aiohttp, this process) receives them: p10/p50/p90 and
  the share under 0.5 ms (a burst: chunk-timing tools read them as ITL 0);
- the gateway's own `vllm:inter_token_latency_seconds` histogram (mean from its sum and count).

    .venv/bin/python benchmarks/stream_cost.py                                  # chunk 1 vs 4 on this tree
    git archive REV | tar -x -C /tmp/base
    .venv/bin/python benchmarks/stream_cost.py --variant new=.:1 --variant old=/tmp/base:0   # 0: flag not passed
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.server import free_port  # noqa: E402

MODEL = "Qwen/Qwen3-8B"
ITL = re.compile(r"^vllm:inter_token_latency_seconds_(sum|count)\{[^}]*\} ([0-9.e+-]+)$", re.M)
TOKENS = re.compile(r"^vllm:generation_tokens_total\{[^}]*\} ([0-9.e+-]+)$", re.M)


def start(tree: Path, chunk_tokens: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "grid.cli", "up", "--port", str(port)]
    if chunk_tokens > 0:
        command += ["--stream-chunk-tokens", str(chunk_tokens)]
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tree)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"grid up did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)


def scrape(url: str) -> tuple[float, float, float]:
    """(ITL sum, ITL count, tokens generated) from the gateway's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = {"sum": 0.0, "count": 0.0}
    for kind, value in ITL.findall(text):
        total[kind] += float(value)
    return total["sum"], total["count"], sum(float(v) for v in TOKENS.findall(text))


async def load(url: str, streams: int, tokens: int, seconds: float) -> tuple[int, list[float]]:
    """Closed loop: `streams` streams at once for `seconds`; returns (tokens received, event gaps)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about the grid."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
    }
    gaps: list[float] = []
    received = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def worker(i: int) -> None:
            nonlocal received
            headers = {"X-Grid-Population": ("london", "paris")[i % 2]}
            while time.monotonic() < end:
                last = None
                async with session.post("/v1/chat/completions", json=body, headers=headers) as r:
                    async for line in r.content:
                        if not line.startswith(b"data: {"):
                            continue
                        now = time.monotonic()
                        if last is not None:
                            gaps.append(now - last)
                        last = now
                        received += 1

        await asyncio.gather(*(worker(i) for i in range(streams)))
    return received, gaps


def measure(tree: Path, chunk_tokens: int, args) -> dict:
    proc, url = start(tree, chunk_tokens)
    try:
        asyncio.run(load(url, 4, args.tokens, 3.0))  # warm-up: connections, code paths
        gateway = psutil.Process(proc.pid)
        cpu0 = sum(gateway.cpu_times()[:2])
        itl0 = scrape(url)
        events, gaps = asyncio.run(load(url, args.streams, args.tokens, args.seconds))
        cpu_s = sum(gateway.cpu_times()[:2]) - cpu0
        itl1 = scrape(url)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    g = np.asarray(gaps) * 1000
    itl_n = itl1[1] - itl0[1]
    return {
        "events": events,
        "cpu_s": cpu_s,
        "tokens": itl1[2] - itl0[2],  # generated by requests that completed in the window
        "gap_ms": [float(np.percentile(g, q)) for q in (10, 50, 90)] if len(g) else [],
        "burst_share": float(np.mean(g < 0.5)) if len(g) else float("nan"),
        "gateway_itl_mean_ms": 1000 * (itl1[0] - itl0[0]) / itl_n if itl_n else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="LABEL=TREE:CHUNK_TOKENS (0: don't pass the flag)")
    parser.add_argument("--streams", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    variants = []
    for spec in args.variant or ["chunk1=.:1", "chunk4=.:4"]:
        label, _, rest = spec.partition("=")
        tree, _, chunk = rest.rpartition(":")
        variants.append((label, Path(tree), int(chunk)))
    results: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    for _ in range(args.rounds):
        for label, tree, chunk in variants:
            results[label].append(measure(tree, chunk, args))
            print(label, results[label][-1], flush=True)
    print(
        f"\n{dt.date.today()} · {platform.node()} · {os.cpu_count()} cores · load {os.getloadavg()[0]:.1f} · "
        f"{args.streams} streams × {args.tokens} tokens, {args.seconds:g} s × {args.rounds} rounds"
    )
    head = f"{'variant':<10}{'tokens/s':>10}{'events/s':>10}{'CPU µs/token':>14}{'gap p10/p50/p90 ms':>22}"
    print(f"{head}{'burst':>8}{'gw ITL ms':>11}")
    for label, runs in results.items():
        events = sum(r["events"] for r in runs)
        tokens = sum(r["tokens"] for r in runs)
        cpu = sum(r["cpu_s"] for r in runs)
        gaps = np.mean([r["gap_ms"] for r in runs], axis=0)
        print(
            f"{label:<10}{tokens / (args.seconds * len(runs)):>10.0f}{events / (args.seconds * len(runs)):>10.0f}"
            f"{1e6 * cpu / max(1, tokens):>14.0f}"
            f"{'/'.join(f'{g:.1f}' for g in gaps):>22}{np.mean([r['burst_share'] for r in runs]):>8.0%}"
            f"{np.mean([r['gateway_itl_mean_ms'] for r in runs]):>11.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
