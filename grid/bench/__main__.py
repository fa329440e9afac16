"""`python -m grid.bench --scenario S ...`: the same as `grid bench ...`."""

from __future__ import annotations

import sys

from grid.cli import main as grid_main


def main(argv: list[str] | None = None) -> int:
    return grid_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
