"""co2gate estimate: a projection before a run, checked against what remains of its
category's allocation this budget year and its per-run limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from co2gate import budget as budgets
from co2gate import estimate as projections
from co2gate.app import Outcome
from co2gate.app.inputs import LocationOptions
from co2gate.ledger import open_ledger
from co2gate.ledger.interface import LedgerError


@dataclass(frozen=True)
class EstimateRequest:
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    workload: str = "training"
    gpu: str | None = None
    gpus: int | None = None
    hours: float | None = None
    watts: float | None = None
    flops: float | None = None
    mfu: float | None = None
    from_history: str | None = None
    last: int | None = None
    location: LocationOptions = field(default_factory=LocationOptions)
    as_json: bool = False

    def given(self) -> dict[str, object]:
        """Each option by its flag, for the mode rule and its messages."""
        where = self.location
        return {
            "--gpu": self.gpu,
            "--gpus": self.gpus,
            "--hours": self.hours,
            "--watts": self.watts,
            "--flops": self.flops,
            "--mfu": self.mfu,
            "--from-history": self.from_history,
            "--last": self.last,
            "--country": where.country,
            "--region": where.region,
            "--cloud": where.cloud,
            "--intensity": where.intensity,
            "--pue": where.pue,
        }


def estimate(request: EstimateRequest, env: Mapping[str, str], today: date) -> Outcome:
    """Exit 0 pass or warn, 1 when the projection fails the gate."""
    from co2gate import report

    mode = projections.mode_of(request.given())
    budget = budgets.load(request.budget_file)
    budgets.allocation_kg(budget, request.workload)
    location = request.location.over(budget.location, budget.source)
    ledger, where = open_ledger(budget.ledger, env)
    try:
        projection, decision = projections.estimate(
            mode,
            budget,
            ledger,
            request.workload,
            today,
            location=location,
            gpu=request.gpu,
            gpus=request.gpus,
            hours=request.hours,
            watts=request.watts,
            flops=request.flops,
            mfu=request.mfu,
            label=request.from_history,
            last=request.last,
        )
    except LedgerError as e:
        raise LedgerError(f"{where}: {e}") from e
    doc = projection.to_json(decision)
    text = json.dumps(doc, indent=2) if request.as_json else "\n".join(report.estimate_lines(doc))
    return Outcome(stdout=text).finish(failed=decision.verdict is budgets.Verdict.FAIL)
