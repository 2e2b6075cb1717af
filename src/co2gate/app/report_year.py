"""co2gate report: a budget year's usage from the ledger, as annual-YYYY.{md,csv,json,html}."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from co2gate import annual, fmt
from co2gate import budget as budgets
from co2gate.app import Outcome
from co2gate.app.inputs import prepare_out_dir
from co2gate.emissions import write_atomic
from co2gate.errors import InputError, OutputError
from co2gate.ledger import open_ledger
from co2gate.ledger.interface import FIRST_DAY, LAST_DAY, Ledger, LedgerError


class Format(str, enum.Enum):
    """The files `co2gate report` writes, by their extension."""

    MD = "md"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


@dataclass(frozen=True)
class ReportRequest:
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    year: int | None = None  # the budget year that starts in it; None: the one containing today
    formats: tuple[Format, ...] = (Format.MD,)
    out: Path = Path("co2gate-report")


def year_span(budget: budgets.Budget, year: int | None, today: date) -> tuple[date, date]:
    """[start, end) of the budget year that starts in `year` (at the budget file's
    year_start), or of the one containing today."""
    if year is None:
        return budgets.budget_year(budget, today)
    if not FIRST_DAY.year <= year < LAST_DAY.year:
        raise InputError(f"--year {year}: not a year the ledger can hold ({FIRST_DAY.year}-2099)")
    month, day = budget.year_start
    return date(year, month, day), date(year + 1, month, day)


def by_month(ledger: Ledger, start: date, end: date) -> Iterator[dict[str, Any]]:
    """The entries of [start, end), read a month (a shard) at a time so that one month is
    in memory at once; each key once, the first kept, as Ledger.entries keeps it."""
    seen: set[str] = set()
    low = start
    while low < end:
        high = min(end, date(low.year + low.month // 12, low.month % 12 + 1, 1))
        for entry in ledger.entries(low, high):
            key = entry["key"]
            if key not in seen:
                seen.add(key)
                yield entry
        low = high


def render(summary: annual.Annual, form: Format, ledger: str) -> str:
    """One format's text."""
    if form is Format.JSON:
        return json.dumps(summary.to_json(), indent=2, allow_nan=False) + "\n"
    if form is Format.CSV:
        return annual.to_csv(summary)
    if form is Format.MD or form is Format.HTML:
        from co2gate import report

        return report.annual_text(summary, ledger, form.value)
    _never(form)


def _never(value: NoReturn) -> NoReturn:
    raise AssertionError(f"unhandled: {value!r}")


def annual_report(request: ReportRequest, env: Mapping[str, str], today: date) -> Outcome:
    """Read the budget year's entries from the ledger the budget file names, sum them, and
    write one file per format into request.out. Its totals are `co2gate budget`'s."""
    budget = budgets.load(request.budget_file)
    start, end = year_span(budget, request.year, today)
    ledger, where = open_ledger(budget.ledger, env)
    try:
        summary = annual.summarise(
            by_month(ledger, start, end),
            start,
            end,
            allocations_kg={c: budgets.allocation_kg(budget, c) for c in budget.allocations},
            annual_budget_kg=budget.annual_budget_kg,
        )
    except LedgerError as e:
        raise LedgerError(f"{where}: {e}") from e
    out = prepare_out_dir(request.out)
    outcome = Outcome()
    shown = where.removeprefix("ledger: ")
    for form in dict.fromkeys(request.formats):  # each once, in the order given
        path = out / f"annual-{summary.label}.{form.value}"
        text = render(summary, form, shown)
        try:
            write_atomic(path, text)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
        outcome.files.append(path)
        outcome.lines.append(f"wrote {path}")
    total = summary.total
    outcome.stdout = (
        f"{fmt.year(start, end)}: {fmt.mass(summary.total_kg)} CO2e, "
        f"{fmt.energy(total.energy_kwh)}, {fmt.counted(total.runs, 'run')} "
        f"({fmt.count(total.stopped_by_guard)} stopped by the guard, "
        f"{fmt.count(total.refused)} refused by preflight)"
    )
    return outcome
