"""Grid carbon intensity for the configured location, from codecarbon's bundled data.

`validate` checks a location against codecarbon's data files without importing codecarbon
(it runs before the user's command starts); `resolve` computes the figure with codecarbon's
own `Emissions` engine. A cloud region, when given, sets the location: `country` and
`region` may be given beside it only when they agree with where that cloud region is.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from co2gate.errors import InputError
from co2gate.units import MAX_INTENSITY_G_PER_KWH, PUE_MAX, PUE_MIN

__all__ = [
    "AWS_REGIONS",
    "AZURE_REGIONS",
    "LOW_CARBON",
    "Intensity",
    "Location",
    "LocationError",
    "low_carbon",
    "resolve",
    "validate",
]

# Where each AWS region is: (ISO 3166-1 alpha-3, codecarbon region or None).
# From AWS's public region list ("Regions and Availability Zones", docs.aws.amazon.com),
# which names each region's city or state; US states and Canadian provinces are spelled
# as in codecarbon's usa_emissions.json / canada_energy_mix.json.
AWS_REGIONS: Final[dict[str, tuple[str, str | None]]] = {
    # North America
    "us-east-1": ("USA", "virginia"),  # US East (N. Virginia)
    "us-east-2": ("USA", "ohio"),  # US East (Ohio)
    "us-west-1": ("USA", "california"),  # US West (N. California)
    "us-west-2": ("USA", "oregon"),  # US West (Oregon)
    "ca-central-1": ("CAN", "quebec"),  # Canada (Central), Montreal
    "ca-west-1": ("CAN", "alberta"),  # Canada West (Calgary)
    "mx-central-1": ("MEX", None),  # Mexico (Central), Queretaro
    # South America
    "sa-east-1": ("BRA", None),  # South America (Sao Paulo)
    # Europe
    "eu-west-1": ("IRL", None),  # Europe (Ireland)
    "eu-west-2": ("GBR", None),  # Europe (London)
    "eu-west-3": ("FRA", None),  # Europe (Paris)
    "eu-central-1": ("DEU", None),  # Europe (Frankfurt)
    "eu-central-2": ("CHE", None),  # Europe (Zurich)
    "eu-south-1": ("ITA", None),  # Europe (Milan)
    "eu-south-2": ("ESP", None),  # Europe (Spain), Aragon
    # Europe (Stockholm): the Stockholm/Malaren area lies in Swedish bidding zone SE3.
    "eu-north-1": ("SWE", "se3"),
    # Middle East and Africa
    "me-south-1": ("BHR", None),  # Middle East (Bahrain)
    "me-central-1": ("ARE", None),  # Middle East (UAE)
    "il-central-1": ("ISR", None),  # Israel (Tel Aviv)
    "af-south-1": ("ZAF", None),  # Africa (Cape Town)
    # Asia Pacific
    "ap-east-1": ("HKG", None),  # Asia Pacific (Hong Kong)
    "ap-south-1": ("IND", None),  # Asia Pacific (Mumbai)
    "ap-south-2": ("IND", None),  # Asia Pacific (Hyderabad)
    "ap-northeast-1": ("JPN", None),  # Asia Pacific (Tokyo)
    "ap-northeast-2": ("KOR", None),  # Asia Pacific (Seoul)
    "ap-northeast-3": ("JPN", None),  # Asia Pacific (Osaka)
    "ap-southeast-1": ("SGP", None),  # Asia Pacific (Singapore)
    "ap-southeast-2": ("AUS", None),  # Asia Pacific (Sydney)
    "ap-southeast-3": ("IDN", None),  # Asia Pacific (Jakarta)
    "ap-southeast-4": ("AUS", None),  # Asia Pacific (Melbourne)
    "ap-southeast-5": ("MYS", None),  # Asia Pacific (Malaysia)
    "ap-southeast-7": ("THA", None),  # Asia Pacific (Thailand)
}

# Where each Azure region is, keyed by its programmatic name (`az account list-locations`).
# From Microsoft's public list of Azure regions and their locations ("Azure geographies",
# azure.microsoft.com/explore/global-infrastructure/geographies).
AZURE_REGIONS: Final[dict[str, tuple[str, str | None]]] = {
    # United States
    "eastus": ("USA", "virginia"),
    "eastus2": ("USA", "virginia"),
    "centralus": ("USA", "iowa"),
    "northcentralus": ("USA", "illinois"),
    "southcentralus": ("USA", "texas"),
    "westcentralus": ("USA", "wyoming"),
    "westus": ("USA", "california"),
    "westus2": ("USA", "washington"),
    "westus3": ("USA", "arizona"),
    # Canada and Mexico
    "canadacentral": ("CAN", "ontario"),  # Toronto
    "canadaeast": ("CAN", "quebec"),  # Quebec City
    "mexicocentral": ("MEX", None),  # Queretaro
    # South America
    "brazilsouth": ("BRA", None),  # Sao Paulo State
    # Europe
    "northeurope": ("IRL", None),  # Ireland
    "westeurope": ("NLD", None),  # Netherlands
    "uksouth": ("GBR", None),  # London
    "ukwest": ("GBR", None),  # Cardiff
    "francecentral": ("FRA", None),  # Paris
    "francesouth": ("FRA", None),  # Marseille
    "germanywestcentral": ("DEU", None),  # Frankfurt
    "germanynorth": ("DEU", None),  # Berlin
    "switzerlandnorth": ("CHE", None),  # Zurich
    "switzerlandwest": ("CHE", None),  # Geneva
    "italynorth": ("ITA", None),  # Milan
    "polandcentral": ("POL", None),  # Warsaw
    "spaincentral": ("ESP", None),  # Madrid
    "norwayeast": ("NOR", "no1"),  # Oslo: bidding zone NO1
    "norwaywest": ("NOR", "no2"),  # Stavanger (Rogaland): bidding zone NO2
    "swedencentral": ("SWE", None),  # Gavle and Sandviken: zone not certain, country figure
    "swedensouth": ("SWE", "se4"),  # Staffanstorp near Malmo: bidding zone SE4
    # Middle East and Africa
    "uaenorth": ("ARE", None),  # Dubai
    "qatarcentral": ("QAT", None),  # Doha
    "israelcentral": ("ISR", None),
    "southafricanorth": ("ZAF", None),  # Johannesburg
    # Asia Pacific
    "eastasia": ("HKG", None),  # Hong Kong
    "southeastasia": ("SGP", None),  # Singapore
    "japaneast": ("JPN", None),  # Tokyo, Saitama
    "japanwest": ("JPN", None),  # Osaka
    "koreacentral": ("KOR", None),  # Seoul
    "koreasouth": ("KOR", None),  # Busan
    "centralindia": ("IND", None),  # Pune
    "southindia": ("IND", None),  # Chennai
    "westindia": ("IND", None),  # Mumbai
    "australiaeast": ("AUS", None),  # New South Wales
    "australiasoutheast": ("AUS", None),  # Victoria
    "australiacentral": ("AUS", None),  # Canberra
    "newzealandnorth": ("NZL", None),  # Auckland
}

_CLOUD_TABLES: Final[dict[str, dict[str, tuple[str, str | None]]]] = {
    "aws": AWS_REGIONS,
    "azure": AZURE_REGIONS,
}
_PROVIDER_NAMES: Final = {"gcp": "GCP", "aws": "AWS", "azure": "Azure"}

_GLOBAL_MIX: Final = "private_infra/global_energy_mix.json"
_PER_SOURCE: Final = "private_infra/carbon_intensity_per_source.json"
_USA: Final = "private_infra/2023/usa_emissions.json"
_CANADA: Final = "private_infra/2023/canada_energy_mix.json"
_CHINA: Final = "private_infra/2023/china_provincial_emissions.json"
_NORDIC: Final = "private_infra/nordic_emissions.json"
_GCP: Final = "cloud/impact.csv"

# The Nordic bidding zones codecarbon 3.3.2 looks up, by country
# (codecarbon.core.emissions._NORDIC_REGIONS_BY_COUNTRY).
_NORDIC_ZONES: Final = {
    "SWE": ("SE1", "SE2", "SE3", "SE4"),
    "NOR": ("NO1", "NO2", "NO3", "NO4", "NO5"),
    "FIN": ("FI",),
}
# The only countries codecarbon 3.3.2 resolves with sub-national data
# (codecarbon.core.emissions.Emissions.get_private_infra_emissions).
_REGIONAL_COUNTRIES: Final = ("USA", "CAN", "CHN", *_NORDIC_ZONES)
# codecarbon matches a Chinese province after dropping one of these suffixes
# (codecarbon.core.emissions._CHINA_REGION_SUFFIX).
_CHINA_SUFFIX: Final = re.compile(
    r"\s+(autonomous region|municipality|province|sheng|shi|zizhiqu)$"
)
# codecarbon 3.3.2's impact.csv spells GCP's Doha region (me-central1) "me-cenrtal1".
_GCP_DATA_ALIASES: Final = {"me-central1": "me-cenrtal1"}


@dataclass(frozen=True)
class Location:
    """Where the energy is used, as the budget file's `location:` gives it."""

    country: str | None = None
    region: str | None = None
    cloud: str | None = None
    intensity_g_per_kwh: float | None = None
    pue: float = 1.0


