"""End to end: real uvicorn on a loopback port, real local Ray zone actors, real httpx."""

from __future__ import annotations

import json
import time

import pytest

from grid.live.tokenizer import count, count_chat

POPULATIONS = ("berlin", "new_york", "dallas")
ZONES = ("frankfurt-1", "frankfurt-2", "mexico-1")


def chat(live, content="Hello, grid!", headers=None, **extra):
    body = {"model": live.model, "messages": [{"role": "user", "content": content}], **extra}
    return live.client.post("/v1/chat/completions", json=body, headers=headers or {})


def sse_events(response) -> list:
    """Parsed `data:` events of a streamed answer; `[DONE]` stays a string."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def assert_openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


# --- happy paths ------------------------------------------------------------------------------


def test_models_and_health(live):
    models = live.client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [live.model]
    assert models["data"][0]["object"] == "model" and "created" in models["data"][0] and models["data"][0]["owned_by"]
    health = live.client.get("/health")
    assert health.status_code == 200 and health.json()["zones_up"] == 3


def test_chat_completion_usage_headers_and_honest_counts(live):
    content = "How far is Frankfurt from Berlin, in milliseconds?"
    r = chat(live, content, seed=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == live.model
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_chat([("user", content)])
    assert usage["completion_tokens"] == count(choice["message"]["content"]) >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Default population (the scenario's first), and where it was served.
    assert r.headers["x-grid-population"] == "berlin"
    assert r.headers["x-grid-zone"] in ZONES
    assert r.headers["x-grid-region"] == "frankfurt"  # 13.6 ms vs 165 ms: latency_aware stays near
    assert float(r.headers["x-grid-rtt-ms"]) >= 13.6  # the base RTT plus non-negative jitter


def test_same_seed_same_answer(live):
    a = chat(live, "Say something.", seed=42).json()
    b = chat(live, "Say something.", seed=42).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["usage"] == b["usage"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_finish_reason_length_when_capped(live, field):
    r = chat(live, seed=5, **{field: 1})  # seed 5 draws more than one token (see the test above)
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 1 == count(body["choices"][0]["message"]["content"])


def test_ignore_eos_gives_exactly_max_tokens(live):
    body = chat(live, max_tokens=37, ignore_eos=True).json()
    assert body["usage"]["completion_tokens"] == 37
    assert body["choices"][0]["finish_reason"] == "length"


def test_population_header_routes_and_applies_rtt(live):
    r = chat(live, headers={"X-Grid-Population": "dallas"})
    assert r.status_code == 200
    assert r.headers["x-grid-population"] == "dallas"
    assert r.headers["x-grid-zone"] == "mexico-1"
    assert float(r.headers["x-grid-rtt-ms"]) >= 26.1


def test_chat_streaming_with_usage(live):
    r = chat(live, "Stream, please.", stream=True, stream_options={"include_usage": True}, seed=9)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-grid-zone"] in ZONES
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks, usage_chunk = events[:-2], events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["object"] == "chat.completion.chunk"
    assert len(chunks) >= 1
    assert {c["id"] for c in chunks + [usage_chunk]} == {chunks[0]["id"]}
    assert len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == count(text)
    assert usage["prompt_tokens"] == count_chat([("user", "Stream, please.")])
    # The same seed without streaming gives the same text.
    assert chat(live, "Stream, please.", seed=9).json()["choices"][0]["message"]["content"] == text


def test_continuous_usage_stats_and_created_per_request(live):
    """vLLM's `continuous_usage_stats`: every chunk carries the usage so far; `created` is the
    request's own arrival (it was the gateway's start time)."""
    before = int(time.time())
    options = {"include_usage": True, "continuous_usage_stats": True}
    r = chat(live, stream=True, max_tokens=30, ignore_eos=True, stream_options=options)
    events = sse_events(r)
    chunks, final = events[:-2], events[-2]
    text = ""
    for c in chunks:
        text += c["choices"][0]["delta"].get("content", "")
        assert c["usage"]["completion_tokens"] == count(text)
        assert c["usage"]["prompt_tokens"] == final["usage"]["prompt_tokens"]
    assert chunks[-1]["usage"]["completion_tokens"] == final["usage"]["completion_tokens"] == 30
    assert before <= chunks[0]["created"] <= time.time()
    assert before <= chat(live).json()["created"] <= time.time()
    plain = sse_events(chat(live, stream=True, stream_options={"include_usage": True}))
    assert all(c["usage"] is None for c in plain[:-2])  # without it, usage only at the end


def test_chat_streaming_without_usage_and_length(live):
    r = chat(live, stream=True, max_tokens=25, ignore_eos=True)
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert count(text) == 25
    assert len(chunks) > 1  # 25 tokens at ≈7 ms each arrive over several 10 ms stream ticks


def test_completions_non_streaming(live):
    r = live.client.post(
        "/v1/completions", json={"model": live.model, "prompt": "Once upon a time", "max_tokens": 3, "seed": 5}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason"}
    assert body["usage"]["prompt_tokens"] == count("Once upon a time") == 4
    assert body["usage"]["completion_tokens"] == count(choice["text"])
    assert choice["finish_reason"] in ("stop", "length")


def test_completions_token_ids_prompt(live):
    r = live.client.post("/v1/completions", json={"model": live.model, "prompt": [1, 2, 3, 4, 5], "max_tokens": 2})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 5


def test_completions_streaming_with_usage(live):
    r = live.client.post(
        "/v1/completions",
        json={
            "model": live.model,
            "prompt": "Tell me",
            "stream": True,
            "max_tokens": 12,
            "ignore_eos": True,
            "stream_options": {"include_usage": True},
        },
        headers={"X-Grid-Population": "new_york"},
    )
    assert r.status_code == 200
    assert r.headers["x-grid-population"] == "new_york"
    events = sse_events(r)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == []
    chunks = events[:-2]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert count("".join(c["choices"][0]["text"] for c in chunks)) == 12
    assert events[-2]["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 12,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


# --- errors -----------------------------------------------------------------------------------


def test_invalid_json_is_400_not_422(live):
    r = live.client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert_openai_error(r, 400)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "M", "messages": []}, "messages"),
        ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, "max_tokens"),
        ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "M", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ],
)
def test_bad_bodies_are_400_in_openai_shape(live, body, param):
    if body.get("model") == "M":
        body["model"] = live.model
    r = live.client.post("/v1/chat/completions", json=body)
    error = assert_openai_error(r, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_model_is_404(live):
    r = live.client.post(
        "/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}
    )
    error = assert_openai_error(r, 404, "model_not_found")
    assert error["message"] == "The model `gpt-9` does not exist."
    r = live.client.post("/v1/completions", json={"model": "gpt-9", "prompt": "hi"})
    assert_openai_error(r, 404, "model_not_found")


def test_unknown_population_is_400_listing_valid_ones(live):
    r = chat(live, headers={"X-Grid-Population": "atlantis"})
    error = assert_openai_error(r, 400, "unknown_population")
    assert "atlantis" in error["message"]
    for population in POPULATIONS:
        assert population in error["message"]


def test_prompt_over_context_is_400(live):
    r = chat(live, " ".join(["word"] * 5000))  # context_tokens is 4096 in the small scenario
    error = assert_openai_error(r, 400, "context_length_exceeded")
    assert "4096" in error["message"]


def test_unknown_route_is_openai_shaped_404(live):
    assert_openai_error(live.client.get("/v1/nothing"), 404)


# --- state and metrics ------------------------------------------------------------------------


def test_grid_zones_and_metrics(live):
    for _ in range(3):
        assert chat(live).status_code == 200
    zones = live.client.get("/grid/zones").json()
    assert zones["policy"] == "latency_aware"
    assert zones["report_interval_s"] == 0.1
    assert [z["zone"] for z in zones["zones"]] == list(ZONES)
    for z in zones["zones"]:
        assert z["up"] is True
        for key in ("outstanding", "waiting", "running", "kv_usage", "utilization", "ttft_ewma_s", "report_age_s"):
            assert z[key] >= 0
        assert z["report_age_s"] < 2.0
    assert sum(z["sent_total"] for z in zones["zones"]) >= 3
    metrics = live.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'grid_requests_total{population="berlin"' in metrics.text
    assert 'grid_zone_up{region="mexico",zone="mexico-1"} 1.0' in metrics.text
    assert "vllm:time_to_first_token_seconds_bucket{" in metrics.text


def test_run_stats_are_fed(live):
    stats = live.grid.gateway.stats
    assert chat(live, headers={"X-Grid-Population": "new_york"}).status_code == 200
    stats.flush()
    assert sum(stats.arrivals) >= 1 and int(stats.completed.sum()) >= 1
    ttft = stats.quantiles("ttft_s", [1], slice(None))["p50"]
    assert ttft >= 0.0686  # the client-side TTFT includes New York's RTT to the nearest zone (68.6 ms)
