"""Streaming statistics: quantiles within the histogram's 1% resolution, SLO counting, bounded memory."""

import math

import numpy as np
import pytest

from grid.scenario import Slo
from grid.stats import FLUSH_EVERY, RunStats


def test_quantiles_match_numpy_within_one_percent():
    rng = np.random.default_rng(0)
    stats = RunStats(n_populations=2, n_zones=3, slo=Slo(ttft_s=1.0, tpot_s=0.1))
    ttft = rng.lognormal(-1.0, 1.0, 100_000)
    for i, value in enumerate(ttft):
        stats.finished(i % 2, i % 3, float(value), 0.05, float(value) + 1.0, 100, 50)
    stats.flush()
    got = stats.quantiles("ttft_s", [0, 1], [0, 1, 2])
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        assert got[key] == pytest.approx(np.quantile(ttft, q), rel=0.011)
    assert int(stats.completed.sum()) == 100_000
    assert int(stats.good.sum()) == int((ttft <= 1.0).sum())  # tpot 0.05 and no E2E SLO: TTFT decides


def test_one_token_answers_have_no_tpot_but_count_as_good():
    stats = RunStats(1, 1, Slo(ttft_s=1.0, tpot_s=0.1))
    stats.finished(0, 0, 0.2, math.nan, 0.2, 10, 1)
    stats.flush()
    assert int(stats.good.sum()) == 1
    assert math.isnan(stats.quantiles("tpot_s", [0], [0])["p50"])


def test_buffers_are_flushed_so_memory_stays_bounded():
    stats = RunStats(1, 1, Slo())
    for _ in range(FLUSH_EVERY + 10):
        stats.finished(0, 0, 0.1, 0.01, 1.0, 10, 10)
    assert len(stats._buf_group) == 10


def test_retries_are_counted_by_population_and_zone_and_reported():
    """Retries are not an outcome: they sit beside the counts in every report row and in --json."""
    from grid.report import ZoneFigures, build_report, format_table
    from grid.scenario import load_scenario
    from grid.world import build_world

    scenario = load_scenario("mmc")
    world = build_world(scenario)
    stats = RunStats(len(world.population_ids), len(world.zone_ids), scenario.slo)
    assert stats.retries.shape == (len(world.population_ids), len(world.zone_ids))
    stats.arrivals[0] += 2
    stats.retries[0, 0] += 3
    stats.finished(0, 0, 0.1, 0.01, 1.0, 10, 10)
    stats.failed[0, 0] += 1
    stats.flush()
    figures = [ZoneFigures(0.0, 0.0, 0.0) for _ in world.zone_ids]
    report = build_report(scenario, world, stats, figures, 10.0, {"policy": "test"}, in_flight=0)
    data = report.to_dict()
    assert data["grid"]["retries"] == 3
    assert data["populations"][0]["retries"] == 3 and data["zones"][0]["retries"] == 3
    assert data["grid"]["arrivals"] == data["grid"]["completed"] + data["grid"]["failed"]  # not an outcome
    assert "retries 3" in format_table(report)


def test_histograms_grow_with_populations_plus_zones_not_their_product():
    """Issue 18: 60 populations × 90 zones kept as pairs would be 270 MB of histograms."""
    stats = RunStats(60, 90, Slo())
    pair_bytes = 3 * 60 * 90 * stats.hist_by_zone.shape[-1] * 8
    assert stats.hist_by_population.nbytes + stats.hist_by_zone.nbytes < pair_bytes / 30
    stats.finished(3, 7, 0.2, 0.01, 1.0, 10, 10)
    stats.finished(4, 7, 0.4, 0.01, 1.0, 10, 10)
    stats.flush()
    assert stats.quantiles("ttft_s", [3], slice(None))["p50"] == pytest.approx(0.2, rel=0.011)
    assert stats.quantiles("ttft_s", slice(None), [7])["p99"] == pytest.approx(0.4, rel=0.011)
    with pytest.raises(ValueError, match="per population and per zone"):
        stats.quantiles("ttft_s", [3], [7])


def test_a_pickled_copy_keeps_every_attribute():
    """`RunStats.__reduce__` lists the state beyond the constructor's arguments (a compiled RunStats has
    no instance dict): an attribute added to the class and not to that list would be lost in copies."""
    import copy
    import pickle

    from grid.stats import _STATE

    stats = RunStats(2, 3, Slo(ttft_s=1.0, tpot_s=0.1))
    stats.finished(1, 2, 0.2, 0.01, 1.0, 10, 100, 0)
    constructed = {"slo", "n_populations", "n_zones", "slo_ttft_s", "slo_tpot_s", "slo_e2e_s"}
    if hasattr(stats, "__dict__"):  # interpreted: every attribute is either built or listed
        assert set(vars(stats)) <= constructed | set(_STATE), set(vars(stats)) - constructed - set(_STATE)
    for twin in (pickle.loads(pickle.dumps(stats)), copy.copy(stats)):
        twin.flush()
        stats.flush()
        assert twin.completed.tolist() == stats.completed.tolist()
        assert twin.hist_by_zone.sum() == stats.hist_by_zone.sum() > 0
