"""`grid explain RECORDS`: why traffic crossed regions, from the real CLI on a simulated run's records."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

from grid.routing.crossing import REASONS
from grid.routing.explain import Explanation, Row, recompute


def grid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grid.cli", *args], capture_output=True, text=True, timeout=300)


def test_explain_counts_why_requests_left_home(tmp_path):
    records = tmp_path / "run.csv"
    done = grid(
        "sim", "--scenario", "demo", "--duration", "30s", "--set", "demand.scale=1.5", "--records", f"{records}"
    )
    assert done.returncode == 0, done.stderr
    with records.open() as f:
        rows = [r for r in csv.DictReader(f) if r["decision_rule"]]
    crossed = [r for r in rows if r["crossed_because"]]
    assert rows and crossed and {r["crossed_because"] for r in crossed} <= set(REASONS)
    assert all(r["decision_reason"] for r in rows)
    out = grid("explain", str(records), "--scenario", "demo")
    assert out.returncode == 0, out.stderr
    assert f"{len(rows)} routed requests; {len(crossed)} (" in out.stdout
    for reason in {r["crossed_because"] for r in crossed}:
        n = sum(r["crossed_because"] == reason for r in crossed)
        assert f"{n:>8}" in out.stdout and reason in out.stdout


def test_explain_refuses_what_is_not_records(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    out = grid("explain", str(bad))
    assert out.returncode == 2 and "bad.csv:1: no decision columns" in out.stderr and "Traceback" not in out.stderr
    missing = grid("explain", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "nope.csv: cannot read the records" in missing.stderr


def test_sim_writes_every_decision_in_full(tmp_path):
    """`grid sim --decisions`: one JSON line per routed attempt; each one's terms pick its winner again."""
    path = tmp_path / "decisions.jsonl"
    done = grid("sim", "--scenario", "demo", "--duration", "20s", "--set", "demand.scale=1.6", "--decisions", f"{path}")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) > 300
    for d in lines:
        ids = [c["zone"] for c in d["candidates"]]
        rows = tuple(Row(i, {k: v for k, v in c.items() if isinstance(v, float)}, c["score"] if c["score"] is not None
                         else math.inf, c["eligible"]) for i, c in enumerate(d["candidates"]))  # fmt: skip
        assert ids[recompute(Explanation(d["policy"], d["rule"], rows, -1, "", d["context"]))] == d["winner"], d
