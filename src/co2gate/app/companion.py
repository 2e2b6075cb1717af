"""The workflow_run companion: gate a measured run's artifact under facts this repository trusts.

A fork's pull request runs with a read-only token, so its job can neither comment nor record.
A second workflow, `on: workflow_run`, runs in this repository with a write token, downloads
that job's emissions.json and runs `co2gate check --workflow-run`. The artifact is the fork's
data: its figures are taken as the measured job's own (they are all there is), after checks
that they are numbers a gate can use; where the run is recorded and commented (repository,
run, commit, pull request) comes from the event and the API, never from the artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from co2gate.budget import CATEGORY
from co2gate.errors import InputError
from co2gate.github.context import PullLookup, WorkflowRun, pull_lookup, trusted_ci
from co2gate.model import CiInfo, Measurement


@dataclass(frozen=True)
class Adopted:
    """An artifact's measurement with the trusted `ci` block, and the notes for its report."""

    measurement: Measurement
    notes: tuple[str, ...]


def check_artifact(m: Measurement, path: Path) -> None:
    """Refuse an artifact whose workload cannot name a budget category.

    Its numbers, names and dates were checked when it was read (Measurement.from_json),
    since the run that wrote it may be hostile. Raises InputError: one line naming the file.
    """
    if not CATEGORY.fullmatch(m.run.workload):
        shown = repr(m.run.workload)[:40]
        raise InputError(f"{path}: run.workload: {shown} is not a workload name")


def adopt(
    run: WorkflowRun,
    measurements: Sequence[Measurement],
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> list[Adopted]:
    """Each artifact's measurement with its `ci` block replaced by the trusted one.

    Pull requests are looked up once however many files name them.
    """
    lookup = lookup or pull_lookup(run.repository, env)
    adopted = []
    for m in measurements:
        claimed = m.ci.to_json() if m.ci is not None else None
        trusted = trusted_ci(run, claimed, env, lookup=lookup)
        ci = CiInfo.from_context(trusted.ci)
        adopted.append(Adopted(dataclasses.replace(m, ci=ci), trusted.notes))
    return adopted
