"""Build regions/global_world.yaml: every Azure region with availability zones, plus the design card's five.

Run by hand from the repository root (it reads ../shared/data/rtt, which the project never reads at run
time; the output is deterministic):

    .venv/bin/python regions/build_global_world.py            # (re)write regions/global_world.yaml
    .venv/bin/python regions/build_global_world.py --check    # exit 1 if the file is not what this builds
    .venv/bin/python regions/build_global_world.py --explain  # the fit, counts and every RTT's source

What each figure is and where it comes from: regions/SOURCES.md, section "The `global` world". In short:

- regions: the Azure regions with availability zones (Microsoft Learn, "What are availability zones?",
  2026-02-11), 3 zones each; the design card's frankfurt, paris, london, mexico and thailand keep their
  ids and every figure of regions/world.yaml;
- region <-> region RTT: the Azure backbone P95 table where it has the pair (mean of the directions it
  has), Southeast Asia + the Bangkok offset for thailand (world.yaml's rule), otherwise the distance model
  `a + b * km` fitted here to the backbone table;
- population -> region RTT: world.yaml's figure for its 22 populations x 5 regions; otherwise WonderProxy
  pings between the population's and the region's servers (world.yaml's rules: same server, detours,
  3 nearest servers for Berlin, Mumbai and Rome); otherwise the distance model;
- no RTT below the fiber floor 2 * km / 204,000 km/s; modelled ones not below floor + ACCESS_MS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

# The catalogue (data only) sits beside this script; it runs as a script and is loaded by path by the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from global_catalog import (  # noqa: E402
    CARBON_G_PER_KWH,
    DESIGN,
    DESIGN_GCP,
    DESIGN_SERVERS,
    EXISTING_POPULATIONS,
    GCP_A3_USD_PER_HOUR,
    GCP_MULTIPLIER,
    GCP_PLACES,
    NEW_POPULATIONS,
    REGIONS,
    SOUTHEAST_ASIA,
)
from rtt_model import (  # noqa: E402
    ACCESS_MS,
    Fit,
    Raw,
    backbone_pairs,
    fiber_floor_ms,
    fit_distance_model,
    great_circle_km,
)

REPO = Path(__file__).resolve().parents[1]
WORLD_PATH = REPO / "regions" / "world.yaml"
OUT_PATH = REPO / "regions" / "global_world.yaml"
RAW_DIR = REPO.parent / "shared" / "data" / "rtt"

REGION_SERVER_KM = 400.0  # a region's server: the nearest WonderProxy server, if this near (Doha: Dubai, 385 km)
SAME_SERVER_FLOOR_MS = 2.0  # world.yaml: same server at both ends -> max(2.0, 2 x fiber floor)
DETOUR_RATIO, DETOUR_MIN_MS = 1.2, 10.0

# Fleet sizing: each region gets the replicas its home populations need at their daily peak.
RATE_RPS = 1500.0  # regions/scenarios/global.yaml's daily mean
TARGET_UTILIZATION = 0.65  # at each region's own peak; latency_aware spills over only above 1/1.4 = 0.71
ZONES_PER_REGION = 3


# ----------------------------------------------------------------------------------------------- the build


@dataclass
class Built:
    regions: dict[str, dict]
    zones: dict[str, dict]
    populations: dict[str, dict]
    population_rtt: dict[str, dict[str, float]]
    region_rtt: dict[str, dict[str, float]]
    sources: dict[tuple[str, str, str], str]  # (kind, from, to) -> the rule that gave the figure
    fit: Fit
    bangkok_offset_ms: float
    region_servers: dict[str, str | None]
    weights: dict[str, float]
    home: dict[str, str]
    peak_rps: dict[str, float]
    replica_capacity_rps: float
    prices: dict[str, str]


def gcp_price_per_gpu_hour(gcp: str) -> float:
    if gcp in GCP_A3_USD_PER_HOUR:
        return round(GCP_A3_USD_PER_HOUR[gcp] / 8, 2)
    return round(GCP_A3_USD_PER_HOUR["us-central1"] * round(GCP_MULTIPLIER[gcp], 4) / 8, 2)


def nearest_gcp_region(place: tuple[float, float]) -> str:
    return min(GCP_PLACES, key=lambda g: great_circle_km(place, GCP_PLACES[g]))


def build_regions(world: dict) -> dict[str, dict]:
    regions: dict[str, dict] = {}
    for spec in REGIONS:
        if spec.id in DESIGN:
            regions[spec.id] = dict(world["regions"][spec.id])
            # The nearest-GCP-region rule gives world.yaml's five prices too.
            assert (
                gcp_price_per_gpu_hour(nearest_gcp_region(place(regions[spec.id])))
                == regions[spec.id]["price_usd_per_gpu_hour"]
            ), spec.id
            continue
        price = gcp_price_per_gpu_hour(nearest_gcp_region((spec.lat, spec.lon)))
        regions[spec.id] = {
            "name": spec.name,
            "country": spec.country,
            "lat": spec.lat,
            "lon": spec.lon,
            "tz": spec.tz,
            "price_usd_per_gpu_hour": price,
            "carbon_g_per_kwh": CARBON_G_PER_KWH[spec.country][0],
        }
    return regions


def build_populations(world: dict) -> tuple[dict[str, dict], dict[str, tuple[str, ...]], dict[str, float]]:
    populations: dict[str, dict] = {}
    servers: dict[str, tuple[str, ...]] = {}
    weights: dict[str, float] = {}
    for pid, p in world["populations"].items():
        srv, metro, internet, factor = EXISTING_POPULATIONS[pid]
        populations[pid] = {k: p[k] for k in ("name", "lat", "lon", "tz")}
        servers[pid] = srv
        weights[pid] = metro * internet / 100 * factor
    for spec in NEW_POPULATIONS:
        populations[spec.id] = {"name": spec.name, "lat": spec.lat, "lon": spec.lon, "tz": spec.tz}
        servers[spec.id] = spec.servers
        weights[spec.id] = spec.metro_m * spec.internet_pct / 100 * spec.factor
    total = sum(weights.values())
    shares = {pid: round(w / total, 4) for pid, w in weights.items()}
    largest = max(shares, key=shares.get)
    shares[largest] = round(1.0 - sum(s for pid, s in shares.items() if pid != largest), 4)
    for pid, p in populations.items():
        p["demand_share"] = shares[pid]
    return populations, servers, weights


def place(d: dict) -> tuple[float, float]:
    return d["lat"], d["lon"]


def at_least_floor(ms: float, floor: float, source: str) -> tuple[float, str]:
    """A measured figure below the fiber floor (servers not where their names say) is raised to it."""
    return (ms, source) if ms >= floor else (floor, source + "/raised-to-floor")


def region_pair_rtt(a: str, b: str, ctx: dict) -> tuple[float, str]:
    world, raw, fit, regions = ctx["world"], ctx["raw"], ctx["fit"], ctx["regions"]
    azure = {spec.id: spec.azure for spec in REGIONS}
    floor = fiber_floor_ms(place(regions[a]), place(regions[b]))
    if a in DESIGN and b in DESIGN:
        return world["network"]["region_rtt_ms"][a][b], "world.yaml"
    if "thailand" in (a, b):
        other = b if a == "thailand" else a
        if other == SOUTHEAST_ASIA:
            return at_least_floor(raw.ping("Bangkok", "Singapore"), floor, "wonderproxy-2020-07-19/Bangkok-Singapore")
        measured = raw.azure_rtt("Southeast Asia", azure[other])
        if measured is not None:
            return at_least_floor(measured + ctx["offset"], floor, "azure-backbone-p95-2026-07+bangkok-offset")
        return fit.rtt_ms(place(regions[a]), place(regions[b])), "distance-model"
    measured = raw.azure_rtt(azure[a], azure[b])
    if measured is not None:
        return at_least_floor(measured, floor, "azure-backbone-p95-2026-07")
    return fit.rtt_ms(place(regions[a]), place(regions[b])), "distance-model"


def population_pair_rtt(pid: str, rid: str, ctx: dict) -> tuple[float, str]:
    world, raw, fit = ctx["world"], ctx["raw"], ctx["fit"]
    pops, regions = ctx["populations"], ctx["regions"]
    here, there = place(pops[pid]), place(regions[rid])
    floor = fiber_floor_ms(here, there)
    if pid in world["populations"] and rid in DESIGN:
        return world["network"]["population_rtt_ms"][pid][rid], "world.yaml"
    froms, to = ctx["pop_servers"][pid], ctx["region_servers"][rid]
    if to is None:
        return fit.rtt_ms(here, there), "distance-model"
    if len(froms) > 1:  # no server in the city: median over its nearest servers (world.yaml's rule)
        median = raw.median_ping(froms, (to,))
        if median is not None:
            return at_least_floor(median, floor, "wonderproxy-2020-07-19/nearest-servers")
        return fit.rtt_ms(here, there), "distance-model"
    city = froms[0]
    if city == to:
        return max(SAME_SERVER_FLOOR_MS, 2 * floor), "wonderproxy-2020-07-19/same-server"
    single = raw.ping(city, to)
    clustered = raw.median_ping(raw.cluster(city), raw.cluster(to))
    if single is not None and not (
        clustered is not None and single > DETOUR_RATIO * clustered and single - clustered > DETOUR_MIN_MS
    ):
        return at_least_floor(single, floor, "wonderproxy-2020-07-19")
    if clustered is not None:
        return at_least_floor(clustered, floor, "wonderproxy-2020-07-19/cluster-median")
    return fit.rtt_ms(here, there), "distance-model"


def size_fleet(
    populations: dict[str, dict], population_rtt: dict[str, dict[str, float]], regions: dict[str, dict]
) -> tuple[dict[str, str], dict[str, float], float, dict[str, int]]:
    """Each population's home region (least RTT); each region's replicas per zone for its home peak."""
    from grid.demand.arrivals import diurnal_factor, mean_tokens
    from grid.scenario import load_scenario
    from grid.serving.capacity import replica_capacity_rps

    default = load_scenario("default")
    capacity = replica_capacity_rps(
        default.gpus["h100"], mean_tokens(default.demand.sizes.prompt), mean_tokens(default.demand.sizes.output)
    )
    d = default.demand.diurnal
    start = default.demand.start_utc
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    home = {pid: min(regions, key=lambda r: population_rtt[pid][r]) for pid in populations}  # first on ties
    minutes = np.arange(0, 24 * 60) / 60.0
    peak: dict[str, float] = {}
    for rid in regions:
        rate = np.zeros_like(minutes)
        for pid, p in populations.items():
            if home[pid] != rid:
                continue
            offset = start.astimezone(zoneinfo.ZoneInfo(p["tz"])).utcoffset().total_seconds() / 3600
            local = (start.hour + minutes + offset) % 24
            factor = diurnal_factor(local, d.peak_hour_local, d.trough_ratio, d.trough_hour_local)
            rate += RATE_RPS * p["demand_share"] * factor
        peak[rid] = float(rate.max())
    per_zone = {
        rid: max(1, math.ceil(peak[rid] / (ZONES_PER_REGION * capacity * TARGET_UTILIZATION))) for rid in regions
    }
    return home, peak, capacity, per_zone


def build(raw_dir: Path = RAW_DIR) -> Built:
    with WORLD_PATH.open(encoding="utf-8") as f:
        world = yaml.safe_load(f)
    raw = Raw(raw_dir)
    regions = build_regions(world)
    pairs = backbone_pairs(raw, regions)
    fit = fit_distance_model(pairs)
    populations, pop_servers, weights = build_populations(world)
    region_servers: dict[str, str | None] = {}
    for spec in REGIONS:
        if spec.id in DESIGN_SERVERS:
            region_servers[spec.id] = DESIGN_SERVERS[spec.id]
        else:
            name, km = raw.nearest(place(regions[spec.id]))
            region_servers[spec.id] = name if km <= REGION_SERVER_KM else None
    ctx = {
        "world": world,
        "raw": raw,
        "fit": fit,
        "regions": regions,
        "populations": populations,
        "pop_servers": pop_servers,
        "region_servers": region_servers,
        "offset": raw.bangkok_offset_ms(),
    }
    sources: dict[tuple[str, str, str], str] = {}
    population_rtt: dict[str, dict[str, float]] = {}
    for pid in populations:
        population_rtt[pid] = {}
        for rid in regions:
            ms, source = population_pair_rtt(pid, rid, ctx)
            population_rtt[pid][rid] = round(ms, 1)
            sources[("population", pid, rid)] = source
    region_rtt: dict[str, dict[str, float]] = {rid: {} for rid in regions}
    ids = list(regions)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            ms, source = region_pair_rtt(a, b, ctx)
            region_rtt[a][b] = region_rtt[b][a] = round(ms, 1)
            sources[("region", a, b)] = source
    region_rtt = {a: {b: region_rtt[a][b] for b in ids if b != a} for a in ids}
    home, peak, capacity, per_zone = size_fleet(populations, population_rtt, regions)
    zones = {
        f"{rid}-{k}": {"region": rid, "replicas": per_zone[rid], "gpu": "h100", "gpus_per_replica": 1}
        for rid in regions
        for k in range(1, ZONES_PER_REGION + 1)
    }
    prices = {spec.id: DESIGN_GCP.get(spec.id) or nearest_gcp_region((spec.lat, spec.lon)) for spec in REGIONS}
    return Built(
        regions=regions,
        zones=zones,
        populations=populations,
        population_rtt=population_rtt,
        region_rtt=region_rtt,
        sources=sources,
        fit=fit,
        bangkok_offset_ms=ctx["offset"],
        region_servers=region_servers,
        weights=weights,
        home=home,
        peak_rps=peak,
        replica_capacity_rps=capacity,
        prices=prices,
    )


# ------------------------------------------------------------------------------------------------- output


def _value(v: object) -> str:
    if isinstance(v, str):
        return yaml.safe_dump(v, default_style=None, allow_unicode=True).strip().removesuffix("\n...").strip()
    return repr(v) if isinstance(v, float) else str(v)


def _flow(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in d.items()) + "}"


def render(b: Built) -> str:
    fit = b.fit
    n_zones = len(b.zones)
    replicas = sum(z["replicas"] for z in b.zones.values())
    lines = [
        "# The `global` world: every Azure region with availability zones (40; Microsoft Learn, 2026-02-11)",
        "# plus the design card's thailand, 3 zones each, and 60 user populations on every continent.",
        "# GENERATED by regions/build_global_world.py (do not edit by hand; re-run it). Every figure and rule",
        '# is in regions/SOURCES.md, section "The `global` world"; tests/regions/test_global_world.py checks it.',
        "# frankfurt, paris, london, mexico and thailand keep world.yaml's ids and figures (prices, carbon, and",
        "# their RTTs to each other and to world.yaml's 22 populations). Other ids are Azure's programmatic names.",
        "# Loaded as a scenario file this extends `default` (implicit base): every id of the default world is",
        "# also here, so the default's world does not leak in; regions/scenarios/global.yaml is the preset.",
        "# Units are in the key names: ms, USD per GPU-hour, grams CO2e per kWh, degrees.",
        "",
        "# price_usd_per_gpu_hour: GCP a3-highgpu-8g on-demand / 8 in the nearest GCP region (March 2025 list;",
        "#   us-central1 x GCP's regional multiplier where that region has no A3 price).",
        "# carbon_g_per_kwh: country grid, annual average 2023 (Ember).",
        "regions:",
    ]
    lines += [f"  {rid}: {_flow(r)}" for rid, r in b.regions.items()]
    lines += [
        "",
        f"# {n_zones} zones, {replicas} replicas of one H100: each region's zones hold its home populations' daily",
        f"# peak (regions/scenarios/global.yaml's {RATE_RPS:,.0f} req/s daily mean) at {TARGET_UTILIZATION:.0%}"
        f" utilization, one replica at least.",
        "zones:",
    ]
    lines += [f"  {zid}: {_flow(z)}" for zid, z in b.zones.items()]
    lines += [
        "",
        "# demand_share: metro internet users x the LLM-usage factor by income group, normalised (SOURCES.md).",
        "populations:",
    ]
    lines += [f"  {pid}: {_flow(p)}" for pid, p in b.populations.items()]
    lines += [
        "",
        "network:",
        "  intra_region_rtt_ms: 1.0",
        "  jitter_ratio: 0.05",
        "  # Population -> region access RTT, ms. world.yaml's figures for its 22 populations x 5 regions;",
        "  # otherwise WonderProxy pings (2020-07-19) between the population's and the region's servers with",
        "  # world.yaml's rules (same server: max(2.0, 2 x fiber floor); single-server detours: cluster median;",
        "  # Berlin, Mumbai, Rome: median over their 3 nearest servers). qatarcentral (Doha) uses the Dubai",
        f"  # server (385 km; a region's server is the nearest within {REGION_SERVER_KM:.0f} km). No pair here needed",
        "  # the distance model (it would serve pairs without pings).",
        "  population_rtt_ms:",
    ]
    lines += [f"    {pid}: {_flow(row)}" for pid, row in b.population_rtt.items()]
    lines += [
        "  # Region <-> region RTT, ms: Azure backbone P95 (30 days to 2026-07-30), mean of the directions the",
        "  # table has, wherever it has the pair (one end among France Central, Germany West Central, UK South,",
        f"  # Mexico Central, Southeast Asia); thailand = Southeast Asia + {b.bangkok_offset_ms:.1f} ms (world.yaml),",
        "  # thailand-southeastasia = the Bangkok-Singapore ping; otherwise the distance model fitted to the",
        "  # backbone table by least squares on the relative error:",
        f"  #   rtt = {fit.a_ms:.2f} ms + {fit.b_ms_per_km * 1000:.2f} ms per 1,000 km (n = {fit.n}, RMSE"
        f" {fit.rmse_ms:.1f} ms, median error {fit.median_abs_pct:.0f}%),",
        f"  #   never below 2 x km / 204,000 km/s + {ACCESS_MS:.1f} ms. Symmetric, written both ways.",
        "  region_rtt_ms:",
    ]
    lines += [f"    {rid}: {_flow(row)}" for rid, row in b.region_rtt.items()]
    return "\n".join(lines) + "\n"


def explain(b: Built) -> str:
    fit = b.fit
    out = [
        f"fit: rtt = {fit.a_ms:.3f} + {fit.b_ms_per_km:.6f} * km  (n={fit.n}, RMSE {fit.rmse_ms:.2f} ms,"
        f" MAE {fit.mae_ms:.2f} ms, median |err| {fit.median_abs_pct:.1f}%, R2 {fit.r2:.3f})",
        f"bangkok offset: {b.bangkok_offset_ms:.2f} ms",
        f"replica capacity: {b.replica_capacity_rps:.2f} req/s",
        f"regions {len(b.regions)}, zones {len(b.zones)}, replicas {sum(z['replicas'] for z in b.zones.values())},"
        f" populations {len(b.populations)}",
        "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(b.sources.values()).items())),
        "",
        "region              server          gcp                    USD/GPU-h  gCO2/kWh  home peak rps  per zone",
    ]
    for rid, r in b.regions.items():
        per_zone = b.zones[f"{rid}-1"]["replicas"]
        out.append(
            f"{rid:20s}{b.region_servers[rid] or '-':16s}{b.prices[rid]:23s}{r['price_usd_per_gpu_hour']:9.2f}"
            f"{r['carbon_g_per_kwh']:10.0f}{b.peak_rps[rid]:15.1f}{per_zone:10d}"
        )
    out += ["", "population          weight  share   home"]
    for pid, p in b.populations.items():
        out.append(f"{pid:20s}{b.weights[pid]:6.2f}  {p['demand_share']:.4f}  {b.home[pid]}")
    out += ["", "pair sources:"]
    out += [f"{kind},{a},{b_},{src}" for (kind, a, b_), src in b.sources.items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if regions/global_world.yaml is stale")
    parser.add_argument("--explain", action="store_true", help="print the fit, counts and every RTT's source")
    args = parser.parse_args(argv)
    built = build()
    text = render(built)
    parsed = yaml.safe_load(text)
    expected = {"regions": built.regions, "zones": built.zones, "populations": built.populations}
    if {k: parsed[k] for k in expected} != expected or parsed["network"]["population_rtt_ms"] != built.population_rtt:
        raise SystemExit("rendering changed the figures")
    if parsed["network"]["region_rtt_ms"] != built.region_rtt:
        raise SystemExit("rendering changed the figures")
    if args.explain:
        print(explain(built))
        return 0
    if args.check:
        current = OUT_PATH.read_text(encoding="utf-8") if OUT_PATH.is_file() else ""
        if current != text:
            print(f"{OUT_PATH} is stale: re-run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {OUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