@dataclass(frozen=True)
class Intensity:
    """A grid carbon intensity, where it comes from, and the location facts emissions.csv needs."""

    g_per_kwh: float
    source: str
    country_iso_code: str = ""
    country_name: str = ""
    region: str = ""
    cloud_provider: str = ""
    cloud_region: str = ""


class LocationError(InputError, ValueError):
    """A `location:` value codecarbon's data cannot place; `key` names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@functools.cache
def _data_dir() -> Path:
    spec = importlib.util.find_spec("codecarbon")  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("codecarbon is not installed: its bundled grid data is needed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _json(relpath: str) -> dict[str, Any]:
    with open(_data_dir() / relpath, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


@functools.cache
def _gcp_rows() -> dict[str, dict[str, str]]:
    import csv

    with open(_data_dir() / _GCP, encoding="utf-8-sig", newline="") as f:
        return {row["region"]: row for row in csv.DictReader(f) if row["provider"] == "gcp"}


def _collapse(value: str) -> str:
    return " ".join(value.split()).lower()


def _china_key(region: str) -> str:
    return _CHINA_SUFFIX.sub("", _collapse(region))


@functools.cache
def _region_names(country: str) -> frozenset[str]:
    """The region names codecarbon resolves with sub-national data for a country."""
    if country == "USA":
        return frozenset(k for k in _json(_USA) if not k.startswith("_"))
    if country == "CAN":
        return frozenset(_json(_CANADA))
    if country == "CHN":
        provinces = _json(_CHINA)["data"].values()
        return frozenset(name for p in provinces for name in p["names"])
    if country in _NORDIC_ZONES:
        zones = _json(_NORDIC)["data"]
        return frozenset(z.lower() for z in _NORDIC_ZONES[country] if z in zones)
    return frozenset()


def _suggest(value: str, choices: Iterable[str]) -> str:
    import difflib

    names = sorted(choices)
    close = difflib.get_close_matches(value, names, n=2, cutoff=0.6)
    if len(names) <= 5:
        return "; valid: " + ", ".join(names)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return ""


def _fail(key: str, message: str) -> NoReturn:
    raise LocationError(key, message)


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        _fail(key, f"{key} {value!r} is not a string")
    if not value.strip():
        _fail(key, f"{key} {value!r} is empty; give a value or leave {key} out")
    return value


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"{key} {value!r} is not a number")
    if not math.isfinite(value):
        _fail(key, f"{key} {value!r} is not a finite number")
    return float(value)


def _check_country(raw: object) -> str:
    country = _string("country", raw).strip().upper()
    mix = _json(_GLOBAL_MIX)
    if country in mix:
        return country
    import difflib

    by_name = {_collapse(str(v["country_name"])): iso for iso, v in mix.items()}
    named = difflib.get_close_matches(_collapse(country), by_name, n=2, cutoff=0.75)
    coded = difflib.get_close_matches(country, mix, n=2, cutoff=0.6)
    hints = list(dict.fromkeys([by_name[n] for n in named] + coded))[:3]
    hint = ""
    if hints:
        names = [f"{iso!r} ({mix[iso]['country_name']})" for iso in hints]
        hint = "; did you mean " + " or ".join(names) + "?"
    _fail(
        "country",
        f"unknown country {raw!r}: not an ISO 3166-1 alpha-3 code in codecarbon's data{hint}",
    )


def _matches(region: str, country: str) -> bool:
    key = _china_key(region) if country == "CHN" else region
    return key in _region_names(country)


def _check_region(raw: object, country: str | None) -> str:
    region = _collapse(_string("region", raw))
    if country is None:
        homes = [c for c in _REGIONAL_COUNTRIES if _matches(region, c)]
        hint = f"; did you mean country {homes[0]}?" if homes else ""
        _fail("region", f"region {raw!r} needs a country{hint}")
    if country not in _REGIONAL_COUNTRIES:
        _fail(
            "region",
            f"region {raw!r} is not supported for {country}: codecarbon has sub-national data "
            f"only for {', '.join(_REGIONAL_COUNTRIES)}; remove region to use {country}'s "
            "national figure",
        )
    if not _matches(region, country):
        key = _china_key(region) if country == "CHN" else region
        hint = _suggest(key, _region_names(country))
        hint = hint or f"; remove region to use {country}'s national figure"
        _fail("region", f"unknown region {raw!r} for {country} in codecarbon's data{hint}")
    return region


def _check_cloud(raw: object) -> tuple[str, str]:
    text = _string("cloud", raw).strip().lower()
    provider, sep, region = text.partition(":")
    provider, region = provider.strip(), region.strip()
    if not sep or not provider or not region:
        _fail(
            "cloud",
            f"cloud {raw!r} is not 'provider:region' "
            "(e.g. 'gcp:us-central1', 'aws:us-east-1', 'azure:eastus')",
        )
    if provider not in _PROVIDER_NAMES:
        _fail(
            "cloud",
            f"unknown cloud provider {provider!r} in cloud {raw!r}: use gcp, aws or azure, "
            "or set country and region instead",
        )
    if provider == "azure":
        region = "".join(region.split())  # "East US" is the display name of "eastus"
    name = _PROVIDER_NAMES[provider]
    known: Mapping[str, object]
    if provider == "gcp":
        known = _gcp_rows()
        if _gcp_key(region) in known:
            return provider, region
        where = f"codecarbon has data for {len(known)} GCP regions"
    else:
        known = _CLOUD_TABLES[provider]
        if region in known:
            return provider, region
        where = f"co2gate maps {len(known)} {name} regions"
    _fail(
        "cloud",
        f"unknown {name} region {region!r} in cloud {raw!r}{_suggest(region, known)} ({where}; "
        "for another region set country and region instead)",
    )


def _gcp_key(region: str) -> str:
    """A GCP region's name in codecarbon's impact.csv."""
    return region if region in _gcp_rows() else _GCP_DATA_ALIASES.get(region, region)


def _cloud_place(provider: str, region: str) -> tuple[str, str | None]:
    """The (ISO3, codecarbon region) a validated cloud region lies in; region None for GCP."""
    if provider == "gcp":
        return _gcp_rows()[_gcp_key(region)]["countryIsoCode"], None
    return _CLOUD_TABLES[provider][region]


def validate(location: Location) -> Location:
    """Check a location against codecarbon's data and return it normalized; no codecarbon import."""
    pue = _number("pue", location.pue)
    if pue < PUE_MIN:
        _fail(
            "pue",
            f"pue {location.pue!r} is below 1: a data centre cannot use less than its IT load",
        )
    if pue > PUE_MAX:
        _fail("pue", f"pue {location.pue!r} is above {PUE_MAX:g}: no data centre wastes that much")
    intensity = location.intensity_g_per_kwh
    if intensity is not None:
        intensity = _number("intensity", intensity)
        if intensity < 0:
            _fail("intensity", f"intensity {location.intensity_g_per_kwh!r} gCO2e/kWh is negative")
        if intensity > MAX_INTENSITY_G_PER_KWH:
            _fail(
                "intensity",
                f"intensity {location.intensity_g_per_kwh!r} gCO2e/kWh is above "
                f"{MAX_INTENSITY_G_PER_KWH:g}, far beyond any grid",
            )
    country = None if location.country is None else _check_country(location.country)
    region = None if location.region is None else _check_region(location.region, country)
    cloud = None
    if location.cloud is not None:
        provider, cloud_region = _check_cloud(location.cloud)
        cloud = f"{provider}:{cloud_region}"
        at_country, at_region = _cloud_place(provider, cloud_region)
        if country is not None and country != at_country:
            _fail(
                "country",
                f"country {location.country!r} contradicts cloud {location.cloud!r}, which is in "
                f"{at_country}; remove country (the cloud region sets the location) or cloud",
            )
        if region is not None and provider == "gcp":
            _fail(
                "region",
                f"region {location.region!r} cannot be combined with cloud {location.cloud!r}: "
                "codecarbon's figure for a GCP region is per cloud region; remove region",
            )
        if region is not None and region != at_region:
            where = f"{at_country}/{at_region}" if at_region else f"{at_country} as a whole"
            _fail(
                "region",
                f"region {location.region!r} contradicts cloud {location.cloud!r}, which "
                f"co2gate places in {where}; remove region (the cloud region sets the "
                "location) or cloud",
            )
    return Location(
        country=country, region=region, cloud=cloud, intensity_g_per_kwh=intensity, pue=pue
    )


