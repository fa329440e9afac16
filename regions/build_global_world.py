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
import csv
import datetime as dt
import math
import statistics
import sys
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
WORLD_PATH = REPO / "regions" / "world.yaml"
OUT_PATH = REPO / "regions" / "global_world.yaml"
RAW_DIR = REPO.parent / "shared" / "data" / "rtt"
BACKBONE_CSV = "azure-backbone-p95-2026-07.csv"
PINGS_CSV = "wonderproxy-pings-2020-07-19.csv"
SERVERS_CSV = "wonderproxy-servers-2020-07-19.csv"

FIBER_KM_PER_S = 204_000.0
EARTH_RADIUS_KM = 6371.0
ACCESS_MS = 2.0  # modelled RTTs stay at least this far above the fiber floor (world.yaml's same-city 2.0 ms)
REGION_SERVER_KM = 400.0  # a region's server: the nearest WonderProxy server, if this near (Doha: Dubai, 385 km)
SAME_SERVER_FLOOR_MS = 2.0  # world.yaml: same server at both ends -> max(2.0, 2 x fiber floor)
CLUSTER_KM = 400.0  # world.yaml's detour rule: a server's cluster is itself + same-country servers this near
DETOUR_RATIO, DETOUR_MIN_MS = 1.2, 10.0
BANGKOK_OFFSET_COUNTRIES = ("Germany", "France", "United Kingdom", "Mexico")

# Fleet sizing: each region gets the replicas its home populations need at their daily peak.
RATE_RPS = 1500.0  # regions/scenarios/global.yaml's daily mean
TARGET_UTILIZATION = 0.65  # at each region's own peak; latency_aware spills over only above 1/1.4 = 0.71
ZONES_PER_REGION = 3

DESIGN = ("frankfurt", "paris", "london", "mexico", "thailand")
SOUTHEAST_ASIA = "southeastasia"


@dataclass(frozen=True)
class RegionSpec:
    id: str
    azure: str | None  # the Azure region's display name (None: thailand, not an Azure region)
    city: str  # its "Physical location" (name = "<azure> (<city>)")
    country: str
    lat: float
    lon: float
    tz: str

    @property
    def name(self) -> str:
        return f"{self.azure} ({self.city})"


