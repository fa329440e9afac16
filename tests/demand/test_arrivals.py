"""Arrivals: follow-the-sun rates, flash crowds, exact Poisson windows, size specs."""

import numpy as np
import pytest

from grid.demand.arrivals import DemandModel, diurnal_factor, mean_tokens, poisson_arrivals, size_sampler
from grid.scenario import Sizes, SizeSpec, load_scenario


def test_diurnal_factor_has_mean_one_and_peaks_at_the_peak_hour():
    hours = np.linspace(0, 24, 24 * 60, endpoint=False)
    factor = diurnal_factor(hours, peak_hour=20.0, trough_ratio=0.3)
    assert factor.mean() == pytest.approx(1.0, rel=1e-6)
    assert hours[np.argmax(factor)] == pytest.approx(20.0)
    assert hours[np.argmin(factor)] == pytest.approx(4.0)
    assert factor.min() / factor.max() == pytest.approx(0.3, rel=1e-3)


def test_populations_follow_their_local_time():
    s = load_scenario()
    model = DemandModel(s.demand, s.populations)  # starts 18:00 UTC
    ids = list(s.populations)
    rates = model.rates_rps(0.0)
    # 19:00 in Paris (near peak) versus 03:00 in Tokyo (near the 04:00 trough), per unit of demand share.
    paris, tokyo = ids.index("paris"), ids.index("tokyo")
    assert rates[paris] / model.shares[paris] > 2 * rates[tokyo] / model.shares[tokyo]


def test_flash_crowd_multiplies_one_population_inside_its_window():
    s = load_scenario(
        "default", {"demand.flash_crowds": [{"population": "madrid", "at_s": 100, "duration_s": 50, "factor": 5}]}
    )
    model = DemandModel(s.demand, s.populations)
    madrid = list(s.populations).index("madrid")
    before, during = model.rates_rps(99.0), model.rates_rps(120.0)
    assert during[madrid] / before[madrid] == pytest.approx(5.0, rel=0.01)
    assert 100.0 in model.window_edges(300.0) and 150.0 in model.window_edges(300.0)


def test_poisson_counts_match_the_rate_and_arrivals_are_sorted():
    s = load_scenario("default", {"demand.diurnal": None})
    model = DemandModel(s.demand, s.populations)
    chunks = list(poisson_arrivals(model, size_sampler(s.demand.sizes), 600.0, np.random.default_rng(1)))
    times = np.concatenate([c.arrival_s for c in chunks])
    assert np.all(np.diff(times) >= 0) and times.max() < 600.0
    expected = s.demand.rate_rps * 600
    assert abs(len(times) - expected) < 4 * np.sqrt(expected)
    pops = np.concatenate([c.population for c in chunks])
    share = np.bincount(pops, minlength=len(model.shares)) / len(pops)
    assert np.abs(share - model.shares).max() < 0.01


def test_size_specs_fixed_and_exponential():
    rng = np.random.default_rng(0)
    sample = size_sampler(Sizes(prompt=SizeSpec(dist="fixed", mean=230), output=SizeSpec(dist="exponential", mean=200)))
    prompt, output = sample(rng, 200_000)
    assert set(prompt.tolist()) == {230}
    assert output.mean() == pytest.approx(200, rel=0.02) and output.min() >= 1
    assert mean_tokens(SizeSpec(dist="fixed", mean=230)) == 230


def test_a_sped_up_day_plays_the_same_curve_in_less_time():
    """demand.day_speed 240: 150 s of run cover the 10 hours real time covers in 36,000 s."""
    real = load_scenario("default")
    fast = load_scenario("default", {"demand.day_speed": 240})
    m_real = DemandModel(real.demand, real.populations)
    m_fast = DemandModel(fast.demand, fast.populations)
    for t_s in (0.0, 37.5, 150.0):
        np.testing.assert_allclose(m_fast.rates_rps(t_s), m_real.rates_rps(t_s * 240))
    assert np.diff(m_fast.window_edges(150.0)).max() == pytest.approx(2.5)  # ≤ 10 min of the day each
