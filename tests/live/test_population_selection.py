"""Where a request comes from, without custom headers (issue #14, item 5): behind a proxy that drops
`X-Grid-Population` (LiteLLM by default), a request still selects its population by a model alias
`MODEL@POPULATION`, by the `user` field `population:NAME`, or by its API key (`GRID_API_KEYS`
`key=population`), in that precedence after the header, before the default (grid.live.intake).

Unit tests for the parsing and the precedence, then the real gateway (uvicorn over Ray zone actors):
every way selects the population its answer's `x-grid-population` names."""

from __future__ import annotations

import pytest

from grid.cli import build_parser
from grid.errors import GridInputError
from grid.live import openai_api as api
from grid.live.app import create_app
from grid.live.commands import up_settings
from grid.live.gateway import GatewaySettings
from grid.live.intake import Intake
from grid.live.security import ApiKey, ApiKeys, check_key_populations, parse_api_keys
from grid.scenario import load_scenario
from grid.world import build_world

from .conftest import SMALL_SCENARIO, serve
from .test_gateway_e2e import assert_openai_error

MODEL = "grid-test/tiny-8B"
POPULATIONS = ("berlin", "new_york", "dallas")  # berlin, the first, is the default


# --- parsing: GRID_API_KEYS ----------------------------------------------------------------------


def test_api_keys_may_name_a_population():
    assert parse_api_keys("key1=tokyo, key2 ,, key3 = dallas") == (
        ApiKey("key1", "tokyo"),
        ApiKey("key2"),
        ApiKey("key3", "dallas"),
    )
    assert parse_api_keys(None) == parse_api_keys("") == parse_api_keys(" , ") == ()


def test_api_keys_with_equals_signs():
    # base64 padding: an entry ending in '=' is a key without a population
    assert parse_api_keys("c2VjcmV0==") == (ApiKey("c2VjcmV0=="),)
    # the population follows the last '=': a padded key with a population
    assert parse_api_keys("c2VjcmV0===berlin") == (ApiKey("c2VjcmV0==", "berlin"),)


def test_api_key_errors_never_echo_the_key():
    with pytest.raises(ValueError, match="entry 2 has a population but no key") as caught:
        parse_api_keys("good,=s3cret-part")
    assert "s3cret" not in str(caught.value)
    # 'a=s3cret' reads as key 'a' with population 's3cret': unknown, and not echoed (it may be a key's tail)
    keys = parse_api_keys("k1=berlin,a=s3cret")
    with pytest.raises(ValueError, match="API key 2") as caught:
        check_key_populations(keys, POPULATIONS)
    assert "s3cret" not in str(caught.value) and "berlin, new_york, dallas" in str(caught.value)
    check_key_populations(keys[:1], POPULATIONS)  # known: fine
    check_key_populations(("plain-key",), POPULATIONS)  # plain strings carry none
    assert "s3cret" not in repr(ApiKey("s3cret", "berlin"))


def test_api_keys_check_returns_the_callers_entry():
    keys = ApiKeys((ApiKey("k-dallas", "dallas"), "k-plain"), rate_rps=0, burst=1)
    assert keys.check({"authorization": "Bearer k-dallas"}, 0.0) == ApiKey("k-dallas", "dallas")
    assert keys.check({"authorization": "Bearer k-plain"}, 0.0) == ApiKey("k-plain")
    with pytest.raises(api.ApiError) as caught:
        keys.check({"authorization": "Bearer dallas"}, 0.0)
    assert caught.value.status == 401


def test_grid_up_settings_from_arguments_and_secrets():
    scenario = load_scenario(str(SMALL_SCENARIO))
    args = build_parser().parse_args(["up", "--keep-alive", "30", "--list-model-aliases"])
    settings = up_settings(args, scenario, None, "k1=dallas,k2")
    assert settings.api_keys == (ApiKey("k1", "dallas"), ApiKey("k2"))
    assert settings.keep_alive_s == 30.0 and settings.list_model_aliases
    defaults = up_settings(build_parser().parse_args(["up"]), scenario, None, None)
    assert defaults.api_keys == () and defaults.keep_alive_s == 75.0 and not defaults.list_model_aliases
    with pytest.raises(GridInputError, match="GRID_API_KEYS: API key 1"):  # before Ray starts, exit 2
        up_settings(args, scenario, None, "k1=tokyo")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--keep-alive", "0"])


