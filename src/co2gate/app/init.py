"""co2gate init: a commented starter budget file, and the workflow that uses it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from co2gate import budget as budgets
from co2gate import starter
from co2gate.app import Outcome


@dataclass(frozen=True)
class InitRequest:
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    annual_kg: float = starter.DEFAULT_ANNUAL_KG
    country: str | None = None
    force: bool = False


def init(request: InitRequest) -> Outcome:
    """Write the budget file; the workflow goes to stdout (so it can be redirected)."""
    text = starter.budget_text(request.annual_kg, request.country)
    path = starter.write_budget(request.budget_file, text, force=request.force)
    return Outcome(files=[path], lines=[starter.next_steps(path)], stdout=starter.workflow(path))
