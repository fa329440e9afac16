"""Streams as vLLM's look to clients (issue 14): one token per SSE chunk at the model's decode pace,
ITL from the gaps really left between chunks, every vLLM phase histogram filled live, and TTFT counted
from the request's first byte at the server. Real Ray, real uvicorn on loopback."""

from __future__ import annotations

import json
import re
import socket
import statistics
import time

from grid.live.tokenizer import count as qwen_tokens

from .conftest import stream_chat


def _histogram_count(metrics: str, family: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(family)}_count{{[^}}]*}} (\S+)$", metrics, re.M))


def test_one_token_per_chunk(live):
    status, events = stream_chat(live.url, live.model, "berlin", 40)
    assert status == 200
    contents = [e["choices"][0]["delta"].get("content", "") for e in events if isinstance(e, dict) and e["choices"]]
    assert len(contents) == 40  # one chunk per token, the last with the finish reason
    assert all(qwen_tokens(c) == 1 for c in contents)
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_tokens_arrive_at_the_decode_pace_not_in_bursts(live):
    # Alone on its zone, a sequence's decode step is decode_base_s + decode_per_seq_s (small.yaml).
    gpu = live.scenario.gpus["h100"]
    step_s = gpu.decode_base_s + gpu.decode_per_seq_s
    times: list[float] = []
    status, events = stream_chat(live.url, live.model, "berlin", 80, times)
    assert status == 200
    chunk_times = [t for t, e in zip(times, events, strict=True) if isinstance(e, dict) and e["choices"]]
    gaps = [b - a for a, b in zip(chunk_times, chunk_times[1:], strict=False)]
    median = statistics.median(gaps)
    bursts = sum(g < 0.2 * step_s for g in gaps) / len(gaps)
    # Before pacing, a 10 ms stream tick sent ~1.4 tokens per chunk: gaps of 0 or one tick.
    assert 0.6 * step_s <= median <= 1.6 * step_s, (median, step_s)
    assert bursts < 0.25, f"{bursts:.0%} of gaps were bursts"


def test_vllm_phase_histograms_and_measured_itl_live(live):
    before = live.client.get("/metrics").text
    status, events = stream_chat(live.url, live.model, "berlin", 30)
    assert status == 200
    after = live.client.get("/metrics").text
    for family in (
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:e2e_request_latency_seconds",
    ):
        assert _histogram_count(after, family) - _histogram_count(before, family) == 1, family
    # One gap per pair of chunks as sent: 29 for 30 one-token chunks.
    assert (
        _histogram_count(after, "vllm:inter_token_latency_seconds")
        - _histogram_count(before, "vllm:inter_token_latency_seconds")
        == 29
    )


def test_ttft_starts_when_the_request_reaches_the_server(live):
    """A client that sends its head, then its body 0.4 s later, waited from its first byte: so does TTFT."""
    records = []
    live.grid.gateway.on_request_end.append(records.append)
    try:
        request = {"model": live.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        body = json.dumps(request).encode()
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"x-grid-population: berlin\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            sock.sendall(head.encode())
            time.sleep(0.4)
            sock.sendall(body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        mine = [r for r in records if r.prompt_tokens and r.status in ("stop", "length")]
        assert mine and mine[-1].ttft_s >= 0.4, mine[-1:]
    finally:
        live.grid.gateway.on_request_end.remove(records.append)
