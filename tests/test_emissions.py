"""emissions.json against its schema, emissions.csv against codecarbon's own layout."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import datetime, timezone
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
from co2gate.measure.interface import Component, Method
from co2gate.model import Measurement, MeasurementError
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
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Measurement, Path]:
    out = tmp_path_factory.mktemp("out")
    child, outcomes = run_measured(
        ["true"], [lambda: FakeMeter({Component.CPU: 50.0, Component.RAM: 10.0})]
    )
    m = emissions.build(
        child,
        outcomes,
        resolve(Location(country="USA", region="virginia", pue=1.2)),
        pue=1.2,
        labels=emissions.RunLabels("train", "training", requests=1000),
        ci=None,
    )
    emissions.write(out, m)
    return m, out


def test_the_schema_is_valid_and_shipped() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_emissions_json_validates(written: tuple[Measurement, Path]) -> None:
    m, out = written
    on_disk = json.loads((out / "emissions.json").read_text())
    assert on_disk == m.to_json()
    jsonschema.validate(on_disk, schema(), format_checker=jsonschema.FormatChecker())


def test_schema_rejects_a_broken_record(written: tuple[Measurement, Path]) -> None:
    doc = json.loads(json.dumps(written[0].to_json()))
    doc["methods"]["cpu"] = "guess"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_emissions_follow_the_formula(written: tuple[Measurement, Path]) -> None:
    doc = written[0].to_json()
    e = doc["energy_kwh"]
    assert e["total"] == pytest.approx(e["cpu"] + e["gpu"] + e["ram"], rel=1e-12)
    expected = e["total"] * doc["pue"] * doc["intensity_g_per_kwh"] / 1000
    assert doc["emissions_kg"] == pytest.approx(expected, rel=1e-12)
    assert doc["per_request_g"] == pytest.approx(doc["emissions_kg"] * 1000 / 1000, rel=1e-12)


def test_csv_has_exactly_codecarbons_header(written: tuple[Measurement, Path]) -> None:
    _, out = written
    with (out / "emissions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CODECARBON_HEADER
    assert rows[0] == [f.name for f in dataclasses.fields(EmissionsData)]
    assert len(rows) == 2 and len(rows[1]) == 38


def test_csv_figures_use_codecarbons_conventions(written: tuple[Measurement, Path]) -> None:
    m, out = written
    doc = m.to_json()
    with (out / "emissions.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    # codecarbon's energy columns include PUE; emissions.json's energy_kwh does not
    assert float(row["energy_consumed"]) == pytest.approx(doc["energy_kwh"]["total"] * 1.2)
    assert float(row["emissions"]) == pytest.approx(doc["emissions_kg"])
    assert (row["country_iso_code"], row["region"], row["pue"]) == ("USA", "virginia", "1.2")


def test_codecarbons_own_writer_accepts_our_file(written: tuple[Measurement, Path]) -> None:
    """codecarbon appends to an existing emissions.csv only when the header is its own."""
    _, out = written
    row = emissions.csv_row(written[0])
    writer = FileOutput("emissions.csv", str(out), "append")
    data = EmissionsData(**row)
    assert writer.has_valid_headers(data)
    writer.out(data, data)
    with (out / "emissions.csv").open(newline="") as f:
        assert len(list(csv.reader(f))) == 3  # appended, not moved aside to a backup


# ------------------------------------------------------------------ reading measurements back

CODECARBON_ROWS = (
    "timestamp,project_name,run_id,duration,emissions,cpu_energy,gpu_energy,ram_energy,pue\n"
    "2026-05-01T10:00:00,p,run-a,10,0.015,0.015,0.03,0.0075,1.5\n"
    "2026-05-01T10:00:10,p,run-a,20,0.030,0.03,0.06,0.015,1.5\n"  # cumulative: run-a's last
    "2026-05-01T11:00:00,p,run-b,10,0.006,0.015,0.0,0.0015,1.5\n"
)


def test_a_codecarbon_csv_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    path.write_text(CODECARBON_ROWS)
    m = emissions.read_measurement(path, emissions.RunLabels("serve", "inference", 100), None)
    # Device energy is codecarbon's columns over its PUE 1.5, run-a's last row plus run-b's:
    # cpu (0.03 + 0.015) / 1.5 = 0.03, gpu 0.06 / 1.5 = 0.04, ram (0.015 + 0.0015) / 1.5 = 0.011
    assert (m.energy_kwh.cpu, m.energy_kwh.gpu, m.energy_kwh.ram) == pytest.approx(
        (0.03, 0.04, 0.011), rel=1e-12
    )
    assert m.energy_kwh.total == pytest.approx(0.081, rel=1e-12)
    # 0.030 + 0.006 = 0.036 kg over 20 + 10 = 30 s at the file's PUE 1.5; codecarbon's price
    # of its energy with PUE: 0.036 kg x 1000 / (0.081 x 1.5 = 0.1215 kWh) = 296.296 g/kWh
    assert (m.emissions_kg, m.run.duration_s, m.pue) == pytest.approx((0.036, 30.0, 1.5))
    assert m.intensity_g_per_kwh == pytest.approx(296.2962963, rel=1e-9)
    # mean power: 0.03 kWh x 3.6e6 J/kWh / 30 s = 3,600 W; gpu 4,800 W; ram 1,320 W
    assert (m.power_w.cpu, m.power_w.gpu, m.power_w.ram) == pytest.approx((3600, 4800, 1320))
    # per request: 36 g / 100 = 0.36 g; 81 Wh / 100 = 0.81 Wh
    assert (m.per_request_g, m.per_request_wh) == pytest.approx((0.36, 0.81))
    assert set(m.methods.items()) == {(c, Method.CODECARBON) for c in Component}
    assert m.run.id == "run-a,run-b" and (m.run.label, m.run.workload) == ("serve", "inference")
    assert m.run.ended_at == datetime(2026, 5, 1, 11, tzinfo=timezone.utc)  # taken as UTC
    assert m.notes[0] == f"2 codecarbon run(s) from {path}" and m.sci is None
    assert "include the PUE it was given (1.5)" in m.notes[1] and len(m.notes) == 2
    assert Measurement.from_json(m.to_json(), "again") == m


@pytest.mark.parametrize(
    ("cell", "text", "said"),
    [
        ("emissions", "nan", "line 2: emissions 'nan' is not a number from 0 to 1e+09"),
        ("emissions", "inf", "line 2: emissions 'inf' is not a number"),
        ("emissions", "1e400", "line 2: emissions '1e400' is not a number"),
        ("cpu_energy", "-1", "line 2: cpu_energy '-1' is not a number"),
        ("duration", "ten", "line 2: duration 'ten' is not a number"),
        ("pue", "0.5", "line 2: pue 0.5 is below 1"),
        ("timestamp", "yesterday", "line 2: timestamp: 'yesterday' is not an ISO 8601 date"),
        ("timestamp", "9999-01-01T00:00:00", "line 2: timestamp: '9999-01-01T00:00:00' is not a"),
    ],
)
def test_a_broken_codecarbon_csv_is_refused_by_line_and_column(
    tmp_path: Path, cell: str, text: str, said: str
) -> None:
    row = {"timestamp": "2026-05-01T10:00:00", "run_id": "a", "duration": "1", "emissions": "0.001"}
    row |= {"cpu_energy": "0.002", "gpu_energy": "0", "ram_energy": "0.001", "pue": "1.0"}
    row[cell] = text
    columns = list(row)
    path = tmp_path / "emissions.csv"
    path.write_text(",".join(columns) + "\n" + ",".join(row[c] for c in columns) + "\n")
    with pytest.raises(MeasurementError) as caught:
        emissions.read_measurement(path, emissions.RunLabels("t", "training"), None)
    assert str(caught.value).startswith(f"{path}: ") and said in str(caught.value)


def test_a_csv_that_is_not_codecarbons_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "emissions.csv"
    labels = emissions.RunLabels("t", "training")
    for text, said in (
        ("timestamp,run_id,duration\n2026-05-01T10:00:00,a,1\n", "line 1: no emissions column"),
        ("timestamp,run_id,duration,emissions\n", "line 1: no cpu_energy or energy_consumed"),
        (CODECARBON_ROWS.split("\n")[0] + "\n", "no rows"),
        (CODECARBON_ROWS.replace("run-b", "run\0b"), "run.id: 'run-a,run\\\\x00b' holds a control"),
        (CODECARBON_ROWS.replace(",p,", ",p" + "x" * 200_000 + ","), "not a CSV codecarbon wrote"),
    ):
        path.write_text(text)
        with pytest.raises(MeasurementError, match=said):
            emissions.read_measurement(path, labels, None)
    path.write_text(CODECARBON_ROWS)
    with pytest.raises(
        MeasurementError, match=r"emissions\.csv: run\.label: 'a\\nb' is not a name"
    ):
        emissions.read_measurement(path, emissions.RunLabels("a\nb", "training"), None)


def test_emissions_json_reads_back_as_it_was_written(written: tuple[Measurement, Path]) -> None:
    m, out = written
    labels = emissions.RunLabels("ignored", "ignored")  # the file names its own
    assert emissions.read_measurement(out / "emissions.json", labels, None) == m


def refused(path: Path, text: str) -> str:
    path.write_text(text)
    with pytest.raises(MeasurementError) as caught:
        emissions.read_measurement(path, emissions.RunLabels("t", "training"), None)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not json at all", "not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("[" * 100_000 + "]" * 100_000, "not JSON co2gate reads: nested too deeply"),
        ('{"hello": 1}', "schema: missing: not a co2gate emissions.json"),
    ],
)
def test_what_is_not_an_emissions_json_is_one_line(tmp_path: Path, text: str, said: str) -> None:
    assert said in refused(tmp_path / "emissions.json", text)


@pytest.mark.parametrize(
    ("figure", "said"),
    [
        (str(10**400), "an integer of about 401 digits is not a finite number"),
        ("1e400", "inf is not a finite number"),  # Python's json reads it as infinity
        ("NaN", "nan is not a finite number"),
        ("-Infinity", "-inf is not a finite number"),
    ],
)
def test_a_figure_json_allows_and_co2gate_does_not_is_one_line(
    written: tuple[Measurement, Path], tmp_path: Path, figure: str, said: str
) -> None:
    text = json.dumps(written[0].to_json() | {"emissions_kg": "X"}).replace('"X"', figure)
    assert f"emissions_kg: {said}" in refused(tmp_path / "emissions.json", text)


def test_an_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = emissions.RunLabels("t", "training")
    with pytest.raises(MeasurementError, match=r"missing\.json: cannot read it: No such file"):
        emissions.read_measurement(tmp_path / "missing.json", labels, None)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"schema": "caf\xe9"}')
    with pytest.raises(MeasurementError, match=r"latin\.json: not UTF-8 text \(byte 15\)"):
        emissions.read_measurement(latin, labels, None)
    monkeypatch.setattr(emissions, "MAX_FILE_BYTES", 10)
    with pytest.raises(MeasurementError, match=r"latin\.json: larger than 10 bytes"):
        emissions.read_measurement(latin, labels, None)
