"""Bad input on every endpoint of the real gateway, API keys and rate limits, prompts kept out of logs
and metrics, and a schemathesis fuzz of the gateway's OpenAPI schema (positive and negative cases):
never a 5xx, every error in OpenAI's shape."""

from __future__ import annotations

import logging

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from grid.live.gateway import GatewaySettings
from grid.scenario import load_scenario

from .conftest import SMALL_SCENARIO, serve
from .test_gateway_e2e import assert_openai_error

# A fast model: fuzzed requests may ask for thousands of tokens (ignore_eos); at 5 µs a step they
# take milliseconds, so the fuzz stays well under a minute.
FAST = {
    "gpus.h100.decode_base_s": 0.000005,
    "gpus.h100.decode_per_seq_s": 0.0,
    "gpus.h100.prefill_base_s": 0.0001,
    "gpus.h100.prefill_per_token_s": 0.0,
    "gpus.h100.frontend_s": 0.0,
}
FUZZ_EXAMPLES = 50
FUZZ_CASES = {"run": 0, "by_status": {}}
SENTINEL = "ZEBRA-SENTINEL-7f3a"
KEYS = ("key-alpha", "key-beta")


@pytest.fixture(scope="module")
def fast(ray_session):
    with serve(load_scenario(str(SMALL_SCENARIO), FAST), GatewaySettings(request_timeout_s=20.0)) as grid:
        yield grid


@pytest.fixture(scope="module")
def keyed(ray_session):
    settings = GatewaySettings(api_keys=KEYS, api_key_rps=2.0, api_key_burst=3.0)
    with serve(load_scenario(str(SMALL_SCENARIO), FAST), settings) as grid:
        yield grid


# --- bad bodies, every endpoint ----------------------------------------------------------------


def _chat(grid, **fields):
    return {"model": grid.model, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"null", b"[]", b'"text"', b"42", b'{"model": 1}', b"\xff\xfe\x00", b'{"model": "x", "prompt": '],
)
def test_malformed_bodies_are_400(fast, path, raw):
    r = fast.client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_openai_error(r, 400)


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**30}, "max_tokens"),  # over int64: refused by the schema, naming the field
        ({"max_tokens": 5000}, "max_completion_tokens"),  # over the 4096-token context
        ({"max_completion_tokens": 2.5}, "max_completion_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 9}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "url": "x"}]}]}, None),
        ({"stream_options": [1]}, "stream_options"),
        ({"stop": 3}, "stop"),
    ],
)
def test_wrong_types_and_values_are_400(fast, fields, param):
    r = fast.client.post("/v1/chat/completions", json=_chat(fast, **fields))
    error = assert_openai_error(r, 400)
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "hi"},  # no model
        {"model": "M"},  # no prompt
        {"model": "M", "prompt": []},
        {"model": "M", "prompt": ["a", "b"]},
        {"model": "M", "prompt": "hi", "max_tokens": -1},
        {"model": "M", "prompt": "hi", "max_tokens": 4096},
        {"model": "M", "prompt": [1.5]},
        {"model": "M", "prompt": "x " * 5000},
    ],
)
def test_completions_bad_bodies_are_400(fast, body):
    if body.get("model") == "M":
        body["model"] = fast.model
    assert_openai_error(fast.client.post("/v1/completions", json=body), 400)


def test_unknown_model_population_route_and_method(fast):
    assert_openai_error(fast.client.post("/v1/chat/completions", json={**_chat(fast), "model": "nope"}), 404)
    r = fast.client.post("/v1/chat/completions", json=_chat(fast), headers={"X-Grid-Population": "x" * 300})
    error = assert_openai_error(r, 400, "unknown_population")
    assert len(error["message"]) < 400  # the echo is bounded
    assert_openai_error(fast.client.get("/v1/chat/completions"), 405)
    assert_openai_error(fast.client.post("/v1/models"), 405)
    assert_openai_error(fast.client.get("/nothing/here"), 404)


def test_bodies_over_1_mib_are_413(fast):
    big = {"model": fast.model, "prompt": "a" * (1 << 20)}
    assert_openai_error(fast.client.post("/v1/completions", json=big), 413, "request_too_large")

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(20):
            yield b"a" * 65536

    r = fast.client.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_openai_error(r, 413, "request_too_large")
    # Just under the limit is read (and refused for its length in tokens, not its size).
    ok = {"model": fast.model, "prompt": "word " * 1000, "max_tokens": 1}
    assert fast.client.post("/v1/completions", json=ok).status_code == 200


