"""The compiled core: the simulator's hot modules built with mypyc into a tree of their own.

`make native` runs `python native/setup.py`: it copies `grid/` to `build/native/grid/` and compiles
the modules below in place there, so `PYTHONPATH=build/native` selects the compiled build and the
repository's `grid/` stays the interpreted one, side by side. The same annotated source is both;
tests/sim/test_native.py checks that they give identical reports. `make clean-native` removes it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "native"  # PYTHONPATH for the compiled build

# The serving model, the driver loop, the dispatch core and the policies: what a simulated request runs through.
HOT_MODULES = [
    "grid/serving/capacity.py", "grid/serving/engine.py", "grid/serving/fleet.py", "grid/serving/kv_cache.py",
    "grid/serving/request.py", "grid/serving/retry.py", "grid/serving/zone.py",
    "grid/sim/events.py", "grid/sim/hedging.py", "grid/sim/simulator.py",
    "grid/dispatch/core.py", "grid/dispatch/limits.py", "grid/dispatch/recording.py", "grid/dispatch/reports.py",
    "grid/dispatch/sinks.py",
    "grid/routing/policy.py", "grid/routing/policies.py", "grid/routing/view.py",
    "grid/stats.py",
]  # fmt: skip


# The project's other packages, linked: `grid` finds its presets and load tests beside it (grid/scenario.py).
LINKED = ("regions", "loadtests")


def copy_tree() -> None:
    """A fresh copy of the package (sources and package data): the compiled modules land beside it."""
    shutil.rmtree(TREE / "grid", ignore_errors=True)
    shutil.copytree(ROOT / "grid", TREE / "grid", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    for name in LINKED:
        link = TREE / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", name), target_is_directory=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    copy_tree()
    os.chdir(TREE)  # mypycify names modules by their paths from here
    # group_name: the shared runtime library goes inside the package (grid/_native__mypyc*.so), so the
    # tree needs nothing else on sys.path.
    modules = mypycify(
        ["--config-file", str(ROOT / "native" / "mypy.ini"), *HOT_MODULES], opt_level="3", group_name="grid._native"
    )
    setup(
        name="grid-native",
        ext_modules=modules,
        script_args=["build_ext", "--inplace", "--build-temp", str(TREE / "tmp"), *sys.argv[1:]],
    )


if __name__ == "__main__":
    build()
