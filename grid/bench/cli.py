"""`grid bench`: pit routing policies against each other on one scenario, over seeds and loads.

    grid bench --scenario eu-evening-peak --policies nearest,round_robin,latency_aware --seeds 5 \
        --load 0.8,1.0 --duration 5m --out bench/eu

Writes DIR/results.json (every run's report, TTFT histogram, utilization series and cache figures,
the summary and the two reference bounds of `grid.bench.lp_bound`, for Poisson demand only),
DIR/results.md (the table; for workloads with prefix information a second one, each policy's cache
hit rate beside the single-global-cache bound: `grid.bench.cache_metrics`) and DIR/*.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grid.cli_args import add_overrides_arg, duration_arg, seed_count_arg
from grid.errors import GridInputError


def _csv_floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"loads must be > 0, got {text!r}")
    return values


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    bench = subparsers.add_parser("bench", help="compare routing policies over seeds and loads (CIs, plots, LP bound)")
    bench.add_argument("--scenario", default="baseline", help="preset name (see `grid scenarios`) or YAML file")
    add_overrides_arg(bench, "override a scenario field (repeatable)")
    bench.add_argument(
        "--policies", default="all", help="comma-separated names or package.module:Class, or `all` (the registry)"
    )
    bench.add_argument(
        "--autoscalers",
        help="compare fleet policies too: comma-separated static, target_utilization, qps, predictive or "
        "package.module:Class (each run is labelled POLICY+AUTOSCALER)",
    )
    bench.add_argument("--seeds", type=seed_count_arg, default=5, help="seeds 0..N-1 (default 5)")
    bench.add_argument("--load", type=_csv_floats, default=[1.0], help="multiples of the nominal rate, e.g. 0.5,1")
    bench.add_argument("--duration", type=duration_arg, help="simulated time per run (default: the scenario's)")
    bench.add_argument("--ray-address", help="run on this Ray cluster (e.g. auto) instead of local cores")
    bench.add_argument("--out", required=True, help="output directory")
    bench.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    bench.set_defaults(run=bench_main)
    return bench


def _policy_list(text: str) -> list[str]:
    from grid.routing.registry import POLICIES, policy_class

    names = list(POLICIES) if text.strip() == "all" else [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise GridInputError(f"--policies: no policy given; known: {', '.join(POLICIES)}")
    for name in names:
        policy_class(name)  # unknown names list the valid ones
    return list(dict.fromkeys(names))


def _autoscaler_list(text: str | None) -> list[str | None]:
    """The autoscalers to compare ([None]: each run uses its scenario's)."""
    if text is None:
        return [None]
    from grid.scaling.registry import autoscaler_class

    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise GridInputError("--autoscalers: no autoscaler given; known: static, target_utilization, qps, predictive")
    for name in names:
        autoscaler_class(name)  # unknown names list the valid ones
    return list(dict.fromkeys(names))


def bench_main(args: argparse.Namespace) -> int:
    from grid.bench.lp_bound import ZONE_MODELS, lp_bound
    from grid.bench.plots import plot_all
    from grid.bench.runner import RunSpec, run_all
    from grid.bench.summary import markdown, summarize
    from grid.scenario import load_scenario

    overrides = tuple(args.overrides)
    scenario = load_scenario(args.scenario, dict(overrides))  # bad scenarios fail here, before Ray starts
    policies = _policy_list(args.policies)
    autoscalers = _autoscaler_list(args.autoscalers)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GridInputError(f"--out {out}: cannot create the directory: {exc.strerror}") from None
    duration_s = args.duration if args.duration is not None else scenario.duration_s
    specs = [
        RunSpec(args.scenario, overrides, policy, seed, load, duration_s, autoscaler)
        for load in args.load
        for seed in range(args.seeds)
        for policy in policies
        for autoscaler in autoscalers
    ]
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    runs = run_all(specs, ray_address=args.ray_address, progress=progress)
    summary = summarize(runs)
    # The LP bounds price the scenario's Poisson demand at its own sizes, with no prefix cache: they
    # bound nothing for a trace or sessions (cache hits beat them), so those runs go without.
    poisson = scenario.demand.trace is None and scenario.demand.sessions is None
    bounds = {
        f"{load:g}": {model: lp_bound(scenario, duration_s, load, model).to_dict() for model in ZONE_MODELS}
        for load in args.load
        if poisson
    }
    meta = {
        "scenario": scenario.name,
        "scenario_arg": args.scenario,
        "overrides": [list(o) for o in overrides],
        "policies": policies,
        "autoscalers": [a for a in autoscalers if a is not None],
        "seeds": args.seeds,
        "loads": args.load,
        "duration_s": duration_s,
    }
    (out / "results.json").write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "lp_bound": bounds, "runs": runs}, separators=(",", ":"), default=float
        )
    )
    table = markdown(summary, bounds, meta)
    (out / "results.md").write_text(table + "\n")
    plot_all(runs, summary, out, scenario.name)
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and PNG plots to {out}", file=sys.stderr)
    return 0
