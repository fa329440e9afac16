"""Open-loop HTTP load against the gateway: replays an arrival schedule (times, populations, sizes).

Each arrival is sent at its time, whatever happened to earlier ones (open loop, like `vllm bench
serve --request-rate`), with `max_tokens` = the drawn output tokens and `ignore_eos`, so the live grid
serves the very requests the simulator sees. Prompts count exactly the drawn prompt tokens, and share
KV blocks exactly as the simulator's requests share prefix hashes:

- Without prefix hashes (Poisson demand) a request is a chat completion whose message is filler words
  (each one Qwen token, grid.live.text) led by the request's own number in words, so no two prompts
  share their first 16-token block: the simulator gives them no hashes, so live they must miss too.
- With prefix hashes (sessions) it is a completion with a token-id prompt: the ids of each hash unit
  are a function of the unit's chain hash alone, the rest unique to the request. Equal chains give
  equal ids, so the gateway's own chain hashes over 16-token blocks share exactly where the
  simulator's hashes do (units must be whole blocks: 16 tokens or a multiple).

Runs in its own process (`LoadProcess`), so the client's CPU does not share an interpreter with the gateway.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass

import httpx
import numpy as np

from grid.demand.sessions import chain_hash
from grid.live.prefix_hashes import BLOCK_TOKENS as LIVE_BLOCK_TOKENS  # the gateway's KV-block hashing
from grid.live.text import filler_words, number_width, numbered_words
from grid.live.tokenizer import BPE_RANKS, CHAT_OVERHEAD_TOKENS

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TAIL_SALT = 0x7A11  # keys the requests' own tokens apart from any hash unit's


@dataclass
class Schedule:
    """Requests to send: offsets from the start (s), population ids, prompt and output tokens; with
    prefix structure, each request's chain hashes (None: none) and the tokens per hash unit."""

    arrival_s: list[float]
    population: list[str]
    prompt_tokens: list[int]
    output_tokens: list[int]
    prefix_hashes: list[tuple[int, ...] | None] | None = None
    block_tokens: int = 0

    def __post_init__(self) -> None:
        if self.prefix_hashes is not None and (self.block_tokens <= 0 or self.block_tokens % LIVE_BLOCK_TOKENS):
            raise ValueError(
                f"prefix hashes of {self.block_tokens}-token units do not map onto the gateway's "
                f"{LIVE_BLOCK_TOKENS}-token blocks (need a positive multiple of {LIVE_BLOCK_TOKENS})"
            )

    def __len__(self) -> int:
        return len(self.arrival_s)


def _mixed_ids(keys: np.ndarray, length: int) -> np.ndarray:
    """`length` token ids (0..BPE_RANKS-1, plain BPE tokens) per key: splitmix64 of (key, position),
    rows in `keys`' order. The modulo's bias (2^64 mod 151643) is far below any effect here."""
    x = keys.astype(np.uint64)[:, None] + np.arange(1, length + 1, dtype=np.uint64)[None, :] * _GOLDEN
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x % np.uint64(BPE_RANKS)


def prompt_token_ids(hashes: tuple[int, ...] | None, unit_tokens: int, prompt_tokens: int, key: int) -> list[int]:
    """`prompt_tokens` ids: for each full unit of the prompt with a hash, the unit's ids from that hash
    alone; then ids from `key` (one per request), which no other request repeats. Hash units past the
    prompt (an answer's, in the simulator) have no tokens to stand for here and are left out."""
    units = min(len(hashes), prompt_tokens // unit_tokens) if hashes else 0
    shared = _mixed_ids(np.asarray(hashes[:units], dtype=np.uint64), unit_tokens).ravel() if units else None
    own = _mixed_ids(np.array([key], dtype=np.uint64), prompt_tokens - units * unit_tokens).ravel()
    return (own if shared is None else np.concatenate((shared, own))).tolist()


def request_key(seed: int, index: int) -> int:
    """The key of request `index`'s own tokens in a run with `seed` (63 bits, as chain hashes are)."""
    return chain_hash(chain_hash(_TAIL_SALT, seed), index)


class PromptBuilder:
    """Request bodies for a schedule (see the module docstring for how prompts share blocks)."""

    def __init__(self, model: str, schedule: Schedule, seed: int) -> None:
        self.model, self.schedule, self.seed = model, schedule, seed
        longest = max(schedule.prompt_tokens, default=0)
        self.words = filler_words(max(0, longest - CHAT_OVERHEAD_TOKENS), seed).split(" ")
        self.width = number_width(len(schedule))

    def path(self) -> str:
        return "/v1/chat/completions" if self.schedule.prefix_hashes is None else "/v1/completions"

    def chat_content(self, i: int) -> str:
        """Request i's message: its number in words, then filler, `prompt_tokens − CHAT_OVERHEAD_TOKENS`
        words in all. The template's 3 leading tokens leave 13 words in the first block: room for the
        number (`number_width` words, 3 for up to 71³ requests)."""
        n = max(0, self.schedule.prompt_tokens[i] - CHAT_OVERHEAD_TOKENS)
        return " ".join((numbered_words(i, self.width) + self.words[:n])[:n])

    def body(self, i: int, stream: bool) -> dict:
        s = self.schedule
        body: dict = {"model": self.model, "max_tokens": int(s.output_tokens[i]), "ignore_eos": True, "stream": stream}
        if s.prefix_hashes is None:
            body["messages"] = [{"role": "user", "content": self.chat_content(i)}]
        else:
            key = request_key(self.seed, i)
            body["prompt"] = prompt_token_ids(s.prefix_hashes[i], s.block_tokens, int(s.prompt_tokens[i]), key)
        return body


async def drive(
    url: str,
    model: str,
    schedule: Schedule,
    stream_share: float = 1.0,
    drain_s: float = 30.0,
    start_at: float | None = None,
    seed: int = 0,
) -> dict:
    """Send the schedule; return client-side counts and latencies (s), and `per_request` (schedule order,
    None unless answered): the zone and cached prompt tokens its answer's headers name, and its TTFT.
    `start_at`: time.monotonic() at which offset 0 falls (default: now)."""
    prompts = PromptBuilder(model, schedule, seed)
    path = prompts.path()
    rng = np.random.default_rng(seed)
    streams = (rng.random(len(schedule)) < stream_share).tolist()
    statuses: dict[str, int] = {}
    ttft: list[float] = []
    e2e: list[float] = []
    lateness: list[float] = []
    zones: list[str | None] = [None] * len(schedule)
    cached: list[int | None] = [None] * len(schedule)
    firsts: list[float | None] = [None] * len(schedule)
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
    timeout = httpx.Timeout(300.0, connect=30.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            body = prompts.body(i, streams[i])
            headers = {"X-Grid-Population": schedule.population[i]}
            sent = time.monotonic()
            try:
                if streams[i]:
                    async with client.stream("POST", path, json=body, headers=headers) as r:
                        first = None
                        async for _ in r.aiter_raw():
                            if first is None:
                                first = time.monotonic()
                        status = str(r.status_code)
                else:
                    r = await client.post(path, json=body, headers=headers)
                    first = None
                    status = str(r.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                first = None
            end = time.monotonic()
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                zones[i] = r.headers.get("x-grid-zone")
                cached[i] = int(r.headers.get("x-grid-cached-tokens", 0))
                e2e.append(end - sent)
                if first is not None:
                    ttft.append(first - sent)
                    firsts[i] = first - sent

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
        "per_request": {"zone": zones, "cached_tokens": cached, "ttft_s": firsts},
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
