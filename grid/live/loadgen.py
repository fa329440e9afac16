"""Open-loop HTTP load against the gateway: replays an arrival schedule (times, populations, sizes).

Each arrival becomes a chat completion sent at its time, whatever happened to earlier ones (open
loop, like `vllm bench serve --request-rate`). The prompt is built to count exactly the drawn prompt
tokens (Qwen's, grid.live.tokenizer), and `max_tokens` = the drawn output tokens with `ignore_eos`,
so the live grid serves the very requests the simulator sees. Runs in its own process
(`spawn_load`), so the client's CPU does not share an interpreter with the gateway.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass

import httpx
import numpy as np

from grid.live.text import filler_words
from grid.live.tokenizer import CHAT_OVERHEAD_TOKENS


@dataclass
class Schedule:
    """Requests to send: offsets from the start (s), population ids, prompt and output tokens."""

    arrival_s: list[float]
    population: list[str]
    prompt_tokens: list[int]
    output_tokens: list[int]

    def __len__(self) -> int:
        return len(self.arrival_s)


async def drive(
    url: str,
    model: str,
    schedule: Schedule,
    stream_share: float = 1.0,
    drain_s: float = 30.0,
    start_at: float | None = None,
    seed: int = 0,
) -> dict:
    """Send the schedule; return client-side counts and latencies (s). `start_at`: time.monotonic()
    at which offset 0 falls (default: now)."""
    longest = max(schedule.prompt_tokens, default=0)
    words = filler_words(max(0, longest - CHAT_OVERHEAD_TOKENS), seed).split(" ")
    rng = np.random.default_rng(seed)
    streams = (rng.random(len(schedule)) < stream_share).tolist()
    statuses: dict[str, int] = {}
    ttft: list[float] = []
    e2e: list[float] = []
    lateness: list[float] = []
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
    timeout = httpx.Timeout(300.0, connect=30.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            content = " ".join(words[: max(0, schedule.prompt_tokens[i] - CHAT_OVERHEAD_TOKENS)])
            body = {
                "model": model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": int(schedule.output_tokens[i]),
                "ignore_eos": True,
                "stream": streams[i],
            }
            headers = {"X-Grid-Population": schedule.population[i]}
            sent = time.monotonic()
            try:
                if streams[i]:
                    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                        first = None
                        async for _ in r.aiter_raw():
                            if first is None:
                                first = time.monotonic()
                        status = str(r.status_code)
                else:
                    r = await client.post("/v1/chat/completions", json=body, headers=headers)
                    first = None
                    status = str(r.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                first = None
            end = time.monotonic()
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                e2e.append(end - sent)
                if first is not None:
                    ttft.append(first - sent)

        start = time.monotonic() if start_at is None else start_at
        tasks = []
        for i, offset in enumerate(schedule.arrival_s):
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(max(0.0, time.monotonic() - start - offset))
            tasks.append(asyncio.create_task(one(i)))
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=drain_s)
            for task in pending:
                task.cancel()
            statuses["unfinished"] = len(pending)
    return {
        "sent": len(schedule),
        "statuses": statuses,
        "client_ttft_s": _quantiles(ttft),
        "client_e2e_s": _quantiles(e2e),
        "send_lateness_s": _quantiles(lateness),
    }


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {f"p{q}": float(np.percentile(array, q)) for q in (50, 90, 99)}


def _child(url, model, schedule, stream_share, drain_s, seed, ready, go, results) -> None:
    ready.set()
    go.wait()
    start = time.monotonic()
    from grid.live.server import run_async

    results.put(run_async(drive(url, model, schedule, stream_share, drain_s, start, seed)))


class LoadProcess:
    """`drive` in a spawned process: `start()` (imports done), `go()` (clock starts), `result()`."""

    def __init__(
        self, url: str, model: str, schedule: Schedule, stream_share: float = 1.0, drain_s: float = 30.0, seed: int = 0
    ) -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._go, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._process = ctx.Process(
            target=_child,
            args=(url, model, schedule, stream_share, drain_s, seed, self._ready, self._go, self._results),
            daemon=True,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        self._process.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("the load generator did not start")

    def go(self) -> None:
        self._go.set()

    def result(self, timeout_s: float) -> dict:
        try:
            out = self._results.get(timeout=timeout_s)
        except Exception:
            out = {"error": "the load generator did not report"}
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
        return out
