"""Reading a streamed chat completion: TTFT, ITL, TPOT, E2E and every way a stream can be malformed."""

from __future__ import annotations

import itertools
import json

import pytest

from grid.live.tokenizer import count_chat
from loadtests.chat import chat_body, read_stream


def _chunk(content=None, finish=None, usage=None, role=False):
    delta = {} if content is None else {"content": content}
    if role:
        delta["role"] = "assistant"
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    event = {"object": "chat.completion.chunk", "choices": choices, "usage": usage}
    return ("data: " + json.dumps(event) + "\n").encode()


def _clock(*times):
    it = iter(times)
    return lambda: next(it)


GOOD = [
    _chunk("Hello", role=True), b"\n", _chunk(" grid"), b"\n", _chunk(" .", finish="length"), b"\n",
    _chunk(usage={"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}), b"\n", b"data: [DONE]\n", b"\n",
]  # fmt: skip


def test_a_good_stream_gives_ttft_itl_tpot_e2e():
    r = read_stream(GOOD, _clock(10.2, 10.3, 10.6), sent_s=10.0)
    assert r.ok and r.done
    assert r.ttft_s == pytest.approx(0.2) and r.e2e_s == pytest.approx(0.6)
    assert r.itl_s == pytest.approx([0.1, 0.3])
    assert r.completion_tokens == 5
    assert r.tpot_s == pytest.approx(0.4 / 4)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (GOOD[:-2], "without data: [DONE]"),
        ([b"data: {not json\n"], "bad JSON"),
        ([b'data: {"error": {"message": "Zone x failed", "type": "service_unavailable"}}\n'], "Zone x failed"),
        ([b'data: {"object": "chat.completion.chunk"}\n'], "without choices"),
        ([b"data: [1, 2]\n"], "not an object"),
        ([b"data: [DONE]\n"], "without content"),
        ([b"data: [DONE]\n", _chunk("late")], "after [DONE]"),
    ],
)
def test_malformed_streams_fail(lines, message):
    r = read_stream(lines, itertools.count().__next__, 0.0)
    assert not r.ok and message in r.error


def test_sse_comments_and_other_fields_are_ignored():
    lines = [b": keep-alive\n", b"event: message\n", *GOOD]
    assert read_stream(lines, _clock(1, 2, 3), 0.0).ok


def test_the_request_body_asks_for_exact_sizes():
    body = chat_body("m", 150, 40, seed=3)
    assert body["max_tokens"] == 40 and body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert count_chat([("user", body["messages"][0]["content"])]) == 150
