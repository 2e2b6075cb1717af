"""The burn-down forecast (burndown.py): hand-computed paces and run-out days."""

from __future__ import annotations

from datetime import date

import pytest

from co2gate import report
from co2gate.burndown import HORIZON_DAYS, forecast

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
