"""`python -m grid.bench --scenario S ...`: the same as `grid bench ...` (for use before/without the CLI entry)."""

from __future__ import annotations

import argparse
import sys

from grid.bench.cli import add_bench_parser
from grid.errors import GridInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grid")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except GridInputError as exc:
        print(f"grid: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