@dataclass(frozen=True)
class _Place:
    country: str = ""
    name: str = ""
    region: str = ""
    provider: str = ""
    cloud_region: str = ""
    gcp_key: str = ""  # the region's name in codecarbon's impact.csv


def _place(loc: Location) -> _Place:
    """Where a validated location is, in codecarbon's terms."""
    if loc.cloud is None:
        country = loc.country or ""
        return _Place(country, _country_name(country), loc.region or "")
    provider, _, cloud_region = loc.cloud.partition(":")
    if provider == "gcp":
        key = _gcp_key(cloud_region)
        row = _gcp_rows()[key]
        where = row["state"] or row["city"]
        return _Place(
            row["countryIsoCode"], row["country_name"], where, provider, cloud_region, key
        )
    country, region = _CLOUD_TABLES[provider][cloud_region]
    return _Place(country, _country_name(country), region or "", provider, cloud_region)


def _country_name(country: str) -> str:
    return str(_json(_GLOBAL_MIX)[country]["country_name"]) if country else ""


def _dataset(country: str, region: str) -> str:
    """How a source string names the codecarbon dataset a country/region figure comes from."""
    if not region:
        return f"energy mix {_json(_GLOBAL_MIX)[country]['year']}"
    if country == "USA":
        return str(_json(_USA).get("_source", {}).get("name", "US state data")).split(",")[0]
    if country == "CAN":
        return f"Canadian provincial energy mix {Path(_CANADA).parent.name}"
    if country == "CHN":
        return f"MEE/NBS provincial factors {_json(_CHINA)['metadata']['year']}, CO2 only"
    return f"Nordic bidding-zone factor {_json(_NORDIC)['data'][region.upper()]['year']}"


