"""co2gate budget: where the budget stands this year, per category, and the largest runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from co2gate import budget as budgets
from co2gate.app import Outcome
from co2gate.app.gate import standing
from co2gate.ledger import open_ledger
from co2gate.ledger.interface import LedgerError


@dataclass(frozen=True)
class BudgetRequest:
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    as_json: bool = False


def budget_standing(request: BudgetRequest, env: Mapping[str, str], today: date) -> Outcome:
    from co2gate import report

    budget = budgets.load(request.budget_file)
    ledger, where = open_ledger(budget.ledger, env)
    try:
        found = standing(budget, ledger, today)
    except LedgerError as e:
        raise LedgerError(f"{where}: {e}") from e
    if request.as_json:
        return Outcome(stdout=json.dumps(found, indent=2))
    return Outcome(stdout="\n".join(report.standing_lines(found)))
