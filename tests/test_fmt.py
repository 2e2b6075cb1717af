"""fmt: every figure as people read it, and the same figure reading the same on every face.

Expected strings are worked out by hand in the comments: three significant figures, then the
unit that puts the number between 1 and 999.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest
from test_report import BUDGET, YEAR, MemoryLedger, doc

from co2gate import budget as budgets
from co2gate import fmt, report
from co2gate.app import gate
from co2gate.guard import Guard, GuardStop, Watch
from co2gate.intensity import Intensity


@pytest.mark.parametrize(
    ("kg", "text"),
    [
        (0.0, "0 kg"),
        (-0.0, "0 kg"),
        (0.00000553, "5.53 mg"),  # 5.53e-6 kg x 1e6 = 5.53 mg
        (0.000000553, "0.553 mg"),  # below a milligram the smallest unit goes on
        (0.000001, "1 mg"),
        (0.0009994, "999 mg"),  # 999.4 mg rounds to 999
        (0.0009999, "1 g"),  # 999.9 mg rounds to 1,000 mg: that is 1 g, not 1000 mg
        (0.001, "1 g"),
        (0.00553, "5.53 g"),
        (0.99994, "1 kg"),  # 999.94 g rounds to 1,000 g = 1 kg
        (0.99996, "1 kg"),  # 999.96 g: 1 kg, not 1000 g
        (0.9994, "999 g"),
        (1.0, "1 kg"),
        (1.2, "1.2 kg"),  # trailing zeros dropped: not 1.20 kg
        (25.0, "25 kg"),
        (146.0, "146 kg"),
        (999.4, "999 kg"),
        (999.6, "1 t"),  # 999.6 kg rounds to 1,000 kg = 1 t
        (1234.5, "1.23 t"),  # 1.2345 t to three figures
        (127_165.0, "127 t"),
        (999_600.0, "1,000 t"),  # the largest unit goes on, with thousands separators
        (1_234_500.0, "1,230 t"),  # 1,234.5 t to three figures
        (-0.00553, "-5.53 g"),
        (-1234.5, "-1.23 t"),
    ],
)
def test_mass(kg: float, text: str) -> None:
    assert fmt.mass(kg) == text


def test_mass_never_uses_an_exponent() -> None:
    for exponent in range(-12, 10):
        for mantissa in (1.0, 1.5, 9.999):
            assert "e" not in fmt.mass(mantissa * 10.0**exponent)
    assert fmt.mass(1e-9) == "0.001 mg"  # 1e-9 kg = 1e-3 mg
    assert fmt.mass(math.inf) == "inf kg" and fmt.mass(math.nan) == "nan kg"


@pytest.mark.parametrize(
    ("kwh", "text"),
    [
        (0.0, "0 kWh"),
        (0.0000788, "78.8 mWh"),  # 7.88e-5 kWh x 1e6
        (0.0009996, "1 Wh"),  # 999.6 mWh rounds to 1,000 mWh = 1 Wh
        (0.0149, "14.9 Wh"),
        (0.99996, "1 kWh"),  # 999.96 Wh
        (1.2, "1.2 kWh"),
        (999.6, "1 MWh"),
        (289_012.3, "289 MWh"),
        (1_234_500.0, "1,230 MWh"),
        (-0.0149, "-14.9 Wh"),
    ],
)
def test_energy(kwh: float, text: str) -> None:
    assert fmt.energy(kwh) == text


@pytest.mark.parametrize(
    ("w", "text"),
    [
        (None, "-"),
        (0.0, "0 W"),
        (0.891, "891 mW"),
        (0.9996, "1 W"),  # 999.6 mW
        (700.0, "700 W"),
        (999.96, "1 kW"),
        (1500.0, "1.5 kW"),
        (2_346_000.0, "2,350 kW"),  # 2,346 kW to three figures
    ],
)
def test_power(w: float | None, text: str) -> None:
    assert fmt.power(w) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0 s"),
        (0.25, "0.25 s"),
        (0.54, "0.54 s"),
        (10.0, "10 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 00 s"),  # 60.0 s to three figures: a minute, not "60 s"
        (245.0, "4 min 05 s"),  # 4 x 60 + 5
        (720.0, "12 min 00 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 00 min"),  # 3,600 s once rounded
        (3725.0, "1 h 02 min"),  # 3,600 + 2 x 60 + 5: 62.08 minutes
        (4520.0, "1 h 15 min"),  # 75.33 minutes
        (36_000.0, "10 h 00 min"),
        (725_757.0, "201 h 36 min"),  # 12,095.95 minutes: 201 h 36 min
        (3_600_000.0, "1,000 h 00 min"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("km", "text"),
    [
        (0.0, "less than a metre"),
        (0.0004, "less than a metre"),
        (0.0009996, "1 m"),  # 0.9996 m rounds to 1 m
        (0.0161, "16.1 m"),
        (0.9996, "1 km"),
        (40.2336, "40.2 km"),
        (1234.5, "1,230 km"),
    ],
)
def test_distance(km: float, text: str) -> None:
    assert fmt.distance(km) == text


def test_pct_count_day_year_left() -> None:
    assert fmt.pct(0.5843) == "58.4%" and fmt.pct(0.8) == "80.0%" and fmt.pct(0.0) == "0.0%"
    assert fmt.pct(0.93, 0) == "93%" and fmt.pct(None) == "-" and fmt.pct(-0.35, 0) == "-35%"
    assert fmt.pct(10.5) == "1,050.0%"
    assert fmt.count(1234.4) == "1,234" and fmt.count(365_000_000) == "365,000,000"
    assert fmt.day(date(2026, 1, 1)) == "2026-01-01"
    assert fmt.day(datetime(2026, 1, 1, 23, 59, tzinfo=timezone.utc)) == "2026-01-01"
    # the budget year is [start, end): its last day is the day before end
    assert fmt.year(date(2026, 1, 1), date(2027, 1, 1)) == "2026-01-01 to 2026-12-31"
    assert fmt.year(date(2025, 4, 1), date(2026, 4, 1)) == "2025-04-01 to 2026-03-31"
    assert fmt.year(date(2023, 3, 1), date(2024, 3, 1)) == "2023-03-01 to 2024-02-29"
    assert fmt.left(350.0, 204.5) == "146 kg left"  # 145.5 kg to three figures
    assert fmt.left(350.0, 350.0) == "0 kg left"
    assert fmt.left(350.0, 360.0) == "10 kg over"
    assert fmt.left(0.07, 0.0700553) == "55.3 mg over"  # 5.53e-5 kg


# One value through every face: the verdict line, the budget reasons, the guard's heartbeat and
# stop note, measure's summary, and the rendered comment and job summary.


@pytest.mark.parametrize(
    ("kg", "text", "share", "rest", "elsewhere"),
    [
        # 199.5 kg used before + 1,234.5 kg = 1,434 kg of 350 kg: 409.7%, 1,084 kg over
        (1234.5, "1.23 t", "409.7%", "1.08 t over", ("1230 kg", "1234 kg", "1.23e")),
        # 199.5 kg + 5.53 mg of 350 kg: 57.0%, 150.49999 kg left
        (5.53e-6, "5.53 mg", "57.0%", "150 kg left", ("0.00553 g", "0.00000553", "5.53e")),
    ],
)
def test_one_value_reads_the_same_on_every_face(
    kg: float, text: str, share: str, rest: str, elsewhere: tuple[str, ...]
) -> None:
    budget = budgets.parse(BUDGET, ".github/carbon-budget.yml")
    d = doc(kg)
    energy = fmt.energy(d.energy_kwh.total)
    gated = gate.gate(d, budget, MemoryLedger(YEAR), record=True)
    decision = gated.decision
    ctx = report.context(d, gated, budget)
    faces = {
        "verdict line": report.verdict_lines(decision, ())[0],
        "reasons": " ".join(decision.reasons),
        "guard reason": next(
            r
            for r in budgets.decide(budget, "training", 0, kg, stopped_by_guard=(kg, kg)).reasons
            if r.startswith("Stopped by the guard")
        ),
        "heartbeat": Guard(
            Watch(limit_kg=25.0), pue=1.1, price=lambda: Intensity(244.8, "a test intensity")
        ).heartbeat_line(36_000.0, d.energy_kwh.total, kg),
        "stop note": GuardStop(
            limit_kg=kg / 2,
            at_kg=kg,
            energy_kwh=d.energy_kwh.total,
            after_s=36_000.0,
            at=datetime(2026, 11, 20, 10, tzinfo=timezone.utc),
            grace_s=10.0,
            killed=False,
        ).note(),
        "summary lines": "\n".join(report.summary_lines(d)),
        "comment": report.render("comment.md.j2", ctx),
        "job summary": report.render("summary.md.j2", ctx),
    }
    assert f"after this run's {text}; {rest}" in faces["verdict line"]
    assert f"({share} of it)" in faces["verdict line"]
    assert f"this run's {text} brings it to" in faces["reasons"]
    assert f"({share}, {rest})." in faces["reasons"]
    assert faces["guard reason"].startswith(f"Stopped by the guard at {text}, the limit is ")
    assert faces["heartbeat"] == f"10 h 00 min: {energy}, {text} CO2e so far (limit 25 kg)"
    assert faces["stop note"].startswith(f"stopped by the guard at {text} CO2e (limit ")
    assert "10 h 00 min into the run" in faces["stop note"]
    assert f"{text} CO2e = {energy} x PUE 1.1" in faces["summary lines"]
    assert f"{energy} in 10 h 00 min:" in faces["summary lines"]
    for name in ("comment", "job summary"):
        page = faces[name]
        assert f"({share}) after this run's {text}; {rest};" in page, name
        assert f"**{text} CO2e** = {energy} \N{MULTIPLICATION SIGN} PUE" in page, name
        assert ", in 10 h 00 min." in page, name
        assert f"**{energy}**" in page, name
    for name, face in faces.items():
        for other in elsewhere:
            assert other not in face, (name, other)


def test_the_budget_year_reads_the_same_in_the_comment_and_the_budget_command() -> None:
    budget = budgets.parse(BUDGET, ".github/carbon-budget.yml")
    ledger = MemoryLedger(YEAR)
    d = doc(5.0)
    gated = gate.gate(d, budget, ledger, record=False)
    page = report.render("comment.md.j2", report.context(d, gated, budget))
    table = report.standing_lines(gate.standing(budget, ledger, date(2026, 11, 20)))
    assert "#### Budget, 2026-01-01 to 2026-12-31\n" in page
    assert table[0].startswith("budget year 2026-01-01 to 2026-12-31: ")
    assert "2027-01-01" not in page + "\n".join(table)


def test_over_budget_says_by_how_much_everywhere() -> None:
    # 199.5 kg used before + 160.2 kg = 359.7 kg of 350 kg: 9.7 kg over, 102.77%
    budget = budgets.parse(BUDGET.replace("training: 25", "training: 500"), "b.yml")
    d = doc(160.2)
    gated = gate.gate(d, budget, MemoryLedger(YEAR), record=False)
    page = report.render("comment.md.j2", report.context(d, gated, budget))
    assert report.verdict_lines(gated.decision, ())[0].endswith("; 9.7 kg over; tier high")
    assert "brings it to 360 kg (102.8%, 9.7 kg over)." in gated.decision.reasons[0]
    assert "(102.8%) after this run's 160 kg; 9.7 kg over; tier high.**" in page
    assert "| 9.7 kg over the 350 kg |" in page
    assert "0 kg left" not in page


def test_a_count_names_its_noun_in_the_plural_but_for_one() -> None:
    assert [fmt.counted(n, "run") for n in (0, 1, 2, 1234)] == [
        "0 runs",
        "1 run",
        "2 runs",
        "1,234 runs",
    ]