def _where(country: str, region: str) -> str:
    if not region:
        return f"{country}, {_country_name(country)}"
    return f"{country}/{region.upper() if country in _NORDIC_ZONES else region}"


def resolve(location: Location) -> Intensity:
    """Validate a location and compute its g/kWh with codecarbon's own Emissions engine."""
    loc = validate(location)
    place = _place(loc)

    def intensity(g_per_kwh: float, source: str) -> Intensity:
        return Intensity(
            g_per_kwh=g_per_kwh,
            source=source,
            country_iso_code=place.country,
            country_name=place.name,
            region=place.region,
            cloud_provider=place.provider,
            cloud_region=place.cloud_region,
        )

    if loc.intensity_g_per_kwh is not None:
        return intensity(
            loc.intensity_g_per_kwh, f"configured: {loc.intensity_g_per_kwh:.10g} gCO2e/kWh"
        )

    from importlib.metadata import version

    from co2gate.quiet import quiet_codecarbon

    quiet_codecarbon()
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    cc = f"codecarbon {version('codecarbon')}"
    engine = Emissions(_json_data_source(DataSource))
    one_kwh = Energy.from_energy(kWh=1.0)
    if place.gcp_key:
        # impact.csv's g/kWh, the figure codecarbon's engine reads (through pandas) for a GCP
        # region; tests/test_intensity.py holds every region to the engine's result.
        g_per_kwh = float(_gcp_rows()[place.gcp_key]["impact"])
        return intensity(g_per_kwh, f"{cc}: {loc.cloud} (Google Cloud region data)")
    if place.country:
        geo = GeoMetadata(
            country_iso_code=place.country, country_name=place.name, region=place.region or None
        )
        kg = engine.get_private_infra_emissions(one_kwh, geo)
        facts = f"{_where(place.country, place.region)} ({_dataset(place.country, place.region)})"
        via = f"{loc.cloud} -> " if place.provider else ""
        return intensity(float(kg) * 1000.0, f"{cc}: {via}{facts}")
    world = _json(_PER_SOURCE)["world_average"]
    source = (
        f"{cc}: world average, no location configured (IEA Global Energy & CO2 Status Report 2019)"
    )
    return intensity(float(world), source)


