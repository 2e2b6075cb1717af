"""co2gate init: the starter budget file, the workflow that gates a step against it, and
the .gitignore lines for co2gate's local files; all written, or none."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from co2gate import budget as budgets
from co2gate import starter
from co2gate.app import Outcome
from co2gate.app.inputs import LocationOptions
from co2gate.errors import InputError
from co2gate.intensity import Location


@dataclass(frozen=True)
class InitRequest:
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    annual_kg: float = starter.DEFAULT_ANNUAL_KG
    country: str | None = None
    region: str | None = None
    cloud: str | None = None
    run: str = starter.DEFAULT_RUN
    workflow_file: Path = Path(starter.DEFAULT_WORKFLOW_FILE)
    print_workflow: bool = False  # the workflow on stdout instead of into workflow_file
    force: bool = False
    stdout_file: tuple[int, int] | None = None  # (st_dev, st_ino) when stdout is a file


def init(request: InitRequest, root: Path = Path()) -> Outcome:
    """Check every option and every target, then write the budget file, the workflow
    (unless print_workflow) and the missing .gitignore lines: all of them, or none.

    root is the repository's root, where init runs; the workflow names paths from there.
    """
    place = LocationOptions(request.country, request.region, request.cloud).over(Location(), None)
    run = starter.check_run(request.run)
    budget_text = starter.budget_text(request.annual_kg, place)
    budget_in_repo = starter.repo_path(request.budget_file, "--budget-file", root)
    workflow_in_repo = starter.repo_path(request.workflow_file, "--workflow-file", root)
    workflow_text = starter.workflow(budget_in_repo, run, workflow_in_repo.as_posix())

    planned = [starter.Planned(request.budget_file, budget_text, request.force)]
    if not request.print_workflow:
        planned.append(starter.Planned(request.workflow_file, workflow_text, request.force))
    gitignore = root / starter.GITIGNORE
    wanted = starter.gitignore_lines(budgets.parse(budget_text, "the starter").ledger)
    existing = _read_gitignore(gitignore)
    added = starter.gitignore_missing(existing, wanted)
    if added:
        text = starter.gitignore_text(existing, added)
        planned.append(starter.Planned(gitignore, text, replace=True))
    if not request.force:
        _refuse_redirect(planned, request.stdout_file)

    starter.write_all(planned)
    workflow_file = None if request.print_workflow else request.workflow_file
    lines = starter.next_steps(request.budget_file, workflow_file, added, run)
    stdout = workflow_text if request.print_workflow else None
    return Outcome(files=[p.path for p in planned], lines=lines, stdout=stdout)


def _read_gitignore(path: Path) -> str | None:
    if path.is_dir():
        raise starter.StarterError(f"{path}: is a directory, not a file")
    try:
        return path.read_bytes().decode("utf-8")  # its own line endings kept
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise starter.StarterError(f"{path}: cannot read it: {why}") from e


def _refuse_redirect(planned: list[starter.Planned], stdout_file: tuple[int, int] | None) -> None:
    """The old `co2gate init > .github/workflows/carbon.yml`: the shell has made that file
    (empty) before init runs; say why init refuses it rather than that it exists."""
    if stdout_file is None:
        return
    for p in planned:
        try:
            st = os.stat(p.path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == stdout_file:
            raise InputError(
                f"{p.path}: stdout is redirected into it, and co2gate init now writes it "
                f"itself: run co2gate init without '> {p.path}' (the shell has already "
                "emptied it: add --force), or with --print for the workflow on stdout"
            )
