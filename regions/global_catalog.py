"""The `global` world's catalogue: which regions and populations it has and the published figures behind
them (Azure regions with zones, GCP prices and multipliers, Ember carbon, UN/ITU population figures).
Data only; regions/build_global_world.py turns it into regions/global_world.yaml. Sources: regions/SOURCES.md,
section "The `global` world"."""

from __future__ import annotations

from dataclasses import dataclass

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
