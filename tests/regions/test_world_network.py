"""The default world's data (regions/world.yaml) against its sources.

Checks the shape of the world, the physics (no RTT below the speed of light in fiber), and that every
RTT is exactly what regions/SOURCES.md says it is: re-derived here from the raw WonderProxy and Azure
files in ../shared/data/rtt (those tests skip, with a reason, when that folder is absent).
"""

from __future__ import annotations

import csv
import math
import statistics
import zoneinfo
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
WORLD_PATH = REPO / "regions" / "world.yaml"
MEASURED_PATH = REPO / "regions" / "rtt_measured.csv"
RAW_DIR = Path(__file__).parents[3] / "shared" / "data" / "rtt"

FIBER_KM_PER_S = 204_000.0
EARTH_RADIUS_KM = 6371.0
ROUNDING_MS = 0.05 + 1e-9  # figures are rounded to 0.1 ms

# The server that stands for each region's city, and the Azure region that stands for it (SOURCES.md).
REGION_SERVER = {
    "frankfurt": "Frankfurt",
    "paris": "Paris",
    "london": "London",
    "mexico": "Mexico",  # Mexico City: the nearest server to Querétaro
    "thailand": "Bangkok",
}
AZURE_REGION = {
    "frankfurt": "Germany West Central",
    "paris": "France Central",
    "london": "UK South",
    "mexico": "Mexico Central",
    "thailand": "Southeast Asia",  # Singapore; no Thai Azure region in the table
}
# Detour rule (SOURCES.md): a single server pair slower than 1.2x, and by more than 10 ms, the median
# over the two cities' clusters (same-country servers within 400 km) is replaced by that median.
CLUSTER_KM = 400.0
DETOUR_RATIO = 1.2
DETOUR_MIN_MS = 10.0
# Same-server pairs (population city == region city): max(floor, 2 x fiber floor).
SAME_SERVER_FLOOR_MS = 2.0
# Countries whose servers define the Bangkok-vs-Singapore offset added to Azure's Southeast Asia figures.
BANGKOK_OFFSET_COUNTRIES = ("Germany", "France", "United Kingdom", "Mexico")
# Sanity bound: measured RTTs stay below 3 x (floor + 10 ms), except these public-internet hairpins,
# which SOURCES.md documents (corroborated by the neighbouring servers) and which may reach 5 x.
SANITY_FACTOR, SANITY_SLACK_MS = 3.0, 10.0
KNOWN_HAIRPINS = {("riyadh", "thailand")}
HAIRPIN_FACTOR = 5.0
# A stand-in server must lie near the place it stands for.
STAND_IN_MAX_KM = 700.0


def great_circle_km(a: dict, b: dict) -> float:
    """Haversine distance between two places given as {"lat": .., "lon": ..} in degrees."""
    p1, p2 = math.radians(a["lat"]), math.radians(b["lat"])
    dp, dl = p2 - p1, math.radians(b["lon"] - a["lon"])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def fiber_floor_ms(a: dict, b: dict) -> float:
    """Round trip at the speed of light in fiber along the great circle."""
    return 2 * great_circle_km(a, b) / FIBER_KM_PER_S * 1000.0


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world() -> dict:
    with WORLD_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def measured() -> list[dict]:
    with MEASURED_PATH.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["rtt_ms"] = float(row["rtt_ms"])
        row["source_from"] = row["source_from"].split(";")
        row["source_to"] = row["source_to"].split(";")
    return rows


