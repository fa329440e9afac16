"""Compile the simulator's hot modules with mypyc, in place: `python setup_native.py build_ext --inplace`.

The .so files sit beside the .py files and take precedence on import; `make clean-native` removes them."""

from mypyc.build import mypycify
from setuptools import setup

HOT_MODULES = [
    "grid/serving/capacity.py", "grid/serving/engine.py", "grid/serving/fleet.py", "grid/serving/kv_cache.py",
    "grid/serving/request.py", "grid/serving/retry.py", "grid/serving/zone.py",
    "grid/sim/events.py", "grid/sim/hedging.py", "grid/sim/simulator.py",
    "grid/dispatch/core.py", "grid/dispatch/limits.py", "grid/dispatch/recording.py", "grid/dispatch/reports.py",
    "grid/dispatch/sinks.py",
    "grid/routing/policy.py", "grid/routing/policies.py", "grid/routing/view.py",
    "grid/stats.py",
]  # fmt: skip

# group_name: the shared runtime library goes inside the package (grid/_native__mypyc*.so), so an
# editable install finds it without the repository root on sys.path.
setup(
    name="grid-native",
    ext_modules=mypycify(["--config-file", "mypy.ini", *HOT_MODULES], opt_level="3", group_name="grid._native"),
)
