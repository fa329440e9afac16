"""What Qwen tokenization costs the gateway (issue 14, item 3): load, encode speed, the event loop.

    .venv/bin/python benchmarks/tokenizer_cost.py [--requests 1000] [--repeat 5]

1. Load, each in a fresh interpreter: `import tiktoken`, the first `grid.live.tokenizer.encoding()`
   (read dashscope's qwen.tiktoken, build the BPE), and `import dashscope` (what importing the SDK
   instead of locating its file would cost).
2. Encode speed, prompts cut from Python's documentation (`pydoc_data.topics`: prose and code): the old
   word-piece counter (the regex `grid/live/text.py` counted with before) vs Qwen's BPE
   (`tokenizer.encode`, no cache), µs per prompt and tokens/s, chat-sized to 1 MiB.
3. The event loop: the cost of one `asyncio.to_thread` hop, and the longest stall a 1 ms ticker sees
   while a prompt of each size is encoded inline vs in a worker thread: where the worker thread pays
   off sets `tokenizer.INLINE_MAX_CHARS`.
4. The request path: `--requests` chat bodies per workload (all text unique; a shared system prompt;
   10-turn conversations resending their history) parsed (`openai_api.parse_body`) and counted, old
   vs new, µs per request added to parsing. Against the gateway's own cost per request
   (benchmarks/RESULTS.md: ≈1,500–2,000 req/s closed loop, i.e. 500–670 µs), that is the share of
   throughput the counting takes.
Sections 2 and 4 count CPU time (`time.process_time`: on a shared machine wall time includes other
jobs' turns), the fastest of 3 × `--repeat` runs (the request path: per batch of 50 bodies); section
3 is about waiting, so it is wall time (the fastest run); section 1 is wall time, the median.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live import openai_api as api  # noqa: E402
from grid.live import tokenizer  # noqa: E402

BATCH = 50  # request bodies per timed run (whole 10-turn conversations)
OLD_TOKEN_RE = re.compile(r"\s*(?:\w{1,8}|[^\w\s])|\s+")  # grid/live/text.py's word pieces, before Qwen's


def old_count(text: str) -> int:
    return len(OLD_TOKEN_RE.findall(text))


def old_count_chat(messages: list[tuple[str, str]]) -> int:
    return old_count("".join(f"<|{role}|>\n{content}\n" for role, content in messages) + "<|assistant|>\n")


def corpus(chars: int, offset: int = 0) -> str:
    """`chars` characters of Python's own documentation (`pydoc_data.topics`: 0.45 MB of English prose
    with code samples, fixed for a Python version) from `offset` on, repeated past its end."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    reps = (offset + chars) // len(text) + 1
    return (text * reps)[offset : offset + chars]


def timed(fn: Callable[[], object], repeat: int, inner: int = 1) -> float:
    """CPU seconds per call (this process's, worker threads included: on a shared machine wall time
    also counts other jobs' turns): the fastest of `repeat` × 3 runs of `inner` calls. The tokenizer's
    cache is emptied before each run, so a run sees only the hits its own calls make."""
    best = float("inf")
    for _ in range(3 * repeat):
        tokenizer._cache.clear()
        start = time.process_time()
        for _ in range(inner):
            fn()
        best = min(best, (time.process_time() - start) / inner)
    return best


def fresh(code: str) -> float:
    """Seconds `code` takes in a fresh interpreter (after its own start-up)."""
    probe = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def load_costs(repeat: int) -> list[tuple[str, float]]:
    cases = [
        ("import tiktoken", "import tiktoken"),
        ("first encoding() (import, read, build)", "from grid.live import tokenizer; tokenizer.encoding()"),
        ("import dashscope (not done)", "import dashscope"),
    ]
    return [(name, statistics.median(fresh(code) for _ in range(repeat))) for name, code in cases]


