"""benchmarks/same_reports.py: the key-by-key comparison behind a change's "reports identical"."""

from __future__ import annotations

from benchmarks.same_reports import RUNS, differences
from grid.scenario import load_scenario


def test_identical_reports_have_no_differences():
    report = {"grid": {"completed": 3, "ttft_s": {"p50": 0.1}}, "zones": [{"id": "a", "u": 0.5}]}
    assert differences(report, {**report}) == []


def test_every_difference_is_named_by_its_path():
    before = {"grid": {"completed": 3, "ttft_s": {"p50": 0.1}}, "zones": [{"u": 0.5}, {"u": 0.7}], "meta": {}}
    after = {"grid": {"completed": 4, "ttft_s": {"p50": 0.1}}, "zones": [{"u": 0.5}, {"u": 0.8}], "new": 1}
    assert differences(before, after) == [
        "/grid/completed: 3 → 4",
        "/meta: {} → None",
        "/new: None → 1",
        "/zones[1]/u: 0.7 → 0.8",
    ]
    assert differences({"zones": [1, 2]}, {"zones": [1]}) == ["/zones: [1, 2] → [1]"]  # lengths differ


def test_the_runs_name_real_presets():
    for args in RUNS.values():
        load_scenario(args[args.index("--scenario") + 1])
