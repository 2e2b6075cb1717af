"""co2gate run: the main job. The budget is read and checked, then the command runs and is
measured, then the run is gated, recorded and reported."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from co2gate import budget as budgets
from co2gate.app import Outcome, Say
from co2gate.app.inputs import (
    check_templates,
    load_budget,
    prepare_out_dir,
)
from co2gate.app.measure import MeasureRequest, measure_command, warm_report
from co2gate.github.context import ci_context
from co2gate.guard import DEFAULT_GRACE_S, Watch, default_heartbeat_s
from co2gate.labels import RunLabels
from co2gate.ledger import open_ledger
from co2gate.runner import AfterCommand


@dataclass(frozen=True)
class RunRequest:
    measure: MeasureRequest  # the command, where it runs and where the files go
    no_record: bool = False
    comment: bool = True
    comment_author: str | None = None
    preflight: bool = False
    max_kg: float | None = None  # the live guard's cap; limits[workload] is one too
    grace_s: float = DEFAULT_GRACE_S
    heartbeat_s: float | None = None  # None: 300 s in GitHub Actions, else never


def run(request: RunRequest, env: Mapping[str, str], say: Say) -> Outcome:
    """Measure, check, record and report one command.

    Exit code: the command's own when it failed (a command the guard stopped at its cap fails
    the gate: 1, not its signal's 143), else 1 when the gate fails, else 2 when the run could
    not be written or recorded, else 0.
    """
    m = request.measure
    labels = m.labels(env)
    ci = ci_context(env)  # read once, before the command, which could rewrite the event file
    budget, notes = load_budget(m.budget_file, ci, env)
    budgets.allocation_kg(budget, labels.workload)
    location = m.location.over(budget.location, budget.source)
    check_templates(m.template_dir)
    out_dir = prepare_out_dir(m.out)
    if request.preflight:
        refused = _preflight(budget, labels, out_dir, env, say)
        if refused is not None:
            return refused
    watch = Watch(
        limit_kg=budgets.run_limit_kg(budget, labels.workload, request.max_kg),
        grace_s=request.grace_s,
        heartbeat_s=request.heartbeat_s
        if request.heartbeat_s is not None
        else default_heartbeat_s(env),
    )
    with AfterCommand() as after:  # a cancelled job still gets its verdict and report
        measured = measure_command(
            m.command,
            location=location,
            labels=labels,
            out_dir=out_dir,
            env=env,
            ci=ci,
            watch=watch,
            say=say,
            embodied=budget.embodied,
            water=budget.water,
            beside=[functools.partial(warm_report, m.template_dir)],
        )
        from co2gate.app.gate import Cancellable, gate_into, should_record  # after the command

        outcome = measured.outcome()
        opened, where = open_ledger(budget.ledger, env)
        record = should_record(budget, measured.measurement.ci, request.no_record)
        gated = gate_into(
            outcome,
            measured.measurement,
            budget,
            (Cancellable(opened, after), where),
            out_dir,
            record=record,
            notes=notes,
        )
        from co2gate.app.publish import Options, Run, publish_into

        options = Options(m.template_dir, request.comment, request.comment_author, after)
        publish_into(outcome, [Run(measured.measurement, gated)], budget, out_dir, env, options)
    command = 0 if measured.stopped_by_guard else measured.exit_code  # the gate's, not SIGTERM's
    return outcome.finish(command, failed=gated.decision.verdict is budgets.Verdict.FAIL)


def _preflight(
    budget: budgets.Budget, labels: RunLabels, out_dir: Path, env: Mapping[str, str], say: Say
) -> Outcome | None:
    """run --preflight: an outcome (exit 1, verdict.json) when the label's history fails the
    gate, before the command starts; None to go on. No history, or a ledger that cannot be
    read, is a note: the command runs."""
    from co2gate import estimate, report
    from co2gate.app.gate import write_verdict
    from co2gate.ledger.interface import LedgerError

    ledger, where = open_ledger(budget.ledger, env)
    if ledger.name == "branch":
        say(f"preflight: reading the {where} through the API before the command starts")
    try:
        found = estimate.preflight(budget, ledger, labels.workload, labels.label, date.today())
    except LedgerError as e:
        say(f"preflight: {where}: {e}; starting the command without a projection")
        return None
    if found is None:
        say(
            f"preflight: no runs of {labels.label!r} in the ledger to project from; starting anyway"
        )
        return None
    projection, decision = found
    doc = projection.to_json(decision)
    if decision.verdict is not budgets.Verdict.FAIL:
        say(report.preflight_line(doc))
        return None
    refused = dataclasses.replace(
        decision, reasons=(report.preflight_reason(doc), *decision.reasons)
    )
    path = write_verdict(out_dir, budgets.Gated(refused, recorded=False))
    return Outcome(exit_code=1, files=[path], lines=[" ".join(refused.reasons), f"wrote {path}"])
