"""A ~90% range on every figure: the method table, each conversion by hand, emissions.json's
ranges (old files read as [x, x]), codecarbon CSVs, the companion's re-pricing, the comment,
and `gate_on: upper` through `co2gate check`."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun

from co2gate import budget as budgets
from co2gate import emissions, fmt, report, uncertainty
from co2gate.app.companion import Adopted, priced
from co2gate.intensity import Location
from co2gate.labels import RunLabels
from co2gate.measure.interface import Component, Method
from co2gate.model import EnergyRange, Measurement, MeasurementError

DATA = Path(__file__).parent / "data" / "codecarbon"


def doc(**changes: Any) -> dict[str, Any]:
    """A crafted emissions.json: 35 g from 0.035 kWh of estimated CPU at 1000 g/kWh, PUE 1,
    with a range of 20-49 g; `changes` replace top-level keys (None: drop the key)."""
    base: dict[str, Any] = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "6f1c1c3e-4a57-4d0e-9a57-0c1f6f0b2a11",
            "label": "train",
            "workload": "training",
            "command": ["python", "train.py"],
            "exit_code": 0,
            "started_at": "2026-06-02T08:00:00.000+00:00",
            "ended_at": "2026-06-02T08:01:00.000+00:00",
            "duration_s": 60.0,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.035, "gpu": 0.0, "ram": 0.0, "total": 0.035},
        "power_w": {"cpu": 2100.0, "gpu": 0.0, "ram": 0.0},
        "methods": {"cpu": "tdp-load-estimate", "gpu": "none", "ram": "none"},
        "pue": 1.0,
        "intensity_g_per_kwh": 1000.0,
        "intensity_source": "given in the budget file",
        "emissions_kg": 0.035,
        "gpus": [],
        "requests": None,
        "per_request_g": None,
        "ci": None,
        "energy_kwh_range": {
            "cpu": [0.021, 0.049],
            "gpu": [0.0, 0.0],
            "ram": [0.0, 0.0],
            "total": [0.021, 0.049],
        },
        "emissions_kg_range": [0.020, 0.049],
    }
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def read(d: dict[str, Any]) -> Measurement:
    return Measurement.from_json(d, "emissions.json")


# ----------------------------------------------------------------- the table of methods


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
def test_every_method_has_a_width_and_a_source(method: Method) -> None:
    width = uncertainty.WIDTHS[method]
    assert 0 <= width.low <= 1 <= width.high
    assert width.source.strip()


def test_the_intensity_has_a_width_and_a_source() -> None:
    assert uncertainty.INTENSITY.low < 1 < uncertainty.INTENSITY.high
    assert "2022" in uncertainty.INTENSITY.source


def test_measured_methods_are_narrower_than_estimates() -> None:
    w = uncertainty.WIDTHS
    counter, sampling = w[Method.NVML_ENERGY_COUNTER], w[Method.NVML_POWER_SAMPLING]
    assert counter.high - counter.low < sampling.high - sampling.low
    assert w[Method.RAPL].high < w[Method.TDP_LOAD_ESTIMATE].high < w[Method.RAM_SIZE_ESTIMATE].high


# ----------------------------------------------------------------- conversions by hand


def test_a_ten_percent_width_on_2_kwh_at_400_g_and_pue_1_2() -> None:
    energy = uncertainty.energy_bounds(2.0, Method.FAKE)  # +-10%
    assert energy == pytest.approx((1.8, 2.2))
    low, high = uncertainty.emissions_bounds(energy, 1.2, 400.0)
    # 1.8 kWh x 1.2 x (400 x 0.7 = 280 g/kWh) = 604.8 g; 2.2 x 1.2 x (400 x 1.3 = 520) = 1372.8 g
    assert low == pytest.approx(0.6048)
    assert high == pytest.approx(1.3728)
    assert low < 2.0 * 1.2 * 400 / 1000 < high  # the estimate, 960 g, lies inside


def test_component_widths_by_hand_and_the_total_sums_them() -> None:
    gpu = uncertainty.energy_bounds(1.0, Method.NVML_ENERGY_COUNTER)  # +-5%
    ram = uncertainty.energy_bounds(0.1, Method.RAM_SIZE_ESTIMATE)  # -50% / +100%
    cpu = uncertainty.energy_bounds(0.5, Method.TDP_LOAD_ESTIMATE)  # +-40%
    assert gpu == pytest.approx((0.95, 1.05))
    assert ram == pytest.approx((0.05, 0.2))
    assert cpu == pytest.approx((0.3, 0.7))
    assert uncertainty.total_bounds([cpu, gpu, ram]) == pytest.approx((1.3, 1.95))


def test_no_device_and_a_user_constant_have_no_width() -> None:
    assert uncertainty.energy_bounds(0.0, Method.NONE) == (0.0, 0.0)
    assert uncertainty.energy_bounds(3.0, Method.USER_CONSTANT) == (3.0, 3.0)


@pytest.mark.parametrize(
    ("low", "high", "text"),
    [(0.020, 0.049, "20-49 g"), (0.8, 1.2, "800 g-1.2 kg"), (0.0, 0.0049, "0-4.9 g")],
)
def test_a_range_reads_in_one_unit_where_it_can(low: float, high: float, text: str) -> None:
    assert fmt.mass_range(low, high) == text


# ----------------------------------------------------------------- emissions.json


def test_a_file_without_ranges_reads_as_its_figures() -> None:
    m = read(doc(energy_kwh_range=None, emissions_kg_range=None))
    assert m.emissions_bounds == (0.035, 0.035)
    assert m.energy_bounds.total == (0.035, 0.035)
    assert m.energy_bounds.cpu == (0.035, 0.035) and m.energy_bounds.gpu == (0.0, 0.0)
    written = m.to_json()  # written back as it came: without ranges
    assert "emissions_kg_range" not in written and "energy_kwh_range" not in written
    assert read(written) == m


def test_ranges_round_trip() -> None:
    m = read(doc())
    assert m.emissions_kg_range == (0.020, 0.049)
    assert m.energy_kwh_range == EnergyRange(
        (0.021, 0.049), (0.0, 0.0), (0.0, 0.0), total=(0.021, 0.049)
    )
    assert read(m.to_json()) == m


def _bad_ranges() -> list[Any]:
    energy = doc()["energy_kwh_range"]
    low_over = copy.deepcopy(energy) | {"cpu": [0.04, 0.049]}
    no_total = {k: v for k, v in energy.items() if k != "total"}
    return [
        pytest.param({"emissions_kg_range": [0.04, 0.049]}, "does not hold", id="low-above"),
        pytest.param({"emissions_kg_range": [0.02, 0.03]}, "does not hold", id="high-below"),
        pytest.param({"emissions_kg_range": [math.nan, 0.049]}, "finite", id="nan-low"),
        pytest.param({"emissions_kg_range": [0.02, math.inf]}, "finite", id="inf-high"),
        pytest.param({"emissions_kg_range": [0.02, 0.03, 0.04]}, "more than 2", id="three"),
        pytest.param({"emissions_kg_range": [0.02]}, "not a pair", id="one"),
        pytest.param({"emissions_kg_range": "20-49 g"}, "not a list", id="text"),
        pytest.param({"emissions_kg_range": [-0.01, 0.049]}, "finite", id="negative"),
        pytest.param({"energy_kwh_range": low_over}, "energy_kwh_range.cpu", id="cpu-low-above"),
        pytest.param({"energy_kwh_range": no_total}, "missing", id="no-total"),
    ]


@pytest.mark.parametrize(("change", "said"), _bad_ranges())
def test_a_broken_range_is_refused_in_one_line(change: dict[str, Any], said: str) -> None:
    with pytest.raises(MeasurementError) as caught:
        read(doc(**change))
    message = str(caught.value)
    assert message.startswith("emissions.json: ") and said in message and "\n" not in message


def test_a_measured_run_carries_ranges_from_its_methods(co2gate: CliRun, tmp_path: Path) -> None:
    """Through the real CLI and codecarbon: each component's range is its method's width."""
    out = tmp_path / "out"
    result = co2gate("measure", "--out", str(out), "--intensity", "400", "--", "true")
    assert result.returncode == 0, result.stderr
    d = json.loads((out / "emissions.json").read_text())
    m = read(d)
    for component in Component:
        kwh = m.energy_kwh.of(component)
        width = uncertainty.WIDTHS[m.methods.of(component)]
        assert m.energy_bounds.of(component) == pytest.approx((kwh * width.low, kwh * width.high))
    low, high = m.emissions_bounds
    assert low <= m.emissions_kg <= high
    assert low == pytest.approx(m.energy_bounds.total[0] * m.pue * 400 * 0.7 / 1000)
    assert high == pytest.approx(m.energy_bounds.total[1] * m.pue * 400 * 1.3 / 1000)


# ----------------------------------------------------------------- codecarbon's CSV


@pytest.mark.parametrize(
    ("name", "method"),
    [("v3.3-2026.csv", Method.CODECARBON), ("v1.2-2021.csv", Method.CODECARBON_TOTAL)],
)
def test_a_codecarbon_csv_gets_its_methods_width(name: str, method: Method) -> None:
    m = emissions.read_measurement(DATA / name, RunLabels("train", "training"), None)
    assert m.methods.cpu is method
    width, grid = uncertainty.WIDTHS[method], uncertainty.INTENSITY
    total = m.energy_kwh.total
    assert m.energy_bounds.total == pytest.approx((total * width.low, total * width.high))
    assert m.emissions_bounds == pytest.approx(
        (m.emissions_kg * width.low * grid.low, m.emissions_kg * width.high * grid.high)
    )
    assert m.energy_bounds.total[0] < total < m.energy_bounds.total[1]


# ----------------------------------------------------------------- the companion's price


def test_the_companion_reprices_the_range_at_the_bases_price() -> None:
    m = read(doc())
    budget = budgets.Budget(
        annual_budget_kg=1.0,
        allocations={"training": 1.0},
        location=Location(intensity_g_per_kwh=200.0, pue=1.5),
    )
    (out,) = priced([Adopted(m, ())], budget)
    # 0.021 kWh x 1.5 x 140 g/kWh = 4.41 g; 0.049 x 1.5 x 260 = 19.11 g; the estimate 10.5 g
    assert out.measurement.emissions_kg == pytest.approx(0.0105)
    assert out.measurement.emissions_bounds == pytest.approx((0.00441, 0.01911))
    assert read(out.measurement.to_json()).emissions_bounds == out.measurement.emissions_bounds


# ----------------------------------------------------------------- the comment


def test_the_comment_shows_the_range_in_the_headline() -> None:
    text = report.render("comment.md.j2", report.context(read(doc())))
    assert "**35 g CO2e** (20-49 g, a ~90% range" in text


def test_the_comment_shows_no_range_for_a_file_without_one() -> None:
    m = read(doc(energy_kwh_range=None, emissions_kg_range=None))
    text = report.render("comment.md.j2", report.context(m))
    assert "**35 g CO2e** =" in text and "~90% range" not in text


# ----------------------------------------------------------------- gate_on


def budget_text(gate_on: str | None, limit: float = 0.04) -> str:
    return (
        "version: 1\nannual_budget_kg: 1\nallocations: {training: 0.7}\n"
        f"limits: {{training: {limit}}}\nlocation: {{intensity: 1000}}\n"
        "ledger: {backend: file, path: ledger}\n" + (f"gate_on: {gate_on}\n" if gate_on else "")
    )


def test_gate_on_defaults_to_the_estimate_and_refuses_other_words() -> None:
    assert budgets.parse(budget_text(None), "b.yml").gate_on is budgets.GateOn.ESTIMATE
    assert budgets.parse(budget_text("upper"), "b.yml").gate_on is budgets.GateOn.UPPER
    with pytest.raises(budgets.BudgetError, match="gate_on"):
        budgets.parse(budget_text("worst"), "b.yml")


def test_upper_checks_the_allocation_on_the_high_end() -> None:
    # 0.7 kg allocation, 0.6 kg used: the estimate 0.05 fits (0.65), the high end 0.2 does not
    kwargs: dict[str, Any] = {"run_range_kg": (0.03, 0.2)}
    b = budgets.parse(budget_text("estimate", limit=10), "b.yml")
    estimate = budgets.decide(b, "training", 0.6, 0.05, **kwargs)
    assert estimate.verdict is budgets.Verdict.WARN  # 0.65 is past 80% of 0.7
    assert any("high end" in r and "gate_on: estimate" in r for r in estimate.reasons)
    upper = budgets.decide(
        budgets.parse(budget_text("upper", limit=10), "b.yml"), "training", 0.6, 0.05, **kwargs
    )
    assert upper.verdict is budgets.Verdict.FAIL
    assert upper.run_kg == 0.05 and upper.after_kg == pytest.approx(0.65)  # recorded as is
    assert any("gate_on: upper" in r and "200 g" in r for r in upper.reasons)
    assert any("800 g" in r and "exceeds the 700 g training allocation" in r for r in upper.reasons)


def test_upper_without_a_range_gates_on_the_estimate() -> None:
    b = budgets.parse(budget_text("upper"), "b.yml")
    assert budgets.decide(b, "training", 0.0, 0.035).verdict is budgets.Verdict.PASS


@pytest.mark.parametrize(("gate_on", "code"), [(None, 0), ("estimate", 0), ("upper", 1)])
def test_check_with_gate_on_upper_fails_when_only_the_high_end_exceeds_the_limit(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gate_on: str | None, code: int
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(budget_text(gate_on))
    measured = tmp_path / "emissions.json"
    measured.write_text(json.dumps(doc()))
    result = co2gate("check", "--json", str(measured))
    assert result.returncode == code, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == ("fail" if code else "pass")
    assert verdict["run_kg"] == 0.035
    reasons = " ".join(verdict["reasons"])
    assert "35 g (20-49 g)" in reasons
    if code:
        assert "gate_on: upper" in reasons
        assert "The run's high end 49 g exceeds the 40 g limit for one training run." in reasons
    else:
        assert "The high end of the run's range, 49 g, exceeds the 40 g limit" in reasons
    comment = (tmp_path / "co2gate-report" / "report.md").read_text()
    assert "**35 g CO2e** (20-49 g" in comment
