"""emissions.json against its schema, emissions.csv against codecarbon's own layout."""

from __future__ import annotations

import csv
import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from codecarbon.output_methods.emissions_data import EmissionsData
from codecarbon.output_methods.file import FileOutput

from co2gate import emissions
from co2gate.intensity import Location, resolve
from co2gate.measure.fake import FakeMeter
from co2gate.measure.interface import Component
from co2gate.runner import run_measured

# The 38 columns of codecarbon 3.3.2's emissions.csv, in order (FIELD-NOTES).
CODECARBON_HEADER = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
]


def schema() -> dict[str, Any]:
    text = resources.files("co2gate").joinpath("schemas/emissions.v1.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("out")
    child, outcomes = run_measured(
        ["true"], [lambda: FakeMeter({Component.CPU: 50.0, Component.RAM: 10.0})]
    )
    doc = emissions.build(
        child,
        outcomes,
        resolve(Location(country="USA", region="virginia", pue=1.2)),
        pue=1.2,
        labels=emissions.RunLabels("train", "training", requests=1000),
        ci=None,
    )
    emissions.write(out, doc)
    return doc, out


def test_the_schema_is_valid_and_shipped() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_emissions_json_validates(written: tuple[dict[str, Any], Path]) -> None:
    doc, out = written
    on_disk = json.loads((out / "emissions.json").read_text())
    assert on_disk == doc
    jsonschema.validate(on_disk, schema(), format_checker=jsonschema.FormatChecker())


def test_schema_rejects_a_broken_record(written: tuple[dict[str, Any], Path]) -> None:
    doc = json.loads(json.dumps(written[0]))
    doc["methods"]["cpu"] = "guess"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_emissions_follow_the_formula(written: tuple[dict[str, Any], Path]) -> None:
    doc, _ = written
    e = doc["energy_kwh"]
    assert e["total"] == pytest.approx(e["cpu"] + e["gpu"] + e["ram"], rel=1e-12)
    expected = e["total"] * doc["pue"] * doc["intensity_g_per_kwh"] / 1000
    assert doc["emissions_kg"] == pytest.approx(expected, rel=1e-12)
    assert doc["per_request_g"] == pytest.approx(doc["emissions_kg"] * 1000 / 1000, rel=1e-12)


def test_csv_has_exactly_codecarbons_header(written: tuple[dict[str, Any], Path]) -> None:
    _, out = written
    with (out / "emissions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CODECARBON_HEADER
    assert rows[0] == [f.name for f in dataclasses.fields(EmissionsData)]
    assert len(rows) == 2 and len(rows[1]) == 38


def test_csv_figures_use_codecarbons_conventions(written: tuple[dict[str, Any], Path]) -> None:
    doc, out = written
    with (out / "emissions.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    # codecarbon's energy columns include PUE; emissions.json's energy_kwh does not
    assert float(row["energy_consumed"]) == pytest.approx(doc["energy_kwh"]["total"] * 1.2)
    assert float(row["emissions"]) == pytest.approx(doc["emissions_kg"])
    assert (row["country_iso_code"], row["region"], row["pue"]) == ("USA", "virginia", "1.2")


def test_codecarbons_own_writer_accepts_our_file(written: tuple[dict[str, Any], Path]) -> None:
    """codecarbon appends to an existing emissions.csv only when the header is its own."""
    _, out = written
    row = emissions.csv_row(written[0])
    writer = FileOutput("emissions.csv", str(out), "append")
    data = EmissionsData(**row)
    assert writer.has_valid_headers(data)
    writer.out(data, data)
    with (out / "emissions.csv").open(newline="") as f:
        assert len(list(csv.reader(f))) == 3  # appended, not moved aside to a backup
