"""The compiled core (`make native`, native/setup.py) gives the interpreted core's reports, exactly.

The same scenario and seed run in two subprocesses, one on the repository's `grid/` and one on the
compiled tree (`build/native`, mypyc), and their reports must be equal dict for dict. The compiled
run must really import the compiled modules (.so files). The tree is built here when it is absent
or older than the sources (≈40 s on 2 cores); a build that fails fails the test. CI builds it
first with `make native`.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "build" / "native"
COMPILED = ("grid.sim.simulator", "grid.serving.zone", "grid.routing.policies", "grid.dispatch.core")

# One run, printed as JSON: the report, and the files its core modules came from.
RUN = """
import json, sys
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation
scenario, policy, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
report = Simulation(load_scenario(scenario), policy, 7, seconds).run()
files = {name: sys.modules[name].__file__ for name in sys.argv[4:]}
print(json.dumps({"report": report.to_dict(), "files": files}))
"""


def _current() -> bool:
    """The tree holds every source as it is now, and compiled modules."""
    if not list((TREE / "grid" / "sim").glob("simulator.*.so")):
        return False
    sources = [p.relative_to(ROOT) for p in (ROOT / "grid").rglob("*.py") if "__pycache__" not in p.parts]
    return all((TREE / p).is_file() and filecmp.cmp(ROOT / p, TREE / p, shallow=False) for p in sources)


@pytest.fixture(scope="module")
def native_tree() -> Path:
    if not _current():  # a C compiler and Python's headers: `make test` installs them (.ci/install-system-deps)
        build = subprocess.run(
            [sys.executable, str(ROOT / "native" / "setup.py")], cwd=ROOT, capture_output=True, text=True
        )
        assert build.returncode == 0, f"the native build failed:\n{build.stderr[-3000:]}"
    return TREE


def _run(path: Path, scenario: str, policy: str, seconds: float) -> dict:
    # PYTHONSAFEPATH: the working directory's grid/ must not shadow the tree on PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(path), "PYTHONSAFEPATH": "1"}
    command = [sys.executable, "-c", RUN, scenario, policy, str(seconds), *COMPILED]
    out = subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.mark.parametrize(
    "scenario, policy, seconds",
    [("default", "latency_aware", 30.0), ("default", "p2c", 30.0), ("sessions", "kv_aware", 60.0)],
)
def test_compiled_and_interpreted_reports_are_identical(native_tree, scenario, policy, seconds):
    interpreted = _run(ROOT, scenario, policy, seconds)
    compiled = _run(native_tree, scenario, policy, seconds)
    assert all(f.endswith(".py") and f.startswith(str(ROOT / "grid")) for f in interpreted["files"].values())
    assert all(f.endswith(".so") and f.startswith(str(native_tree)) for f in compiled["files"].values())
    assert interpreted["report"]["grid"]["arrivals"] > 0
    assert compiled["report"] == interpreted["report"]
