"""Honest OpenAI semantics, without Ray: every field is served or refused with a 400 naming it
(grid.live.openai_api), huge numbers never reach a formatter, `stop` cuts the answer before routing
(grid.live.intake.apply_stop), and only JSON bodies are read (check_content_type)."""

from __future__ import annotations

import json

import pytest

from grid.live import openai_api as api
from grid.live.intake import Intake, apply_stop
from grid.live.text import generate_pieces, make_text
from grid.live.tokenizer import count
from grid.scenario import load_scenario
from grid.serving.request import LENGTH, STOP
from grid.world import build_world

from .conftest import SMALL_SCENARIO

CHAT = api.ChatCompletionRequest
COMPLETION = api.CompletionRequest
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields) -> bytes:
    return json.dumps({"model": "m", "messages": MESSAGES, **fields}).encode()


def completion(**fields) -> bytes:
    return json.dumps({"model": "m", "prompt": "hi", **fields}).encode()


def refused(model, raw: bytes, param: str | None, code: str = "invalid_value") -> api.ApiError:
    with pytest.raises(api.ApiError) as caught:
        api.parse_body(model, raw)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, code), error.body()
    assert len(error.message) < 600  # bounded: no input is echoed
    return error


# --- unsupported fields: 400 unsupported_parameter naming the field --------------------------------


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 5}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ],
)
def test_chat_fields_we_would_drop_are_refused(fields, param):
    refused(CHAT, chat(**fields), param, api.UNSUPPORTED)


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"logprobs": 0}, "logprobs"),  # 0 still asks for the sampled tokens' log probabilities
        ({"logprobs": 5}, "logprobs"),
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"suffix": "}"}, "suffix"),
    ],
)
def test_completion_fields_we_would_drop_are_refused(fields, param):
    refused(COMPLETION, completion(**fields), param, api.UNSUPPORTED)


def test_harmless_values_are_accepted():
    body = api.parse_body(
        CHAT,
        chat(
            logprobs=False,
            top_logprobs=0,
            tools=[],
            tool_choice="none",
            functions=None,
            function_call="auto",
            parallel_tool_calls=True,
            response_format={"type": "text"},
            modalities=["text"],
            audio=None,
            frequency_penalty=0.5,  # unknown or sampling-only fields: accepted
            some_client_extension={"x": 1},
        ),
    )
    assert body.tool_choice == "none"
    api.parse_body(CHAT, chat(tool_choice="auto", logprobs=None))
    api.parse_body(COMPLETION, completion(logprobs=None, echo=False, best_of=1, suffix=""))


@pytest.mark.parametrize(
    "model, raw, param",
    [
        (CHAT, chat(top_logprobs=21), "top_logprobs"),
        (CHAT, chat(logprobs=1), "logprobs"),  # strict: a number is not a boolean
        (CHAT, chat(tool_choice="sometimes"), "tool_choice"),
        (CHAT, chat(response_format={"type": "xml"}), "response_format.type"),
        (COMPLETION, completion(logprobs=6), "logprobs"),
        (COMPLETION, completion(best_of=0), "best_of"),
    ],
)
def test_out_of_range_values_are_invalid_not_unsupported(model, raw, param):
    refused(model, raw, param)


# --- numbers: bounded, never formatted -------------------------------------------------------------


@pytest.mark.parametrize("digits", [20, 4300, 4301, 10_000])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "seed"])
def test_huge_integers_are_400_naming_the_field(field, digits):
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "' + field.encode() + b'": '
    refused(CHAT, raw + b"9" * digits + b"}", field)
    refused(CHAT, raw + b"-" + b"9" * digits + b"}", field)


def test_huge_numbers_anywhere_name_their_place():
    raw = b'{"model": "m", "prompt": [1, 2, ' + b"7" * 5000 + b"]}"
    refused(COMPLETION, raw, "prompt.2")
    raw = b'{"model": "m", "prompt": "x", "extension": {"deep": [0, ' + b"1" * 5000 + b".5]}}"
    refused(COMPLETION, raw, "extension.deep.1")  # even an unknown field: the parser refuses it
    error = refused(COMPLETION, b"9" * 5000, None)
    assert "4300 digits" in error.message


def test_integer_bounds():
    api.parse_body(CHAT, chat(seed=api.INT64_MAX, max_tokens=api.INT64_MAX))
    api.parse_body(CHAT, chat(seed=api.INT64_MIN))
    refused(CHAT, chat(seed=api.INT64_MAX + 1), "seed")
    refused(CHAT, chat(max_tokens=10**30), "max_tokens")
    refused(CHAT, chat(max_completion_tokens=0), "max_completion_tokens")
    refused(COMPLETION, completion(prompt=[1, 2, -1]), "prompt.2")
    refused(COMPLETION, completion(prompt=[1, api.MAX_TOKEN_ID + 1]), "prompt.1")
    assert api.parse_body(COMPLETION, completion(prompt=[0, api.MAX_TOKEN_ID])).prompt == [0, api.MAX_TOKEN_ID]


