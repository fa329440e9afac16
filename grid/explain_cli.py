"""`grid explain RECORDS`: why traffic crossed regions, from a run's records.

    grid sim --scenario demo --records run.csv && grid explain run.csv --scenario demo
    grid demo --records live.csv && grid explain live.csv --scenario demo

Each record carries its last routing decision's rule and reason and, when it left its population's
home region, why (`grid.routing.crossing`). The summary counts requests that crossed, by reason and
by population.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

from grid.errors import GridInputError


def add_explain_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("explain", help="why traffic crossed regions, from grid sim/grid demo --records")
    p.add_argument("records", help="a records CSV (grid sim --records, grid demo --records)")
    p.add_argument("--scenario", default="default", help="the run's scenario, for population names (default: default)")
    p.set_defaults(run=run_explain)
    return p


def read_decisions(path: Path) -> list[tuple[int, str, str]]:
    """(population index, rule, why it crossed or "") per routed request."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise GridInputError(f"{path}: cannot read the records: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        if "crossed_because" not in (reader.fieldnames or ()):
            raise GridInputError(f"{path}:1: no decision columns (records from before explanations, or not records)")
        out = []
        for line, row in enumerate(reader, start=2):
            if not row["decision_rule"]:
                continue  # never routed (rejected at the door) or arrived before recording began
            try:
                out.append((int(row["population"]), row["decision_rule"], row["crossed_because"]))
            except ValueError as exc:
                raise GridInputError(f"{path}:{line}: {exc}") from None
    return out


def summarise(decisions: list[tuple[int, str, str]], population_ids: list[str]) -> str:
    total = len(decisions)
    crossed = [d for d in decisions if d[2]]
    lines = [f"{total} routed requests; {len(crossed)} ({len(crossed) / max(total, 1):.0%}) left their home region"]
    lines.append("\nwhy they crossed:")
    for reason, n in Counter(d[2] for d in crossed).most_common():
        lines.append(f"  {n:>8}  {n / max(len(crossed), 1):>4.0%}  {reason}")
    by_pop: dict[int, list[str]] = defaultdict(list)
    for pop, _, why in decisions:
        by_pop[pop].append(why)
    lines.append(f"\n{'population':<16}{'requests':>9}{'crossed':>9}  main reason")
    for pop, whys in sorted(by_pop.items(), key=lambda item: -sum(1 for w in item[1] if w)):
        away = [w for w in whys if w]
        main = Counter(away).most_common(1)[0] if away else ("", 0)
        name = population_ids[pop] if 0 <= pop < len(population_ids) else str(pop)
        detail = f"{main[0]} ({main[1]})" if away else "-"
        lines.append(f"{name:<16}{len(whys):>9}{len(away) / len(whys):>9.0%}  {detail}")
    return "\n".join(lines)


def run_explain(args: argparse.Namespace) -> int:
    from grid.scenario import load_scenario

    population_ids = list(load_scenario(args.scenario).populations)
    decisions = read_decisions(Path(args.records))
    if not decisions:
        raise GridInputError(f"{args.records}: no routed requests with a decision to explain")
    print(summarise(decisions, population_ids))
    return 0
