"""Water: the budget file's factors, litres per run (hand-computed), emissions.json, the ledger,
the water budget's gate and the report."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun

from co2gate import budget as budgets
from co2gate import emissions, fmt, report
from co2gate.app import gate
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import LedgerError, make_entry, parse_shard, valid_entry
from co2gate.model import Measurement, MeasurementError
from co2gate.water import WaterFactors, litres

PY = sys.executable
SOURCE = ".github/carbon-budget.yml"
BASE = """\
version: 1
annual_budget_kg: 500
allocations: {training: 0.7, inference: 0.3}
ledger: {backend: file, path: ledger}
"""


def parse(extra: str) -> budgets.Budget:
    return budgets.parse(BASE + extra, SOURCE)


def refused(extra: str) -> str:
    with pytest.raises(budgets.BudgetError) as e:
        parse(extra)
    return str(e.value)


# -- the budget file ---------------------------------------------------------------------------


def test_no_water_factor_means_no_water_figure() -> None:
    b = parse("location: {pue: 1.2}\n")
    assert not b.water.configured and b.water_budget_l is None
    assert litres(2.0, 1.2, b.water) is None


def test_the_factors_and_their_source_are_read() -> None:
    b = parse(
        "location:\n  pue: 1.2\n  wue_l_per_kwh: 1.8\n  source_water_l_per_kwh: 3.1\n"
        "  water_source: 'provider report 2024; WRI grid average'\n"
        "water_budget_l: 5000\n"
    )
    assert b.water == WaterFactors(1.8, 3.1, "provider report 2024; WRI grid average")
    assert b.water_budget_l == 5000.0
    assert b.location.pue == 1.2  # the carbon location is untouched


def test_factors_without_a_source_name_the_budget_file() -> None:
    b = parse("location: {wue_l_per_kwh: 0.5}\n")
    assert b.water == WaterFactors(0.5, None, f"set in {SOURCE} without a water_source")


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("location: {wue_l_per_kwh: -0.1}", "location.wue_l_per_kwh", "from 0 to 20"),
        ("location: {wue_l_per_kwh: 21}", "location.wue_l_per_kwh", "got 21"),
        ("location: {wue_l_per_kwh: '1.8'}", "location.wue_l_per_kwh", "got '1.8'"),
        ("location: {wue_l_per_kwh: .nan}", "location.wue_l_per_kwh", "litres per kWh"),
        ("location: {wue_l_per_kwh: true}", "location.wue_l_per_kwh", "got true"),
        ("location: {source_water_l_per_kwh: 101}", "location.source_water_l_per_kwh", "to 100"),
        ("location: {source_water_l_per_kwh: -1}", "location.source_water_l_per_kwh", "got -1"),
        ("location: {water_source: WRI}", "location.water_source", "not set"),
        ("location: {wue_l_per_kwh: 1, water_source: ''}", "location.water_source", "non-empty"),
        ("location: {wue_l_per_kwh: 1, water_source: 7}", "location.water_source", "got 7"),
        ("location: {wue: 1.8}", "location", "unknown key 'wue'"),
        ("water_budget_l: 100", "water_budget_l", "needs location.wue_l_per_kwh"),
        ("location: {wue_l_per_kwh: 1}\nwater_budget_l: 0", "water_budget_l", "> 0"),
        ("location: {wue_l_per_kwh: 1}\nwater_budget_l: -5", "water_budget_l", "> 0"),
        ("location: {wue_l_per_kwh: 1}\nwater_budget_l: lots", "water_budget_l", "got 'lots'"),
    ],
)
def test_bad_water_keys_are_refused_naming_the_key(extra: str, key: str, problem: str) -> None:
    message = refused(extra + "\n")
    assert message.startswith(f"{SOURCE}: {key}: "), message
    assert problem in message, message


def test_a_long_water_source_is_refused() -> None:
    assert "longer than 200" in refused(
        f"location: {{wue_l_per_kwh: 1, water_source: {'x' * 201}}}\n"
    )


def test_the_schema_knows_the_water_keys() -> None:
    schema = json.loads((Path(budgets.__file__).parent / "schemas" / "budget.v1.json").read_text())
    location = schema["properties"]["location"]["properties"]
    assert {"wue_l_per_kwh", "source_water_l_per_kwh", "water_source"} <= set(location)
    assert location["wue_l_per_kwh"]["maximum"] == 20
    assert "water_budget_l" in schema["properties"]


# -- litres ------------------------------------------------------------------------------------


def test_litres_on_site_per_it_kwh_and_off_site_per_facility_kwh() -> None:
    # 2 kWh drawn at PUE 1.2: on site 2 x 1.8 = 3.6 L; off site 2 x 1.2 x 3.1 = 7.44 L.
    w = litres(2.0, 1.2, WaterFactors(1.8, 3.1, "s"))
    assert w is not None
    assert w.onsite_l == pytest.approx(3.6)
    assert w.offsite_l == pytest.approx(7.44)
    assert w.water_l == pytest.approx(11.04)
    assert w.source == "s"


def test_either_factor_alone() -> None:
    onsite = litres(10.0, 1.5, WaterFactors(0.2, None, "s"))
    assert onsite is not None and onsite.offsite_l is None
    assert onsite.water_l == pytest.approx(2.0)  # PUE does not touch on-site WUE
    offsite = litres(10.0, 1.5, WaterFactors(None, 2.0, "s"))
    assert offsite is not None and offsite.onsite_l is None
    assert offsite.water_l == pytest.approx(30.0)  # 10 x 1.5 x 2


def test_a_zero_factor_is_a_figure_of_zero() -> None:
    w = litres(5.0, 1.0, WaterFactors(0.0, None, "dry cooling"))
    assert w is not None and w.water_l == 0.0


@pytest.mark.parametrize(("kwh", "pue"), [(-1.0, 1.0), (float("inf"), 1.0), (1.0, 0.5)])
def test_impossible_energy_is_refused(kwh: float, pue: float) -> None:
    with pytest.raises(ValueError):
        litres(kwh, pue, WaterFactors(1.0, None, "s"))


def test_fmt_water() -> None:
    assert fmt.water(11.04) == "11 L"
    assert fmt.water(0.85) == "850 mL"
    assert fmt.water(1500) == "1.5 m³"
    assert fmt.water(0) == "0 L"


# -- emissions.json ----------------------------------------------------------------------------


def record(kwh: float = 2.0, pue: float = 1.2, **extra: Any) -> dict[str, Any]:
    """An emissions.json of `kwh` (all CPU) at `pue` and 400 g/kWh."""
    return {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "w1",
            "label": "train",
            "workload": "training",
            "command": ["python", "train.py"],
            "exit_code": 0,
            "started_at": "2026-03-10T09:00:00.000+00:00",
            "ended_at": "2026-03-10T10:00:00.000+00:00",
            "duration_s": 3600.0,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": kwh, "gpu": 0.0, "ram": 0.0, "total": kwh},
        "power_w": {"cpu": kwh * 1000, "gpu": 0.0, "ram": 0.0},
        "methods": {"cpu": "rapl", "gpu": "none", "ram": "none"},
        "pue": pue,
        "intensity_g_per_kwh": 400.0,
        "intensity_source": "a test",
        "emissions_kg": kwh * pue * 0.4,
        "gpus": [],
        "requests": None,
        "per_request_g": None,
        "ci": None,
        **extra,
    }


WATER = {
    "water_l": 11.04,
    "water": {
        "onsite_l": 3.6,
        "offsite_l": 7.44,
        "wue_l_per_kwh": 1.8,
        "source_water_l_per_kwh": 3.1,
        "source": "provider report",
    },
}


def test_emissions_json_round_trips_water() -> None:
    m = Measurement.from_json(record(**WATER), "e.json")
    assert m.water is not None and m.water.water_l == 11.04
    again = m.to_json()
    assert again["water_l"] == 11.04 and again["water"] == WATER["water"]
    assert Measurement.from_json(again, "again") == m


def test_emissions_json_without_water_has_no_water_keys() -> None:
    m = Measurement.from_json(record(), "e.json")
    assert m.water is None
    assert "water_l" not in m.to_json() and "water" not in m.to_json()


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"water_l": 12.0}, "water_l", "is not onsite_l + offsite_l"),
        ({"water_l": -1.0}, "water_l", "from 0"),
        ({"water_l": "11"}, "water_l", "not a number"),
        ({"water_l": None}, "water_l", "missing"),
        ({"water": None}, "water", "missing"),
        ({"water": dict(WATER["water"], source="")}, "water.source", "empty"),
        ({"water": dict(WATER["water"], onsite_l=None, offsite_l=None)}, "water", "neither"),
        ({"water": dict(WATER["water"], wue_l_per_kwh=25)}, "water.wue_l_per_kwh", "to 20"),
    ],
)
def test_a_bad_water_block_is_refused(change: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(MeasurementError) as e:
        Measurement.from_json(record(**(WATER | change)), "e.json")
    assert f"e.json: {field}: " in str(e.value) and problem in str(e.value), str(e.value)


def test_the_csv_row_carries_litres_and_wue() -> None:
    m = Measurement.from_json(record(**WATER), "e.json")
    row = emissions.csv_row(m)
    assert row["water_consumed"] == 11.04 and row["wue"] == 1.8
    assert emissions.csv_row(Measurement.from_json(record(), "e.json"))["water_consumed"] == 0.0


# -- the ledger and the gate -------------------------------------------------------------------


def measured(water_l: float | None, day: str = "2026-03-10", run_id: str = "1") -> Measurement:
    extra: dict[str, Any] = {}
    if water_l is not None:
        extra = {
            "water_l": water_l,
            "water": {
                "onsite_l": water_l,
                "offsite_l": None,
                "wue_l_per_kwh": water_l / 2.0,
                "source_water_l_per_kwh": None,
                "source": "test",
            },
        }
    doc = record(**extra)
    doc["run"] = doc["run"] | {"id": run_id, "ended_at": f"{day}T10:00:00.000+00:00"}
    return Measurement.from_json(doc, "e.json")


def test_the_ledger_entry_holds_the_litres() -> None:
    entry = make_entry(measured(4.0), "training")
    assert entry["water_l"] == 4.0
    assert "water_l" not in make_entry(measured(None), "training")


@pytest.mark.parametrize("bad", [-1.0, "4", True, float("nan"), 1e13])
def test_a_ledger_line_with_impossible_water_is_skipped(bad: Any) -> None:
    good = make_entry(measured(4.0), "training")
    with pytest.raises(LedgerError, match="water_l"):
        valid_entry(good | {"water_l": bad})
    line = json.dumps(good | {"water_l": bad, "key": good["key"]})
    assert parse_shard(line + "\n", "shard") == []
    assert parse_shard(json.dumps(good) + "\n", "shard")[0]["water_l"] == 4.0
    assert parse_shard(json.dumps(good | {"water_l": None}) + "\n", "shard")[0]["water_l"] is None


GATED = "location: {wue_l_per_kwh: 2.0, water_source: test}\nwater_budget_l: 100\n"


def decide(used_l: float, run_l: float | None, extra: str = GATED) -> budgets.Decision:
    b = parse(extra)
    before = budgets.decide(b, "training", 0.0, 1.0)
    decision, standing = budgets.decide_water(b, before, used_l, run_l)
    assert standing is not None and standing.after_l == used_l + (run_l or 0.0)
    return decision


def test_within_the_water_budget_passes() -> None:
    d = decide(50.0, 20.0)  # 70 of 100 L: under the 80 L warning line
    assert d.verdict is budgets.Verdict.PASS
    assert (
        "Water this budget year: 50 L before this run, this run's 20 L: 70 L of the 100 L"
        in (d.reasons[-1])
    )


def test_the_water_warning_line() -> None:
    d = decide(60.0, 20.0)  # 80 of 100 L: the 80% line exactly
    assert d.verdict is budgets.Verdict.WARN
    assert "water warning level (80 L)" in d.reasons[-1]


def test_over_the_water_budget_fails_with_a_reason() -> None:
    d = decide(90.0, 10.5)  # 100.5 L > 100 L
    assert d.verdict is budgets.Verdict.FAIL
    assert "That exceeds the 100 L water budget." in d.reasons


def test_on_exceed_warn_lets_water_through() -> None:
    d = decide(90.0, 10.5, GATED + "on_exceed: warn\n")
    assert d.verdict is budgets.Verdict.WARN
    assert any("on_exceed: warn" in r for r in d.reasons)


def test_a_run_without_a_figure_counts_none() -> None:
    d = decide(30.0, None)
    assert d.verdict is budgets.Verdict.PASS
    assert "this run has no water figure" in d.reasons[-1]


def test_without_a_water_budget_nothing_changes() -> None:
    b = parse("location: {wue_l_per_kwh: 2.0}\n")
    before = budgets.decide(b, "training", 0.0, 1.0)
    assert budgets.decide_water(b, before, 1e6, 1e6) == (before, None)


def test_the_gate_sums_the_years_litres_and_records_this_runs(tmp_path: Path) -> None:
    b = parse(GATED)
    ledger = FileLedger(tmp_path / "ledger")
    assert gate.gate(measured(40.0, "2026-01-05", "1"), b, ledger, record=True).recorded
    assert gate.gate(measured(30.0, "2026-02-05", "2"), b, ledger, record=True).recorded
    third = gate.gate(measured(35.0, "2026-03-10", "3"), b, ledger, record=True)
    assert third.water is not None
    assert third.water.used_before_l == 70.0 and third.water.after_l == 105.0
    assert third.decision.verdict is budgets.Verdict.FAIL  # 105 L > 100 L; carbon passes
    doc = third.to_json()
    assert doc["water_used_before_l"] == 70.0 and doc["water_run_l"] == 35.0
    assert doc["water_budget_l"] == 100.0 and doc["water_after_l"] == 105.0
    entries = ledger.entries(date(2026, 1, 1), date(2027, 1, 1))
    assert sorted(e["water_l"] for e in entries) == [30.0, 35.0, 40.0]
    # Re-gating the same run excludes it from "before": the same verdict, recorded once.
    again = gate.gate(measured(35.0, "2026-03-10", "3"), b, ledger, record=True)
    assert (
        again.water == third.water and len(ledger.entries(date(2026, 1, 1), date(2027, 1, 1))) == 3
    )


def test_a_measurement_without_water_takes_the_budget_files_factors() -> None:
    b = parse("location: {pue: 1.2, wue_l_per_kwh: 1.8, source_water_l_per_kwh: 3.1}\n")
    m = gate.with_water(measured(None), b)  # 2 kWh at PUE 1.2
    assert m.water is not None and m.water.water_l == pytest.approx(11.04)
    assert any("water from" in n for n in m.notes)
    own = measured(4.0)
    assert gate.with_water(own, b) is own  # its own figure stands


def test_the_comment_shows_the_litres_and_their_source(tmp_path: Path) -> None:
    m = Measurement.from_json(record(**WATER), "e.json")
    b = parse(GATED)
    gated = gate.gate(m, b, FileLedger(tmp_path / "l"), record=False)
    text = report.render("comment.md.j2", report.context(m, gated, b))
    assert (
        "**11 L of water** = 3.6 L on site (2 kWh x WUE 1.8 L/kWh) + 7.44 L off site, "
        "generating the power (2 kWh x PUE 1.2 x 3.1 L/kWh); factors: provider report."
        in text.replace("\N{MULTIPLICATION SIGN}", "x")
    )
    assert "11 L of the 100 L water budget" in text
    summary = report.render("summary.md.j2", report.context(m, gated, b))
    assert "**11 L of water**" in summary
    dry = report.render("comment.md.j2", report.context(dataclasses.replace(m, water=None)))
    assert "of water" not in dry


# -- end to end --------------------------------------------------------------------------------


def test_run_writes_litres_everywhere_and_gates_on_them(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the budget's file ledger, `ledger`, is relative to it
    budget = tmp_path / "budget.yml"
    budget.write_text(
        BASE + "location: {intensity: 1, pue: 1.5, wue_l_per_kwh: 20, source_water_l_per_kwh: 100,"
        " water_source: 'test factors'}\nwater_budget_l: 1e-9\n"
    )
    out = tmp_path / "out"
    result = co2gate(
        "run",
        "--budget-file",
        str(budget),
        "--out",
        str(out),
        "--",
        PY,
        "-c",
        "pass",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr  # carbon passes, water does not
    doc = json.loads((out / "emissions.json").read_text())
    kwh = doc["energy_kwh"]["total"]
    assert kwh > 0
    assert doc["water"]["onsite_l"] == pytest.approx(kwh * 20)
    assert doc["water"]["offsite_l"] == pytest.approx(kwh * 1.5 * 100)
    assert doc["water_l"] == pytest.approx(kwh * 170)
    assert doc["water"]["source"] == "test factors"
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["water_run_l"] == doc["water_l"]
    assert any("water budget" in r for r in verdict["reasons"])
    assert "of water" in (out / "report.md").read_text()
    ledger = tmp_path / "ledger"
    (entry,) = [json.loads(x) for f in ledger.rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert entry["water_l"] == doc["water_l"]
    badge = json.loads((ledger / "badges" / "training.json").read_text())
    assert badge["label"] == "CO2e training" and badge["color"] == "green"


def test_a_hostile_water_source_is_inert_in_the_comment(tmp_path: Path) -> None:
    hostile = "[click](https://evil.example) <img src=x onerror=alert(1)> @everyone **bold**"
    doc = record(**(WATER | {"water": dict(WATER["water"], source=hostile)}))
    m = Measurement.from_json(doc, "artifact/emissions.json")  # a fork's artifact
    text = report.render("comment.md.j2", report.context(m))
    line = next(x for x in text.splitlines() if "of water" in x)
    assert "[click](" not in line and "<img" not in line and "**bold**" not in line, line
    assert "@everyone" not in line, line