def encode_speed(repeat: int) -> list[dict]:
    rows = []
    for label, chars in (("chat 1 KiB", 1024), ("4 KiB", 4096), ("64 KiB", 65536), ("1 MiB", 1 << 20)):
        text = corpus(chars, offset=1000)
        inner = max(1, (256 * 1024) // chars)
        row = {"prompt": label, "chars": chars, "qwen_tokens": tokenizer.count(text), "old_tokens": old_count(text)}
        for name, fn in (("old", old_count), ("qwen", lambda text: len(tokenizer.encode(text)))):  # no cache
            row[f"{name}_us"] = timed(lambda fn=fn, text=text: fn(text), repeat, inner) * 1e6
        row["qwen_tok_per_s"] = row["qwen_tokens"] / (row["qwen_us"] / 1e6)
        row["qwen_mb_per_s"] = chars / row["qwen_us"]
        rows.append(row)
    return rows


async def _stall(work: Callable[[], object], tick_s: float = 0.001) -> float:
    """The longest a 1 ms ticker waits past its due time while `work()` (a coroutine factory) runs."""
    worst = 0.0
    running = True

    async def ticker() -> None:
        nonlocal worst
        while running:
            due = time.perf_counter() + tick_s
            await asyncio.sleep(tick_s)
            worst = max(worst, time.perf_counter() - due)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is running
    worst = 0.0
    await work()
    running = False
    await task
    return worst


async def loop_costs(repeat: int) -> tuple[float, list[dict]]:
    hops = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(200):
            await asyncio.to_thread(int)
        hops.append((time.perf_counter() - start) / 200)
    hop = min(hops)
    rows = []
    for label, chars in (
        ("4 KiB", 4096),
        ("8 KiB", 8192),
        ("16 KiB", 16384),
        ("64 KiB", 65536),
        ("256 KiB", 1 << 18),
        ("1 MiB", 1 << 20),
    ):
        text = corpus(chars, offset=3000)

        async def inline(text: str = text) -> None:  # encode: no cache, every run pays the whole prompt
            tokenizer.encode(text)

        async def threaded(text: str = text) -> None:
            await asyncio.to_thread(tokenizer.encode, text)

        async def end_to_end(fn, text: str = text) -> float:
            start = time.perf_counter()
            await fn(text)
            return time.perf_counter() - start

        rows.append(
            {
                "prompt": label,
                "inline_us": min([await end_to_end(inline) for _ in range(repeat)]) * 1e6,
                "thread_us": min([await end_to_end(threaded) for _ in range(repeat)]) * 1e6,
                "inline_stall_ms": min([await _stall(inline) for _ in range(repeat)]) * 1e3,
                "thread_stall_ms": min([await _stall(threaded) for _ in range(repeat)]) * 1e3,
            }
        )
    return hop, rows


def workloads(n: int) -> dict[str, list[list[tuple[str, str]]]]:
    """`n` chats each: all text unique; one system prompt shared by all; 10-turn conversations, each
    request resending the history (system, then user/assistant turns) with a new question."""
    system = corpus(400, offset=5000)
    unique = [[("system", corpus(400, 20_000 + 131 * i)), ("user", corpus(600, 7000 + 97 * i))] for i in range(n)]
    shared = [[("system", system), ("user", corpus(600, 7000 + 97 * i))] for i in range(n)]
    conversations: list[list[tuple[str, str]]] = []
    for c in range(max(1, n // 10)):
        history = [("system", system)]
        for k in range(10):
            history = [*history, ("user", corpus(200, 9000 + 53 * (10 * c + k)))]
            conversations.append(history)
            history = [*history, ("assistant", corpus(400, 15_000 + 71 * (10 * c + k)))]
    return {"unique": unique, "shared system prompt": shared, "10-turn conversations": conversations}


def request_path(chats: list[list[tuple[str, str]]], repeat: int) -> dict:
    """Parse + count these chats' bodies: old vs new (sync), and new through `count_chat_async`."""
    bodies = [
        json.dumps(
            {
                "model": "Qwen/Qwen3-8B",
                "messages": [{"role": role, "content": content} for role, content in chat],
                "max_tokens": 200,
                "stream": True,
            }
        ).encode()
        for chat in chats
    ]
    model = api.ChatCompletionRequest
    batches = [bodies[at : at + BATCH] for at in range(0, len(bodies), BATCH)]

    def parse_only(batch: list[bytes]) -> None:
        for raw in batch:
            api.parse_body(model, raw)

    def parse_old(batch: list[bytes]) -> None:
        for raw in batch:
            body = api.parse_body(model, raw)
            old_count_chat([(m.role, m.text()) for m in body.messages])

    def parse_new(batch: list[bytes]) -> None:
        for raw in batch:
            body = api.parse_body(model, raw)
            tokenizer.count_chat([(m.role, m.text()) for m in body.messages], body.enable_thinking)

    async def parse_new_async(batch: list[bytes]) -> None:
        for raw in batch:
            body = api.parse_body(model, raw)
            await tokenizer.count_chat_async([(m.role, m.text()) for m in body.messages], body.enable_thinking)

    loop = asyncio.new_event_loop()
    paths: dict[str, Callable[[list[bytes]], object]] = {
        "parse_only": parse_only,
        "old": parse_old,
        "qwen": parse_new,
        "qwen_async": lambda batch: loop.run_until_complete(parse_new_async(batch)),
    }
    n = len(bodies)
    out = {"requests": n, "mean_prompt_tokens": statistics.mean(tokenizer.count_chat(chat) for chat in chats)}
    for name, fn in paths.items():  # each batch timed on its own: interference hits few of them
        out[f"{name}_us"] = sum(timed(lambda fn=fn, b=b: fn(b), repeat) for b in batches) / n * 1e6
    loop.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"load avg {os.getloadavg()[0]:.1f}, Python {platform.python_version()}"
    )

    print("\n## load (fresh interpreter, median of", args.repeat, "runs)")
    for name, seconds in load_costs(args.repeat):
        print(f"| {name:<40} | {seconds * 1e3:8.1f} ms |")

    tokenizer.encoding()
    print("\n## encode speed (Python's documentation text)")
    print("| prompt | chars | Qwen tokens | old tokens | old µs | Qwen µs | Qwen Mtok/s | Qwen MB/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in encode_speed(args.repeat):
        print(
            f"| {r['prompt']} | {r['chars']:,} | {r['qwen_tokens']:,} | {r['old_tokens']:,} | {r['old_us']:,.1f} | "
            f"{r['qwen_us']:,.1f} | {r['qwen_tok_per_s'] / 1e6:.2f} | {r['qwen_mb_per_s']:.1f} |"
        )

    hop, rows = asyncio.run(loop_costs(args.repeat))
    print(f"\n## event loop (one asyncio.to_thread hop: {hop * 1e6:.0f} µs)")
    print("| prompt | inline µs | thread µs | longest tick stall inline ms | via thread ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['prompt']} | {r['inline_us']:,.0f} | {r['thread_us']:,.0f} | "
            f"{r['inline_stall_ms']:.2f} | {r['thread_stall_ms']:.2f} |"
        )
    print(f"(count_async encodes inline up to INLINE_MAX_CHARS = {tokenizer.INLINE_MAX_CHARS:,} characters)")

    print(f"\n## request path: parse + count, {args.requests:,} chat bodies per workload, µs per request")
    print("| workload | Qwen tokens (mean) | parse only | + old word pieces | + Qwen sync | + Qwen count_chat_async |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, chats in workloads(args.requests).items():
        r = request_path(chats, args.repeat)
        base = r["parse_only_us"]
        print(
            f"| {name} | {r['mean_prompt_tokens']:.0f} | {base:.1f} | {r['old_us'] - base:+.1f} | "
            f"{r['qwen_us'] - base:+.1f} | {r['qwen_async_us'] - base:+.1f} |"
        )


if __name__ == "__main__":
    main()