# The 40 Azure regions with availability zones (Microsoft Learn, "What are availability zones?", table
# "Regions with availability zones", ms.date 2026-02-11; 3 zones each, except East US 2: 4, one of them in
# preview; North Central US's 3 are marked in preview), + thailand. Coordinates: the city of the "Physical
# location" column (Microsoft Learn, "Azure regions list", ms.date 2025-09-23); where that column names a
# state, the coordinates Azure publishes for the region (`az account list-locations`): Iowa, Virginia,
# Texas, Washington, Illinois. The five design regions' figures are world.yaml's (their rows here only map
# them to Azure and to WonderProxy servers: DESIGN_SERVERS).
# fmt: off
REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("frankfurt", "Germany West Central", "Frankfurt", "DE", 50.11, 8.68, "Europe/Berlin"),
    RegionSpec("paris", "France Central", "Paris", "FR", 48.86, 2.35, "Europe/Paris"),
    RegionSpec("london", "UK South", "London", "GB", 51.51, -0.13, "Europe/London"),
    RegionSpec("mexico", "Mexico Central", "Querétaro", "MX", 20.59, -100.39, "America/Mexico_City"),
    RegionSpec("thailand", None, "Bangkok", "TH", 13.76, 100.50, "Asia/Bangkok"),
    RegionSpec("australiaeast", "Australia East", "Sydney", "AU", -33.87, 151.21, "Australia/Sydney"),
    RegionSpec("austriaeast", "Austria East", "Vienna", "AT", 48.21, 16.37, "Europe/Vienna"),
    RegionSpec("belgiumcentral", "Belgium Central", "Brussels", "BE", 50.85, 4.35, "Europe/Brussels"),
    RegionSpec("brazilsouth", "Brazil South", "São Paulo", "BR", -23.55, -46.63, "America/Sao_Paulo"),
    RegionSpec("canadacentral", "Canada Central", "Toronto", "CA", 43.65, -79.38, "America/Toronto"),
    RegionSpec("centralindia", "Central India", "Pune", "IN", 18.52, 73.86, "Asia/Kolkata"),
    RegionSpec("centralus", "Central US", "Iowa", "US", 41.59, -93.62, "America/Chicago"),
    RegionSpec("chilecentral", "Chile Central", "Santiago", "CL", -33.45, -70.67, "America/Santiago"),
    RegionSpec("denmarkeast", "Denmark East", "Copenhagen", "DK", 55.68, 12.57, "Europe/Copenhagen"),
    RegionSpec("eastasia", "East Asia", "Hong Kong", "HK", 22.32, 114.17, "Asia/Hong_Kong"),
    RegionSpec("eastus", "East US", "Virginia", "US", 37.37, -79.82, "America/New_York"),
    RegionSpec("eastus2", "East US 2", "Virginia", "US", 36.67, -78.39, "America/New_York"),
    RegionSpec("indiasouthcentral", "India South Central", "Hyderabad", "IN", 17.39, 78.49, "Asia/Kolkata"),
    RegionSpec("indonesiacentral", "Indonesia Central", "Jakarta", "ID", -6.21, 106.85, "Asia/Jakarta"),
    RegionSpec("israelcentral", "Israel Central", "Tel Aviv", "IL", 32.08, 34.78, "Asia/Jerusalem"),
    RegionSpec("italynorth", "Italy North", "Milan", "IT", 45.46, 9.19, "Europe/Rome"),
    RegionSpec("japaneast", "Japan East", "Tokyo", "JP", 35.68, 139.69, "Asia/Tokyo"),
    RegionSpec("japanwest", "Japan West", "Osaka", "JP", 34.69, 135.50, "Asia/Tokyo"),
    RegionSpec("koreacentral", "Korea Central", "Seoul", "KR", 37.57, 126.98, "Asia/Seoul"),
    RegionSpec("malaysiawest", "Malaysia West", "Kuala Lumpur", "MY", 3.14, 101.69, "Asia/Kuala_Lumpur"),
    RegionSpec("newzealandnorth", "New Zealand North", "Auckland", "NZ", -36.85, 174.76, "Pacific/Auckland"),
    RegionSpec("northcentralus", "North Central US", "Illinois", "US", 41.88, -87.63, "America/Chicago"),
    RegionSpec("northeurope", "North Europe", "Ireland", "IE", 53.35, -6.26, "Europe/Dublin"),
    RegionSpec("norwayeast", "Norway East", "Oslo", "NO", 59.91, 10.75, "Europe/Oslo"),
    RegionSpec("polandcentral", "Poland Central", "Warsaw", "PL", 52.23, 21.01, "Europe/Warsaw"),
    RegionSpec("qatarcentral", "Qatar Central", "Doha", "QA", 25.29, 51.53, "Asia/Qatar"),
    RegionSpec("southafricanorth", "South Africa North", "Johannesburg", "ZA", -26.20, 28.05, "Africa/Johannesburg"),
    RegionSpec("southcentralus", "South Central US", "Texas", "US", 29.42, -98.49, "America/Chicago"),
    RegionSpec("southeastasia", "Southeast Asia", "Singapore", "SG", 1.35, 103.82, "Asia/Singapore"),
    RegionSpec("spaincentral", "Spain Central", "Madrid", "ES", 40.42, -3.70, "Europe/Madrid"),
    RegionSpec("swedencentral", "Sweden Central", "Gävle", "SE", 60.67, 17.14, "Europe/Stockholm"),
    RegionSpec("switzerlandnorth", "Switzerland North", "Zurich", "CH", 47.38, 8.54, "Europe/Zurich"),
    RegionSpec("uaenorth", "UAE North", "Dubai", "AE", 25.20, 55.27, "Asia/Dubai"),
    RegionSpec("westeurope", "West Europe", "Netherlands", "NL", 52.37, 4.90, "Europe/Amsterdam"),
    RegionSpec("westus2", "West US 2", "Washington", "US", 47.23, -119.85, "America/Los_Angeles"),
    RegionSpec("westus3", "West US 3", "Phoenix", "US", 33.45, -112.07, "America/Phoenix"),
)
# fmt: on
# world.yaml's servers for the design regions (Querétaro: Mexico City; thailand: Bangkok). Other regions:
# the nearest server within REGION_SERVER_KM.
DESIGN_SERVERS = {
    "frankfurt": "Frankfurt",
    "paris": "Paris",
    "london": "London",
    "mexico": "Mexico",
    "thailand": "Bangkok",
}
# world.yaml's price sources for the design regions (SOURCES.md), for --explain only.
DESIGN_GCP = {
    "frankfurt": "europe-west3",
    "paris": "europe-west9",
    "london": "europe-west2",
    "mexico": "northamerica-south1",
    "thailand": "asia-southeast1",
}


