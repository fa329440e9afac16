"""Argument types and shared arguments of the `grid` commands.

Each subcommand's module (grid/bench/cli.py, grid/capacity/cli.py, grid/fault_cli.py, grid/loadtest/cli.py)
takes its helpers from here, not from grid/cli.py, which imports those modules to build the parser.
"""

from __future__ import annotations

import argparse

import yaml

from grid.units import parse_duration_s


def duration_arg(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive(value: float, text: str) -> float:
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def positive_duration_arg(text: str) -> float:
    return _positive(duration_arg(text), text)


def positive_float_arg(text: str) -> float:
    return _positive(float_arg(text), text)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
    return value


def positive_int_arg(text: str) -> int:
    return _int_at_least(text, 1)


def nonnegative_int_arg(text: str) -> int:
    return _int_at_least(text, 0)


def seed_count_arg(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("--seeds must be ≥ 1")
    return count


def assignment_arg(text: str) -> tuple[str, object]:
    """`path.to.field=value`, the value read as YAML (so 3, 0.5, true and [a, b] are typed)."""
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected FIELD.PATH=VALUE, got {text!r}")
    try:
        return path.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{path}: cannot read the value {value!r}") from None


def add_overrides_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """`--set FIELD=VALUE` (repeatable) into `args.overrides`, a list of (path, value)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", type=assignment_arg, default=[], metavar="FIELD=VALUE", help=help
    )


def add_scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="default", help="preset name (see `grid scenarios`) or YAML file")
    add_overrides_arg(parser, "override a scenario field, e.g. --set zones.paris-1.replicas=2 (repeatable)")
    parser.add_argument("--policy", help="routing policy name or package.module:Class (default: the scenario's)")
    parser.add_argument(
        "--autoscaler",
        help="static | target_utilization | qps | predictive | package.module:Class (default: the scenario's "
        "autoscaling.policy; settings under autoscaling:)",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
