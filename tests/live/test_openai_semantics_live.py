"""Honest OpenAI semantics through the real gateway: stop sequences cut the answer the zone
generates, refused fields answer 400 naming them, non-JSON bodies 415."""

from __future__ import annotations

import pytest

from grid.live.text import generate_pieces
from grid.live.tokenizer import count

from .test_gateway_e2e import assert_openai_error, chat, sse_events


def _answer(live, seed: int) -> str:
    return chat(live, max_tokens=60, ignore_eos=True, seed=seed).json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_cuts_the_answer_before_the_stop(live, stream):
    pieces = generate_pieces(60, 21)
    assert _answer(live, 21) == "".join(pieces)  # the answer the stop is looked for in
    stop = "".join(pieces[30:32])
    assert "".join(pieces).find(stop) == len("".join(pieces[:30]))
    r = chat(
        live,
        max_tokens=60,
        ignore_eos=True,
        seed=21,
        stop=["zebra", stop],
        stream=stream,
        stream_options={"include_usage": True} if stream else None,
    )
    assert r.status_code == 200, r.text
    if stream:
        events = sse_events(r)
        chunks, usage = events[:-2], events[-2]["usage"]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        body = r.json()
        text, finish, usage = (
            body["choices"][0]["message"]["content"],
            body["choices"][0]["finish_reason"],
            body["usage"],
        )
    assert text == "".join(pieces[:30]) and stop not in text
    assert finish == "stop"
    assert usage["completion_tokens"] == 30 == count(text)


@pytest.mark.parametrize("stream", [False, True])
def test_stop_at_the_start_is_an_empty_answer(live, stream):
    first = generate_pieces(1, 22)[0]
    r = chat(
        live,
        max_tokens=60,
        seed=22,
        stop=first,
        stream=stream,
        stream_options={"include_usage": True} if stream else None,
    )
    assert r.status_code == 200, r.text
    if stream:
        events = sse_events(r)
        chunks, usage = events[:-2], events[-2]["usage"]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ""
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        body = r.json()
        assert body["choices"][0]["message"]["content"] == ""
        assert body["choices"][0]["finish_reason"] == "stop"
        usage = body["usage"]
    assert usage["completion_tokens"] == 0


def test_refusals_through_the_gateway(live):
    r = chat(live, tools=[{"type": "function", "function": {"name": "f"}}])
    assert assert_openai_error(r, 400, "unsupported_parameter")["param"] == "tools"
    r = chat(live, stop=["a"] * 10_000)
    assert assert_openai_error(r, 400, "invalid_value")["param"] == "stop"
    raw = b'{"model": "' + live.model.encode() + b'", "messages": [{"role": "user", "content": "hi"}], "max_tokens": '
    for digits in (4300, 10_000):
        r = live.client.post(
            "/v1/chat/completions", content=raw + b"9" * digits + b"}", headers={"content-type": "application/json"}
        )
        assert assert_openai_error(r, 400, "invalid_value")["param"] == "max_tokens"
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = live.client.post("/v1/chat/completions", content=b"{}", headers={"content-type": media})
        assert_openai_error(r, 415, "unsupported_media_type")
    r = live.client.post(
        "/v1/completions", content=b'{"model": "' + live.model.encode() + b'", "prompt": "hi", "max_tokens": 2}'
    )
    assert r.status_code == 200  # no Content-Type: read as JSON
