"""Grid intensity: codecarbon's own figures, location validation, and no codecarbon at validate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from co2gate import intensity as intensity_module
from co2gate.intensity import (
    AWS_REGIONS,
    AZURE_REGIONS,
    Intensity,
    Location,
    LocationError,
    resolve,
    validate,
)

DATA = intensity_module._data_dir()


def _data(relpath: str) -> dict[str, Any]:
    with open(DATA / relpath, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _codecarbon_private(country: str, region: str | None = None) -> float:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    geo = GeoMetadata(country_iso_code=country, region=region)
    kg = Emissions(DataSource()).get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    return float(kg) * 1000.0


def _codecarbon_gcp(region: str) -> float:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import CloudMetadata
    from codecarbon.input import DataSource

    cloud = CloudMetadata(provider="gcp", region=region)
    kg = Emissions(DataSource()).get_cloud_emissions(Energy.from_energy(kWh=1.0), cloud)
    return float(kg) * 1000.0


@pytest.mark.parametrize(
    ("location", "expected", "source"),
    [
        (Location(country="FRA"), lambda: _codecarbon_private("FRA"), "FRA, France (energy mix"),
        (Location(country="DEU"), lambda: _codecarbon_private("DEU"), "DEU, Germany"),
        (Location(country="IND"), lambda: _codecarbon_private("IND"), "IND, India"),
        (
            Location(country="USA", region="virginia"),
            lambda: _codecarbon_private("USA", "virginia"),
            "USA/virginia (EPA eGRID2023)",
        ),
        (
            Location(country="CAN", region="quebec"),
            lambda: _codecarbon_private("CAN", "quebec"),
            "CAN/quebec",
        ),
        (
            Location(country="CHN", region="Sichuan Province"),
            lambda: _codecarbon_private("CHN", "sichuan"),
            "CHN/sichuan province",
        ),
        (Location(country="SWE", region="SE3"), lambda: _codecarbon_private("SWE", "SE3"), "SE3"),
        (
            Location(cloud="gcp:us-central1"),
            lambda: _codecarbon_gcp("us-central1"),
            "gcp:us-central1 (Google Cloud region data)",
        ),
        (
            Location(cloud="aws:us-east-1"),
            lambda: _codecarbon_private("USA", "virginia"),
            "aws:us-east-1 -> USA/virginia (EPA eGRID2023)",
        ),
        (
            Location(cloud="azure:westeurope"),
            lambda: _codecarbon_private("NLD"),
            "azure:westeurope -> NLD, Netherlands",
        ),
    ],
)
def test_resolve_equals_codecarbons_figure(location: Location, expected: Any, source: str) -> None:
    got = resolve(location)
    assert got.g_per_kwh == pytest.approx(expected(), rel=1e-12)
    assert got.source.startswith(f"codecarbon {_codecarbon_version()}: ")
    assert source in got.source


def _codecarbon_version() -> str:
    from importlib.metadata import version

    return version("codecarbon")


@pytest.mark.parametrize(
    ("location", "national"),
    [
        (Location(country="USA", region="virginia"), "USA"),
        (Location(country="CAN", region="quebec"), "CAN"),
        (Location(country="CHN", region="sichuan"), "CHN"),
        (Location(country="SWE", region="se3"), "SWE"),
    ],
)
def test_region_is_not_the_national_fallback(location: Location, national: str) -> None:
    assert resolve(location).g_per_kwh != pytest.approx(
        resolve(Location(country=national)).g_per_kwh
    )


def test_real_tracker_gives_the_same_intensity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codecarbon import OfflineEmissionsTracker

    monkeypatch.chdir(tmp_path)  # keep any ./.codecarbon.config out of it
    monkeypatch.setenv("HOME", str(tmp_path))
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        region="virginia",
        output_methods=[],
        log_level="error",
        measure_power_secs=1000,
        force_cpu_power=100,
        pue=1.0,
    )
    tracker.start()
    time.sleep(0.3)
    assert tracker.stop() is not None
    data = tracker.final_emissions_data
    assert data.energy_consumed > 0
    got = resolve(Location(country="USA", region="virginia"))
    assert data.emissions / data.energy_consumed * 1000 == pytest.approx(got.g_per_kwh, rel=1e-9)
    assert (data.country_iso_code, data.country_name, data.region) == (
        got.country_iso_code,
        got.country_name,
        got.region,
    )


def test_hand_computed_lbs_per_mwh_conversion() -> None:
    lbs_per_mwh = _data("private_infra/2023/usa_emissions.json")["virginia"]["emissions"]
    # lb/MWh x 0.45359237 kg/lb / 1000 kWh/MWh x 1000 g/kg = g/kWh
    by_hand = lbs_per_mwh * 0.45359237 / 1000 * 1000
    assert resolve(Location(country="USA", region="virginia")).g_per_kwh == pytest.approx(
        by_hand, rel=1e-12
    )
    assert lbs_per_mwh == 539.599  # codecarbon 3.3.2's eGRID2023 figure, so:
    assert by_hand == pytest.approx(244.758, abs=5e-4)


def test_every_region_validate_accepts_gets_its_own_figure() -> None:
    from codecarbon.core.emissions import Emissions

    usa = _data("private_infra/2023/usa_emissions.json")
    for state, row in usa.items():
        if not state.startswith("_"):
            got = resolve(Location(country="USA", region=state)).g_per_kwh
            assert got == pytest.approx(row["emissions"] * 0.45359237, rel=1e-12), state
    for province, mix in _data("private_infra/2023/canada_energy_mix.json").items():
        rate = Emissions._region_energy_mix_to_emissions_rate(mix).kgs_per_kWh * 1000
        assert resolve(Location(country="CAN", region=province)).g_per_kwh == pytest.approx(
            rate, rel=1e-12
        )
    for province in _data("private_infra/2023/china_provincial_emissions.json")["data"].values():
        for name in province["names"]:
            got = resolve(Location(country="CHN", region=name)).g_per_kwh
            assert got == pytest.approx(province["emission_factor"], rel=1e-12), name
    zones = _data("private_infra/nordic_emissions.json")["data"]
    for country, names in intensity_module._NORDIC_ZONES.items():
        for zone in names:
            got = resolve(Location(country=country, region=zone.lower())).g_per_kwh
            assert got == pytest.approx(zones[zone]["emission_factor"], rel=1e-12), zone


def test_mirrors_of_codecarbon_internals_still_match() -> None:
    from codecarbon.core import emissions

    assert {k: set(v) for k, v in intensity_module._NORDIC_ZONES.items()} == (
        emissions._NORDIC_REGIONS_BY_COUNTRY
    )
    assert intensity_module._CHINA_SUFFIX.pattern == emissions._CHINA_REGION_SUFFIX.pattern


@pytest.mark.parametrize(("provider", "table"), [("aws", AWS_REGIONS), ("azure", AZURE_REGIONS)])
def test_every_cloud_table_entry_resolves(
    provider: str, table: dict[str, tuple[str, str | None]]
) -> None:
    assert len(table) >= 20
    for cloud_region, (country, region) in table.items():
        cloud = f"{provider}:{cloud_region}"
        assert validate(Location(cloud=cloud)).cloud == cloud
        place = validate(Location(country=country, region=region))
        got = resolve(Location(cloud=cloud))
        assert got.g_per_kwh == resolve(place).g_per_kwh, cloud
        assert (got.country_iso_code, got.region) == (country, region or "")
        assert (got.cloud_provider, got.cloud_region) == (provider, cloud_region)
        assert got.source.startswith(f"codecarbon {_codecarbon_version()}: {cloud} -> {country}")


def test_gcp_facts_match_codecarbons_cloud_data() -> None:
    from codecarbon.core.emissions import Emissions
    from codecarbon.external.geography import CloudMetadata
    from codecarbon.input import DataSource

    engine = Emissions(DataSource())
    cloud = CloudMetadata(provider="gcp", region="us-central1")
    got = resolve(Location(cloud="gcp:us-central1"))
    assert got.country_iso_code == engine.get_cloud_country_iso_code(cloud)
    assert got.country_name == engine.get_cloud_country_name(cloud)
    assert got.region == engine.get_cloud_geo_region(cloud) == "Iowa"
    assert (got.cloud_provider, got.cloud_region) == ("gcp", "us-central1")


def test_gcp_me_central1_reads_codecarbons_misspelt_row() -> None:
    got = resolve(Location(cloud="gcp:me-central1"))
    assert got.g_per_kwh == pytest.approx(_codecarbon_gcp("me-cenrtal1"), rel=1e-12)
    assert got.country_iso_code == "QAT"


def test_no_location_is_the_world_average_said_plainly() -> None:
    got = resolve(Location())
    assert got.g_per_kwh == 475
    assert "no location configured" in got.source
    assert "world average" in got.source
    assert got == Intensity(g_per_kwh=475.0, source=got.source)


def test_override_wins_and_keeps_the_location_facts() -> None:
    got = resolve(Location(country="DEU", intensity_g_per_kwh=123))
    assert got.g_per_kwh == 123.0
    assert got.source == "configured: 123 gCO2e/kWh"
    assert (got.country_iso_code, got.country_name) == ("DEU", "Germany")
    assert resolve(Location(intensity_g_per_kwh=0.5)).source == "configured: 0.5 gCO2e/kWh"


def test_validate_normalizes() -> None:
    assert validate(Location(country=" usa ", region=" West  Virginia ", pue=1)) == Location(
        country="USA", region="west virginia", pue=1.0
    )
    assert validate(Location(cloud=" AWS:US-EAST-1 ")).cloud == "aws:us-east-1"
    assert validate(Location(cloud="azure:East US 2")).cloud == "azure:eastus2"
    assert validate(Location(country="NOR", region="NO4")).region == "no4"


def test_cloud_with_an_agreeing_country_and_region_is_accepted() -> None:
    loc = validate(Location(country="usa", region="Virginia", cloud="aws:us-east-1"))
    assert (loc.country, loc.region, loc.cloud) == ("USA", "virginia", "aws:us-east-1")
    assert validate(Location(country="USA", cloud="gcp:us-central1")).country == "USA"


@pytest.mark.parametrize(
    ("location", "key", "words"),
    [
        (Location(country="XYZ"), "country", "unknown country 'XYZ'"),
        (Location(country="France"), "country", "did you mean 'FRA'"),
        (Location(country=""), "country", "empty"),
        (Location(country="USA", region="virgina"), "region", "did you mean 'virginia'"),
        (Location(country="DEU", region="bavaria"), "region", "not supported for DEU"),
        (Location(region="virginia"), "region", "needs a country; did you mean country USA"),
        (Location(country="CHN", region="tibet"), "region", "national figure"),
        (Location(country="SWE", region="se5"), "region", "valid: se1, se2, se3, se4"),
        (Location(cloud="gcp:us-centrl1"), "cloud", "did you mean 'us-central1'"),
        (Location(cloud="gcp:europe-north2"), "cloud", "set country and region instead"),
        (Location(cloud="ibm:x"), "cloud", "unknown cloud provider 'ibm'"),
        (Location(cloud="gcp"), "cloud", "not 'provider:region'"),
        (Location(cloud="aws:"), "cloud", "not 'provider:region'"),
        (Location(cloud="aws:us-east-9"), "cloud", "unknown AWS region"),
        (Location(cloud="azure:eastus9"), "cloud", "unknown Azure region"),
        (Location(country="DEU", cloud="aws:us-east-1"), "country", "which is in USA"),
        (Location(country="USA", region="ohio", cloud="aws:us-east-1"), "region", "virginia"),
        (Location(country="USA", region="iowa", cloud="gcp:us-central1"), "region", "GCP"),
        (Location(pue=0.9), "pue", "below 1"),
        (Location(pue=math.nan), "pue", "not a finite number"),
        (Location(pue=True), "pue", "not a number"),
        (Location(intensity_g_per_kwh=-1.0), "intensity", "negative"),
        (Location(intensity_g_per_kwh=math.inf), "intensity", "not a finite number"),
    ],
)
def test_bad_locations_are_refused_naming_the_key(location: Location, key: str, words: str) -> None:
    with pytest.raises(LocationError) as caught:
        validate(location)
    assert caught.value.key == key
    assert key in str(caught.value)
    assert words in str(caught.value)
    with pytest.raises(LocationError):
        resolve(location)


def test_validate_does_not_import_codecarbon_and_is_fast() -> None:
    script = (
        "import sys, time\n"
        "from co2gate.intensity import Location, validate\n"
        "t = time.perf_counter()\n"
        "validate(Location(country='usa', region='virginia', pue=1.2))\n"
        "validate(Location(country='CHN', region='sichuan'))\n"
        "validate(Location(cloud='gcp:us-central1'))\n"
        "validate(Location(cloud='azure:westeurope'))\n"
        "print(time.perf_counter() - t)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('codecarbon', 'pandas')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    seconds, modules = done.stdout.splitlines()
    print(f"validate() cold, four locations, fresh interpreter: {float(seconds) * 1000:.1f} ms")
    assert modules == "[]"
    assert float(seconds) < 0.1


def _gcp_regions() -> list[str]:
    import csv

    with open(DATA / "cloud" / "impact.csv", encoding="utf-8-sig", newline="") as f:
        return [row["region"] for row in csv.DictReader(f) if row["provider"] == "gcp"]


def test_every_gcp_region_equals_codecarbons_engine() -> None:
    # resolve() reads impact.csv's figure itself; codecarbon's engine reads it through pandas.
    regions = _gcp_regions()
    assert len(regions) >= 40
    for region in regions:
        key = "me-central1" if region == "me-cenrtal1" else region
        got = resolve(Location(cloud=f"gcp:{key}")).g_per_kwh
        assert got == pytest.approx(_codecarbon_gcp(region), rel=1e-12), region


def test_resolve_never_imports_pandas() -> None:
    # codecarbon's DataSource loads every table on first use, its CSVs through pandas (about
    # 0.5 s of CPU); resolve() reads only the JSON files the engine needs.
    script = (
        "import sys\n"
        "from co2gate.intensity import Location, low_carbon, resolve\n"
        "places = [Location(country='FRA'), Location(country='USA', region='virginia'),\n"
        "    Location(country='CAN', region='quebec'), Location(country='SWE', region='SE3'),\n"
        "    Location(country='CHN', region='sichuan'), Location(cloud='aws:us-east-1'),\n"
        "    Location(cloud='gcp:us-central1'), Location()]\n"
        "print(all(resolve(p).g_per_kwh > 0 for p in places), len(low_carbon()))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["True 3", "[]"]
