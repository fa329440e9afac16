"""Real headless Locust against a real live grid (`grid up`: Ray + uvicorn on a loopback port).

One grid for the module, started by `grid loadtest`'s own launcher with an admin token, serving a model
other than the load-test scenario's (as `grid up` with its default scenario serves Qwen/Qwen3-8B, not
loadtests/grid.yaml's model); each test runs `grid loadtest --host …` (Locust in its own processes)
and reads Locust's CSV and the records.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from grid.cli import main as grid_main
from grid.loadtest.cli import DEFAULT_SCENARIO, start_grid, stop_process
from grid.scenario import load_scenario
from loadtests.shapes import read_records

ROOT = Path(__file__).resolve().parents[2]
SERVED_MODEL = "test/served-by-the-grid-8B"  # not the load-test scenario's model


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    token = secrets.token_urlsafe(16)
    overrides = [("model.name", SERVED_MODEL)]
    url, process = start_grid(DEFAULT_SCENARIO, overrides, token, tmp_path_factory.mktemp("grid") / "grid.log")
    try:
        yield url, token
    finally:
        stop_process(process)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "locust_stats.csv", newline="") as f:
        return {row["Type"]: row for row in csv.DictReader(f) if row["Name"] != "Aggregated"}


def test_the_targets_model_is_sent_and_valid_open_loop_traffic_has_no_failures(grid, tmp_path, monkeypatch, capsys):
    url, token = grid
    assert load_scenario(DEFAULT_SCENARIO).model.name != SERVED_MODEL  # the load test's own would be a 404
    monkeypatch.setenv("GRID_ADMIN_TOKEN", token)
    out = tmp_path / "ok"
    # 12 s at 5 req/s: the scenario's seeded arrivals are 65 requests, from all four populations
    args = ["--host", url, "--shape", "constant", "--minutes", "0.2", "--open-loop-rps", "5", "--drain-s", "5"]
    code = grid_main(["loadtest", *args, "--out", str(out)])
    printed = capsys.readouterr().out
    rows = _rows(out)
    assert code == 0
    assert f"target model {SERVED_MODEL} (GET /v1/models) · the scenario's populations, all served" in printed
    assert "grid loadtest: ok: 0 of " in printed
    assert int(rows["POST"]["Request Count"]) > 50 and int(rows["POST"]["Failure Count"]) == 0
    for kind in ("TTFT", "TPOT", "E2E", "ITL"):
        assert int(rows[kind]["Request Count"]) > 0 and int(rows[kind]["Failure Count"]) == 0
    assert 0 < float(rows["TTFT"]["50%"]) < 1000  # ms, ~0.1-0.3 s on this scenario at moderate load
    assert 10 < float(rows["TPOT"]["50%"]) < 100  # ms: ~38 ms decode steps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == 0 and summary["entries"]["TTFT"]["count"] == summary["requests"]
    assert summary["target"]["model"] == SERVED_MODEL and summary["verdict"]["failed"] == 0
    records = read_records(out.glob("records-*.csv"))
    assert len(records) == summary["requests"] and {r["status"] for r in records} == {"ok"}  # every one a 200
    assert {r["population"] for r in records} == {"berlin", "london", "new_york", "mexico_city"}
    assert (out / "report.html").stat().st_size > 1000


def test_a_model_the_grid_does_not_serve_is_a_cli_error_before_any_load(grid, tmp_path, capsys):
    url, _ = grid
    out = tmp_path / "bad"
    args = ["--host", url, "--shape", "constant", "--minutes", "0.12", "--users", "2", "--think-s", "0.2"]
    code = grid_main(["loadtest", *args, "--model", "no-such-model", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"grid: error: --model no-such-model: the target at {url} does not serve it" in err
    assert f"(GET /v1/models lists {SERVED_MODEL})" in err and "Traceback" not in err
    assert not (out / "locust_stats.csv").exists()


def test_the_locustfile_generates_one_weighted_user_class_per_population():
    code = (
        "import loadtests.locustfile as m, locust;"
        "print(sorted((c.__name__, c.population, c.weight) for c in vars(m).values()"
        " if isinstance(c, type) and issubclass(c, locust.User) and not c.abstract))"
    )
    env = {**os.environ, "GRID_SCENARIO": DEFAULT_SCENARIO}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == str(
        [
            ("BerlinUser", "berlin", 350),
            ("LondonUser", "london", 250),
            ("MexicoCityUser", "mexico_city", 150),
            ("NewYorkUser", "new_york", 250),
        ]  # fmt: skip
    )


def _admin_available(url: str, token: str) -> bool:
    request = urllib.request.Request(
        url + "/admin/recover", data=b"{}", method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


def test_outage_drill_fails_and_recovers_a_zone_through_the_admin_api(grid, tmp_path, monkeypatch):
    url, token = grid
    assert _admin_available(url, token), "the gateway's admin API did not accept the token (POST /admin/recover)"
    monkeypatch.setenv("GRID_ADMIN_TOKEN", token)
    out = tmp_path / "drill"
    # 18 s at 4 req/s (65 requests): frankfurt-1 down from 6 s to 12 s, then serving again
    args = ["--host", url, "--shape", "outage_drill", "--minutes", "0.3", "--open-loop-rps", "4", "--drain-s", "5"]
    code = grid_main(["loadtest", *args, "--drill-zone", "frankfurt-1", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    verdict = summary["verdict"]
    print(f"drill: {verdict['failed']} of {verdict['requests']} failed {verdict['statuses']} → exit {code}")
    assert code == (1 if verdict["failed_run"] else 0)  # exit 1 exactly when more than 1% were lost
    assert summary["admin"]["zone_down frankfurt-1"]["failures"] == 0
    assert summary["admin"]["recover frankfurt-1"]["failures"] == 0
    records = read_records(out.glob("records-*.csv"))
    ok = [r for r in records if r["ok"]]
    assert len(ok) > 0.8 * len(records)  # the other zones absorb the load; only in-flight work is lost
