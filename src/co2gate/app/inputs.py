"""What a command needs before it acts: the budget that judges it (at the base commit on
pull requests), its ledger, its location, its label and its output directory."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from co2gate import budget as budgets
from co2gate import tokens
from co2gate.errors import InputError
from co2gate.github.context import BASE_COMMIT_EVENTS
from co2gate.intensity import Location, LocationError, validate
from co2gate.labels import check_label

if TYPE_CHECKING:
    from co2gate.spawn import Started

WORKLOAD = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def label_of(label: str | None, env: Mapping[str, str]) -> str:
    """The label given, else the CI job's name, else 'local'; refused (before anything runs)
    when emissions.json could not hold it."""
    if label:
        return check_label(label, "--label")
    job = env.get("GITHUB_JOB")
    return check_label(job, "GITHUB_JOB (the default --label)") if job else "local"


def check_workload(workload: str) -> str:
    if not WORKLOAD.match(workload):
        raise InputError(
            f"--workload {workload!r}: use lower-case letters, digits, - and _ "
            "(e.g. training, inference)"
        )
    return workload


@dataclass(frozen=True)
class LocationOptions:
    """The location options of a command; each one given overrides the budget file's."""

    country: str | None = None
    region: str | None = None
    cloud: str | None = None
    intensity: float | None = None
    pue: float | None = None

    def over(self, base: Location, source: str | None) -> Location:
        """`base` (the budget file's, from `source`) with these options applied, validated.

        An error names the option (`--country: ...`) when an option gave the value, else the
        budget file's key.
        """
        if self.country or self.region or self.cloud:
            base = Location(
                self.country, self.region, self.cloud, base.intensity_g_per_kwh, base.pue
            )
        merged = Location(
            base.country,
            base.region,
            base.cloud,
            self.intensity if self.intensity is not None else base.intensity_g_per_kwh,
            self.pue if self.pue is not None else base.pue,
        )
        try:
            return validate(merged)
        except LocationError as e:
            given = getattr(self, e.key, None) is not None
            where = f"--{e.key}" if given or source is None else f"{source}: location.{e.key}"
            raise LocationError(e.key, f"{where}: {e}") from None


def check_templates(template_dir: Path | None) -> None:
    """Compile a --template-dir's templates now, so a broken one stops a run before it starts.

    co2gate's own templates are tested: without a --template-dir Jinja2 is not imported here.
    """
    if template_dir is not None:
        from co2gate import report

        report.check_templates(template_dir)


def prepare_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {str(path)!r}: cannot create the directory: {e.strerror}") from e
    if not os.access(path, os.W_OK):
        raise InputError(f"--out {str(path)!r}: the directory is not writable")
    return path


def budget_present(path: Path, started: Started | None) -> bool:
    """Whether there is a budget file (anything at path, which load() may refuse); for a
    command already started, whether there was one before it started."""
    if started is not None and started.budget_before is not None:
        return started.budget_before[1] is not None
    try:
        return path.exists() or path.is_symlink()
    except OSError:  # a name too long: load() says so
        return True


def load_budget(
    path: Path,
    ci: Mapping[str, Any] | None,
    env: Mapping[str, str],
    started: Started | None = None,
) -> tuple[budgets.Budget, list[str]]:
    """The budget that judges this run, and notes for the report. Its grid provider's key
    variables are withheld from the command (co2gate alone asks the provider, afterwards).
    For a command already started (`started`), the file as it was before it started.

    On a pull request (and on the other events of BASE_COMMIT_EVENTS: a review, a review
    comment, a merge group) it is the file at the base commit, so a PR cannot raise its own
    budget; a PR that adds the first budget file is judged by it, and the report says so.
    """
    before = started.budget_before if started is not None else None

    def read() -> str:
        return budgets.read_before(path, before[1]) if before else budgets.read_text(path)

    budget, notes = _budget_for(path, ci, env, read)
    grid = budget.intensity
    tokens.withhold(grid.token_env, grid.user_env, grid.password_env)
    return budget, notes


def _budget_for(
    path: Path, ci: Mapping[str, Any] | None, env: Mapping[str, str], read: Callable[[], str]
) -> tuple[budgets.Budget, list[str]]:
    from co2gate.github.contents import NotReadable, read_at_commit

    base_sha = (ci or {}).get("base_sha")
    event = (ci or {}).get("event")
    if not base_sha or event not in BASE_COMMIT_EVENTS:
        return budgets.parse(read(), str(path)), []
    try:
        base_text = read_at_commit(path, base_sha, env, budgets.MAX_FILE_BYTES)
    except NotReadable as e:
        raise budgets.BudgetError(str(e)) from e
    who = "this merge group" if event == "merge_group" else "this PR"
    if base_text is None:
        own_file = budgets.parse(read(), str(path))
        return own_file, [f"the base commit has no {path}: {who}'s own file applies"]
    try:
        own: str | None = read()
    except budgets.BudgetError:
        own = None  # not a budget here: the base commit's is the one that applies anyway
    notes = [] if own == base_text else [f"{who} changes {path}; the base commit's budget applies"]
    source = f"{path} (at base {base_sha[:7]})"
    return budgets.parse(base_text, source), notes