# --- precedence, on the intake alone --------------------------------------------------------------


@pytest.fixture(scope="module")
def intake() -> Intake:
    scenario = load_scenario(str(SMALL_SCENARIO))
    return Intake(scenario, build_world(scenario), 0, None)


def _name(intake: Intake, headers=None, model=MODEL, user=None, key=None) -> str:
    index = intake.select_population(headers or {}, model, user, key)
    return intake.world.population_ids[index]


def test_precedence_header_alias_user_key_default(intake):
    header = {"x-grid-population": "new_york"}
    alias = f"{MODEL}@dallas"
    assert _name(intake, header, alias, "population:berlin", "dallas") == "new_york"
    assert _name(intake, {}, alias, "population:new_york", "berlin") == "dallas"
    assert _name(intake, {}, MODEL, "population:new_york", "dallas") == "new_york"
    assert _name(intake, {}, MODEL, "alice", "dallas") == "dallas"
    assert _name(intake, {}, MODEL, None, None) == "berlin"
    assert _name(intake, {"x-grid-population": ""}, MODEL) == "berlin"  # an empty header names none


def test_user_names_a_population_only_with_its_prefix(intake):
    # `user` is an end-user id in OpenAI's API: a bare population name is one like any other
    assert _name(intake, user="dallas") == "berlin"
    assert _name(intake, user="Population:dallas") == "berlin"
    assert _name(intake, user="population:dallas") == "dallas"


@pytest.mark.parametrize(
    "headers, model, user, param",
    [
        ({}, f"{MODEL}@atlantis", None, "model"),
        ({}, f"{MODEL}@", None, "model"),
        ({}, f"{MODEL}@Berlin", None, "model"),  # names are exact
        ({}, MODEL, "population:atlantis", "user"),
        ({"x-grid-population": "atlantis"}, f"{MODEL}@dallas", None, "X-Grid-Population"),
        # a selector after the deciding one must name a real population all the same
        ({"x-grid-population": "dallas"}, f"{MODEL}@atlantis", None, "model"),
        ({}, f"{MODEL}@dallas", "population:atlantis", "user"),
    ],
)
def test_unknown_population_anywhere_is_400(intake, headers, model, user, param):
    with pytest.raises(api.ApiError) as caught:
        intake.select_population(headers, model, user, None)
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "unknown_population", param)
    assert "valid populations: berlin, new_york, dallas" in error.message


@pytest.mark.parametrize("model", ["other/model@berlin", "grid-test/tiny-8@berlin", "berlin", f"x{MODEL}@berlin"])
def test_alias_of_another_model_is_404(intake, model):
    with pytest.raises(api.ApiError) as caught:
        intake.select_population({"x-grid-population": "berlin"}, model)
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")


def test_model_aliases(intake):
    assert intake.model_aliases() == [f"{MODEL}@{p}" for p in POPULATIONS]
    assert intake.alias_population(MODEL) is None
    assert intake.alias_population(f"{MODEL}@new_york") == "new_york"


# --- the real gateway ------------------------------------------------------------------------------


def _chat(grid, model=None, headers=None, **fields):
    body = {"model": model or grid.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}
    return grid.client.post("/v1/chat/completions", json=body, headers=headers or {})


