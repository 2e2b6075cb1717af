"""The burn-down forecast (burndown.py): hand-computed paces and run-out days."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import CliRun

from co2gate import budget as budgets
from co2gate import report
from co2gate.app import gate
from co2gate.app.standing import BudgetRequest, budget_standing
from co2gate.burndown import HORIZON_DAYS, forecast
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import entry_key
from co2gate.model import Measurement

START, END = date(2026, 1, 1), date(2027, 1, 1)


def test_pace_is_the_used_kg_over_the_days_elapsed_today_included() -> None:
    # 1-10 January: 10 days; 50 kg / 10 = 5 kg a day; 100 kg last 20 days: the 20th is 20 Jan.
    b = forecast("training", 100.0, 50.0, START, END, date(2026, 1, 10))
    assert b.elapsed_days == 10
    assert b.pace_kg_per_day == 5.0
    assert b.runs_out_on == date(2026, 1, 20)
    assert b.before_year_end
    assert b.to_json() == {
        "pace_kg_per_day": 5.0,
        "pace_since": "2026-01-01",
        "runs_out_on": "2026-01-20",
        "runs_out_before_year_end": True,
    }


def test_a_fractional_day_runs_out_during_that_day() -> None:
    # 30 kg over 4 days = 7.5 kg a day; 100 / 7.5 = 13.33 days: during day 14, 14 January.
    b = forecast("training", 100.0, 30.0, START, END, date(2026, 1, 4))
    assert b.pace_kg_per_day == 7.5
    assert b.runs_out_on == date(2026, 1, 14)


def test_on_the_first_day_one_day_has_elapsed() -> None:
    b = forecast("training", 365.0, 2.0, START, END, START)
    assert b.elapsed_days == 1 and b.pace_kg_per_day == 2.0
    assert b.runs_out_on == date(2026, 7, 2)  # 182.5 days: day 183 of 2026


def test_a_pace_that_lasts_the_year_is_no_warning() -> None:
    # 1 July 2026 is day 182; 91 kg / 182 = 0.5 kg a day; 350 kg last 700 days: 2027-12-01.
    b = forecast("training", 350.0, 91.0, START, END, date(2026, 7, 1))
    assert b.pace_kg_per_day == 0.5
    assert b.runs_out_on == date(2027, 12, 1)
    assert not b.before_year_end
    assert b.to_json()["runs_out_before_year_end"] is False


def test_the_last_day_of_the_year_still_warns() -> None:
    # 365 days at 1 kg a day: the allocation is reached on 31 December, before the year ends.
    b = forecast("training", 365.0, 100.0, START, END, date(2026, 4, 10))
    assert b.elapsed_days == 100
    assert b.runs_out_on == date(2026, 12, 31) and b.before_year_end
    later = forecast("training", 366.0, 100.0, START, END, date(2026, 4, 10))
    assert later.runs_out_on == date(2027, 1, 1) and not later.before_year_end


def test_no_use_has_no_run_out_day() -> None:
    b = forecast("inference", 150.0, 0.0, START, END, date(2026, 5, 1))
    assert b.pace_kg_per_day == 0.0
    assert b.runs_out_on is None and not b.before_year_end
    assert b.to_json()["runs_out_on"] is None


def test_a_run_out_day_past_the_horizon_is_none() -> None:
    # 1 g over 10 days against 100 kg: 1,000,000 days away.
    b = forecast("training", 100.0, 0.001, START, END, date(2026, 1, 10))
    assert b.runs_out_on is None and not b.before_year_end
    just = forecast("training", HORIZON_DAYS - 1, 1.0, START, END, START)
    # day 3659: 2026-01-01 + 3658 days; ten years (two leap days) are 3652: 2036-01-07
    assert just.runs_out_on == date(2036, 1, 7)


def test_a_spent_allocation_ran_out_in_the_past() -> None:
    # 120 kg in 60 days: 2 kg a day; 100 kg were reached on day 50, 19 February.
    b = forecast("training", 100.0, 120.0, START, END, date(2026, 3, 1))
    assert b.runs_out_on == date(2026, 2, 19) and b.run_out and b.before_year_end


def test_a_zero_allocation_runs_out_on_the_first_day() -> None:
    b = forecast("shadow", 0.0, 1.0, START, END, date(2026, 2, 1))
    assert b.runs_out_on == START and b.before_year_end


def test_a_fiscal_year_counts_from_its_own_start() -> None:
    start, end = date(2026, 4, 1), date(2027, 4, 1)
    # 1 April to 30 April: 30 days; 60 kg: 2 kg a day; 350 kg last 175 days: 22 September.
    b = forecast("training", 350.0, 60.0, start, end, date(2026, 4, 30))
    assert b.pace_kg_per_day == 2.0 and b.runs_out_on == date(2026, 9, 22)


def test_today_outside_the_year_is_clamped_into_it() -> None:
    b = forecast("training", 100.0, 36.5, START, END, date(2027, 3, 1))
    assert b.elapsed_days == 365 and b.pace_kg_per_day == 0.1


@pytest.mark.parametrize(
    ("allocation", "used"), [(100.0, -1.0), (100.0, float("nan")), (-1.0, 1.0)]
)
def test_impossible_figures_are_refused(allocation: float, used: float) -> None:
    with pytest.raises(ValueError):
        forecast("training", allocation, used, START, END, START)


@pytest.mark.parametrize(
    ("used", "allocation", "today", "said"),
    [
        (0.0, 100.0, date(2026, 1, 10), "nothing used yet: no run-out date"),
        (
            50.0,
            100.0,
            date(2026, 1, 10),
            "warning: 5 kg a day: the allocation runs out on "
            "2026-01-20, before the budget year ends",
        ),
        (
            91.0,
            350.0,
            date(2026, 7, 1),
            "500 g a day: the allocation lasts the year (it would run out on 2027-12-01)",
        ),
        (120.0, 100.0, date(2026, 3, 1), "2 kg a day: the allocation is spent"),
        (0.001, 100.0, date(2026, 1, 10), "100 mg a day: the allocation lasts for years"),
    ],
)
def test_the_terminal_sentence(used: float, allocation: float, today: date, said: str) -> None:
    b = forecast("training", allocation, used, START, END, today)
    doc = {"used_kg": used, "allocation_kg": allocation} | b.to_json()
    assert report.burndown_sentence(doc) == said


# -- co2gate budget, the comment ---------------------------------------------------------------

BUDGET = """\
version: 1
annual_budget_kg: 200
allocations: {training: 0.5, inference: 0.25}
ledger: {backend: file, path: ledger}
"""


def seed(root: Path, *runs: tuple[str, str, float]) -> None:
    """Ledger entries (day, category, kg) in the file ledger at root/ledger."""
    ledger = FileLedger(root / "ledger")
    for n, (day, category, kg) in enumerate(runs):
        base = {
            "repository": "octo/lab",
            "run_id": f"{day}-{category}-{n}",
            "run_attempt": "1",
            "job": "train",
            "label": "train",
            "category": category,
            "emissions_kg": kg,
            "energy_kwh": 1.0,
            "duration_s": 1.0,
            "ended_at": f"{day}T12:00:00.000+00:00",
        }
        ledger.append({"key": entry_key(base)} | base)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "budget.yml").write_text(BUDGET)
    return tmp_path


def test_budget_json_gives_each_categorys_pace_and_run_out_day(repo: Path) -> None:
    # 1-20 January: 20 days. training 60 of 100 kg: 3 kg a day, out on day 34, 3 February.
    # inference 2 of 50 kg: 0.1 kg a day, 500 days: 2027-05-15, after the year.
    seed(repo, ("2026-01-05", "training", 25.0), ("2026-01-19", "training", 35.0))
    seed(repo, ("2026-01-10", "inference", 2.0))
    request = BudgetRequest(repo / "budget.yml", as_json=True)
    doc = json.loads(budget_standing(request, {}, date(2026, 1, 20)).stdout or "")
    training, inference = doc["categories"]
    assert training["pace_kg_per_day"] == 3.0
    assert training["runs_out_on"] == "2026-02-03"
    assert training["runs_out_before_year_end"] is True
    assert training["pace_since"] == "2026-01-01"
    assert inference["pace_kg_per_day"] == pytest.approx(0.1)
    assert inference["runs_out_on"] == "2027-05-15"
    assert inference["runs_out_before_year_end"] is False
    assert doc["as_of"] == "2026-01-20"
    assert doc["water_used_l"] is None and doc["water_budget_l"] is None


def test_budget_text_warns_of_a_run_out_before_the_year_ends(repo: Path) -> None:
    seed(repo, ("2026-01-05", "training", 25.0), ("2026-01-19", "training", 35.0))
    text = budget_standing(BudgetRequest(repo / "budget.yml"), {}, date(2026, 1, 20)).stdout or ""
    assert "at this year's pace (constant since 2026-01-01):" in text
    assert (
        "  training: warning: 3 kg a day: the allocation runs out on 2026-02-03, before the "
        "budget year ends" in text
    )
    assert "  inference: nothing used yet: no run-out date" in text


def test_budget_shows_the_years_water(repo: Path) -> None:
    (repo / "budget.yml").write_text(BUDGET + "location: {wue_l_per_kwh: 1}\nwater_budget_l: 40\n")
    ledger = FileLedger(repo / "ledger")
    base = {
        "repository": "o/r",
        "run_id": "w",
        "run_attempt": "1",
        "job": "j",
        "label": "l",
        "category": "training",
        "emissions_kg": 1.0,
        "energy_kwh": 10.0,
        "duration_s": 1.0,
        "ended_at": "2026-01-02T00:00:00.000+00:00",
        "water_l": 10.0,
    }
    ledger.append({"key": entry_key(base)} | base)
    text = budget_standing(BudgetRequest(repo / "budget.yml"), {}, date(2026, 1, 20)).stdout or ""
    assert "water: 10 L used this budget year of the 40 L water budget (25.0%)" in text
    request = BudgetRequest(repo / "budget.yml", as_json=True)
    doc = json.loads(budget_standing(request, {}, date(2026, 1, 20)).stdout or "")
    assert doc["water_used_l"] == 10.0 and doc["water_budget_l"] == 40.0


def test_the_cli_budget_json_has_the_forecast(co2gate: CliRun, repo: Path) -> None:
    today = date.today()
    start = date(today.year, 1, 1)
    seed(repo, (today.isoformat(), "training", 10.0))
    result = co2gate("budget", "--budget-file", "budget.yml", "--json")
    assert result.returncode == 0, result.stderr
    training = json.loads(result.stdout)["categories"][0]
    days = (today - start).days + 1
    assert training["pace_kg_per_day"] == pytest.approx(10.0 / days)
    out = start + timedelta(days=math.ceil(100.0 / (10.0 / days)) - 1)
    assert training["runs_out_on"] == (out.isoformat() if (out - start).days < 3659 else None)


def test_the_comment_warns_of_a_run_out_before_the_year_ends(tmp_path: Path) -> None:
    b = budgets.parse(BUDGET, "budget.yml")
    ledger = FileLedger(tmp_path / "ledger")
    seed(tmp_path, ("2026-03-01", "training", 50.0))
    # 1 January to 10 March: 69 days; 50 + 19 = 69 kg: 1 kg a day; 100 kg: day 100, 10 April.
    gated = gate.gate(run(19.0, "2026-03-10"), b, ledger, record=False)
    assert gated.burndown is not None
    assert gated.burndown.pace_kg_per_day == pytest.approx(1.0)
    assert gated.burndown.runs_out_on == date(2026, 4, 10)
    assert gated.to_json()["runs_out_on"] == "2026-04-10"
    assert gated.to_json()["pace_kg_per_day"] == pytest.approx(1.0)
    m = run(19.0, "2026-03-10")
    for name in ("comment.md.j2", "summary.md.j2"):
        text = report.render(name, report.context(m, gated, b))
        assert (
            "**Burn-down**: at this year's pace (1 kg a day, assumed constant since 2026-01-01), "
            "⚠️ the training allocation runs out on **2026-04-10**, before the budget year ends "
            "(2026-12-31)." in text
        ), text


def test_the_comment_says_when_the_pace_lasts_the_year(tmp_path: Path) -> None:
    b = budgets.parse(BUDGET, "budget.yml")
    # 1 g on 10 March, 69 days: 14.5 mg a day; 100 kg last far past the horizon.
    gated = gate.gate(run(0.001, "2026-03-10"), b, FileLedger(tmp_path / "l"), record=False)
    text = report.render("comment.md.j2", report.context(run(0.001, "2026-03-10"), gated, b))
    assert "the training allocation lasts for years." in text
    assert "⚠️ the training" not in text


def run(kg: float, day: str) -> Measurement:
    return Measurement.from_json(
        {
            "schema": "co2gate/emissions/v1",
            "run": {
                "id": f"run-{day}",
                "label": "train",
                "workload": "training",
                "command": ["python", "train.py"],
                "exit_code": 0,
                "started_at": f"{day}T09:00:00.000+00:00",
                "ended_at": f"{day}T10:00:00.000+00:00",
                "duration_s": 3600.0,
                "stopped_by_guard": False,
            },
            "energy_kwh": {"cpu": kg / 0.4, "gpu": 0.0, "ram": 0.0, "total": kg / 0.4},
            "power_w": {"cpu": 1.0, "gpu": 0.0, "ram": 0.0},
            "methods": {"cpu": "rapl", "gpu": "none", "ram": "none"},
            "pue": 1.0,
            "intensity_g_per_kwh": 400.0,
            "intensity_source": "a test",
            "emissions_kg": kg,
            "gpus": [],
            "requests": None,
            "per_request_g": None,
            "ci": None,
        },
        "e.json",
    )
