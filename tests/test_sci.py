"""SCI = (E x I + M) / R against figures computed by hand."""

from __future__ import annotations

import pytest

from co2gate.model import Measurement
from co2gate.sci import Embodied, embodied_kg, sci


def run_doc(kg: float, seconds: float, gpus: int, requests: int | None) -> Measurement:
    """A measured run with just the figures SCI reads."""
    doc = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "r",
            "label": "t",
            "workload": "training",
            "exit_code": 0,
            "started_at": "2026-01-01T00:00:00+00:00",
            "ended_at": "2026-01-01T01:00:00+00:00",
            "duration_s": seconds,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.0, "gpu": 0.0, "ram": 0.0, "total": 0.0},
        "power_w": {"cpu": 0.0, "gpu": 0.0, "ram": 0.0},
        "methods": {"cpu": "none", "gpu": "none", "ram": "none"},
        "pue": 1.0,
        "intensity_g_per_kwh": 0.0,
        "intensity_source": "test",
        "emissions_kg": kg,
        "gpus": [
            {"index": i, "name": "G", "energy_kwh": 0.0, "mean_power_w": 0.0} for i in range(gpus)
        ],
        "requests": requests,
    }
    return Measurement.from_json(doc, "test")


def test_embodied_share_of_a_lifetime_by_hand() -> None:
    # An 8-GPU node for one hour: (2,500 + 8 x 150) kg = 3,700 kg over 6 years
    # (6 x 365.25 x 86,400 = 189,345,600 s): 3,700 x 3,600 / 189,345,600 = 0.0703476 kg.
    assert embodied_kg(Embodied(), 3600.0, 8) == pytest.approx(0.0703476, rel=1e-5)
    # A quarter of a CPU server for a day: 2,500 x 0.25 x 86,400 / 189,345,600 = 0.285193 kg.
    quarter = Embodied(server_share=0.25)
    assert embodied_kg(quarter, 86_400.0, 0) == pytest.approx(0.285193, rel=1e-5)


def test_sci_per_request_by_hand() -> None:
    # 2 kg operational, 1 h on 8 GPUs (M = 0.0703476 kg), 10,000 requests:
    # (2 + 0.0703476) / 10,000 = 2.070348e-4 kg per request.
    block = sci(run_doc(2.0, 3600.0, 8, 10_000), Embodied())
    assert block.functional_unit == "request" and block.units == 10_000
    assert block.kg_per_unit == pytest.approx(2.070348e-4, rel=1e-5)
    assert block.embodied.gpus == 8
    assert block.embodied.time_share == pytest.approx(3600 / 189_345_600)


def test_sci_per_run_without_requests() -> None:
    # No requests: R is the run. 0.5 kg + a whole CPU server for 10 min:
    # 2,500 x 600 / 189,345,600 = 0.00792202 kg; SCI = 0.50792202 kg per run.
    block = sci(run_doc(0.5, 600.0, 0, None), Embodied())
    assert block.functional_unit == "run" and block.units == 1
    assert block.kg_per_unit == pytest.approx(0.50792202, rel=1e-6)
    assert block.operational_kg == 0.5


def test_the_budget_file_overrides_the_hardware_figures() -> None:
    from co2gate import budget as budgets

    text = "version: 1\nannual_budget_kg: 10\nallocations: {training: 1}\n"
    assert budgets.parse(text, "b.yml").embodied == Embodied()
    given = budgets.parse(text + "embodied: {gpu_kg: 200, server_share: 0.125}\n", "b.yml")
    assert given.embodied.gpu_kg == 200 and given.embodied.server_share == 0.125
    assert given.embodied.server_kg == 2500 and "overridden" in given.embodied.source
    for bad, key in (
        ("{gpu_kg: -1}", "embodied.gpu_kg"),
        ("{server_share: 2}", "embodied.server_share"),
        ("{lifetime_years: 0}", "embodied.lifetime_years"),
        ("{watts: 1}", "embodied"),
    ):
        with pytest.raises(budgets.BudgetError, match=key.replace(".", r"\.")):
            budgets.parse(text + f"embodied: {bad}\n", "b.yml")


def test_a_measured_run_carries_its_sci(co2gate, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import sys

    out = tmp_path / "out"
    result = co2gate(
        "measure",
        "--out",
        str(out),
        "--intensity",
        "400",
        "--requests",
        "8",
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "emissions.json").read_text())
    block = doc["sci"]
    assert block["functional_unit"] == "request" and block["units"] == 8
    # the block agrees with the rest of the file: (E x I + M) / R
    assert block["operational_kg"] == doc["emissions_kg"]
    expected = embodied_kg(Embodied(), doc["run"]["duration_s"], len(doc["gpus"]))
    assert block["embodied_kg"] == pytest.approx(expected)
    assert block["kg_per_unit"] == pytest.approx((doc["emissions_kg"] + expected) / 8)
    assert doc["per_request_wh"] == pytest.approx(doc["energy_kwh"]["total"] * 1000 / 8)
