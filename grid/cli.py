"""`grid`: the command line. Bad input prints one clear error and exits 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from grid.cli_args import (
    add_scenario_args,
    duration_arg,
    positive_duration_arg,
    positive_float_arg,
    positive_int_arg,
)
from grid.errors import GridInputError, show_grid_warnings

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grid", description="A simulated global LLM-inference grid.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser("sim", help="simulate a scenario in virtual time and print its report")
    add_scenario_args(sim)
    sim.add_argument("--duration", type=duration_arg, help="simulated time, e.g. 10m, 1h (default: the scenario's)")
    sim.add_argument("--rate-scale", type=positive_float_arg, default=1.0, help="multiply every arrival rate")
    sim.add_argument("--records", metavar="FILE", help="write one CSV row per request to FILE")
    sim.add_argument("--decisions", metavar="FILE", help="write every routing decision, explained, as JSON lines")
    sim.add_argument(
        "--replay",
        metavar="RECORDS",
        help="replay the exact arrivals of a run's --records (same scenario, --duration and --seed) under "
        "--policy, and compare request by request",
    )
    sim.add_argument(
        "--metrics-out",
        metavar="FILE",
        help="write the run's Prometheus families over simulated time as OpenMetrics "
        "(backfill: promtool tsdb create-blocks-from openmetrics FILE DIR)",
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON (keys: see README)")
    sim.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    sim.set_defaults(run=_run_sim)

    scenarios = commands.add_parser("scenarios", help="list the scenario presets")
    scenarios.set_defaults(run=_run_scenarios)

    policies = commands.add_parser("policies", help="list the routing policies")
    policies.set_defaults(run=_run_policies)

    up = commands.add_parser("up", help="serve the live grid (Ray + OpenAI-compatible gateway) until interrupted")
    add_scenario_args(up)
    up.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--ray-address", help="join a Ray cluster (e.g. auto) instead of starting a local Ray")
    up.add_argument(
        "--default-population",
        help="population of requests that name none (header, MODEL@POPULATION, user population:NAME, API key)",
    )
    up.add_argument(
        "--keep-alive",
        type=positive_duration_arg,
        dest="keep_alive_s",
        metavar="SECONDS",
        help="close idle kept-alive connections after this (default 75: longer than client pools and "
        "load balancers' idle timeouts, so the client closes first)",
    )
    up.add_argument(
        "--list-model-aliases",
        action="store_true",
        help="GET /v1/models also lists MODEL@POPULATION for every population (for clients that check names)",
    )
    up.add_argument(
        "--stream-chunk-tokens",
        type=positive_int_arg,
        metavar="N",
        help="tokens per SSE chunk (default 1, as vLLM streams: one chunk per decode step; more costs "
        "less gateway CPU per token and shows clients bursts)",
    )
    up.add_argument(
        "--drain-grace",
        type=duration_arg,
        dest="drain_grace_s",
        metavar="SECONDS",
        help="on SIGTERM/Ctrl-C, how long running requests may finish before they are ended (default 10)",
    )
    up.set_defaults(run=_live("up"))

    demo = commands.add_parser(
        "demo", help="the demo world live beside the simulator: an evening, a region failing, a timeline, a report"
    )
    add_scenario_args(demo)
    demo.set_defaults(scenario="demo")
    demo.add_argument("--duration", dest="duration_s", type=duration_arg, help="default: the scenario's (150 s)")
    demo.add_argument("--rate-scale", type=positive_float_arg, help="multiply the scenario's arrival rates (default 1)")
    demo.add_argument("--html", help="where to write the HTML report (default grid-demo.html; '' for none)")
    demo.add_argument("--records", metavar="FILE", help="write the live run's records (grid sim --replay FILE)")
    demo.add_argument("--json", action="store_true", help="print both reports as JSON instead")
    demo.set_defaults(run=_live("demo"))

    from grid.bench.cli import add_bench_parser

    add_bench_parser(commands)
    from grid.capacity.cli import add_plan_parser, add_sweep_parser

    add_sweep_parser(commands)
    add_plan_parser(commands)
    from grid.fault_cli import add_fault_parser

    add_fault_parser(commands)
    from grid.scale_cli import add_scale_parser

    add_scale_parser(commands)
    from grid.explain_cli import add_explain_parser

    add_explain_parser(commands)
    from grid.loadtest import add_loadtest_parser

    add_loadtest_parser(commands)
    return parser


def _load(args: argparse.Namespace):
    from grid.scenario import load_scenario

    return load_scenario(args.scenario, dict(args.overrides))


def _run_sim(args: argparse.Namespace) -> int:
    from grid.report import format_table
    from grid.sim.simulator import Simulation

    scenario = _load(args)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if args.records:
        try:
            open(args.records, "w").close()
        except OSError as exc:
            raise GridInputError(f"{args.records}: cannot write the records file: {exc.strerror}") from None
    recorded = None
    records_path = args.records
    if args.replay:
        from grid.sim.replay import read_records

        recorded = read_records(args.replay, len(scenario.populations))
        records_path = records_path or tempfile.mkstemp(prefix="grid-replay-", suffix=".csv")[1]
    sim = Simulation(
        scenario,
        policy=args.policy,
        seed=args.seed,
        duration_s=args.duration,
        rate_scale=args.rate_scale,
        records_path=records_path,
        progress=progress,
        autoscaler=args.autoscaler,
        replay=recorded.arrivals if recorded else None,
    )
    recorder = None
    if args.metrics_out:
        from grid.dispatch.core import supports_hedging
        from grid.telemetry.openmetrics import open_recorder

        recorder = open_recorder(scenario, args.metrics_out, sim.policy.name, supports_hedging(sim.policy))
        sim.sinks.append(recorder)
    decisions = None
    if args.decisions:
        from grid.dispatch.recording import DecisionsSink

        try:
            decisions = DecisionsSink(args.decisions, sim.world.zone_ids, sim.world.population_ids)
        except OSError as exc:
            raise GridInputError(f"{args.decisions}: cannot write the decisions file: {exc.strerror}") from None
        sim.sinks.append(decisions)
    try:
        report = sim.run()
    finally:
        for sink in (recorder, decisions):
            if sink is not None:
                sink.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_table(report))
    if recorded is not None:
        from grid.sim.replay import compare, format_diff, read_records

        diff = compare(recorded, read_records(records_path, len(scenario.populations)), sim.world.population_ids)
        if records_path != args.records:
            os.unlink(records_path)
        print(format_diff(diff, args.replay, sim.policy.name), file=sys.stderr if args.json else sys.stdout)
    return 0


def _run_scenarios(args: argparse.Namespace) -> int:
    from grid.scenario import load_scenario, preset_names

    for name in preset_names():
        scenario = load_scenario(name)
        print(f"{name:<22}{scenario.description.strip()}")
    return 0


def _run_policies(args: argparse.Namespace) -> int:
    from grid.routing.registry import POLICIES, policy_summary

    for name, cls in POLICIES.items():
        print(f"{name:<20}{policy_summary(cls)}")
    return 0


def _live(command: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from grid.live import commands

        return getattr(commands, command)(args)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_grid_warnings()  # accepted-but-suspicious input (a trace's time unit): one `grid: warning:` line each
    try:
        return args.run(args)
    except GridInputError as exc:
        print(f"grid: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("grid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
