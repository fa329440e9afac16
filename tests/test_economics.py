"""grid.economics against numbers worked out by hand."""

import pytest

from grid.economics import (
    ZoneEconomics,
    carbon_g,
    cost_usd,
    cost_usd_per_hour,
    energy_j,
    energy_kwh,
    gpu_hours,
    power_w,
    zone_economics,
)
from grid.scenario import load_scenario

# 4 GPUs at $2.50 per GPU-hour, 100 W idle, 700 W at full load, on a 400 g/kWh grid.
ZONE = ZoneEconomics(gpus=4, price_usd_per_gpu_hour=2.5, power_idle_w=100.0, power_max_w=700.0, carbon_g_per_kwh=400.0)


def test_cost_is_gpus_times_price_times_time_busy_or_idle():
    assert cost_usd_per_hour(4, 2.5) == 10.0
    assert gpu_hours(4, 1800.0) == 2.0
    assert cost_usd(gpu_hours(4, 1800.0), 2.5) == 5.0
    assert gpu_hours(0.25 * 8, 3600.0) == 2.0  # a used share of the GPUs
    assert ZONE.cost_usd_per_hour == 10.0
    assert ZONE.price_usd_per_gpu_s == pytest.approx(2.5 / 3600)
    assert ZONE.cost_usd(1800.0) == pytest.approx(5.0)
    assert ZONE.cost_usd(0.0) == 0.0


def test_power_runs_from_idle_to_max_with_utilization():
    assert power_w(4, 100.0, 700.0, 0.0) == 400.0  # idle GPUs still draw
    assert power_w(4, 100.0, 700.0, 0.5) == 1600.0  # 4 × (100 + 600 × 0.5)
    assert power_w(4, 100.0, 700.0, 1.0) == 2800.0
    assert ZONE.power_w(0.25) == 1000.0  # 4 × (100 + 150)


def test_energy_is_power_times_time_in_joules_and_kwh():
    assert energy_j(1600.0, 3600.0) == 5.76e6
    assert energy_kwh(1600.0, 3600.0) == pytest.approx(1.6)
    assert energy_kwh(1000.0, 1800.0) == pytest.approx(0.5)
    assert ZONE.energy_j(0.5, 3600.0) == 5.76e6
    assert ZONE.energy_kwh(0.5, 3600.0) == pytest.approx(1.6)


def test_carbon_is_energy_times_grid_intensity():
    assert carbon_g(1.6, 400.0) == pytest.approx(640.0)
    assert carbon_g(0.0, 400.0) == 0.0
    assert ZONE.carbon_g_per_j == pytest.approx(400.0 / 3.6e6)
    assert ZONE.carbon_g(5.76e6) == pytest.approx(640.0)  # 1.6 kWh × 400 g/kWh
    # the per-second (SI) and per-kWh paths agree
    assert ZONE.carbon_g(ZONE.energy_j(0.3, 600.0)) == pytest.approx(carbon_g(ZONE.energy_kwh(0.3, 600.0), 400.0))


def test_zone_economics_reads_the_scenario():
    overrides = {
        "zones.paris-1.replicas": 3,
        "zones.paris-1.gpus_per_replica": 2,
        "zones.paris-1.gpu": "h100",
        "regions.paris.price_usd_per_gpu_hour": 2.5,
        "regions.paris.carbon_g_per_kwh": 56,
        "gpus.h100.power_idle_w": 80,
        "gpus.h100.power_max_w": 650,
    }
    scenario = load_scenario("default", overrides)
    zones = zone_economics(scenario)
    assert list(zones) == list(scenario.zones)
    paris = zones["paris-1"]
    assert paris == ZoneEconomics(
        gpus=6, price_usd_per_gpu_hour=2.5, power_idle_w=80.0, power_max_w=650.0, carbon_g_per_kwh=56.0
    )
    assert paris.cost_usd_per_hour == 15.0  # 6 GPUs × $2.50
    assert paris.power_w(0.5) == 2190.0  # 6 × (80 + 570 × 0.5)
