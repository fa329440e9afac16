"""One streamed chat completion from a Locust user, measured the vLLM way.

With `stream=True` Locust's own response time stops at the headers, so the stream is read here line
by line and each figure is reported as its own Locust entry (`environment.events.request.fire`):

- `TTFT chat`: first content chunk at the client − send;
- `ITL chat`: gap between successive content chunks (the gateway coalesces tokens into a chunk
  every stream interval, so this is per chunk, not per token);
- `TPOT chat`: (E2E − TTFT) / (completion_tokens − 1), completion_tokens from the usage chunk;
- `E2E chat`: last content chunk − send.

The POST entry itself fails on an HTTP error or a malformed stream (bad JSON, an `error` event, a
chunk without `choices`, no content, no `data: [DONE]`). `read_stream` is pure: it takes the lines
and a clock, so it is tested without a network.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from grid.live.text import chat_content_for

CHAT_PATH = "/v1/chat/completions"
POPULATION_HEADER = "X-Grid-Population"
ENTRY_NAME = "chat"


@dataclass
class StreamResult:
    error: str | None = None
    ttft_s: float = math.nan
    e2e_s: float = math.nan
    itl_s: list[float] = field(default_factory=list)
    content_chunks: int = 0
    completion_tokens: int | None = None
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot_s(self) -> float:
        n = self.completion_tokens
        if n is None or n < 2 or self.ttft_s != self.ttft_s:
            return math.nan
        return (self.e2e_s - self.ttft_s) / (n - 1)


def read_stream(lines: Iterable[bytes | str], clock: Callable[[], float], sent_s: float) -> StreamResult:
    """Read server-sent events until `data: [DONE]`; times are `clock()` − `sent_s` at each line."""
    result = StreamResult()
    last = math.nan
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line or line.startswith(":"):
            continue  # event separator or SSE comment
        if not line.startswith("data:"):
            continue  # other SSE fields (event:, id:, retry:) carry nothing here
        data = line[5:].strip()
        if result.done:
            result.error = "data after [DONE]"
            return result
        if data == "[DONE]":
            result.done = True
            continue
        try:
            event = json.loads(data)
        except ValueError:
            result.error = f"bad JSON in stream: {data[:80]!r}"
            return result
        if not isinstance(event, dict):
            result.error = f"stream event is not an object: {data[:80]!r}"
            return result
        if "error" in event:
            err = event["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            result.error = f"error event: {str(message)[:160]}"
            return result
        choices = event.get("choices")
        if not isinstance(choices, list):
            result.error = "stream chunk without choices"
            return result
        usage = event.get("usage")
        if isinstance(usage, dict) and "completion_tokens" in usage:
            result.completion_tokens = int(usage["completion_tokens"])
        for choice in choices:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                now = clock() - sent_s
                if result.content_chunks == 0:
                    result.ttft_s = now
                else:
                    result.itl_s.append(now - last)
                last = now
                result.e2e_s = now
                result.content_chunks += 1
    if result.error is None:
        if not result.done:
            result.error = "stream ended without data: [DONE]"
        elif result.content_chunks == 0:
            result.error = "stream without content"
    return result


def chat_body(model: str, prompt_tokens: int, output_tokens: int, seed: int) -> dict:
    """A streamed chat request whose prompt counts `prompt_tokens` (Qwen's tokens, at least the
    chat template's own) and whose answer is exactly `output_tokens` long (ignore_eos)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": chat_content_for(int(prompt_tokens), seed)}],
        "max_tokens": int(output_tokens),
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _lines(response) -> Iterator[bytes]:
    """Lines of a FastHttpUser streamed response as they arrive (geventhttpclient's readline
    returns as soon as a line is complete; iter_content(n) would wait for n bytes)."""
    raw = getattr(response, "_response", None)
    if raw is not None and hasattr(raw, "readline"):
        while True:
            line = raw.readline(b"\n")
            if not line:
                return
            yield line
        return
    buffer = b""
    for chunk in response.iter_content(chunk_size=1, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line + b"\n"
    if buffer:
        yield buffer


@dataclass
class Outcome:
    """What one request did, for the per-request records."""

    population: str
    status: str
    ok: bool
    ttft_s: float = math.nan
    tpot_s: float = math.nan
    e2e_s: float = math.nan
    output_tokens: int = 0


def request_headers(population: str | None, api_key: str | None = None) -> dict[str, str]:
    """The headers of a chat request: `X-Grid-Population` (None: no header, the target's default
    population) and, with an API key, `Authorization: Bearer <key>`."""
    headers = {"Accept": "text/event-stream"}
    if population:
        headers[POPULATION_HEADER] = population
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def send_chat(
    user,
    population: str,
    prompt_tokens: int,
    output_tokens: int,
    model: str,
    seed: int,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """POST one streamed chat completion with `user.client` (a FastHttpUser's) and report it.
    `population` is the load test's (records, entries); `headers` default to `request_headers(population)`."""
    fire = user.environment.events.request.fire
    body = chat_body(model, prompt_tokens, output_tokens, seed)
    headers = request_headers(population) if headers is None else headers
    sent = time.perf_counter()
    outcome = Outcome(population, "error", False)
    with user.client.post(
        CHAT_PATH, json=body, headers=headers, stream=True, catch_response=True, name=CHAT_PATH
    ) as response:
        status = response.status_code
        if status != 200:
            try:
                text = response.text or ""
            except Exception:  # the body may be gone with the connection
                text = ""
            detail = text[:200] if text else str(getattr(response, "error", "") or "")
            response.failure(f"HTTP {status}: {detail}")
            outcome.status = f"http_{status}"
            return outcome
        try:
            result = read_stream(_lines(response), time.perf_counter, sent)
        except Exception as exc:  # the connection broke mid-stream
            result = StreamResult(error=f"stream broken: {type(exc).__name__}: {exc}"[:200])
        if not result.ok:
            response.failure(result.error)
            outcome.status = "bad_stream"
            return outcome
        response.success()
    outcome.status, outcome.ok = "ok", True
    outcome.ttft_s, outcome.e2e_s, outcome.tpot_s = result.ttft_s, result.e2e_s, result.tpot_s
    outcome.output_tokens = result.completion_tokens or 0
    n = outcome.output_tokens
    entries = [("TTFT", result.ttft_s), ("E2E", result.e2e_s)]
    if result.tpot_s == result.tpot_s:
        entries.append(("TPOT", result.tpot_s))
    entries += [("ITL", gap) for gap in result.itl_s]
    for kind, seconds in entries:
        fire(
            request_type=kind,
            name=ENTRY_NAME,
            response_time=seconds * 1000.0,
            response_length=n,
            exception=None,
            context={"population": population},
        )
    return outcome
