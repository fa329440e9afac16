"""Reports identical before and after a change: `grid sim --json` for a set of scenario × policy runs,
from a git revision (checked out in a temporary worktree) and from this tree, compared key by key.

A speed-up claims "reports identical" with this (issue 18: every existing figure unchanged). The runs
are short but cover the rules a change to the core can touch: routing policies (load-, latency-, cache-
and hedge-aware), faults, a degraded region, prefix caches on a real trace, sessions, stale reports and
the 123-zone world. File paths in a report name its tree and are compared with the tree's root removed.

    python benchmarks/same_reports.py                      # this tree against HEAD
    python benchmarks/same_reports.py --against bc6212d    # … against any revision
    PYTHONSAFEPATH=1 PYTHONPATH=build/native python benchmarks/same_reports.py   # the compiled build

Exit 0 when every report is identical, 1 when one differs (its first differing keys are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNS = {  # name: `grid sim` arguments
    "default, latency_aware": ["--scenario", "default", "--duration", "120s"],
    "default, p2c": ["--scenario", "default", "--duration", "120s", "--policy", "p2c"],
    "frankfurt-outage": ["--scenario", "frankfurt-outage", "--duration", "200s"],
    "london-degraded, p2c": ["--scenario", "london-degraded", "--duration", "150s", "--policy", "p2c"],
    "mooncake-40, prefix_aware": ["--scenario", "mooncake-40", "--duration", "60s", "--policy", "prefix_aware"],
    "sessions, prefix_aware": ["--scenario", "sessions", "--duration", "90s", "--policy", "prefix_aware"],
    "demo, hedged": ["--scenario", "demo", "--duration", "150s", "--policy", "hedged"],
    "stale-signals, least_outstanding": [
        "--scenario", "stale-signals", "--duration", "100s", "--policy", "least_outstanding",
    ],
    "global": ["--scenario", "global", "--duration", "30s"],
}  # fmt: skip


def report(tree: Path, args: list[str]) -> dict:
    """One run's report from `tree`'s sources (this tree: the `grid` that PYTHONPATH names, if any)."""
    path = os.environ.get("PYTHONPATH", "") if tree == ROOT else str(tree)
    env = {**os.environ, "PYTHONPATH": path or str(tree), "PYTHONSAFEPATH": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "grid.cli", "sim", *args, "--json", "--no-progress"],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"grid sim {' '.join(args)} failed in {tree}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.replace(str(tree), "<tree>"))


def differences(a, b, where: str = "") -> list[str]:
    """The keys (as paths) where `a` and `b` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} → {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="the git revision to compare with (default: HEAD)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="same-reports-") as scratch:
        before = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.against], check=True
        )
        try:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                pairs = {
                    name: (pool.submit(report, before, run), pool.submit(report, ROOT, run))
                    for name, run in RUNS.items()
                }
                differing = 0
                for name, (old, new) in pairs.items():
                    diff = differences(old.result(), new.result())
                    differing += bool(diff)
                    print(f"{'identical' if not diff else 'DIFFERENT'}  {name}")
                    for line in diff[:5]:
                        print(f"    {line}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    print(f"{len(RUNS) - differing} of {len(RUNS)} reports identical to {args.against}'s")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