def test_huge_prompt_is_400_not_5xx(fast):
    huge = _chat(fast, messages=[{"role": "user", "content": "x " * 200_000}])
    r = fast.client.post("/v1/chat/completions", json=huge)
    assert_openai_error(r, 400, "context_length_exceeded")


# --- API keys, rate limits, prompts out of logs ------------------------------------------------


def test_api_keys_required_when_configured(keyed):
    body = _chat(keyed, max_tokens=2)
    assert_openai_error(keyed.client.post("/v1/chat/completions", json=body), 401, "invalid_api_key")
    r = keyed.client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"})
    assert_openai_error(r, 401, "invalid_api_key")
    assert_openai_error(keyed.client.get("/v1/models"), 401)
    assert keyed.client.get("/v1/models", headers={"Authorization": "Bearer key-beta"}).status_code == 200
    assert keyed.client.get("/health").status_code == 200  # health and metrics stay open for probes
    assert keyed.client.get("/metrics").status_code == 200


def test_per_key_rate_limit_is_429_with_retry_after(keyed):
    headers = {"Authorization": "Bearer key-alpha"}
    statuses = [
        keyed.client.post("/v1/chat/completions", json=_chat(keyed, max_tokens=2), headers=headers) for _ in range(8)
    ]
    codes = [r.status_code for r in statuses]
    assert codes[:3] == [200, 200, 200] and 429 in codes, codes  # burst 3, then 2 req/s
    limited = next(r for r in statuses if r.status_code == 429)
    assert_openai_error(limited, 429, "rate_limit_exceeded")
    assert int(limited.headers["retry-after"]) >= 1 and int(limited.headers["retry-after-ms"]) >= 1
    # The other key has its own bucket.
    other = {"Authorization": "Bearer key-beta"}
    assert keyed.client.post("/v1/chat/completions", json=_chat(keyed, max_tokens=2), headers=other).status_code == 200


def test_prompts_never_reach_logs_or_metrics(fast, caplog):
    caplog.set_level(logging.DEBUG)
    bodies = [
        _chat(fast, messages=[{"role": "user", "content": f"{SENTINEL} please"}], max_tokens=3),
        _chat(fast, messages=[{"role": "user", "content": f"{SENTINEL} stream"}], stream=True, max_tokens=3),
        _chat(fast, messages=[{"role": "wizard", "content": SENTINEL}]),  # a 400
        _chat(fast, messages=[{"role": "user", "content": SENTINEL * 2000}]),  # over the context
    ]
    for body in bodies:
        fast.client.post("/v1/chat/completions", json=body, headers={"X-Grid-Population": "new_york"})
    fast.client.post("/v1/completions", json={"model": fast.model, "prompt": SENTINEL, "max_tokens": 2})
    fast.client.post("/v1/completions", content=b'{"prompt": "' + SENTINEL.encode() + b'"', headers={})
    assert SENTINEL not in caplog.text
    for path in ("/metrics", "/grid/zones", "/health"):
        assert SENTINEL not in fast.client.get(path).text


# --- schemathesis ------------------------------------------------------------------------------


def test_fuzz_gateway_schema(fast):
    """schemathesis over /openapi.json, every operation, positive and negative cases (at most
    FUZZ_EXAMPLES each): never a 5xx, every 4xx in OpenAI's error shape. (Driven through hypothesis
    directly: schemathesis' pytest plugin does not load under pytest 9.)"""
    schema = schemathesis.openapi.from_url(f"{fast.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    problems = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
            )
            def fuzz(case):
                response = case.call(timeout=30)
                FUZZ_CASES["run"] += 1
                status = response.status_code
                FUZZ_CASES["by_status"][status] = FUZZ_CASES["by_status"].get(status, 0) + 1
                if status >= 500:
                    problems.append((case.path, case.body, status, response.text[:300]))
                elif status >= 400:
                    error = response.json()["error"]
                    if set(error) != {"message", "type", "param", "code"}:
                        problems.append((case.path, case.body, status, response.text[:300]))

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode == GenerationMode.NEGATIVE
    print(f"\nschemathesis: {FUZZ_CASES['run']} cases, statuses {dict(sorted(FUZZ_CASES['by_status'].items()))}")
    assert not problems, problems[:5]
    assert FUZZ_CASES["run"] >= 100
    assert fast.client.get("/health").status_code == 200  # the gateway survived it


def test_openapi_schema_describes_the_bodies_and_no_422(fast):
    spec = fast.client.get("/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert "messages" in spec["components"]["schemas"]["ChatCompletionRequest"]["required"]
    assert not [p for p in spec["paths"] if p.startswith("/admin")]  # admin stays out of the schema
    for path in spec["paths"].values():
        for operation in path.values():
            assert "422" not in operation.get("responses", {})
