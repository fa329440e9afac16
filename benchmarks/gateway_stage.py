"""The live gateway's load-dependent delay, measured and modelled (issue 14, item 1).

Runs the same scenario live at several loads and answer lengths. Each run gives the CPU time of the
gateway's event-loop thread, the requests it took and the tokens it streamed; a least-squares fit
over the runs gives the loop's idle load and its CPU per request and per streamed token
(`network.gateway_idle_load`, `…_cpu_per_request_ms`, `…_cpu_per_token_us`). Then, for
every run, the simulator predicts TTFT on the same arrivals twice: with the idle hop only
(`network.gateway_hop_ms`, the model before) and with the gateway stage fed the fitted costs
(`grid.dispatch.gateway_stage`). The latencies are predicted, not fitted: only CPU seconds are.

    .venv/bin/python benchmarks/gateway_stage.py                # 4 runs of 40 s: RATE_SCALE:OUTPUT_MU pairs
    .venv/bin/python benchmarks/gateway_stage.py --runs 0.25:5.0,1.0:5.0,1.0:3.4 --duration-s 60
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.live.experiment import run_live, run_simulated  # noqa: E402
from grid.scenario import load_scenario  # noqa: E402

QUANTILES = ("p50", "p90", "p99")


def fit_costs(runs: list[dict], duration_s: float) -> tuple[float, float, float]:
    """(idle load, CPU s per request, CPU s per token) from cpu = idle × duration + a × requests +
    b × tokens, least squares, each ≥ 0."""
    a = np.array([[duration_s, r["requests"], r["tokens"]] for r in runs], dtype=float)
    cpu = np.array([r["gateway_cpu_s"] for r in runs])
    (idle, per_request, per_token), *_ = np.linalg.lstsq(a, cpu, rcond=None)
    return max(idle, 0.0), max(per_request, 0.0), max(per_token, 0.0)


def ttft_ms(group) -> dict[str, float]:
    return {q: 1e3 * group.ttft_s.get(q, float("nan")) for q in QUANTILES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "benchmarks" / "gateway_load.yaml"))
    parser.add_argument("--runs", default="0.25:5.0,0.6:5.0,1.0:5.0,1.0:3.4", help="RATE_SCALE:OUTPUT_MU,…")
    parser.add_argument("--duration-s", type=float, default=40.0)
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    runs = []
    for spec in args.runs.split(","):
        scale, mu = (float(x) for x in spec.split(":"))
        scenario = load_scenario(args.scenario, {"demand.sizes.output.mu": mu})
        live = run_live(scenario, None, args.duration_s, scale, scenario.seed, log=lambda *_: None)
        sent = live.client["sent"]
        tokens = live.report.totals["output_tokens_per_s"] * args.duration_s
        runs.append(
            {
                "rate_scale": scale,
                "output_mu": mu,
                "requests": sent,
                "tokens": tokens,
                "gateway_cpu_s": live.gateway_cpu_s,
                "load_average": os.getloadavg()[0],
                "gateway": ttft_ms(live.report.grid),
                "client": {q: 1e3 * live.client["client_ttft_s"][q] for q in QUANTILES},
                "gateway_by_population": {g.name: ttft_ms(g)["p50"] for g in live.report.populations},
            }
        )
        print(f"live ×{scale} μ {mu}: {sent} requests, {tokens:.0f} tokens, loop CPU {live.gateway_cpu_s:.1f} s")
    idle, per_request_s, per_token_s = fit_costs(runs, args.duration_s)
    print(
        f"\nfitted gateway loop: idle load {idle:.3f}, {per_request_s * 1e3:.3f} ms per request, "
        f"{per_token_s * 1e6:.1f} µs per token"
    )
    stage = {
        "network.gateway_idle_load": idle,
        "network.gateway_cpu_per_request_ms": per_request_s * 1e3,
        "network.gateway_cpu_per_token_us": per_token_s * 1e6,
    }
    print("\nTTFT ms (grid)          gateway   client  sim: hop only  sim: stage  │  client vs hop-only / vs stage")
    for run in runs:
        scale, mu = run["rate_scale"], run["output_mu"]
        scenario = load_scenario(args.scenario, {"demand.sizes.output.mu": mu})
        staged = load_scenario(args.scenario, {"demand.sizes.output.mu": mu, **stage})
        for name, scen in (("hop_only", scenario), ("stage", staged)):
            sim = run_simulated(scen, None, args.duration_s, scale, scen.seed)
            run[name] = ttft_ms(sim.grid)
            run[f"{name}_by_population"] = {g.name: ttft_ms(g)["p50"] for g in sim.populations}
        util = run["gateway_cpu_s"] / args.duration_s
        for q in QUANTILES:
            c, h, s = run["client"][q], run["hop_only"][q], run["stage"][q]
            print(
                f"×{scale:<4} μ{mu} {q} (loop {util:4.0%}) {run['gateway'][q]:8.1f} {c:8.1f} {h:14.1f} {s:11.1f}  │  "
                f"{c / h - 1:+7.1%} / {c / s - 1:+7.1%}"
            )
        for pop, live_p50 in run["gateway_by_population"].items():
            h, s = run["hop_only_by_population"][pop], run["stage_by_population"][pop]
            print(f"        {pop} p50 gateway {live_p50:.1f} · hop only {h:.1f} · stage {s:.1f}")
    if args.json:
        figures = {"idle_load": idle, "per_request_s": per_request_s, "per_token_s": per_token_s, "runs": runs}
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
