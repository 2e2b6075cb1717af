"""co2gate check: gate measurements already taken (co2gate emissions.json, a codecarbon
emissions.csv), and the workflow_run companion that gates a fork's artifact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from co2gate import budget as budgets
from co2gate import emissions, merge, metrics
from co2gate.app import Outcome
from co2gate.app.gate import (
    Cancellable,
    gate_into,
    should_record,
    verdict_document,
    with_water,
)
from co2gate.app.inputs import (
    check_templates,
    check_workload,
    label_of,
    load_budget,
    prepare_out_dir,
)
from co2gate.app.measure import track
from co2gate.errors import InputError
from co2gate.github import context
from co2gate.labels import RunLabels
from co2gate.ledger import open_ledger
from co2gate.runner import AfterCommand
from co2gate.trackers import Targets


@dataclass(frozen=True)
class CheckRequest:
    files: tuple[Path, ...]
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    out: Path = Path("co2gate-report")
    workload: str | None = None  # for codecarbon CSV files; emissions.json names its own
    label: str | None = None
    requests: int | None = None
    no_record: bool = False
    comment: bool = True
    comment_author: str | None = None
    template_dir: Path | None = None
    as_json: bool = False
    workflow_run: bool = False  # FILES are a measured run's artifact (a fork's PR)
    unit: str | None = None  # what `requests` counts when --units gave it
    metric: tuple[str, ...] = ()  # --metric NAME=VALUE: given to every file's run
    metrics_file: Path | None = None  # --metrics-file: read now, given to every file's run
    trackers: Targets = field(default_factory=Targets)  # where else the figures go
    merge: bool = False  # FILES are the nodes of ONE run: one verdict, one entry, one comment


def check(request: CheckRequest, env: Mapping[str, str]) -> Outcome:
    """Gate, record and report each file (or, with merge, the files as one run); exit 1 if
    any fails the gate."""
    from co2gate.app import companion

    if request.merge and request.workflow_run:
        raise InputError("--merge and --workflow-run cannot be combined: gate a fork's run alone")

    ci = None if request.workflow_run else context.ci_context(env)
    labels = RunLabels(
        label_of(request.label, env),
        check_workload(request.workload or "training"),
        request.requests,
        request.unit,
    )
    quality = _metrics(request)
    measured = context.workflow_run(env) if request.workflow_run else None
    if measured is None:
        budget, notes = load_budget(request.budget_file, ci, env)
    else:  # this checkout is the default branch: the fork cannot have changed it
        budget, notes = budgets.load(request.budget_file), []
    read = [emissions.read_measurement(path, labels, ci) for path in request.files]
    if quality:  # the options' and the file's over what each file itself holds
        read = [replace(m, metrics=MappingProxyType({**m.metrics, **quality})) for m in read]
    checked = [
        companion.check_artifact(m, path, measured)
        for path, m in zip(request.files, read, strict=True)
        if measured is not None
    ]
    if request.merge:  # one run over many nodes: one verdict, one entry, one comment
        read = [merge.merge([(str(p), m) for p, m in zip(request.files, read, strict=True)])]
    for m in read:
        budgets.allocation_kg(budget, m.run.workload)
    check_templates(request.template_dir)
    out_dir = prepare_out_dir(request.out)
    if request.merge:  # the merged run is written beside its verdict: never over an input
        merged = (out_dir / "emissions.json").resolve()
        if any(path.resolve() == merged for path in request.files):
            raise InputError(
                f"--out {out_dir}: its emissions.json is one of the files to merge; "
                "give --out another directory"
            )
    gating = [(m, notes) for m in read]
    if measured is not None:
        adopted = companion.priced(companion.adopt(measured, read, env), budget, checked)
        gating = [(a.measurement, [*notes, *a.notes]) for a in adopted]
    gating = [(with_water(m, budget), m_notes) for m, m_notes in gating]
    outcome = Outcome()
    if request.merge:
        try:
            outcome.files += emissions.write(out_dir, read[0])
            outcome.lines.append(f"wrote the merged run to {out_dir / 'emissions.json'}")
        except OSError as e:
            outcome.lost = True
            outcome.lines.append(f"could not write the merged run in {out_dir}: {e.strerror or e}")
    with AfterCommand() as after:  # a cancelled job still gets its verdicts and report
        opened, where = open_ledger(budget.ledger, env)
        results = [
            gate_into(
                outcome,
                m,
                budget,
                (Cancellable(opened, after), where),
                out_dir,
                record=should_record(budget, m.ci, request.no_record),
                notes=m_notes,
                quiet=request.as_json,
            )
            for m, m_notes in gating
        ]
        from co2gate.app.publish import Options, Run, publish_into

        runs = [Run(m, gated) for (m, _), gated in zip(gating, results, strict=True)]
        options = Options(request.template_dir, request.comment, request.comment_author, after)
        publish_into(outcome, runs, budget, out_dir, env, options)
    track(outcome, [m for m, _ in gating], request.trackers, env)
    if request.as_json:
        outcome.stdout = json.dumps(verdict_document(results), indent=2)
    failed = any(r.decision.verdict is budgets.Verdict.FAIL for r in results)
    return outcome.finish(failed=failed)


def _metrics(request: CheckRequest) -> dict[str, float]:
    """--metric and --metrics-file: nothing runs here, so a bad file is refused (exit 2)."""
    given = metrics.parse_options(request.metric)
    if request.metrics_file is None:
        return given
    return metrics.merged(given, metrics.read_file(request.metrics_file))
