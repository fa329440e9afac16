"""The `global` preset (regions/scenarios/global.yaml on regions/global_world.yaml) against its sources.

Checks the preset's shape, that it keeps the design card's five regions exactly as world.yaml has them,
the physics (no RTT below the speed of light in fiber), that every backbone-measured region pair is the
Azure table's figure, and that regions/build_global_world.py still builds exactly the shipped file from
the raw data in ../shared/data/rtt (those tests skip, with a reason, when that folder is absent).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

from grid.scenario import load_scenario
from grid.sim.simulator import Simulation

REPO = Path(__file__).parents[2]
WORLD_PATH = REPO / "regions" / "world.yaml"
GLOBAL_WORLD_PATH = REPO / "regions" / "global_world.yaml"
BUILD_SCRIPT = REPO / "regions" / "build_global_world.py"
RAW_DIR = Path(__file__).parents[3] / "shared" / "data" / "rtt"

DESIGN = ("frankfurt", "paris", "london", "mexico", "thailand")
FIBER_KM_PER_S = 204_000.0
ROUNDING_MS = 0.05 + 1e-9  # figures are rounded to 0.1 ms
STAND_IN_MAX_KM = 100.0  # a population's own server lies in (or next to) its city


def _load_build_module():
    spec = importlib.util.spec_from_file_location("build_global_world", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_global_world = _load_build_module()
great_circle_km = build_global_world.great_circle_km


def fiber_floor_ms(a, b) -> float:
    return 2 * great_circle_km((a.lat, a.lon), (b.lat, b.lon)) / FIBER_KM_PER_S * 1000.0


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scenario():
    return load_scenario("global")


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


@pytest.fixture(scope="module")
def world() -> dict:
    with WORLD_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def global_world() -> dict:
    with GLOBAL_WORLD_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def raw():
    if not RAW_DIR.is_dir():
        pytest.skip(reason=f"raw RTT data not found at {RAW_DIR} (the shared folder beside the repo)")
    return build_global_world.Raw(RAW_DIR)


# ------------------------------------------------------------------------------------------------- shape


def test_the_preset_is_the_global_world_and_the_default_serving(scenario, default, global_world):
    """The base chain (global.yaml -> global_world.yaml -> default -> world) must not leak the default world."""
    assert set(global_world) == {"regions", "zones", "populations", "network"}
    dumped = scenario.model_dump()
    for section in ("regions", "zones", "populations"):
        assert set(dumped[section]) == set(global_world[section]), section
        for key, entry in global_world[section].items():
            assert {k: dumped[section][key][k] for k in entry} == entry, (section, key)
    network = dumped["network"]
    assert network["population_rtt_ms"] == global_world["network"]["population_rtt_ms"]
    assert network["region_rtt_ms"] == global_world["network"]["region_rtt_ms"]
    assert network["intra_region_rtt_ms"] == 1.0 and network["jitter_ratio"] == 0.05
    for section in ("model", "gpus", "slo", "routing", "faults", "autoscaling"):
        assert getattr(scenario, section) == getattr(default, section), section
    assert scenario.demand.rate_rps == 1500
    assert scenario.demand.model_dump(exclude={"rate_rps"}) == default.demand.model_dump(exclude={"rate_rps"})


def test_regions_and_zones(scenario):
    assert len(scenario.regions) >= 25
    assert len(scenario.zones) >= 80
    for rid, region in scenario.regions.items():
        assert len(region.country) == 2 and region.country.isupper(), rid
        assert 10 < region.price_usd_per_gpu_hour < 20, rid
        assert 0 < region.carbon_g_per_kwh < 1200, rid
        assert {z for z, zone in scenario.zones.items() if zone.region == rid} == {f"{rid}-{k}" for k in (1, 2, 3)}
    for zid, zone in scenario.zones.items():
        assert zone.gpu == "h100" and zone.gpus_per_replica == 1 and zone.replicas >= 1, zid


def test_populations_cover_every_continent(scenario, world):
    pops = scenario.populations
    assert set(world["populations"]) <= set(pops)
    assert 40 <= len(pops) <= 70
    assert abs(sum(p.demand_share for p in pops.values()) - 1.0) < 1e-6
    assert all(p.demand_share > 0 for p in pops.values())
    continents = {p.tz.split("/")[0] for p in pops.values()}  # IANA areas: one per continent here
    assert {"Europe", "Asia", "Africa", "America", "Australia", "Pacific"} <= continents


def test_world_populations_keep_their_places(scenario, world):
    for pid, p in world["populations"].items():
        got = scenario.populations[pid]
        assert (got.name, got.lat, got.lon, got.tz) == (p["name"], p["lat"], p["lon"], p["tz"]), pid


# ------------------------------------------------------------------------------- the design card's five


def test_design_regions_keep_world_figures(scenario, world):
    for rid in DESIGN:
        assert scenario.regions[rid].model_dump() == world["regions"][rid], rid
    net = scenario.network
    for a in DESIGN:
        for b in DESIGN:
            if a != b:
                assert net.region_rtt_ms[a][b] == world["network"]["region_rtt_ms"][a][b], (a, b)
    for pid, row in world["network"]["population_rtt_ms"].items():
        for rid, ms in row.items():
            assert net.population_rtt_ms[pid][rid] == ms, (pid, rid)


# ----------------------------------------------------------------------------------------------- network


def test_every_population_reaches_every_region(scenario):
    rtt = scenario.network.population_rtt_ms
    assert set(rtt) == set(scenario.populations)
    for pid, row in rtt.items():
        assert set(row) == set(scenario.regions), pid


def test_every_region_pair_has_a_symmetric_rtt(scenario):
    rtt = scenario.network.region_rtt_ms
    ids = list(scenario.regions)
    for a in ids:
        assert set(rtt[a]) == set(ids) - {a}, a
        for b in ids:
            if a != b:
                assert rtt[a][b] == rtt[b][a], (a, b)


def test_no_rtt_below_the_fiber_floor(scenario):
    regions, pops = scenario.regions, scenario.populations
    for pid, row in scenario.network.population_rtt_ms.items():
        for rid, ms in row.items():
            floor = fiber_floor_ms(pops[pid], regions[rid])
            assert ms + ROUNDING_MS >= floor, f"{pid}->{rid}: {ms} ms is below the fiber floor {floor:.1f} ms"
    for a, row in scenario.network.region_rtt_ms.items():
        for b, ms in row.items():
            floor = fiber_floor_ms(regions[a], regions[b])
            assert ms + ROUNDING_MS >= floor, f"{a}-{b}: {ms} ms is below the fiber floor {floor:.1f} ms"


def test_backbone_pairs_equal_the_azure_table(scenario, raw):
    """Wherever the table has a pair (either direction), the figure is the mean of the directions it has;
    thailand is Southeast Asia + the Bangkok offset (world.yaml's rule)."""
    azure = {spec.id: spec.azure for spec in build_global_world.REGIONS}
    offset = raw.bangkok_offset_ms()
    assert 23.0 < offset < 24.0
    checked = 0
    for a, row in scenario.network.region_rtt_ms.items():
        for b, ms in row.items():
            if a == "thailand" or b == "thailand":
                other = b if a == "thailand" else a
                measured = raw.azure_rtt("Southeast Asia", azure[other]) if other != "southeastasia" else None
                expected = None if measured is None else measured + offset
            else:
                expected = raw.azure_rtt(azure[a], azure[b])
            if expected is not None:
                assert abs(ms - expected) <= ROUNDING_MS, f"{a}-{b}: {ms} vs {expected:.2f}"
                checked += 1
    assert checked >= 2 * 190  # both ways: most pairs with one end in the table's five source regions


def test_the_shipped_file_is_what_the_build_script_builds(raw):
    """Every other rule (WonderProxy servers, detours, the distance model, prices, shares, replicas) lives in
    regions/build_global_world.py; rebuilding from the raw files must give the shipped file byte for byte."""
    built = build_global_world.build(RAW_DIR)
    assert build_global_world.render(built) == GLOBAL_WORLD_PATH.read_text(encoding="utf-8"), (
        "regions/global_world.yaml is stale: re-run .venv/bin/python regions/build_global_world.py"
    )
    fit = built.fit
    assert 5 < fit.a_ms < 12 and 0.014 < fit.b_ms_per_km < 0.018  # SOURCES.md quotes a = 7.66, b = 15.80/1000 km
    assert fit.median_abs_pct < 15
    # The model never undercuts physics: b is above the fiber floor's 2 / 204 ms per 1,000 km.
    assert fit.b_ms_per_km > 2 / FIBER_KM_PER_S * 1000


def test_no_measured_figure_needed_raising_to_the_floor(raw):
    """The build raises a measured figure below the fiber floor (a server not where its name says, like
    WonderProxy's "Rome", 1.3 ms from Milan) to the floor; the stand-ins chosen must make that unnecessary."""
    built = build_global_world.build(RAW_DIR)
    raised = [pair for pair, source in built.sources.items() if source.endswith("/raised-to-floor")]
    assert raised == []
    assert all(source != "distance-model" for (kind, _, _), source in built.sources.items() if kind == "population")


def test_stand_in_servers_are_near_what_they_stand_for(raw, scenario):
    for spec in build_global_world.NEW_POPULATIONS:
        if len(spec.servers) == 1:  # the city's own server
            km = great_circle_km((spec.lat, spec.lon), raw.where(spec.servers[0]))
            assert km <= STAND_IN_MAX_KM, f"{spec.servers[0]} is {km:.0f} km from {spec.id}"
        else:  # no trustworthy server in the city: its 3 nearest (world.yaml's rule for Berlin and Mumbai)
            nearest = sorted(raw.servers, key=lambda n: great_circle_km((spec.lat, spec.lon), raw.where(n)))[:3]
            assert sorted(spec.servers) == sorted(nearest), spec.id
    for rid, region in scenario.regions.items():
        if rid in DESIGN:
            continue
        name, km = raw.nearest((region.lat, region.lon))
        assert km <= build_global_world.REGION_SERVER_KM, f"{rid}: nearest server {name} is {km:.0f} km away"


# --------------------------------------------------------------------------------------------- it runs


def test_a_short_simulation_serves_every_population(scenario):
    report = Simulation(scenario, duration_s=20.0).run()
    assert report.grid.slo_attainment > 0.95
    assert report.grid.rejected == 0 and report.grid.failed == 0
    for row in report.populations:
        assert row.completed > 0, row.name
        assert not math.isnan(row.ttft_s["p50"]), row.name