# The tables codecarbon's DataSource loads all at once on first use, the CSVs through pandas
# (about 0.5 s of CPU beside the command): the JSON files its engine reads for a country or a
# region, read one by one instead.
_SINGLE_FILES: Final = {
    "get_global_energy_mix_data": _GLOBAL_MIX,
    "get_carbon_intensity_per_source_data": _PER_SOURCE,
    "get_nordic_country_energy_mix_data": _NORDIC,
    "get_china_provincial_emissions_data": _CHINA,
}


def _json_data_source(data_source: type[Any]) -> Any:
    """codecarbon's DataSource, its whole-table getters reading their one JSON file each."""

    def getter(relpath: str) -> Any:
        return lambda _self: _json(relpath)

    methods = {name: getter(relpath) for name, relpath in _SINGLE_FILES.items()}
    return type("JsonDataSource", (data_source,), methods)()


# Places a CI job can run in whose grids codecarbon's data rates among the cleanest: cloud
# regions first (a runner can move there), then grids. The report shows the lowest few.
LOW_CARBON: Final = (
    Location(cloud="gcp:northamerica-northeast1"),  # Montreal: Quebec's hydro
    Location(cloud="gcp:europe-north1"),  # Hamina, Finland
    Location(country="SWE", region="SE1"),  # northern Sweden (AWS eu-north-1 is SE3)
    Location(country="NOR"),
    Location(country="CHE"),
    Location(country="FRA"),
)


@functools.cache
def low_carbon(n: int = 3) -> tuple[Intensity, ...]:
    """The `n` lowest intensities of LOW_CARBON, lowest first (codecarbon's data: once)."""
    return tuple(sorted((resolve(loc) for loc in LOW_CARBON), key=lambda i: i.g_per_kwh)[:n])
