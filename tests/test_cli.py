"""The command line: bad input exits 2 with one clear line and no traceback."""

import json
import subprocess
import sys
from pathlib import Path

GRID = [sys.executable, "-m", "grid.cli"]


def grid(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GRID, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_sim_json_has_documented_keys():
    out = grid("sim", "--duration", "20s", "--rate-scale", "0.2", "--json", "--policy", "p2c")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"meta", "grid", "populations", "zones"}
    assert report["meta"]["policy"] == "p2c"
    grid_row = report["grid"]
    for key in ("arrivals", "completed", "rejected", "failed", "in_flight", "slo_attainment", "ttft_s", "tpot_s",
                "e2e_s", "cost_usd_per_hour", "usd_per_1m_output_tokens", "carbon_g_per_1m_output_tokens",
                "cross_region_share", "utilization"):  # fmt: skip
        assert key in grid_row
    assert (
        grid_row["arrivals"]
        == grid_row["completed"] + grid_row["rejected"] + grid_row["failed"] + grid_row["in_flight"]
    )
    assert set(report["populations"][0]["ttft_s"]) == {"p50", "p90", "p99"}


def test_sim_table_and_records(tmp_path):
    records = tmp_path / "r.csv"
    out = grid("sim", "--duration", "10s", "--rate-scale", "0.1", "--records", str(records))
    assert out.returncode == 0, out.stderr
    assert "populations" in out.stdout and "frankfurt-1" in out.stdout
    lines = records.read_text().splitlines()
    assert lines[0].startswith("id,population,zone") and len(lines) > 100


def test_scenarios_and_policies_list():
    assert "default" in grid("scenarios").stdout
    assert "latency_aware" in grid("policies").stdout


def assert_bad_input(out: subprocess.CompletedProcess, *fragments: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, out.stderr


def test_bad_scenario_file_exits_2_naming_file_line_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("zones:\n  paris-1:\n    replicas: -3\n")
    assert_bad_input(grid("sim", "--scenario", str(path)), f"{path}:3: zones.paris-1.replicas")


def test_unknown_policy_lists_known():
    assert_bad_input(grid("sim", "--policy", "fastest"), "unknown policy 'fastest'", "p2c", "latency_aware")


def test_bad_user_policy_module():
    assert_bad_input(grid("sim", "--policy", "nowhere.mod:Cls"), "cannot import module 'nowhere.mod'")


def test_bad_duration_and_override():
    assert_bad_input(grid("sim", "--duration", "forever"), "expected a duration")
    assert_bad_input(grid("sim", "--set", "zones.x.replicas=1"), "no field zones.x")


def test_unwritable_records(tmp_path):
    assert_bad_input(grid("sim", "--duration", "1s", "--records", str(tmp_path / "no" / "dir.csv")), "dir.csv")


def test_bad_trace_file_names_line(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 5, "input_length": -1}\n')
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"demand:\n  trace: {{path: {trace}}}\n")
    assert_bad_input(grid("sim", "--scenario", str(scenario), "--duration", "10s"), f"{trace}:2")
