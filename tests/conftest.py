"""Markers applied by rule, so test modules need no `pytestmark` lines (registered in pyproject.toml):

- `live`: the test starts real services: every test on tests/live/conftest.py's `ray_session` (the
  Ray instance under every gateway there, so also uvicorn, Prometheus, Chromium), the Locust end-to-end
  module, and any test whose body starts Ray itself. tests/live/ also holds unit tests of the live
  code over in-process fakes: those stay unmarked.
- `slow`: the test, or the module fixture it shares, takes more than a few seconds on 2 cores
  (measured with `pytest --durations`); live tests are not all marked slow, but are deselected anyway.

`make test` runs everything; `make test-fast` runs `-m "not live and not slow"`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Modules (relative to tests/) whose every test runs against real services.
LIVE_PATHS = ("loadtests/test_locust_e2e.py",)
# Fixtures that start real services: a test depending on one, even through another fixture, is live.
LIVE_FIXTURES = {"ray_session"}
# A test whose own body calls one of these starts a local Ray instance.
STARTS_RAY = ("ray_session(", "start_ray(", "ray.init(")
# Tests (module relative to tests/, then the test's name without parameters) that start services
# through a command, out of sight of the rules above.
LIVE_TESTS = {
    "bench/test_bench_cli.py": {"test_bench_runs_policies_on_ray_and_writes_results"},  # `grid bench` on Ray
}

# Fixtures that run long simulations (about 4-20 s): every test using one is slow.
SLOW_FIXTURES = {"mmc_runs", "hedged_run"}
# Tests that take more than a few seconds on their own.
SLOW_TESTS = {
    "bench/test_bench_cli.py": {"test_bench_runs_policies_on_ray_and_writes_results"},
    "bench/test_lp_bound.py": {"test_load_aware_reference_prices_queueing_and_latency_aware_comes_close"},
    "sim/test_hedging.py": {"test_hedging_is_deterministic"},
}


def _relative(item: pytest.Item) -> str | None:
    try:
        return Path(item.fspath).resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None


def _starts_ray(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return False
    return any(call in source for call in STARTS_RAY)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = _relative(item)
        if path is None:
            continue
        name = getattr(item, "originalname", item.name)
        fixtures = set(getattr(item, "fixturenames", ()))
        live_by_rule = path.startswith(LIVE_PATHS) or bool(LIVE_FIXTURES & fixtures)
        if live_by_rule or name in LIVE_TESTS.get(path, ()) or _starts_ray(item):
            item.add_marker(pytest.mark.live)
        if name in SLOW_TESTS.get(path, ()) or SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