# Coordinates of the backbone table's other regions (its 54 destinations and 5 sources), used only to fit
# the distance model: the city of each region's "Physical location" (Azure regions list). The table's
# regions that are also in REGIONS take their coordinates from there (Southeast Asia: Singapore).
OTHER_AZURE_PLACES: dict[str, tuple[float, float]] = {
    "Australia Central": (-35.31, 149.12),  # Canberra
    "Australia Central 2": (-35.31, 149.12),
    "Australia Southeast": (-37.81, 144.96),  # Melbourne
    "Canada East": (46.81, -71.21),  # Quebec City
    "France South": (43.30, 5.37),  # Marseille
    "Germany North": (52.52, 13.40),  # Berlin
    "Jio India West": (22.47, 70.06),  # Jamnagar
    "Korea South": (35.18, 129.08),  # Busan
    "Norway West": (58.97, 5.73),  # Stavanger
    "South Africa West": (-33.92, 18.42),  # Cape Town
    "South India": (13.08, 80.27),  # Chennai
    "Switzerland West": (46.20, 6.14),  # Geneva
    "UAE Central": (24.47, 54.37),  # Abu Dhabi
    "UK West": (51.48, -3.18),  # Cardiff
    "West Central US": (41.14, -104.82),  # Cheyenne, Wyoming
    "West US": (37.78, -122.42),  # California (San Francisco Bay Area)
}

# GCP a3-highgpu-8g (8 x H100 80GB) on-demand USD per hour, from the same price file world.yaml cites
# (github.com/Cyclenerd/google-cloud-pricing-cost-calculator, pricing.yml "generated: Thu Mar 6 03:53:56
# 2025", commit 0166a59ebba7c36f2cc8c931d9f258dcebc44776, compute.instance.a3-highgpu-8g.cost.<r>.hour).
GCP_A3_USD_PER_HOUR = {
    "africa-south1": 115.744935674521,
    "asia-east1": 102.358780070575,
    "asia-east2": 123.592088599233,
    "asia-northeast1": 126.643390632548,
    "asia-northeast2": 113.649246632548,
    "asia-northeast3": 113.649246632548,
    "asia-south1": 92.1347847438904,
    "asia-south2": 106.28463949589,
    "asia-southeast1": 114.278292967233,
    "asia-southeast2": 118.896688473644,
    "australia-southeast1": 110.678266832877,
    "australia-southeast2": 115.069909856877,
    "europe-central2": 113.95242432789,
    "europe-north1": 97.4356000232329,
    "europe-southwest1": 104.418201402959,
    "europe-west1": 97.3698465985753,
    "europe-west10": 136.274618707726,
    "europe-west12": 114.09291986389,
    "europe-west2": 100.91807079189,
    "europe-west3": 104.43135208789,
    "europe-west4": 112.540479175233,
    "europe-west6": 123.723595448548,
    "europe-west8": 102.648409134027,
    "europe-west9": 102.648409134027,
    "me-central1": 107.515357405589,
    "me-central2": 141.583993642521,
    "me-west1": 97.3390341992329,
    "northamerica-northeast1": 97.4356000232329,
    "northamerica-northeast2": 97.4356000232329,
    "southamerica-east1": 140.455452825863,
    "southamerica-west1": 126.540722164603,
    "us-central1": 88.4899999025753,
    "us-east1": 88.4899999025753,
    "us-east4": 88.5557561512329,
    "us-east5": 99.5832010145753,
    "us-south1": 104.418201402959,
    "us-west1": 88.4899999025753,
    "us-west2": 106.37242120789,
    "us-west3": 106.37242120789,
    "us-west4": 99.6489544392329,
}
# GCP regions without an A3 price: us-central1's A3 price x the region's multiplier, the ratio of the
# c3d-highmem-16 prices (same file): northamerica-south1 1.0679384 / 0.97976 = 1.0900 (world.yaml's Mexico
# figure), europe-north2 (Stockholm) 1.028748 / 0.97976 = 1.0500.
GCP_MULTIPLIER = {"northamerica-south1": 1.0679384 / 0.97976, "europe-north2": 1.028748 / 0.97976}

