"""Trace replay: windows, sessions kept on their population, the trace's own sizes, paths and warnings."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grid.cli import main
from grid.demand.plan import demand_plan
from grid.demand.traces import TraceReader
from grid.errors import GridWarning
from grid.scenario import PRESETS_DIR, load_scenario
from grid.world import build_world

SHARED = Path(__file__).parents[3] / "shared" / "data" / "traces" / "mooncake-fast25" / "conversation_trace.jsonl"
SHIPPED = PRESETS_DIR / "traces" / "mooncake_conversation_trace.jsonl.gz"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def every_second(n: int, prompt: int = 100, output: int = 10) -> list[dict]:
    return [{"timestamp": 1000 * i, "input_length": prompt, "output_length": output} for i in range(n)]


def trace_scenario(path: Path | str, **trace):
    return load_scenario("default", {"demand.trace": {"path": str(path), **trace}})


def replay(s, duration_s: float = 3600.0, seed: int = 0, rate_scale: float = 1.0):
    plan = demand_plan(s, duration_s, rate_scale, seed)
    chunks = list(plan.arrivals(np.random.default_rng(seed)))
    return plan, chunks


# --- the Mooncake trace's reuse, computed from hash_ids alone -------------------------------------------


def reuse_bound(rows) -> float:
    """Share of prompt tokens in a block seen before, with one infinite cache: a request hits its longest
    run of leading blocks already cached (a block id names its whole prefix), capped at its prompt."""
    seen: set[int] = set()
    hit = total = 0
    for n, ids in rows:
        k = 0
        while k < len(ids) and ids[k] in seen:
            k += 1
        hit += min(k * 512, n)
        total += n
        seen.update(ids)
    return hit / total


@pytest.mark.skipif(not SHARED.is_file(), reason=f"the Mooncake trace is not at {SHARED}")
def test_mooncake_reuse_bound_is_37_percent_and_the_shipped_copy_is_the_published_file():
    published = [json.loads(line) for line in SHARED.read_text().splitlines()]
    bound = reuse_bound((r["input_length"], r["hash_ids"]) for r in published)
    assert bound == pytest.approx(0.3736, abs=0.0005)  # the 37%
    assert gzip.decompress(SHIPPED.read_bytes()) == SHARED.read_bytes()
    # What the replay hands the serving model (full blocks only) has the same bound within 0.1 point.
    (chunk,) = TraceReader(SHIPPED, block_tokens=512).chunks()
    replayed = reuse_bound(zip(chunk.prompt.tolist(), chunk.hashes, strict=True))
    assert replayed == pytest.approx(bound, abs=0.001)


def test_mooncake_conversations_stay_on_one_population():
    s = load_scenario("mooncake")
    plan, chunks = replay(s, seed=5)
    pops = np.concatenate([c.population for c in chunks]).tolist()
    hashes = [h for c in chunks for h in c.prefix_hashes]
    prompts = np.concatenate([c.prompt_tokens for c in chunks]).tolist()
    ends, pairs = {}, []  # independently: a prompt whose blocks extend an earlier prompt's continues it
    for i, h in enumerate(hashes):
        for k in range(len(h), 1, -1):
            if h[:k] in ends:
                pairs.append((ends[h[:k]], i))
                break
        ends[h[: prompts[i] // 512]] = i
    assert len(pairs) > 3500  # about a third of the hour's requests continue a conversation
    assert sum(pops[a] == pops[b] for a, b in pairs) / len(pairs) > 0.97
    assert plan.meta()["requests_kept_in_session"] == pytest.approx(len(pairs), rel=0.02)
    _, spread = replay(load_scenario("mooncake", {"demand.trace.populations": "shares"}), seed=5)
    spread_pops = np.concatenate([c.population for c in spread]).tolist()
    assert sum(spread_pops[a] == spread_pops[b] for a, b in pairs) / len(pairs) < 0.3  # by share alone: scattered


def test_session_ids_keep_their_population(tmp_path):
    header = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    rows = "".join(f"{i},s{i % 40},1,GPT-4,10,5,15,Conversation log\n" for i in range(400))
    path = tmp_path / "b.csv"
    path.write_text(header + rows)
    _, chunks = replay(trace_scenario(path))
    pops = np.concatenate([c.population for c in chunks])
    by_session = {}
    for i, p in enumerate(pops.tolist()):
        assert by_session.setdefault(i % 40, p) == p
    assert len(set(by_session.values())) > 8


# --- windows, ends and the trace's own sizes ------------------------------------------------------------


def test_window_limit_and_horizon(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", every_second(600))
    plan, chunks = replay(trace_scenario(path, start_s="2m", duration_s="5m"))
    times = np.concatenate([c.arrival_s for c in chunks])
    assert times[0] == 0.0 and len(times) == 300 and plan.horizon_s == 300.0
    plan, chunks = replay(trace_scenario(path, start_s=100, limit=50), rate_scale=2.0)
    times = np.concatenate([c.arrival_s for c in chunks])
    assert len(times) == 50 and times[-1] == 24.5 and plan.horizon_s == 24.5  # its last row, twice as fast
    plan, chunks = replay(trace_scenario(path, loop=True), duration_s=1500.0)
    assert sum(len(c) for c in chunks) == 1500 and plan.horizon_s == 1500.0


def test_capacity_and_offered_load_use_the_trace_sizes(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", every_second(120, prompt=12_000, output=340))
    s = trace_scenario(path)
    plan = demand_plan(s, 600.0)
    assert plan.mean_tokens == (12_000, 340)
    trace_world = build_world(s, plan.mean_tokens)
    assert trace_world.mean_prompt_tokens == 12_000
    assert trace_world.total_capacity_rps < 0.3 * build_world(load_scenario("default")).total_capacity_rps
    assert build_world(s).mean_prompt_tokens == 12_000  # a scenario alone gives its trace's sizes too


def test_failed_rows_are_counted_warned_and_reported(tmp_path):
    path = tmp_path / "burst.csv"
    path.write_text(BURST_HEADER + "".join(f"{i},ChatGPT,100,{0 if i % 4 == 0 else 20},1,API log\n" for i in range(40)))
    with pytest.warns(GridWarning, match="10 rows have 0 output tokens"):
        plan, chunks = replay(trace_scenario(path))
    assert sum(len(c) for c in chunks) == 30
    meta = plan.meta()
    assert meta["failed_rows"] == 10 and meta["failed_rows_policy"] == "skip" and meta["format"] == "burstgpt"


def test_units_warning_through_the_scenario(tmp_path):
    rows = [{"timestamp": i * 0.3, "input_length": 100, "output_length": 10} for i in range(12_000)]
    path = write_jsonl(tmp_path / "seconds.jsonl", rows)
    with pytest.warns(GridWarning, match="implausible"):
        demand_plan(trace_scenario(path), 60.0)


# --- paths ---------------------------------------------------------------------------------------------


def test_relative_trace_path_is_read_from_the_scenario_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", every_second(30))
    (tmp_path / "base.yaml").write_text("demand:\n  trace: {path: data/t.jsonl}\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "child.yaml").write_text(f"base: {tmp_path / 'base.yaml'}\nname: child\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    for name in ("base.yaml", "elsewhere/child.yaml"):
        s = load_scenario(str(tmp_path / name))
        assert Path(s.demand.trace.path) == tmp_path / "data" / "t.jsonl"
        assert sum(len(c) for c in replay(s)[1]) == 30


def test_set_trace_path_on_a_scenario_without_a_trace(tmp_path, monkeypatch, capsys):
    write_jsonl(tmp_path / "t.jsonl", every_second(20))
    monkeypatch.chdir(tmp_path)  # a path given on the command line is read from the working directory
    code = main(["sim", "--set", "demand.trace.path=t.jsonl", "--set", "demand.trace.end=drain", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["meta"]["demand"]["path"] == "t.jsonl" and report["grid"]["arrivals"] == 20
    assert report["grid"]["in_flight"] == 0 and report["meta"]["demand"]["end"] == "drain"


def test_cli_prints_one_warning_line_and_the_trace_summary(tmp_path):
    rows = [{"timestamp": i * 0.3, "input_length": 100, "output_length": 10} for i in range(12_000)]
    path = write_jsonl(tmp_path / "seconds.jsonl", rows)
    out = subprocess.run(
        [sys.executable, "-m", "grid.cli", "sim", "--set", f"demand.trace.path={path}", "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("grid: warning:")]
    assert len(warnings) == 1 and "time_unit: s" in warnings[0] and "Traceback" not in out.stderr
    assert f"trace {path} (jsonl)" in out.stdout