def _population(response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-grid-population"]


@pytest.mark.parametrize("population", POPULATIONS)
def test_model_alias_selects_the_population(live, population):
    r = _chat(live, f"{live.model}@{population}")
    assert _population(r) == population
    assert r.json()["model"] == live.model  # answers name the served model, as vLLM's


@pytest.mark.parametrize("stream", [False, True])
def test_model_alias_on_completions(live, stream):
    body = {"model": f"{live.model}@dallas", "prompt": "hi", "max_tokens": 2, "stream": stream}
    assert _population(live.client.post("/v1/completions", json=body)) == "dallas"


def test_user_field_selects_the_population(live):
    assert _population(_chat(live, user="population:new_york")) == "new_york"
    assert _population(_chat(live, user="population:dallas")) == "dallas"
    assert _population(_chat(live, user="dallas")) == "berlin"  # an end-user id: ignored
    assert _population(_chat(live, user="alice@example.com")) == "berlin"


def test_precedence_on_the_gateway(live):
    alias = f"{live.model}@dallas"
    header = {"X-Grid-Population": "new_york"}
    assert _population(_chat(live, alias, header, user="population:berlin")) == "new_york"
    assert _population(_chat(live, alias, user="population:new_york")) == "dallas"
    assert _population(_chat(live, alias, {"X-Grid-Population": ""})) == "dallas"


def test_bad_alias_population_is_400_listing_valid_ones(live):
    error = assert_openai_error(_chat(live, f"{live.model}@atlantis"), 400, "unknown_population")
    assert error["param"] == "model" and "atlantis" in error["message"]
    for population in POPULATIONS:
        assert population in error["message"]
    error = assert_openai_error(_chat(live, user="population:atlantis"), 400, "unknown_population")
    assert error["param"] == "user"
    long = assert_openai_error(_chat(live, f"{live.model}@{'x' * 5000}"), 400, "unknown_population")
    assert len(long["message"]) < 600  # the echo is bounded


def test_alias_needs_the_served_model(live):
    assert _population(_chat(live, f"{live.model}@berlin")) == "berlin"
    error = assert_openai_error(_chat(live, "Qwen/Qwen3-8B@berlin"), 404, "model_not_found")
    assert error["param"] == "model"
    assert_openai_error(_chat(live, f"{live.model}@"), 400, "unknown_population")


def test_models_lists_only_the_served_model_by_default(live):
    assert [m["id"] for m in live.client.get("/v1/models").json()["data"]] == [live.model]
    schema = live.client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["ChatCompletionRequest"]["properties"]["model"]["enum"] == [
        live.model,
        *(f"{live.model}@{p}" for p in POPULATIONS),
    ]


# --- populations per API key ---------------------------------------------------------------------

KEY_DALLAS, KEY_PLAIN = "key-dallas", "key-plain"


@pytest.fixture(scope="module")
def keyed(ray_session):
    settings = GatewaySettings(
        api_keys=parse_api_keys(f"{KEY_DALLAS}=dallas,{KEY_PLAIN}"), api_key_rps=0.0, list_model_aliases=True
    )
    with serve(load_scenario(str(SMALL_SCENARIO)), settings) as grid:
        yield grid


def _bearer(key: str, **more) -> dict:
    return {"Authorization": f"Bearer {key}", **more}


def test_api_key_selects_its_population(keyed):
    assert _population(_chat(keyed, headers=_bearer(KEY_DALLAS))) == "dallas"
    assert _population(_chat(keyed, headers=_bearer(KEY_PLAIN))) == "berlin"  # no population: the default
    assert_openai_error(_chat(keyed, headers=_bearer("dallas")), 401, "invalid_api_key")


def test_the_request_overrides_its_key(keyed):
    assert _population(_chat(keyed, headers=_bearer(KEY_DALLAS, **{"X-Grid-Population": "new_york"}))) == "new_york"
    assert _population(_chat(keyed, f"{keyed.model}@berlin", _bearer(KEY_DALLAS))) == "berlin"
    assert _population(_chat(keyed, headers=_bearer(KEY_DALLAS), user="population:new_york")) == "new_york"
    assert _population(_chat(keyed, headers=_bearer(KEY_DALLAS), user="bob")) == "dallas"


def test_models_lists_the_aliases_when_asked(keyed):
    assert_openai_error(keyed.client.get("/v1/models"), 401)
    data = keyed.client.get("/v1/models", headers=_bearer(KEY_PLAIN)).json()["data"]
    assert [m["id"] for m in data] == [keyed.model, *(f"{keyed.model}@{p}" for p in POPULATIONS)]
    assert all(m["object"] == "model" and m["owned_by"] for m in data)
    assert all(m["root"] == keyed.model for m in data[1:])


def test_unknown_key_population_refused_before_the_gateway_is_built():
    settings = GatewaySettings(api_keys=(ApiKey("k", "atlantis"),))
    with pytest.raises(ValueError, match="API key 1"):
        create_app(load_scenario(str(SMALL_SCENARIO)), zones=None, settings=settings)  # never reaches the zones
