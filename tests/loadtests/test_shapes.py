"""Load shapes as pure functions of elapsed time, their arrivals, the drill schedule and the knee."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from grid.demand.arrivals import size_sampler
from grid.scenario import Diurnal, load_scenario
from loadtests.shapes import (
    DrillAction,
    StepStat,
    arrivals_table,
    build_profile,
    closed_loop_users,
    compressed_local_hours,
    diurnal_rates,
    due_actions,
    find_knee,
    flash_crowd_rates,
    outage_actions,
    profile_faults,
    shape_tick,
    simulate_profile,
    slot_slice,
    step_ramp_rps,
    step_stats,
)

SCENARIO = load_scenario(str(Path(__file__).resolve().parents[2] / "loadtests" / "grid.yaml"))


def test_compressed_day_maps_elapsed_time_to_local_hours():
    offsets = np.array([1.0, -5.0])
    assert compressed_local_hours(0.0, 300.0, 18.0, offsets).tolist() == [19.0, 13.0]
    assert compressed_local_hours(150.0, 300.0, 18.0, offsets).tolist() == [7.0, 1.0]  # half a day later


def test_diurnal_rates_average_to_the_mean_and_peak_at_the_local_peak_hour():
    shares, offsets, day = np.array([0.6, 0.4]), np.array([1.0, -6.0]), 240.0
    d = Diurnal(peak_hour_local=20, trough_ratio=0.3)
    ts = np.arange(0.0, day, 0.05)
    rates = np.array([diurnal_rates(t, 10.0, shares, offsets, 0.0, day, d) for t in ts])
    assert rates.mean(axis=0) == pytest.approx([6.0, 4.0], rel=1e-3)
    peak_t = ts[rates[:, 0].argmax()]  # local 20:00 at UTC+1 is 19:00 UTC
    assert peak_t == pytest.approx(19.0 / 24.0 * day, abs=0.1)
    assert rates[:, 1].argmax() != rates[:, 0].argmax()  # each population follows its own clock


def test_diurnal_profile_follows_each_population_and_keeps_the_mean():
    p = build_profile(SCENARIO, "diurnal", 120.0, 6.0)
    assert p.mean_rps() == pytest.approx(6.0, rel=0.02)
    assert p.peak_rps() > 6.0
    berlin, mexico = p.population_ids.index("berlin"), p.population_ids.index("mexico_city")
    ts = np.arange(0.0, 120.0, 0.5)
    curve = np.array([p.rates(t) for t in ts])
    assert ts[curve[:, berlin].argmax()] != ts[curve[:, mexico].argmax()]
    assert p.total_rps(-1.0) == 0.0 and p.total_rps(120.0) == 0.0


def test_flash_crowd_multiplies_one_population_in_its_window():
    base = np.array([1.0, 2.0, 3.0])
    assert flash_crowd_rates(5.0, base, 1, 10.0, 5.0, 4.0).tolist() == [1.0, 2.0, 3.0]
    assert flash_crowd_rates(10.0, base, 1, 10.0, 5.0, 4.0).tolist() == [1.0, 8.0, 3.0]
    assert flash_crowd_rates(15.0, base, 1, 10.0, 5.0, 4.0).tolist() == [1.0, 2.0, 3.0]
    p = build_profile(SCENARIO, "flash_crowd", 90.0, 4.0, crowd_population="london", crowd_factor=5.0)
    i = p.population_ids.index("london")
    assert p.rates(45.0)[i] == pytest.approx(5 * p.rates(10.0)[i])
    assert p.rates(45.0).sum() - p.rates(10.0).sum() == pytest.approx(4 * p.rates(10.0)[i])
    assert {30.0, 60.0} <= set(p.window_edges().tolist())


def test_step_ramp_is_a_staircase_that_ends():
    assert [step_ramp_rps(t, 2.0, 2.0, 10.0, 3) for t in (0, 9.9, 10, 25, 30, -1)] == [2, 2, 4, 6, 0, 0]
    p = build_profile(SCENARIO, "step_ramp", 80.0, 16.0, n_steps=4)
    assert [s[2] for s in p.steps] == [4.0, 8.0, 12.0, 16.0]
    assert [p.total_rps(t) for t in (1, 21, 41, 61, 80)] == pytest.approx([4, 8, 12, 16, 0])


def test_outage_drill_plays_each_action_once_on_any_tick_grid():
    down, up = outage_actions("london-1", 20.0, 40.0)
    assert down == DrillAction(20.0, "/admin/faults", {"kind": "zone_down", "zone": "london-1"})
    assert up == DrillAction(40.0, "/admin/recover", {"zone": "london-1"})
    for ticks in (np.arange(0, 61, 1.0), np.arange(0.3, 61, 0.97), [0.0, 20.0, 39.99, 40.0, 100.0]):
        played, last = [], -1.0
        for t in ticks:
            played += due_actions((down, up), last, float(t))
            last = float(t)
        assert played == [down, up]
    assert due_actions((down, up), -1.0, 19.9) == []
    with pytest.raises(ValueError):
        outage_actions("london-1", 40.0, 20.0)
    p = build_profile(SCENARIO, "outage_drill", 90.0, 3.0, drill_zone="london-1")
    assert [a.at_s for a in p.actions] == [30.0, 60.0]
    assert profile_faults(p) == [{"kind": "zone_down", "zone": "london-1", "at_s": 30.0, "duration_s": 30.0}]
    with pytest.raises(ValueError, match="unknown zone"):
        build_profile(SCENARIO, "outage_drill", 90.0, 3.0, drill_zone="atlantis-1")


def test_closed_loop_users_and_ticks():
    p = build_profile(SCENARIO, "step_ramp", 40.0, 8.0, n_steps=4)
    assert [closed_loop_users(p, t, 12) for t in (0, 15, 25, 35, 40)] == [3, 6, 9, 12, 0]
    assert shape_tick(p, 5.0, open_loop=False, users=12) == (3, 12.0)
    assert shape_tick(p, 40.0, open_loop=False, users=12) is None
    assert shape_tick(p, 45.0, open_loop=True, users=2, drain_s=10.0) == (2, 2.0)  # draining
    assert shape_tick(p, 50.0, open_loop=True, users=2, drain_s=10.0) is None


def test_arrivals_follow_the_profile_and_split_across_generators():
    p = build_profile(SCENARIO, "step_ramp", 200.0, 20.0, n_steps=2)
    sizes = size_sampler(SCENARIO.demand.sizes)
    table = arrivals_table(p, sizes, seed=5)
    first = int((table.arrival_s < 100).sum())
    assert first == pytest.approx(1000, rel=0.1) and len(table) - first == pytest.approx(2000, rel=0.1)
    assert np.all(np.diff(table.arrival_s) >= 0)
    again = arrivals_table(p, sizes, seed=5)
    assert np.array_equal(table.arrival_s, again.arrival_s)  # same seed, same requests
    parts = [slot_slice(table, k, 3) for k in range(3)]
    assert sum(len(x) for x in parts) == len(table)
    assert sorted(np.concatenate([x.arrival_s for x in parts]).tolist()) == table.arrival_s.tolist()


def test_the_simulator_replays_the_same_arrivals_and_the_drill():
    p = build_profile(SCENARIO, "outage_drill", 30.0, 4.0, drill_zone="frankfurt-1")
    report = simulate_profile(SCENARIO, p, seed=2)
    sent = len(arrivals_table(p, size_sampler(SCENARIO.demand.sizes), 2))
    assert report.grid.arrivals == sent
    assert report.grid.completed > 0.8 * sent


def _step(rps, p99, sent=100, failed=0):
    return StepStat(rps, 0, 1, sent, sent - failed, failed, rps, p99 / 3, p99, 0.04)


def test_knee_is_where_p99_ttft_crosses_the_slo():
    steps = [_step(2, 0.3), _step(4, 0.5), _step(6, 0.9), _step(8, 2.9), _step(10, 9.0)]
    knee = find_knee(steps, 1.0)
    assert (knee.last_good_rps, knee.first_bad_rps) == (6, 8)
    assert knee.knee_rps == pytest.approx(6.1)
    assert find_knee([_step(2, 0.3), _step(4, 0.5, failed=5)], 1.0).first_bad_rps == 4  # failures break it
    assert find_knee([_step(2, 0.3)], 1.0).knee_rps is None
    assert find_knee([_step(2, 3.0)], 1.0).knee_rps == 2


def test_step_stats_use_the_steady_part_of_each_step():
    records = [{"t_s": t, "ok": True, "ttft_s": 0.1 * (1 + t // 10), "tpot_s": 0.04} for t in np.arange(0, 20, 0.1)]
    records.append({"t_s": 19.0, "ok": False, "ttft_s": math.nan, "tpot_s": math.nan})
    stats = step_stats(records, [(0.0, 10.0, 5.0), (10.0, 20.0, 10.0)], settle_frac=0.5)
    assert [s.sent for s in stats] == [50, 51]
    assert [s.failed for s in stats] == [0, 1]
    assert stats[1].ttft_p50_s == pytest.approx(0.2)
    assert stats[0].achieved_rps == pytest.approx(10.0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown shape"):
        build_profile(SCENARIO, "tsunami", 60.0, 1.0)
    with pytest.raises(ValueError):
        build_profile(SCENARIO, "constant", 0.0, 1.0)
