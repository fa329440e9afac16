"""Markers applied by rule, so test modules need no `pytestmark` lines (registered in pyproject.toml):

- `live`: the test starts real services: every test on tests/live/conftest.py's `ray_session` (the
  Ray instance under every gateway there, so also uvicorn, Prometheus, Chromium), the Locust end-to-end
  module, and any test whose body starts Ray itself. tests/live/ also holds unit tests of the live
  code over in-process fakes: those stay unmarked.
- `slow`: the test, or the module fixture it shares, takes more than a few seconds on 2 cores
  (measured with `pytest --durations`); live tests are not all marked slow, but are deselected anyway.

`make test` runs everything; `make test-fast` runs `-m "not live and not slow"`.

Order: the tests on the session's own Ray instance (tests/live/conftest.py's `ray_session`, which the
session-scoped `live` grid sits on, and the tests that start or reuse Ray in this process) run last,
together, and among them the tests on `live` come last. Session fixtures end only with the session, and
an idle Ray with the `live` grid on it takes about a quarter of a core (its zone actors and health
checks): started early, it slowed every test after it and shared the cores with the timing-sensitive
runs (`grid up` in a subprocess, the load tools, the chaos drills, the long simulations). A test on
`live` that shares a module-scoped grid with tests not on `live` stays with them (the grid would start
twice). The order within each group is kept.
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

# Tests that run Ray in this process without the fixture, through a command's in-process entry point
# (ray_session() reuses the session's instance when it is up): they belong with the session's Ray.
IN_PROCESS_RAY_TESTS = {
    "bench/test_bench_cli.py": {"test_bench_runs_policies_on_ray_and_writes_results"},  # bench_main → run_all
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


def _closure(name: str, defs: dict, seen: set[str] | None = None) -> set[str]:
    """`name` and every fixture it depends on, among the item's fixture definitions."""
    seen = set() if seen is None else seen
    if name in seen or name not in defs:
        return seen
    seen.add(name)
    for arg in defs[name][-1].argnames:
        _closure(arg, defs, seen)
    return seen


def _module_grids(item: pytest.Item) -> set[str]:
    """The item's module-scoped fixtures on Ray that are not built on `live` (grids of its module)."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
    grids = set()
    for name in getattr(item, "fixturenames", ()):
        if name in defs and defs[name][-1].scope == "module":
            closure = _closure(name, defs)
            if "ray_session" in closure and "live" not in closure:
                grids.add(name)
    return grids


def _on_live_alone(items: list[pytest.Item]) -> set[pytest.Item]:
    """The items on the session's `live` grid that share no module grid with an item not on `live`."""
    grids = {item: {(item.module, g) for g in _module_grids(item)} for item in items}
    shared_off_live = set().union(*(grids[item] for item in items if "live" not in item.fixturenames))
    return {item for item in items if "live" in item.fixturenames and not grids[item] & shared_off_live}


def _described(items):
    """(item, path from the repository, name without parameters, fixtures) for the project's own tests."""
    for item in items:
        path = _relative(item)
        if path is not None:
            yield item, path, getattr(item, "originalname", item.name), set(getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)  # before pytest's `-m` deselects by the marks (it would not see them after)
def pytest_collection_modifyitems(config, items):
    for item, path, name, fixtures in _described(items):
        live_by_rule = path.startswith(LIVE_PATHS) or bool(LIVE_FIXTURES & fixtures)
        if live_by_rule or name in LIVE_TESTS.get(path, ()) or _starts_ray(item):
            item.add_marker(pytest.mark.live)
        if name in SLOW_TESTS.get(path, ()) or SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)


class _RayTestsLast:
    """The ordering hook (a plugin of its own: this module's `pytest_collection_modifyitems` marks first)."""

    @staticmethod
    @pytest.hookimpl(trylast=True)  # after tests/live/conftest.py's own ordering, which the stable sort keeps
    def pytest_collection_modifyitems(items):
        _order(items)


def pytest_configure(config):
    config.pluginmanager.register(_RayTestsLast(), "ray-tests-last")


def _order(items) -> None:
    on_session_ray = set()
    for item, path, name, fixtures in _described(items):
        if "ray_session" in fixtures or _starts_ray(item) or name in IN_PROCESS_RAY_TESTS.get(path, ()):
            on_session_ray.add(item)
    last = _on_live_alone([item for item in items if item in on_session_ray])
    items.sort(key=lambda item: (item in on_session_ray, item in last))