# Country grid carbon intensity, 2023, lifecycle gCO2e/kWh (Ember). "owid": read from Our World in Data's
# "Carbon intensity of electricity generation" table, 2023 column (Ember and Energy Institute); "memory":
# our recollection of the same column, not re-read here (re-check); HK: no Ember figure, China's stands in.
CARBON_G_PER_KWH: dict[str, tuple[float, str]] = {
    "AE": (492.0, "memory"),
    "AT": (111.0, "owid"),
    "AU": (549.0, "owid"),
    "BE": (138.0, "owid"),
    "BR": (98.0, "owid"),
    "CA": (170.0, "owid"),
    "CH": (35.0, "memory"),
    "CL": (291.0, "owid"),
    "DK": (152.0, "owid"),
    "ES": (174.0, "memory"),
    "HK": (582.0, "owid: China"),
    "ID": (676.0, "memory"),
    "IE": (291.0, "owid"),
    "IL": (583.0, "memory"),
    "IN": (713.0, "owid"),
    "IT": (331.0, "memory"),
    "JP": (485.0, "memory"),
    "KR": (432.0, "memory"),
    "MY": (607.0, "memory"),
    "NL": (268.0, "memory"),
    "NO": (30.0, "memory"),
    "NZ": (112.0, "memory"),
    "PL": (662.0, "memory"),
    "QA": (602.0, "memory"),
    "SE": (41.0, "memory"),
    "SG": (471.0, "memory"),
    "US": (369.0, "memory"),
    "ZA": (708.0, "memory"),
}

# GCP region locations (the city of each region's data centres, from Google's region list), for "the
# nearest GCP region": every region of the price file's A3 list, and the two priced by a multiplier.
GCP_PLACES = {
    "africa-south1": (-26.20, 28.05),  # Johannesburg
    "asia-east1": (24.07, 120.54),  # Changhua County, Taiwan
    "asia-east2": (22.32, 114.17),  # Hong Kong
    "asia-northeast1": (35.68, 139.69),  # Tokyo
    "asia-northeast2": (34.69, 135.50),  # Osaka
    "asia-northeast3": (37.57, 126.98),  # Seoul
    "asia-south1": (19.08, 72.88),  # Mumbai
    "asia-south2": (28.61, 77.21),  # Delhi
    "asia-southeast1": (1.35, 103.82),  # Singapore
    "asia-southeast2": (-6.21, 106.85),  # Jakarta
    "australia-southeast1": (-33.87, 151.21),  # Sydney
    "australia-southeast2": (-37.81, 144.96),  # Melbourne
    "europe-central2": (52.23, 21.01),  # Warsaw
    "europe-north1": (60.57, 27.19),  # Hamina
    "europe-north2": (59.33, 18.07),  # Stockholm
    "europe-southwest1": (40.42, -3.70),  # Madrid
    "europe-west1": (50.47, 3.82),  # St. Ghislain
    "europe-west10": (52.52, 13.40),  # Berlin
    "europe-west12": (45.07, 7.69),  # Turin
    "europe-west2": (51.51, -0.13),  # London
    "europe-west3": (50.11, 8.68),  # Frankfurt
    "europe-west4": (53.44, 6.83),  # Eemshaven
    "europe-west6": (47.38, 8.54),  # Zurich
    "europe-west8": (45.46, 9.19),  # Milan
    "europe-west9": (48.86, 2.35),  # Paris
    "me-central1": (25.29, 51.53),  # Doha
    "me-central2": (26.43, 50.10),  # Dammam
    "me-west1": (32.08, 34.78),  # Tel Aviv
    "northamerica-northeast1": (45.50, -73.57),  # Montréal
    "northamerica-northeast2": (43.65, -79.38),  # Toronto
    "northamerica-south1": (20.59, -100.39),  # Querétaro
    "southamerica-east1": (-23.53, -46.79),  # Osasco (São Paulo)
    "southamerica-west1": (-33.45, -70.67),  # Santiago
    "us-central1": (41.26, -95.86),  # Council Bluffs, Iowa
    "us-east1": (33.20, -80.01),  # Moncks Corner, South Carolina
    "us-east4": (39.04, -77.49),  # Ashburn, Virginia
    "us-east5": (39.96, -83.00),  # Columbus, Ohio
    "us-south1": (32.78, -96.80),  # Dallas
    "us-west1": (45.60, -121.18),  # The Dalles, Oregon
    "us-west2": (34.05, -118.24),  # Los Angeles
    "us-west3": (40.76, -111.89),  # Salt Lake City
    "us-west4": (36.17, -115.14),  # Las Vegas
}


