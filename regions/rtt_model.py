"""The network data and the distance model behind the `global` world: great-circle distance and the fiber
floor, the WonderProxy and Azure backbone files read once (`Raw`), and `rtt = a + b * km` fitted to the
backbone table (`Fit`). Used by regions/build_global_world.py; reads ../shared only when that runs."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from global_catalog import OTHER_AZURE_PLACES, REGIONS

BACKBONE_CSV = "azure-backbone-p95-2026-07.csv"
PINGS_CSV = "wonderproxy-pings-2020-07-19.csv"
SERVERS_CSV = "wonderproxy-servers-2020-07-19.csv"
FIBER_KM_PER_S = 204_000.0
EARTH_RADIUS_KM = 6371.0
ACCESS_MS = 2.0  # modelled RTTs stay at least this far above the fiber floor (world.yaml's same-city 2.0 ms)
CLUSTER_KM = 400.0  # world.yaml's detour rule: a server's cluster is itself + same-country servers this near
BANGKOK_OFFSET_COUNTRIES = ("Germany", "France", "United Kingdom", "Mexico")


# --------------------------------------------------------------------------------------------- geometry


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def fiber_floor_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    return 2 * great_circle_km(a, b) / FIBER_KM_PER_S * 1000.0


# ------------------------------------------------------------------------------------------------ raw data


class Raw:
    """The WonderProxy and Azure files, read once (the same reading as tests/regions/test_world_network.py)."""

    def __init__(self, folder: Path):
        with (folder / SERVERS_CSV).open(encoding="utf-8", newline="") as f:
            self.servers = {row["name"]: row for row in csv.DictReader(f)}
        id_to_name = {row["id"]: name for name, row in self.servers.items()}
        self.avg: dict[tuple[str, str], float] = {}
        with (folder / PINGS_CSV).open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                src, dst = id_to_name.get(row["source"]), id_to_name.get(row["destination"])
                if src and dst:
                    self.avg[(src, dst)] = float(row["avg"])
        self.azure: dict[tuple[str, str], float] = {}
        with (folder / BACKBONE_CSV).open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for line in reader:
                for dst, cell in zip(header[1:], line[1:], strict=True):
                    if cell:
                        self.azure[(line[0], dst)] = float(cell)

    def where(self, name: str) -> tuple[float, float]:
        return float(self.servers[name]["latitude"]), float(self.servers[name]["longitude"])

    def ping(self, a: str, b: str) -> float | None:
        """Mean of the two directions' avg ping; None for a self-ping (meaningless) or an unmeasured pair."""
        if a == b:
            return None
        both = [self.avg[k] for k in ((a, b), (b, a)) if k in self.avg]
        return sum(both) / len(both) if both else None

    def median_ping(self, froms: tuple[str, ...] | list[str], tos: tuple[str, ...] | list[str]) -> float | None:
        pings = [p for a in froms for b in tos if (p := self.ping(a, b)) is not None]
        return statistics.median(pings) if pings else None

    def cluster(self, name: str) -> list[str]:
        here, country = self.where(name), self.servers[name]["country"]
        near = sorted(
            other
            for other, row in self.servers.items()
            if other != name and row["country"] == country and great_circle_km(here, self.where(other)) <= CLUSTER_KM
        )
        return [name, *near]

    def nearest(self, place: tuple[float, float]) -> tuple[str, float]:
        name = min(self.servers, key=lambda n: great_circle_km(place, self.where(n)))
        return name, great_circle_km(place, self.where(name))

    def azure_rtt(self, a: str, b: str) -> float | None:
        """Mean of the directions the backbone table has (both only when both are source regions)."""
        both = [self.azure[k] for k in ((a, b), (b, a)) if k in self.azure]
        return sum(both) / len(both) if both else None

    def bangkok_offset_ms(self) -> float:
        return statistics.median(
            self.ping("Bangkok", name) - self.ping("Singapore", name)
            for name, row in self.servers.items()
            if row["country"] in BANGKOK_OFFSET_COUNTRIES
        )


# ------------------------------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class Fit:
    a_ms: float
    b_ms_per_km: float
    n: int
    rmse_ms: float
    mae_ms: float
    median_abs_pct: float
    r2: float

    def rtt_ms(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        km = great_circle_km(a, b)
        return max(self.a_ms + self.b_ms_per_km * km, 2 * km / FIBER_KM_PER_S * 1000.0 + ACCESS_MS)


def azure_place(name: str, regions: dict[str, dict]) -> tuple[float, float]:
    for spec in REGIONS:
        if spec.azure == name:
            r = regions[spec.id]
            return r["lat"], r["lon"]
    return OTHER_AZURE_PLACES[name]


def backbone_pairs(raw: Raw, regions: dict[str, dict]) -> list[tuple[str, str, float, float]]:
    """Every unordered pair the backbone table measures: (A, B, km, mean RTT)."""
    seen, pairs = set(), []
    for src, dst in sorted(raw.azure):
        key = frozenset((src, dst))
        if key in seen:
            continue
        seen.add(key)
        km = great_circle_km(azure_place(src, regions), azure_place(dst, regions))
        pairs.append((src, dst, km, raw.azure_rtt(src, dst)))
    return pairs


def fit_distance_model(pairs: list[tuple[str, str, float, float]]) -> Fit:
    """rtt = a + b * km over the measured backbone pairs, least squares on the relative error (weights
    1/rtt): RTTs span 9 to 300 ms, and a plain least-squares line (a = 18 ms) doubles short links."""
    km = np.array([p[2] for p in pairs])
    ms = np.array([p[3] for p in pairs])
    b, a = np.polyfit(km, ms, 1, w=1.0 / ms)
    pred = a + b * km
    resid = ms - pred
    return Fit(
        a_ms=float(a),
        b_ms_per_km=float(b),
        n=len(pairs),
        rmse_ms=float(np.sqrt(np.mean(resid**2))),
        mae_ms=float(np.mean(np.abs(resid))),
        median_abs_pct=float(np.median(np.abs(resid) / ms) * 100),
        r2=float(1 - np.sum(resid**2) / np.sum((ms - ms.mean()) ** 2)),
    )
