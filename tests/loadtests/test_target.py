"""`grid loadtest` asks its target for the model and populations, and judges whether the run failed.

The pure parts (model list, population map, verdict), then real `grid loadtest` runs (real headless
Locust) against a stub server on loopback (tests/loadtests/stub_target.py) for the failure paths: a
target that fails every request, an unreachable one, one that wants an API key.
"""

from __future__ import annotations

import json

import pytest

from grid.cli import main as grid_main
from grid.errors import GridInputError
from grid.live.dashboard import world_json
from grid.loadtest.cli import DEFAULT_SCENARIO, free_port
from grid.loadtest.target import api_key_from, choose_model, parse_models, population_map, probe_target
from grid.loadtest.verdict import MAX_FAILED_SHARE, judge
from grid.scenario import load_scenario
from grid.world import build_world
from tests.loadtests.stub_target import stub_target

LOADTEST = load_scenario(DEFAULT_SCENARIO)


# --- pure parts ---------------------------------------------------------------------------------


def test_the_model_list_is_openai_shaped_and_the_target_model_wins_over_the_scenarios():
    assert parse_models(b'{"object": "list", "data": [{"id": "a"}, {"id": "b@x", "root": "a"}]}') == ("a", "b@x")
    for bad in (b"not json", b"[]", b'{"data": {}}', b'{"data": [{"name": "a"}]}', b'{"data": [{"id": ""}]}'):
        assert parse_models(bad) is None
    assert choose_model(("Qwen/Qwen3-8B",), None, "grid-test/loadtest-8B", "u") == "Qwen/Qwen3-8B"
    assert choose_model(("m", "grid-test/loadtest-8B"), None, "grid-test/loadtest-8B", "u") == "grid-test/loadtest-8B"
    assert choose_model(("m", "n"), "n", "s", "u") == "n"
    with pytest.raises(GridInputError, match=r"--model nope: the target at u does not serve it .*lists m, n"):
        choose_model(("m", "n"), "nope", "s", "u")


def test_api_key_comes_from_grid_api_key_then_openai_api_key():
    assert api_key_from({}) == (None, None)
    assert api_key_from({"OPENAI_API_KEY": "o"}) == ("o", "OPENAI_API_KEY")
    assert api_key_from({"GRID_API_KEY": " g ", "OPENAI_API_KEY": "o"}) == ("g", "GRID_API_KEY")
    assert api_key_from({"GRID_API_KEY": " ", "OPENAI_API_KEY": "o"}) == ("o", "OPENAI_API_KEY")


def test_populations_map_to_the_targets_own_or_nearest_or_to_no_header():
    default = load_scenario("default")
    served = world_json(default, build_world(default))["populations"]  # what GET /grid/world answers
    same = {p: p for p in LOADTEST.populations}
    assert population_map(LOADTEST, served) == same  # the default world has all four
    without_berlin = [p for p in served if p["population"] != "berlin"]
    assert population_map(LOADTEST, without_berlin) == {**same, "berlin": "warsaw"}  # 516 km; Milan 840
    assert population_map(LOADTEST, [{"population": "only"}]) == {p: None for p in LOADTEST.populations}
    assert population_map(LOADTEST, None) == {p: None for p in LOADTEST.populations}


def _records(statuses: list[tuple[float, str]]) -> list[dict]:
    return [{"t_s": t, "status": s, "ok": s == "ok"} for t, s in statuses]


def test_a_run_fails_when_more_than_one_percent_failed_and_a_ramp_on_its_first_step():
    assert MAX_FAILED_SHARE == 0.01
    ok = judge(_records([(i, "ok") for i in range(99)] + [(99, "http_503")]))
    assert not ok.failed_run and ok.share == 0.01
    assert ok.message() == "grid loadtest: ok: 1 of 100 requests of the run failed (1.0%), at most 1% may: HTTP 503 ×1"
    bad = judge(_records([(i, "ok") for i in range(98)] + [(98, "http_503"), (99, "http_0")]))
    assert bad.failed_run and bad.statuses == {"HTTP 503": 1, "no HTTP answer": 1}
    assert bad.message().startswith("grid loadtest: FAILED: 2 of 100 requests of the run failed (2.0%); more than 1%")
    all_404 = judge(_records([(i, "http_404") for i in range(972)]))
    assert all_404.failed_run and all_404.counts_text() == "HTTP 404 ×972"
    # a ramp that sheds load in its upper steps is judged on its first step: not a failed run
    ramp = _records([(t, "ok") for t in range(30)] + [(t, "http_503") for t in range(30, 60)])
    assert judge(ramp).failed_run and not judge(ramp, until_s=30.0, scope="the first step").failed_run
    assert judge([]).failed_run  # nothing sent is no result


