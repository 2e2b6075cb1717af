"""The workflow_run companion: gate a measured run's artifact under facts this repository trusts.

A fork's pull request runs with a read-only token, so its job can neither comment nor record.
A second workflow, `on: workflow_run`, runs in this repository with a write token, downloads
that job's emissions.json and runs `co2gate check --workflow-run`. The artifact is the fork's
data: its figures are taken as the measured job's own (they are all there is), after checks
that they are numbers a gate can use; where the run is recorded and commented (repository,
run, commit, pull request) comes from the event and the API, never from the artifact.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from co2gate.budget import CATEGORY
from co2gate.errors import InputError
from co2gate.github.context import PullLookup, WorkflowRun, pull_lookup, trusted_ci

MAX_NAME = 200  # characters in a label or job name taken from an artifact


@dataclass(frozen=True)
class Adopted:
    """An artifact's document with the trusted `ci` block, and the notes for its report."""

    doc: dict[str, Any]
    notes: tuple[str, ...]


def check_artifact(doc: Mapping[str, Any], path: Path) -> None:
    """Refuse an artifact's emissions.json whose figures a gate cannot use.

    `emissions.read_measurement` has checked its shape; this checks its values, since the
    run that wrote it may be hostile. Raises InputError: one line naming the file.
    """

    def refuse(what: str) -> NoReturn:
        raise InputError(f"{path}: not a usable emissions.json from an artifact: {what}")

    if not _amount(doc.get("emissions_kg")):
        refuse(f"emissions_kg {_show(doc.get('emissions_kg'))} is not a finite number >= 0")
    energy = doc.get("energy_kwh")
    if not isinstance(energy, dict) or "total" not in energy:
        refuse("energy_kwh.total is missing")
    for part, kwh in energy.items():
        if not _amount(kwh):
            refuse(f"energy_kwh.{str(part)[:20]} {_show(kwh)} is not a finite number >= 0")
    run = doc["run"]
    if not CATEGORY.fullmatch(run["workload"]):
        refuse(f"run.workload {_show(run['workload'])} is not a workload name")
    if not _name(run["label"]):
        refuse(f"run.label {_show(run['label'])} is not a name ({MAX_NAME} printable at most)")
    if run.get("duration_s") is not None and not _amount(run["duration_s"]):
        refuse(f"run.duration_s {_show(run['duration_s'])} is not a finite number >= 0")
    try:
        datetime.fromisoformat(run["ended_at"])
    except ValueError:
        refuse(f"run.ended_at {_show(run['ended_at'])} is not an ISO 8601 timestamp")
    requests = doc.get("requests")
    if requests is not None and (
        isinstance(requests, bool) or not isinstance(requests, int) or requests < 1
    ):
        refuse(f"requests {_show(requests)} is not a whole number >= 1")
    ci = doc.get("ci")
    if ci is not None and not isinstance(ci, dict):
        refuse("ci is not an object")
    job = (ci or {}).get("job")
    if job is not None and job != "" and not _name(job):
        refuse(f"ci.job {_show(job)} is not a name ({MAX_NAME} printable at most)")


def adopt(
    run: WorkflowRun,
    docs: Sequence[Mapping[str, Any]],
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> list[Adopted]:
    """Each artifact's document with its `ci` block replaced by the trusted one.

    Pull requests are looked up once however many files name them.
    """
    lookup = lookup or pull_lookup(run.repository, env)
    adopted = []
    for doc in docs:
        claimed = doc.get("ci") if isinstance(doc.get("ci"), dict) else None
        trusted = trusted_ci(run, claimed, env, lookup=lookup)
        adopted.append(Adopted(dict(doc) | {"ci": trusted.ci}, trusted.notes))
    return adopted


def _amount(value: object) -> bool:
    """A finite number >= 0 (JSON's NaN and Infinity, which Python reads, are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an integer too large for a float
        return False


def _name(value: object) -> bool:
    """A label or job name: printable text, not empty, not too long."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME
        and value.strip() != ""
        and not any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value)
    )


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