def test_infinite_and_nan_floats_are_400():
    for value in (b"1e999", b"-1e999", b"NaN", b"Infinity"):
        raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + value + b"}"
        refused(CHAT, raw, "temperature")


# --- list sizes ------------------------------------------------------------------------------------


def test_stop_list_bounds():
    assert api.parse_body(CHAT, chat(stop=["a", "b", "c", "d"])).stop_sequences == ("a", "b", "c", "d")
    assert api.parse_body(CHAT, chat(stop="\n\n")).stop_sequences == ("\n\n",)
    assert api.parse_body(CHAT, chat(stop=None)).stop_sequences == ()
    assert api.parse_body(CHAT, chat(stop=[])).stop_sequences == ()
    assert api.parse_body(CHAT, chat(stop="x" * api.MAX_STOP_CHARS)).stop_sequences
    refused(CHAT, chat(stop=["a"] * 5), "stop")
    error = refused(CHAT, chat(stop=["a"] * 10_000), "stop")
    assert "at most 4" in error.message
    refused(CHAT, chat(stop=""), "stop")
    refused(CHAT, chat(stop=["a", ""]), "stop")
    refused(CHAT, chat(stop="x" * (api.MAX_STOP_CHARS + 1)), "stop")
    refused(CHAT, chat(stop=3), "stop")
    refused(COMPLETION, completion(stop=["a"] * 5), "stop")


def test_message_and_prompt_list_bounds():
    api.parse_body(CHAT, chat(messages=MESSAGES * api.MAX_MESSAGES))
    refused(CHAT, chat(messages=MESSAGES * (api.MAX_MESSAGES + 1)), "messages")
    refused(CHAT, chat(messages=[]), "messages")
    parts = [{"type": "text", "text": "a"}]
    api.parse_body(CHAT, chat(messages=[{"role": "user", "content": parts * api.MAX_CONTENT_PARTS}]))
    refused(
        CHAT, chat(messages=[{"role": "user", "content": parts * (api.MAX_CONTENT_PARTS + 1)}]), "messages.0.content"
    )
    refused(COMPLETION, completion(prompt=[1] * (api.MAX_PROMPT_TOKEN_IDS + 1)), "prompt")
    # A list error names the item, not the union member the input never was.
    refused(CHAT, chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "messages.0.content.0.type")


# --- stop: the answer cut before routing -----------------------------------------------------------


def test_apply_stop_cuts_and_says_stop():
    pieces = generate_pieces(40, 11)
    stop = "".join(pieces[12:14])
    assert "".join(pieces).find(stop) == len("".join(pieces[:12]))
    assert apply_stop(40, LENGTH, 11, [stop]) == (12, STOP)  # a capped answer that hit a stop
    assert apply_stop(40, STOP, 11, (stop, "zebra")) == (12, STOP)
    assert apply_stop(40, LENGTH, 11, ["zebra"]) == (40, LENGTH)  # not in the answer: unchanged
    assert apply_stop(40, STOP, 11, ()) == (40, STOP)
    assert apply_stop(40, LENGTH, 11, [pieces[0]]) == (0, STOP)  # at the very start: empty answer
    # The client gets the whole tokens before the stop, honestly counted, never the stop itself.
    kept = make_text(12, 11)
    assert count(kept) == 12 and stop not in kept


@pytest.fixture(scope="module")
def intake() -> Intake:
    scenario = load_scenario(str(SMALL_SCENARIO))
    return Intake(scenario, build_world(scenario), 0, None)


def test_intake_answer_then_stop(intake):
    """The gateway's order: the answer's length, then its stop (seeded as its text will be)."""
    output, finish = intake.answer_length(10, 200, True, 7)  # ignore_eos: exactly 200 tokens
    assert (output, finish) == (200, LENGTH)
    stop = make_text(200, 7)[-6:]
    cut, finish = intake.apply_stop(output, finish, 7, [stop])
    assert finish == STOP and cut < 200 and stop not in make_text(cut, 7)


def test_token_limit_error_formats_bounded_numbers_only(intake):
    with pytest.raises(api.ApiError) as caught:
        intake.check_token_limit(True, 100, api.INT64_MAX)
    assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"
    assert str(api.INT64_MAX + 100) in caught.value.message


# --- Content-Type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "application/json"},
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "Application/JSON"},
        {"content-type": "application/vnd.api+json"},
    ],
)
def test_json_or_no_content_type_is_read(headers):
    api.check_content_type(headers)


@pytest.mark.parametrize(
    "media",
    [
        "text/plain",  # the three a browser sends cross-site without a preflight
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=----x",
        "text/plain; charset=utf-8",
        "text/json",
        "application/xml",
        "",
        "x" * 500,
    ],
)
def test_other_content_types_are_415(media):
    with pytest.raises(api.ApiError) as caught:
        api.check_content_type({"content-type": media})
    error = caught.value
    assert (error.status, error.code, error.param) == (415, "unsupported_media_type", "Content-Type")
    assert len(error.message) < 200
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}