@dataclass(frozen=True)
class PopulationSpec:
    id: str
    name: str
    lat: float
    lon: float
    tz: str
    servers: tuple[str, ...]  # WonderProxy server(s); several: median over them (no server in the city)
    metro_m: float  # UN World Urbanization Prospects 2018, urban agglomeration, 2020, millions
    internet_pct: float  # ITU, individuals using the Internet, about 2022
    factor: float  # LLM-usage factor by World Bank income group FY2024: high 1.0, upper-middle 0.5, lower-middle 0.3


# world.yaml's 22 populations (coordinates, tz and name are read from world.yaml; the weights' inputs and the
# servers are SOURCES.md's table), then the 38 added for the global world (figures quoted from memory like
# SOURCES.md's, +- a few per cent).
EXISTING_POPULATIONS: dict[str, tuple[tuple[str, ...], float, float, float]] = {
    "london": (("London",), 9.30, 97, 1.0),
    "paris": (("Paris",), 11.02, 85, 1.0),
    "berlin": (("Falkenstein", "Hamburg", "Prague"), 3.56, 91, 1.0),
    "madrid": (("Madrid",), 6.62, 94, 1.0),
    "milan": (("Milan",), 3.14, 85, 1.0),
    "warsaw": (("Warsaw",), 1.78, 87, 1.0),
    "istanbul": (("Istanbul",), 15.19, 83, 0.5),
    "riyadh": (("Riyadh",), 7.23, 100, 1.0),
    "lagos": (("Lagos",), 14.37, 55, 0.3),
    "johannesburg": (("Johannesburg",), 5.93, 72, 0.5),
    "new_york": (("NewYork",), 18.80, 92, 1.0),
    "los_angeles": (("LosAngeles",), 12.45, 92, 1.0),
    "dallas": (("Dallas",), 6.30, 92, 1.0),
    "mexico_city": (("Mexico",), 21.78, 76, 0.5),
    "sao_paulo": (("SaoPaulo",), 22.04, 81, 0.5),
    "mumbai": (("Pune", "Indore", "Hyderabad"), 20.41, 46, 0.3),
    "bangkok": (("Bangkok",), 10.54, 88, 0.5),
    "singapore": (("Singapore",), 5.94, 96, 1.0),
    "jakarta": (("Jakarta",), 10.77, 66, 0.5),
    "manila": (("Manila",), 13.92, 73, 0.3),
    "kuala_lumpur": (("Malaysia",), 8.00, 97, 0.5),
    "tokyo": (("Tokyo",), 37.39, 84, 1.0),
}
# fmt: off
NEW_POPULATIONS: tuple[PopulationSpec, ...] = (
    # Europe
    PopulationSpec("amsterdam", "Amsterdam", 52.37, 4.90, "Europe/Amsterdam", ("Amsterdam",), 1.16, 93, 1.0),
    PopulationSpec("brussels", "Brussels", 50.85, 4.35, "Europe/Brussels", ("Brussels",), 2.08, 94, 1.0),
    PopulationSpec("vienna", "Vienna", 48.21, 16.37, "Europe/Vienna", ("Vienna",), 1.92, 93, 1.0),
    PopulationSpec("zurich", "Zurich", 47.38, 8.54, "Europe/Zurich", ("Zurich",), 1.40, 96, 1.0),
    PopulationSpec("stockholm", "Stockholm", 59.33, 18.07, "Europe/Stockholm", ("Stockholm",), 1.63, 95, 1.0),
    PopulationSpec("copenhagen", "Copenhagen", 55.68, 12.57, "Europe/Copenhagen", ("Copenhagen",), 1.35, 98, 1.0),
    PopulationSpec("dublin", "Dublin", 53.35, -6.26, "Europe/Dublin", ("Dublin",), 1.23, 95, 1.0),
    # Rome: the "Rome" server pings Milan in 1.3 ms, under the 4.7 ms fiber floor of 477 km (it is not in
    # Rome), so Rome is treated as a city without a server: median over its 3 nearest, as Berlin and Mumbai.
    PopulationSpec("rome", "Rome", 41.90, 12.50, "Europe/Rome", ("Rome", "Frosinone", "Arezzo"), 4.26, 85, 1.0),
    # Middle East
    PopulationSpec("dubai", "Dubai", 25.20, 55.27, "Asia/Dubai", ("Dubai",), 2.92, 100, 1.0),
    PopulationSpec("tel_aviv", "Tel Aviv", 32.08, 34.78, "Asia/Jerusalem", ("TelAviv",), 4.18, 90, 1.0),
    # Africa
    PopulationSpec("cairo", "Cairo", 30.04, 31.24, "Africa/Cairo", ("Cairo",), 20.90, 72, 0.3),
    PopulationSpec("nairobi", "Nairobi", -1.29, 36.82, "Africa/Nairobi", ("Nairobi",), 4.73, 40, 0.3),
    PopulationSpec("accra", "Accra", 5.60, -0.19, "Africa/Accra", ("Accra",), 2.51, 69, 0.3),
    PopulationSpec("cape_town", "Cape Town", -33.92, 18.42, "Africa/Johannesburg", ("CapeTown",), 4.62, 72, 0.5),
    # Asia
    PopulationSpec("delhi", "Delhi", 28.61, 77.21, "Asia/Kolkata", ("NewDelhi",), 30.29, 46, 0.3),
    PopulationSpec("bangalore", "Bangalore", 12.97, 77.59, "Asia/Kolkata", ("Bangalore",), 12.33, 46, 0.3),
    PopulationSpec("hyderabad", "Hyderabad", 17.39, 78.49, "Asia/Kolkata", ("Hyderabad",), 10.00, 46, 0.3),
    PopulationSpec("lahore", "Lahore", 31.55, 74.34, "Asia/Karachi", ("Lahore",), 12.64, 33, 0.3),
    PopulationSpec("dhaka", "Dhaka", 23.81, 90.41, "Asia/Dhaka", ("Dhaka",), 21.01, 39, 0.3),
    PopulationSpec("seoul", "Seoul", 37.57, 126.98, "Asia/Seoul", ("Seoul",), 9.96, 97, 1.0),
    PopulationSpec("osaka", "Osaka", 34.69, 135.50, "Asia/Tokyo", ("Osaka",), 19.17, 84, 1.0),
    PopulationSpec("hong_kong", "Hong Kong", 22.32, 114.17, "Asia/Hong_Kong", ("HongKong",), 7.55, 96, 1.0),
    PopulationSpec("taipei", "Taipei", 25.03, 121.57, "Asia/Taipei", ("Taipei",), 2.72, 90, 1.0),
    PopulationSpec("ho_chi_minh_city", "Ho Chi Minh City", 10.82, 106.63, "Asia/Ho_Chi_Minh", ("HoChiMinhCity",), 8.60, 79, 0.3),  # noqa: E501
    # Oceania
    PopulationSpec("sydney", "Sydney", -33.87, 151.21, "Australia/Sydney", ("Sydney",), 4.93, 96, 1.0),
    PopulationSpec("melbourne", "Melbourne", -37.81, 144.96, "Australia/Melbourne", ("Melbourne",), 4.97, 96, 1.0),
    PopulationSpec("auckland", "Auckland", -36.85, 174.76, "Pacific/Auckland", ("Auckland",), 1.61, 96, 1.0),
    # North America
    PopulationSpec("toronto", "Toronto", 43.65, -79.38, "America/Toronto", ("Toronto",), 6.20, 93, 1.0),
    PopulationSpec("chicago", "Chicago", 41.88, -87.63, "America/Chicago", ("Chicago",), 8.86, 92, 1.0),
    PopulationSpec("washington", "Washington", 38.91, -77.04, "America/New_York", ("Washington",), 5.32, 92, 1.0),
    PopulationSpec("miami", "Miami", 25.76, -80.19, "America/New_York", ("Miami",), 6.12, 92, 1.0),
    PopulationSpec("san_francisco", "San Francisco", 37.77, -122.42, "America/Los_Angeles", ("SanFrancisco",), 3.31, 92, 1.0),  # noqa: E501
    PopulationSpec("seattle", "Seattle", 47.61, -122.33, "America/Los_Angeles", ("Seattle",), 3.43, 92, 1.0),
    PopulationSpec("phoenix", "Phoenix", 33.45, -112.07, "America/Phoenix", ("Phoenix",), 4.65, 92, 1.0),
    # South America
    PopulationSpec("buenos_aires", "Buenos Aires", -34.60, -58.38, "America/Argentina/Buenos_Aires", ("BuenosAires",), 15.15, 88, 0.5),  # noqa: E501
    PopulationSpec("santiago", "Santiago", -33.45, -70.67, "America/Santiago", ("Santiago",), 6.77, 90, 1.0),
    PopulationSpec("bogota", "Bogotá", 4.71, -74.07, "America/Bogota", ("Bogota",), 10.98, 73, 0.5),
    PopulationSpec("lima", "Lima", -12.05, -77.04, "America/Lima", ("Lima",), 10.72, 75, 0.5),
)
# fmt: on


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
