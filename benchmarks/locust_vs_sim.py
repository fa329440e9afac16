"""Locust against the live grid vs the simulator on the same load profile (issue 6).

1. Moderate load: open-loop Locust at a constant rate (~half the scenario's capacity); Locust's
   measured p50 TTFT vs the simulator's for the same arrivals (`loadtests.shapes.simulate_profile`
   replays the very schedule the open-loop generator sent, same seed). Target: within 15%.
2. Step ramp: open-loop steps up past saturation; the knee where p99 TTFT breaks the SLO, vs the
   simulator's knee on the same steps and the closed-form capacity. Target: within 20%.

    .venv/bin/python benchmarks/locust_vs_sim.py --start-grid             # loadtests/grid.yaml, ~8 min
    .venv/bin/python benchmarks/locust_vs_sim.py --host http://127.0.0.1:8000 --moderate-rps 6 --ramp-rps 14

Both runs go through `grid loadtest` (Locust headless, its CSV and per-request records in --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.cli import main as grid_main  # noqa: E402
from grid.loadtest.cli import DEFAULT_SCENARIO, start_grid, stop_process  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402
from loadtests.shapes import build_profile, read_records, simulate_profile  # noqa: E402


def _p(values, q):
    values = [v for v in values if v == v]
    return float(np.percentile(values, q)) if values else math.nan


def moderate(host: str, scenario, scenario_path: str, rps: float, minutes: float, out: Path) -> dict:
    code = grid_main(
        ["loadtest", "--scenario", scenario_path, "--host", host, "--shape", "constant", "--minutes", str(minutes),
         "--open-loop-rps", str(rps), "--drain-s", "10", "--out", str(out)]
    )  # fmt: skip
    records = read_records(sorted(out.glob("records-*.csv")))
    warm = 10.0  # the first seconds fill the batches
    ok = [r for r in records if r["ok"] and r["t_s"] >= warm]
    summary = json.loads((out / "summary.json").read_text())
    profile = build_profile(scenario, "constant", minutes * 60, rps)
    t0 = time.monotonic()
    sim_path = out / "sim_records.csv"
    sim = simulate_profile(scenario, profile, scenario.seed, records_path=sim_path)
    from loadtests.shapes import sim_records

    sim_ok = [r for r in sim_records(sim_path) if r["ok"] and r["t_s"] >= warm]
    live_p50, sim_p50 = _p([r["ttft_s"] for r in ok], 50), _p([r["ttft_s"] for r in sim_ok], 50)
    return {
        "exit_code": code,
        "rps": rps,
        "minutes": minutes,
        "requests": len(records),
        "failures": sum(not r["ok"] for r in records),
        "send_lateness_p99_ms": _p([r["late_s"] for r in records], 99) * 1000,
        "live_ttft_p50_ms": live_p50 * 1000,
        "live_ttft_p99_ms": _p([r["ttft_s"] for r in ok], 99) * 1000,
        "locust_csv_ttft_p50_ms": summary["entries"].get("TTFT", {}).get("p50_ms"),
        "sim_ttft_p50_ms": sim_p50 * 1000,
        "sim_ttft_p99_ms": _p([r["ttft_s"] for r in sim_ok], 99) * 1000,
        "live_tpot_p50_ms": _p([r["tpot_s"] for r in ok], 50) * 1000,
        "sim_tpot_p50_ms": _p([r["tpot_s"] for r in sim_ok], 50) * 1000,
        "ttft_p50_rel": live_p50 / sim_p50 - 1,
        "sim_completed": sim.grid.completed,
        "sim_wall_s": time.monotonic() - t0,
    }


def ramp(host: str, scenario_path: str, rps: float, minutes: float, steps: int, out: Path) -> dict:
    code = grid_main(
        ["loadtest", "--scenario", scenario_path, "--host", host, "--shape", "step_ramp", "--minutes", str(minutes),
         "--open-loop-rps", str(rps), "--steps", str(steps), "--drain-s", "10", "--out", str(out)]
    )  # fmt: skip
    result = json.loads((out / "summary.json").read_text())["step_ramp"]
    result["exit_code"] = code
    live, sim = result["live_knee"]["knee_rps"], (result.get("sim_knee") or {}).get("knee_rps")
    result["knee_vs_sim_rel"] = live / sim - 1 if live and sim else None
    result["knee_vs_capacity_rel"] = live / result["capacity_rps"] - 1 if live else None
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--host")
    target.add_argument("--start-grid", action="store_true")
    parser.add_argument("--moderate-rps", type=float, default=6.0)
    parser.add_argument("--moderate-minutes", type=float, default=2.0)
    parser.add_argument("--ramp-rps", type=float, default=14.0)
    parser.add_argument("--ramp-minutes", type=float, default=4.0)
    parser.add_argument("--ramp-steps", type=int, default=8)
    parser.add_argument("--skip-ramp", action="store_true")
    parser.add_argument("--out", default="runs/locust_vs_sim")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    out = Path(args.out)
    grid = None
    host = args.host
    if args.start_grid:
        out.mkdir(parents=True, exist_ok=True)
        host, grid = start_grid(args.scenario, [], os.environ.get("GRID_ADMIN_TOKEN", "bench"), out / "grid.log")
    try:
        result = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} · {os.cpu_count()} cores · load average {os.getloadavg()[0]:.1f} at start",
            "moderate": moderate(
                host, scenario, args.scenario, args.moderate_rps, args.moderate_minutes, out / "moderate"
            ),
        }
        if not args.skip_ramp:
            result["ramp"] = ramp(host, args.scenario, args.ramp_rps, args.ramp_minutes, args.ramp_steps, out / "ramp")
        result["load_average_end"] = os.getloadavg()[0]
    finally:
        if grid is not None:
            stop_process(grid)
    m = result["moderate"]
    print(
        f"\nmoderate load {m['rps']:g} req/s: live p50 TTFT {m['live_ttft_p50_ms']:.0f} ms vs simulator "
        f"{m['sim_ttft_p50_ms']:.0f} ms ({m['ttft_p50_rel'] * 100:+.1f}%, target ±15%) · "
        f"{m['requests']} requests, {m['failures']} failures"
    )
    if "ramp" in result:
        r = result["ramp"]
        live, sim = r["live_knee"]["knee_rps"], (r.get("sim_knee") or {}).get("knee_rps")
        print(
            f"step ramp: knee live {live} req/s · simulator {sim} · capacity {r['capacity_rps']:.2f} "
            f"(vs sim {r['knee_vs_sim_rel']}, vs capacity {r['knee_vs_capacity_rel']}; target ±20%)"
        )
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"written {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