class Raw:
    """The published WonderProxy and Azure files, read once."""

    def __init__(self, folder: Path):
        with (folder / "wonderproxy-servers-2020-07-19.csv").open(encoding="utf-8", newline="") as f:
            self.servers = {row["name"]: row for row in csv.DictReader(f)}
        id_to_name = {row["id"]: name for name, row in self.servers.items()}
        self.avg: dict[tuple[str, str], float] = {}
        with (folder / "wonderproxy-pings-2020-07-19.csv").open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                src, dst = id_to_name.get(row["source"]), id_to_name.get(row["destination"])
                if src and dst:
                    self.avg[(src, dst)] = float(row["avg"])
        self.azure: dict[tuple[str, str], float] = {}
        with (folder / "azure-backbone-p95-2026-07.csv").open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for line in reader:
                for dst, cell in zip(header[1:], line[1:], strict=True):
                    if cell:
                        self.azure[(line[0], dst)] = float(cell)

    def where(self, name: str) -> dict:
        return {"lat": float(self.servers[name]["latitude"]), "lon": float(self.servers[name]["longitude"])}

    def ping(self, a: str, b: str) -> float | None:
        """Mean of the two directions' avg ping (one direction if only one was measured)."""
        both = [self.avg[k] for k in ((a, b), (b, a)) if k in self.avg]
        return sum(both) / len(both) if both else None

    def median_ping(self, froms: list[str], tos: list[str]) -> float:
        return statistics.median(p for a in froms for b in tos if (p := self.ping(a, b)) is not None)

    def cluster(self, name: str) -> list[str]:
        """The server and its same-country neighbours within CLUSTER_KM, city server first."""
        here, country = self.where(name), self.servers[name]["country"]
        near = sorted(
            other
            for other, row in self.servers.items()
            if other != name and row["country"] == country and great_circle_km(here, self.where(other)) <= CLUSTER_KM
        )
        return [name, *near]

    def nearest(self, place: dict, k: int) -> list[str]:
        return sorted(self.servers, key=lambda n: great_circle_km(place, self.where(n)))[:k]

    def azure_rtt(self, a: str, b: str) -> float:
        return (self.azure[(a, b)] + self.azure[(b, a)]) / 2

    def bangkok_offset_ms(self) -> float:
        return statistics.median(
            self.ping("Bangkok", name) - self.ping("Singapore", name)
            for name, row in self.servers.items()
            if row["country"] in BANGKOK_OFFSET_COUNTRIES
        )


@pytest.fixture(scope="module")
def raw() -> Raw:
    if not RAW_DIR.is_dir():
        pytest.skip(reason=f"raw RTT data not found at {RAW_DIR} (the shared folder beside the repo)")
    return Raw(RAW_DIR)


def population_rows(measured: list[dict]) -> list[dict]:
    return [r for r in measured if r["kind"] == "population_region"]


def region_rows(measured: list[dict]) -> list[dict]:
    return [r for r in measured if r["kind"] == "region_region"]


# ------------------------------------------------------------------------------------------ world shape


def test_top_level_keys(world):
    assert set(world) == {"regions", "zones", "populations", "network"}
    assert set(world["network"]) == {
        "intra_region_rtt_ms",
        "jitter_ratio",
        "population_rtt_ms",
        "region_rtt_ms",
    }
    assert world["network"]["intra_region_rtt_ms"] == 1.0
    assert world["network"]["jitter_ratio"] == 0.05


def test_regions_and_zones(world):
    assert set(world["regions"]) == set(REGION_SERVER)
    for rid, region in world["regions"].items():
        assert len(region["country"]) == 2 and region["country"].isupper(), rid
        assert 0 < region["price_usd_per_gpu_hour"] < 50, rid
        assert 0 < region["carbon_g_per_kwh"] < 1200, rid
    replicas = {z: zone["replicas"] for z, zone in world["zones"].items()}
    assert replicas == {
        "frankfurt-1": 8, "frankfurt-2": 8, "frankfurt-3": 6, "paris-1": 6, "paris-2": 6,
        "london-1": 6, "london-2": 6, "mexico-1": 6, "thailand-1": 6,
    }  # fmt: skip
    for z, zone in world["zones"].items():
        assert z.startswith(zone["region"] + "-")
        assert zone["gpu"] == "h100" and zone["gpus_per_replica"] == 1


def test_populations_cover_the_required_cities(world):
    names = {p["name"] for p in world["populations"].values()}
    required = {
        "Milan", "Berlin", "Madrid", "Riyadh", "Mexico City", "New York", "São Paulo", "Bangkok",
        "Singapore", "Jakarta", "Manila", "Kuala Lumpur", "Tokyo",
    }  # fmt: skip
    assert required <= names
    assert len(names) >= 16


def test_demand_shares_sum_to_one(world):
    shares = [p["demand_share"] for p in world["populations"].values()]
    assert all(s > 0 for s in shares)
    assert abs(sum(shares) - 1.0) < 1e-6


