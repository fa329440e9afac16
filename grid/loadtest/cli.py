"""`grid loadtest`: Locust headless against the live grid, with a shape, a summary and an exit code.

    grid loadtest --shape diurnal --minutes 5 --start-grid --open-loop-rps 6 --out runs/diurnal
    grid loadtest --shape step_ramp --minutes 4 --host http://127.0.0.1:8000 --open-loop-rps 18 --out runs/ramp
    grid loadtest --shape outage_drill --minutes 3 --start-grid --users 12 --workers 2 --out runs/drill

First asks the target for the model it serves (`GET /v1/models`) and its populations
(`GET /grid/world`), and sends those (grid/loadtest/target.py): the scenario gives the load's shape,
sizes and population mix, the target the names. With `--start-grid` the target is `grid up` of the
same scenario, on a free loopback port (with a fresh GRID_ADMIN_TOKEN, which the outage drill uses),
stopped afterwards. An unreachable target or a failing `/v1/models` is a CLI error (exit 2). The API
key, if the target needs one, is `GRID_API_KEY` (else `OPENAI_API_KEY`).

Then runs `locust -f loadtests/locustfile.py --headless … --csv OUT/locust --html OUT/report.html
--exit-code-on-error 0` (with `--workers N`: one `--master` and N `--worker --master-host 127.0.0.1`
processes), configured through the locustfile's GRID_* environment variables. Prints requests,
failures and TTFT/TPOT/E2E p50/p99 from Locust's CSV; for a step ramp, the per-step figures, the knee
where p99 TTFT breaks the SLO, and the simulator's knee and capacity for the same profile.

Exit code: Locust's own when it failed (not 0), else 1 when the run's requests failed by the rule of
grid/loadtest/verdict.py (more than 1% failed; a step ramp: more than 1% of its first step), with
the failures by status and no knee, else 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from grid.errors import GridInputError
from grid.loadtest.target import Target, probe_target
from grid.loadtest.verdict import Verdict, judge, top_failures

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
DEFAULT_SCENARIO = str(ROOT / "loadtests" / "grid.yaml")
SHAPE_CHOICES = ("constant", "diurnal", "flash_crowd", "step_ramp", "outage_drill")
GRID_START_TIMEOUT_S = 120.0


def add_loadtest_parser(subparsers) -> argparse.ArgumentParser:
    """`grid loadtest …` on the `grid` command's subparsers."""
    from grid.cli_args import add_scenario_args, positive_float_arg

    p = subparsers.add_parser("loadtest", help="run Locust headless against the live grid and summarize")
    add_scenario_args(p)
    p.set_defaults(scenario=DEFAULT_SCENARIO)
    p.add_argument("--shape", choices=SHAPE_CHOICES, default="constant", help="load shape (default constant)")
    p.add_argument("--minutes", type=positive_float_arg, default=5.0, help="length of the shaped run (default 5)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--host",
        help="URL of a running gateway or OpenAI-compatible server, e.g. http://127.0.0.1:8000; the model sent is "
        "the one it serves (GET /v1/models); its API key, if it needs one: GRID_API_KEY or OPENAI_API_KEY",
    )
    target.add_argument("--start-grid", action="store_true", help="start `grid up` on a loopback port for the run")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--users", type=int, help="closed loop: users at the shape's peak (default 10)")
    mode.add_argument("--open-loop-rps", type=positive_float_arg, help="open loop at this rate (the shape's scale)")
    p.add_argument("--out", required=True, help="directory for locust_*.csv, report.html, records, summary.json")
    p.add_argument("--workers", type=int, default=0, help="distributed: a master and N local worker processes")
    p.add_argument("--think-s", type=float, default=0.0, help="closed loop: think time between requests")
    p.add_argument("--drain-s", type=float, default=10.0, help="open loop: time for answers after the last arrival")
    p.add_argument("--steps", type=int, default=8, help="step_ramp: number of steps (default 8)")
    p.add_argument("--drill-zone", help="outage_drill: the zone to fail (default: the scenario's first)")
    p.add_argument("--crowd-population", help="flash_crowd: the population that surges (default: the largest)")
    p.add_argument(
        "--model", help="model name to send, one the target lists (default: the target's, from GET /v1/models)"
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from grid.scenario import load_scenario

    scenario = load_scenario(args.scenario, dict(args.overrides))  # validates before anything starts
    if args.workers < 0:
        raise GridInputError("loadtest: --workers must be >= 0")
    if args.users is not None and args.users < 1:
        raise GridInputError("loadtest: --users must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("records-*.csv"):
        old.unlink()
    token = os.environ.get("GRID_ADMIN_TOKEN") or (secrets.token_urlsafe(24) if args.start_grid else "")
    grid_process = None
    try:
        if args.start_grid:
            host, grid_process = start_grid(args.scenario, args.overrides, token, out / "grid.log")
        else:
            host = args.host
        target = probe_target(host, scenario, args.model)  # exit 2 when it cannot answer
        host = target.url
        env = locust_env(args, token, out, target)
        timeout_s = args.minutes * 60 + args.drain_s + 180
        mode = f"closed loop {env['GRID_USERS']} users"
        if args.open_loop_rps:
            mode = f"open loop {args.open_loop_rps:g} req/s"
        print(
            f"grid loadtest: {args.shape} · {args.minutes:g} min · "
            + mode
            + f" · {host} · {args.workers or 'no'} workers · out {out}\n  "
            + target.describe(),
            flush=True,
        )
        locust_code = run_locust(host, env, out, args.workers, timeout_s)
    finally:
        if grid_process is not None:
            stop_process(grid_process)
    summary = summarize(out / "locust_stats.csv")
    summary["target"] = target.to_dict()
    print(format_summary(summary))
    verdict = judge_run(scenario, args, out, summary)
    summary["verdict"] = verdict.to_dict()
    if args.shape == "step_ramp":
        ramp = analyze_step_ramp(scenario, args, out, verdict, target)
        summary["step_ramp"] = ramp
        print(format_step_ramp(ramp))
    code = locust_code or (1 if verdict.failed_run else 0)
    summary["locust_exit_code"] = locust_code
    summary["exit_code"] = code
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    message = verdict.message()
    if locust_code:
        message += f"\ngrid loadtest: FAILED: Locust exited with code {locust_code}"
    print(message, file=sys.stderr if code else sys.stdout, flush=True)
    return code


def judge_run(scenario, args: argparse.Namespace, out: Path, summary: dict) -> Verdict:
    """The run's verdict from its records (grid/loadtest/verdict.py): a step ramp is judged on its
    first step (on all its requests if that step has none), any other shape on all its requests."""
    from loadtests.shapes import build_profile, read_records

    records = read_records(sorted(out.glob("records-*.csv")))
    if args.shape == "step_ramp":
        profile = build_profile(scenario, "step_ramp", args.minutes * 60, args.open_loop_rps or 1.0, n_steps=args.steps)
        _, first_end, first_rps = profile.steps[0]
        verdict = judge(records, first_end, f"the first step ({first_rps:.2f} req/s)")
        if verdict.requests == 0:  # nothing answered in the first step: judge what there is
            verdict = judge(records)
    else:
        verdict = judge(records)
    verdict.top_errors = top_failures(out / "locust_failures.csv")
    verdict.admin_failed = [name for name, e in summary.get("admin", {}).items() if e["failures"]]
    if verdict.requests == 0:
        verdict.note = summary.get("error") or "Locust sent nothing"
    return verdict


# --- the grid and Locust processes ---------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_grid(scenario: str, overrides, token: str, log_path: Path) -> tuple[str, subprocess.Popen]:
    """`grid up` on a free loopback port in its own process; returns (URL, process) once /health is ok."""
    port = free_port()
    cmd = [sys.executable, "-m", "grid.cli", "up", "--scenario", scenario, "--host", "127.0.0.1", "--port", str(port)]
    for path, value in overrides:
        cmd += ["--set", f"{path}={json.dumps(value)}"]
    env = {**os.environ, "GRID_ADMIN_TOKEN": token}
    log = open(log_path, "w")  # noqa: SIM115 — closed with the process
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    process._grid_log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + GRID_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GridInputError(f"loadtest: the grid exited with code {process.returncode} (see {log_path})")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return url, process
        except OSError:
            pass
        time.sleep(0.5)
    stop_process(process)
    raise GridInputError(f"loadtest: the grid did not answer /health within {GRID_START_TIMEOUT_S:.0f} s")


def stop_process(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM (uvicorn and Ray stop cleanly), then SIGKILL the process group after `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    log = getattr(process, "_grid_log", None)
    if log is not None:
        log.close()


def locust_env(args: argparse.Namespace, token: str, out: Path, target: Target | None = None) -> dict[str, str]:
    """The locustfile's GRID_* variables for this run (the API key, if any, passes through from ours)."""
    env = {
        **os.environ,
        "GRID_SCENARIO": str(args.scenario),
        "GRID_SET": json.dumps(dict(args.overrides)),
        "GRID_SHAPE": args.shape,
        "GRID_MINUTES": str(args.minutes),
        "GRID_USERS": str(args.users or 10),
        "GRID_GENERATORS": str(max(1, args.workers)),
        "GRID_THINK_S": str(args.think_s),
        "GRID_DRAIN_S": str(args.drain_s),
        "GRID_STEPS": str(args.steps),
        "GRID_RECORDS_DIR": str(out),
        "GRID_ADMIN_TOKEN": token,
    }
    if args.open_loop_rps:
        env["GRID_RPS"] = str(args.open_loop_rps)
    else:
        env.pop("GRID_RPS", None)
    if target is not None:
        env["GRID_MODEL"] = target.model
        env["GRID_POPULATION_MAP"] = json.dumps(target.population_map)
    else:
        env.pop("GRID_POPULATION_MAP", None)
    for name, value in (
        ("GRID_SEED", args.seed),
        ("GRID_MODEL", args.model if target is None else None),
        ("GRID_DRILL_ZONE", args.drill_zone),
        ("GRID_CROWD_POPULATION", args.crowd_population),
    ):
        if value is not None:
            env[name] = str(value)
    return env


def locust_command(host: str, out: Path, role: str = "local", workers: int = 0, master_port: int = 5557) -> list[str]:
    """The locust command line of one process: `local` (single process), `master` or `worker`."""
    exe = str(Path(sys.executable).with_name("locust"))
    cmd = [exe, "-f", str(LOCUSTFILE), "--headless", "--host", host, "--loglevel", "WARNING"]
    if role == "worker":
        return cmd + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    cmd += [
        "--csv", str(out / "locust"), "--html", str(out / "report.html"),
        "--exit-code-on-error", "0", "--stop-timeout", "30", "--only-summary",
    ]  # fmt: skip
    if role == "master":
        cmd += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
        cmd += ["--expect-workers", str(workers)]
    return cmd


def run_locust(host: str, env: dict[str, str], out: Path, workers: int, timeout_s: float) -> int:
    """Run Locust (a master and `workers` workers, or one process) and return its exit code."""
    if workers <= 0:
        return _wait(subprocess.Popen(locust_command(host, out), env=env, start_new_session=True), timeout_s)
    port = free_port()
    master = subprocess.Popen(locust_command(host, out, "master", workers, port), env=env, start_new_session=True)
    worker_procs = [
        subprocess.Popen(
            locust_command(host, out, "worker", master_port=port),
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        return _wait(master, timeout_s)
    finally:
        for proc in worker_procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _wait(process: subprocess.Popen, timeout_s: float) -> int:
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        print(f"grid loadtest: Locust ran past {timeout_s:.0f} s; stopping it", file=sys.stderr)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        return 124


# --- summaries -----------------------------------------------------------------------------------


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def summarize(stats_csv: Path) -> dict:
    """Requests, failures and TTFT/TPOT/E2E/ITL p50/p99 (ms) from Locust's `*_stats.csv`."""
    summary: dict = {"requests": 0, "failures": 0, "entries": {}}
    if not stats_csv.is_file():
        summary["error"] = f"{stats_csv} not written (Locust did not finish)"
        return summary
    with open(stats_csv, newline="") as f:
        for row in csv.DictReader(f):
            kind, name = row["Type"], row["Name"]
            entry = {
                "count": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "p50_ms": _num(row.get("50%")),
                "p99_ms": _num(row.get("99%")),
            }
            if kind in ("TTFT", "TPOT", "E2E", "ITL"):
                summary["entries"][kind] = entry
            elif kind == "POST":
                summary["requests"] += entry["count"]
                summary["failures"] += entry["failures"]
                summary["entries"].setdefault("POST", entry)
            elif kind == "ADMIN":
                summary.setdefault("admin", {})[name] = entry
    return summary


def format_summary(summary: dict) -> str:
    if "error" in summary:
        return f"summary: {summary['error']}"
    lines = [f"requests {summary['requests']} · failures {summary['failures']}"]
    for kind in ("TTFT", "TPOT", "E2E", "ITL"):
        e = summary["entries"].get(kind)
        if e:
            lines.append(
                f"  {kind:<5} p50 {e['p50_ms']:>7.0f} ms   p99 {e['p99_ms']:>7.0f} ms   ({e['count']} samples)"
            )
    for name, e in summary.get("admin", {}).items():
        lines.append(f"  admin {name}: {'ok' if not e['failures'] else 'FAILED'}")
    return "\n".join(lines)


def analyze_step_ramp(
    scenario, args: argparse.Namespace, out: Path, verdict: Verdict | None = None, target: Target | None = None
) -> dict:
    """Per-step live figures, the knee, and the simulator's knee and capacity for the same profile.
    A failed run (`verdict`) has no knee, live or simulated: its latencies are those of failures."""
    from grid.world import build_world
    from loadtests.shapes import (
        Knee,
        build_profile,
        find_knee,
        read_records,
        sim_records,
        simulate_profile,
        step_stats,
    )

    rps = args.open_loop_rps or 1.0
    profile = build_profile(scenario, "step_ramp", args.minutes * 60, rps, n_steps=args.steps)
    slo = scenario.slo.ttft_s
    live = step_stats(read_records(sorted(out.glob("records-*.csv"))), profile.steps)
    failed = verdict is not None and verdict.failed_run
    result = {
        "slo_ttft_s": slo,
        "capacity_rps": build_world(scenario).total_capacity_rps,
        "live_steps": [vars(s) for s in live],
        "live_knee": vars(Knee(None, None, None) if failed else find_knee(live, slo)),
        "open_loop": bool(args.open_loop_rps),
        "no_knee": "the run failed: " + verdict.counts_text() if failed else None,
        "target_is_scenario": target is None or target_is_scenario(target, scenario),
        "scenario": scenario.name,
    }
    if args.open_loop_rps and not failed:
        seed = scenario.seed if args.seed is None else args.seed
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sim.csv"
            simulate_profile(scenario, profile, seed, args.policy, records_path=path)
            sim = step_stats(sim_records(path), profile.steps)
        result["sim_steps"] = [vars(s) for s in sim]
        result["sim_knee"] = vars(find_knee(sim, slo))
    return result


def target_is_scenario(target: Target, scenario) -> bool:
    """Whether the target looks like this scenario's grid (its model and populations): if not, the
    simulator's figures and the closed-form capacity are the scenario's, not the target's."""
    return (
        target.model == scenario.model.name
        and target.populations is not None
        and set(target.populations) == set(scenario.populations)
    )


def format_step_ramp(r: dict) -> str:
    lines = [f"step ramp (SLO p99 TTFT ≤ {r['slo_ttft_s'] * 1000:.0f} ms; steady part of each step):"]
    lines.append(f"  {'offered':>8} {'sent':>6} {'failed':>6} {'done/s':>7} {'TTFT p50':>9} {'p99':>8}   sim p99")
    sim = r.get("sim_steps") or [None] * len(r["live_steps"])
    for s, m in zip(r["live_steps"], sim, strict=True):
        sim_p99 = f"{m['ttft_p99_s'] * 1000:7.0f}" if m else "      -"
        lines.append(
            f"  {s['offered_rps']:>8.2f} {s['sent']:>6} {s['failed']:>6} {s['achieved_rps']:>7.2f} "
            f"{s['ttft_p50_s'] * 1000:>9.0f} {s['ttft_p99_s'] * 1000:>8.0f}   {sim_p99}"
        )
    if r.get("no_knee"):
        lines.append(f"  no knee: {r['no_knee']} (a knee read from failed requests would be a figure of the failures)")
        return "\n".join(lines)
    knee = r["live_knee"]["knee_rps"]
    line = f"  knee (live): {knee:.2f} req/s" if knee is not None else "  knee (live): not reached"
    if r.get("sim_knee"):
        sk = r["sim_knee"]["knee_rps"]
        line += f" · simulator: {sk:.2f} req/s" if sk is not None else " · simulator: not reached"
        if knee is not None and sk:
            line += f" ({(knee / sk - 1) * 100:+.1f}%)"
    line += f" · closed-form capacity {r['capacity_rps']:.2f} req/s"
    if knee is not None:
        line += f" ({(knee / r['capacity_rps'] - 1) * 100:+.1f}%)"
    lines.append(line)
    if not r.get("target_is_scenario", True):
        lines.append(
            f"  (the target is not the scenario's grid ({r.get('scenario')}): the simulator's figures "
            "and the capacity are the scenario's)"
        )
    if not r["open_loop"]:
        lines.append("  (closed loop: the offered rate is nominal; use --open-loop-rps for a true ramp)")
    return "\n".join(lines)