# --- real runs against a stub target ------------------------------------------------------------

# 3 s, two steps (4 then 8 req/s): the scenario's seeded arrivals are 23 requests, 6 of them in the first step
RAMP = ["--shape", "step_ramp", "--steps", "2", "--minutes", "0.05", "--open-loop-rps", "8", "--drain-s", "1"]


def test_a_target_failing_every_request_fails_the_run_with_status_counts_and_no_knee(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRID_API_KEY", "stub-key")
    with stub_target(models=("stub/served-1B",), chat_status=500, api_key="stub-key") as stub:
        code = grid_main(["loadtest", "--host", stub.url, *RAMP, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    chats = [r for r in stub.requests if r.path == "/v1/chat/completions"]
    assert code == 1
    assert len(chats) > 10
    assert {r.body["model"] for r in chats} == {"stub/served-1B"}  # the target's model, not the scenario's
    assert all(r.headers.get("Authorization") == "Bearer stub-key" for r in stub.requests)  # the key, everywhere
    assert not any("X-Grid-Population" in r.headers for r in chats)  # no /grid/world: no population header
    assert "requests of the first step (4.00 req/s) failed (100.0%); more than 1% fails a run: HTTP 500 ×" in err
    assert f"the whole run: {len(chats)} of {len(chats)} failed: HTTP 500 ×{len(chats)}" in err
    assert f'×{len(chats)}: HTTP 500: {{"error": {{"message": "The stub fails every chat completion.' in err
    assert "knee (live)" not in out and "no knee: the run failed: HTTP 500" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["verdict"]["failed_run"]
    assert summary["step_ramp"]["live_knee"]["knee_rps"] is None and "sim_knee" not in summary["step_ramp"]
    assert summary["target"]["model"] == "stub/served-1B" and summary["target"]["populations"] is None
    print(f"stub: {len(chats)} chat requests, all HTTP 500; stderr: {err.strip()[:300]}")


def test_an_unreachable_target_is_a_cli_error_before_any_load(tmp_path, capsys):
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = grid_main(["loadtest", "--host", host, "--minutes", "0.05", "--users", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"grid: error: --host {host}: GET /v1/models: cannot reach the target (")
    assert "Connection refused" in err and "Traceback" not in err
    assert not (tmp_path / "locust_stats.csv").exists()  # Locust never started


@pytest.mark.parametrize(
    ("stub", "env", "args", "message"),
    [
        (
            dict(api_key="k"),
            {},
            [],
            "GET /v1/models answered HTTP 401 (Incorrect or missing API key (stub).): set GRID_API_KEY",
        ),
        (dict(api_key="k"), {"OPENAI_API_KEY": "wrong"}, [], "the API key in OPENAI_API_KEY was refused"),
        (dict(models_status=500), {}, [], "GET /v1/models answered HTTP 500: the stub's models fail"),
        (dict(models=()), {}, [], "GET /v1/models: the target lists no model"),
        (dict(), {}, ["--model", "no-such-model"], "--model no-such-model: the target at http://127.0.0.1:"),
    ],
)
def test_a_target_that_cannot_say_its_model_is_a_cli_error(stub, env, args, message, tmp_path, capsys, monkeypatch):
    for name in ("GRID_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with stub_target(**stub) as target:
        code = grid_main(["loadtest", "--host", target.url, "--minutes", "0.05", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(r.path == "/v1/chat/completions" for r in target.requests)


def test_a_host_that_is_not_a_url_is_a_cli_error(tmp_path, capsys):
    assert grid_main(["loadtest", "--host", "127.0.0.1:8000", "--minutes", "0.05", "--out", str(tmp_path)]) == 2
    assert "--host 127.0.0.1:8000: expected a URL such as http://127.0.0.1:8000" in capsys.readouterr().err


def test_probe_reads_the_stubs_model_and_no_world(monkeypatch):
    monkeypatch.delenv("GRID_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with stub_target(models=("a", "b")) as stub:
        target = probe_target(stub.url + "/", LOADTEST)
    assert target.url == stub.url and target.model == "a" and target.models == ("a", "b")
    assert target.populations is None and target.world_note == "no /grid/world (HTTP 404)"
    assert "requests carry no X-Grid-Population header" in target.describe()