def test_coordinates_in_range(world):
    for place in [*world["regions"].values(), *world["populations"].values()]:
        assert -90 <= place["lat"] <= 90 and -180 <= place["lon"] <= 180, place["name"]


def test_timezones_are_valid_iana_names(world):
    for place in [*world["regions"].values(), *world["populations"].values()]:
        zoneinfo.ZoneInfo(place["tz"])  # raises ZoneInfoNotFoundError on a bad name


def test_every_population_reaches_every_region(world):
    rtt = world["network"]["population_rtt_ms"]
    assert set(rtt) == set(world["populations"])
    for pid, row in rtt.items():
        assert set(row) == set(world["regions"]), pid


def test_every_region_pair_has_a_symmetric_rtt(world):
    rtt = world["network"]["region_rtt_ms"]
    ids = list(world["regions"])
    for a in ids:
        assert set(rtt[a]) == set(ids) - {a}, a
        for b in ids:
            if a != b:
                assert rtt[a][b] == rtt[b][a], (a, b)


# ------------------------------------------------------------------------------------------------ physics


def all_rtts(world):
    regions, pops = world["regions"], world["populations"]
    for pid, row in world["network"]["population_rtt_ms"].items():
        for rid, ms in row.items():
            yield (pid, rid), ms, fiber_floor_ms(pops[pid], regions[rid])
    for a, row in world["network"]["region_rtt_ms"].items():
        for b, ms in row.items():
            yield (a, b), ms, fiber_floor_ms(regions[a], regions[b])


def test_no_rtt_below_the_fiber_floor(world):
    for pair, ms, floor in all_rtts(world):
        assert ms >= floor, f"{pair}: {ms} ms is below the fiber floor {floor:.1f} ms"


def test_rtts_within_the_sanity_bound(world):
    for pair, ms, floor in all_rtts(world):
        factor = HAIRPIN_FACTOR if pair in KNOWN_HAIRPINS else SANITY_FACTOR
        bound = factor * (floor + SANITY_SLACK_MS)
        assert ms <= bound, f"{pair}: {ms} ms above {factor} x (floor {floor:.1f} + {SANITY_SLACK_MS}) ms"


def test_known_hairpins_are_still_hairpins(world):
    """If the data changes so that an exception is no longer needed, drop it from KNOWN_HAIRPINS."""
    pops, regions = world["populations"], world["regions"]
    for pid, rid in KNOWN_HAIRPINS:
        floor = fiber_floor_ms(pops[pid], regions[rid])
        assert world["network"]["population_rtt_ms"][pid][rid] > SANITY_FACTOR * (floor + SANITY_SLACK_MS)


# ------------------------------------------------------------------------- world.yaml <-> rtt_measured.csv


def test_population_rtts_equal_the_recorded_measurements(world, measured):
    rows = population_rows(measured)
    recorded = {(r["from"], r["to"]): r["rtt_ms"] for r in rows}
    assert len(recorded) == len(rows), "duplicate population_region rows"
    expected = {(pid, rid): ms for pid, row in world["network"]["population_rtt_ms"].items() for rid, ms in row.items()}
    assert recorded == expected


def test_region_rtts_equal_the_recorded_measurements(world, measured):
    rows = region_rows(measured)
    pairs = [frozenset((r["from"], r["to"])) for r in rows]
    assert len(set(pairs)) == len(pairs) == 10, "one row per unordered region pair"
    for r in rows:
        assert world["network"]["region_rtt_ms"][r["from"]][r["to"]] == r["rtt_ms"], (r["from"], r["to"])


def test_measured_rows_are_well_formed(measured):
    kinds = {"population_region", "region_region"}
    sources = {
        "wonderproxy-2020-07-19",
        "wonderproxy-2020-07-19/same-server",
        "azure-backbone-p95-2026-07",
        "azure-backbone-p95-2026-07+bangkok-offset",
    }
    for r in measured:
        assert r["kind"] in kinds and r["source"] in sources, r
        assert round(r["rtt_ms"], 1) == r["rtt_ms"], r


# --------------------------------------------------------------------------- rtt_measured.csv <-> raw files


