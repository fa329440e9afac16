"""`grid sweep` and `grid plan`: argument parsing and output. The work is in sweep.py and plan.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from grid.cli_args import add_overrides_arg, duration_arg, float_arg, seed_count_arg
from grid.errors import GridInputError


def _fraction(text: str) -> float:
    value = float_arg(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, default_seeds: int) -> None:
    parser.add_argument("--scenario", default="default", help="preset name (see `grid scenarios`) or YAML file")
    add_overrides_arg(parser, "override a scenario field for every point (repeatable)")
    parser.add_argument("--policy", help="routing policy name or package.module:Class (default: the scenario's)")
    parser.add_argument(
        "--seeds", type=seed_count_arg, default=default_seeds, help=f"seeds 0..N-1 (default {default_seeds})"
    )
    parser.add_argument("--duration", type=duration_arg, help="simulated time per run, e.g. 10m")
    parser.add_argument("--ray-address", help="run on this Ray cluster (e.g. auto) instead of local cores")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    sweep = subparsers.add_parser(
        "sweep", help="simulate the Cartesian product of scenario-field variations on Ray (cached, resumable)"
    )
    _common(sweep, default_seeds=1)
    sweep.add_argument(
        "--vary", action="append", default=[], metavar="FIELD=A..B:STEP|A,B,C",
        help="a scenario field and its values, e.g. zones.frankfurt-1.replicas=4..16:4 or demand.scale=0.5,1 "
        "(repeatable: the sweep is the Cartesian product)",
    )  # fmt: skip
    sweep.add_argument("--out", required=True, help="output directory (also the cache: a rerun resumes)")
    sweep.add_argument("--cpus", type=int, help="local cores to use (default: all)")
    sweep.set_defaults(run=sweep_main)
    return sweep


def sweep_main(args: argparse.Namespace) -> int:
    from grid.capacity.sweep import format_points, sweep
    from grid.capacity.variations import parse_vary

    variations = [parse_vary(text) for text in args.vary]
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    result = sweep(
        args.scenario,
        variations,
        args.out,
        overrides=tuple(args.overrides),
        policy=args.policy,
        seeds=args.seeds,
        duration_s=args.duration,
        ray_address=args.ray_address,
        progress=progress,
        num_cpus=args.cpus,
    )
    print(format_points(result))
    total = result.computed + result.cached
    print(
        f"{len(result.points)} points × {args.seeds} seeds: {result.computed} computed, {result.cached} from the "
        f"cache ({total and result.cached / total:.0%}) in {result.wall_s:.1f} s; wrote "
        + ", ".join(str(f) for f in result.files),
        file=sys.stderr,
    )
    return 0


def add_plan_parser(subparsers) -> argparse.ArgumentParser:
    plan = subparsers.add_parser(
        "plan", help="cheapest replicas per zone meeting an SLO at peak demand, N-1 secure (verified by simulation)"
    )
    _common(plan, default_seeds=2)
    plan.add_argument("--slo", required=True, help="bounds, e.g. ttft_p99=1s or ttft_p99=1s,tpot_p99=100ms")
    plan.add_argument("--attainment", type=_fraction, default=0.99, help="share of requests meeting the SLO (0.99)")
    plan.add_argument(
        "--contingency", choices=("n-1", "none"), default="n-1", help="n-1: also with any single region down"
    )
    plan.add_argument(
        "--headroom", type=_fraction, default=None, help="planning utilization of the fast model (default 1/1.4)"
    )
    plan.add_argument("--out", help="directory for plan.json and the simulation cache (a rerun reuses it)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--autoscaling-bounds",
        choices=("floor", "ceiling"),
        help="also write OUT/autoscaling.yaml: a scenario starting at the plan, the plan as the autoscaler's "
        "floor or ceiling (run it with grid sim --scenario OUT/autoscaling.yaml --autoscaler NAME)",
    )
    plan.set_defaults(run=plan_main)
    return plan


def plan_main(args: argparse.Namespace) -> int:
    from grid.capacity.fluid_model import HEADROOM_UTILIZATION
    from grid.capacity.plan import make_plan
    from grid.capacity.plan_inputs import parse_slo
    from grid.capacity.plan_report import format_plan
    from grid.scenario import load_scenario

    slo = parse_slo(args.slo)
    if args.autoscaling_bounds and not args.out:
        raise GridInputError("--autoscaling-bounds writes OUT/autoscaling.yaml: give --out")
    scenario = load_scenario(args.scenario, dict(args.overrides))  # bad input fails before Ray starts
    out = Path(args.out) if args.out else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GridInputError(f"--out {out}: cannot create the directory: {exc.strerror}") from None
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    plan = make_plan(
        args.scenario,
        slo,
        attainment=args.attainment,
        contingency=args.contingency,
        overrides=tuple(args.overrides),
        policy=args.policy,
        seeds=args.seeds,
        duration_s=args.duration if args.duration is not None else 600.0,
        u_max=args.headroom or HEADROOM_UTILIZATION,
        cache_dir=out / "cache" if out else None,
        ray_address=args.ray_address,
        progress=progress,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    data = json.dumps(plan.to_dict(), indent=1, default=float)
    if out is not None:
        (out / "plan.json").write_text(data)
    if out is not None and args.autoscaling_bounds:
        from grid.capacity.handover import autoscaling_overlay

        overlay = autoscaling_overlay(dict(plan.replicas), args.scenario, args.autoscaling_bounds)
        (out / "autoscaling.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
        print(f"wrote {out / 'autoscaling.yaml'}", file=sys.stderr)
    print(data if args.json else format_plan(plan, scenario))
    return 0