def test_wonderproxy_rows_match_the_raw_pings(measured, raw):
    for r in population_rows(measured):
        if r["source"] != "wonderproxy-2020-07-19":
            continue
        for name in r["source_from"] + r["source_to"]:
            assert name in raw.servers, f"unknown WonderProxy server {name!r}"
        derived = raw.median_ping(r["source_from"], r["source_to"])
        assert abs(derived - r["rtt_ms"]) <= ROUNDING_MS, f"{r['from']}->{r['to']}: {derived:.2f} vs {r['rtt_ms']}"


def test_same_server_rows_use_the_local_floor(world, measured, raw):
    regions, pops = world["regions"], world["populations"]
    for r in population_rows(measured):
        if r["source"] != "wonderproxy-2020-07-19/same-server":
            continue
        assert r["source_from"] == r["source_to"] == [REGION_SERVER[r["to"]]], r
        floor = fiber_floor_ms(pops[r["from"]], regions[r["to"]])
        assert r["rtt_ms"] == round(max(SAME_SERVER_FLOOR_MS, 2 * floor), 1), r


def test_stand_in_servers_are_near_what_they_stand_for(world, measured, raw):
    regions, pops = world["regions"], world["populations"]
    for r in population_rows(measured):
        for name in r["source_from"]:
            km = great_circle_km(pops[r["from"]], raw.where(name))
            assert km <= STAND_IN_MAX_KM, f"{name} is {km:.0f} km from {r['from']}"
        for name in r["source_to"]:
            km = great_circle_km(regions[r["to"]], raw.where(name))
            assert km <= STAND_IN_MAX_KM, f"{name} is {km:.0f} km from region {r['to']}"


def test_server_choice_follows_the_documented_rules(world, measured, raw):
    """Single pair unless it is a detour (then both cities' clusters); no-server cities: 3 nearest."""
    for r in population_rows(measured):
        if r["source"] != "wonderproxy-2020-07-19":
            continue
        froms, tos = r["source_from"], r["source_to"]
        if len(froms) == 3 and froms == raw.nearest(world["populations"][r["from"]], 3):
            assert tos == [REGION_SERVER[r["to"]]], r  # a city without its own server
            continue
        city, region_city = froms[0], tos[0]
        assert region_city == REGION_SERVER[r["to"]], r
        single = raw.ping(city, region_city)
        clustered = raw.median_ping(raw.cluster(city), raw.cluster(region_city))
        is_detour = single > DETOUR_RATIO * clustered and single - clustered > DETOUR_MIN_MS
        if len(froms) == len(tos) == 1:
            assert not is_detour, f"{r['from']}->{r['to']}: {single:.1f} ms is a detour (clusters {clustered:.1f})"
        else:
            assert is_detour, f"{r['from']}->{r['to']}: clusters used but {single:.1f} ms is no detour"
            assert (froms, tos) == (raw.cluster(city), raw.cluster(region_city)), r


def test_region_rows_match_the_azure_table(measured, raw):
    offset = raw.bangkok_offset_ms()
    assert 0 < offset < raw.ping("Bangkok", "Singapore")  # Bangkok sits behind Singapore, partly
    for r in region_rows(measured):
        assert [r["source_from"], r["source_to"]] == [[AZURE_REGION[r["from"]]], [AZURE_REGION[r["to"]]]], r
        derived = raw.azure_rtt(AZURE_REGION[r["from"]], AZURE_REGION[r["to"]])
        if "thailand" in (r["from"], r["to"]):
            assert r["source"] == "azure-backbone-p95-2026-07+bangkok-offset", r
            derived += offset
        else:
            assert r["source"] == "azure-backbone-p95-2026-07", r
        assert abs(derived - r["rtt_ms"]) <= ROUNDING_MS, f"{r['from']}-{r['to']}: {derived:.2f} vs {r['rtt_ms']}"


def test_pings_are_nearly_symmetric(raw):
    """Why one figure per pair is enough: the two directions agree to well under 1% at the median."""
    diffs = [
        abs(ms - raw.avg[(b, a)]) / ((ms + raw.avg[(b, a)]) / 2)
        for (a, b), ms in raw.avg.items()
        if a < b and (b, a) in raw.avg and ms + raw.avg[(b, a)] > 0
    ]
    assert len(diffs) > 25_000
    assert statistics.median(diffs) < 0.01
