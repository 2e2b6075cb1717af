"""`co2gate init`: the commented starter budget file, the workflow that gates a step against
it, the .gitignore lines for what co2gate writes locally, and writing them all or none."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Final

from co2gate import budget as budgets
from co2gate.errors import InputError, OutputError
from co2gate.intensity import Location

DEFAULT_ANNUAL_KG: Final = 500.0
DEFAULT_WORKFLOW_FILE: Final = ".github/workflows/carbon.yml"
DEFAULT_RUN: Final = "python train.py"
GITIGNORE: Final = ".gitignore"
REPORT_DIR: Final = "co2gate-report/"  # the default --out of run, measure and check
# The Action's moving major tag. zizmor asks for a commit SHA on every third-party action;
# the starter takes the tag (fixes arrive without an edit) and says how to pin instead.
ACTION: Final = "co2gate/co2gate@v1"

WORKFLOW: Final = """\
# {workflow_file}: runs the training step under co2gate, which gates its CO2e
# against {budget_file}, records it in the ledger and reports on the pull request.
name: carbon
on:
  push:
    branches: [main]
  pull_request:

permissions: {{}}

# A new push to a pull request cancels its previous run: no energy spent on a stale commit.
concurrency:
  group: ${{{{ github.workflow }}}}-${{{{ github.ref }}}}
  cancel-in-progress: ${{{{ github.event_name == 'pull_request' }}}}

jobs:
  train:
    name: train (carbon budget)
    runs-on: ubuntu-latest  # a GPU job: the labels of your runners, e.g. [self-hosted, gpu]
    permissions:
      contents: write        # co2gate records each run in the ledger branch (co2gate-ledger)
      pull-requests: write   # co2gate upserts its report as one comment on the pull request
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      # Install what your step needs here (pip install -r requirements.txt, ...).
      # To freeze the Action, replace @v1 by a release's commit SHA (and drop the comment).
      - uses: {action} # zizmor: ignore[unpinned-uses] v1 is co2gate's moving major tag
        with:
          run: {run}
          workload: training{budget_input}
# Pull requests from forks get a read-only token: co2gate still gates them and writes the
# job summary; the README's workflow_run companion comments on them and records them.
"""


class StarterError(InputError):
    """What `co2gate init` was given cannot be written as asked; one line naming it."""


class StarterWriteError(OutputError):
    """A starter file could not be written; nothing of this init is left behind."""


def budget_text(annual_kg: float = DEFAULT_ANNUAL_KG, location: Location | None = None) -> str:
    """budget.STARTER with the annual budget and a validated location filled in, checked by
    parsing it. Raises StarterError for an annual budget that is not a finite number > 0."""
    if not (math.isfinite(annual_kg) and annual_kg > 0):
        raise StarterError(f"--annual-kg {annual_kg!r}: must be a finite number of kg > 0")
    text = _replace(budgets.STARTER, "annual_budget_kg", _plain(annual_kg))
    where = location or Location()
    if where.country is not None:
        text = _replace(text, "  country", where.country)
    # Region and cloud names come from codecarbon's data; quoted, YAML reads none as a bool.
    if where.region is not None:
        text = _replace(text, "  region", json.dumps(where.region))
    if where.cloud is not None:
        text = _replace(text, "  cloud", json.dumps(where.cloud))
    try:
        budgets.parse(text, "the starter budget file")
    except budgets.BudgetError as e:  # a bug here, not the user's: say so plainly
        raise StarterError(f"co2gate's starter budget file does not parse: {e}") from e
    return text


def check_run(run: str) -> str:
    """The --run command, refused unless it is one line of printable text without `${{`.

    It is written into the workflow as text the Action runs with bash; GitHub would evaluate
    a `${{ }}` expression in it before bash sees it, so co2gate init writes none.
    """
    if not run.strip():
        raise StarterError("--run: empty; give the command to gate, e.g. 'python train.py'")
    _check_workflow_text("--run", run)
    return run


def workflow(budget_file: PurePosixPath, run: str = DEFAULT_RUN, workflow_file: str = "") -> str:
    """The workflow `co2gate init` writes: one job that runs `run` under the Action.

    budget_file is relative to the repository's root (the Action's working directory); it
    becomes the `budget-file:` input unless it is the default.
    """
    check_run(run)
    budget = budget_file.as_posix()
    _check_workflow_text("--budget-file", budget)
    budget_input = ""
    if budget != budgets.DEFAULT_FILE:
        budget_input = f"\n          budget-file: {yaml_quote(budget)}"
    return WORKFLOW.format(
        workflow_file=workflow_file or DEFAULT_WORKFLOW_FILE,
        budget_file=budget,
        action=ACTION,
        run=yaml_quote(run),
        budget_input=budget_input,
    )


def yaml_quote(text: str) -> str:
    """text as a single-quoted YAML scalar: no escapes but '' for ', so any one line of
    printable text reads back exactly (line breaks are refused before this)."""
    return "'" + text.replace("'", "''") + "'"


def repo_path(path: Path, option: str, root: Path) -> PurePosixPath:
    """path as the workflow names it: relative to the repository's root (where init runs)."""
    if path.is_absolute():
        try:
            path = path.relative_to(root.absolute())
        except ValueError:
            raise StarterError(
                f"{option} {str(path)!r}: outside this repository (the current directory); "
                "the workflow could not read it"
            ) from None
    posix = PurePosixPath(path.as_posix())
    if ".." in posix.parts:
        raise StarterError(
            f"{option} {str(path)!r}: give a path inside this repository, without '..'"
        )
    return posix


def gitignore_lines(ledger: budgets.LedgerConfig) -> list[str]:
    """What co2gate writes into a checkout: its reports, and (unless the ledger is none) the
    file ledger, which a branch ledger uses too anywhere outside GitHub Actions."""
    wanted = [REPORT_DIR]
    if ledger.backend is not budgets.LedgerBackend.NONE:
        parts = PurePosixPath(ledger.path).parts
        # co2gate's own dot-directory as a whole (.co2gate/), another path as it stands.
        top = parts[0] if parts and parts[0].startswith(".co2gate") else ledger.path
        wanted.append(top.rstrip("/") + "/")
    return wanted


def gitignore_missing(existing: str | None, wanted: Sequence[str]) -> list[str]:
    """The wanted patterns the .gitignore lacks. A pattern is there in any spelling git
    treats alike (`x`, `x/`, `/x/`), or negated (`!x/`: the user chose to keep it)."""
    present = {_pattern_key(line) for line in (existing or "").splitlines()}
    return [w for w in wanted if _pattern_key(w) not in present]


def gitignore_text(existing: str | None, missing: Sequence[str]) -> str:
    """The .gitignore with the missing patterns appended under a comment, in its own line
    endings."""
    old = existing or ""
    newline = "\r\n" if "\r\n" in old else "\n"
    head = old if not old or old.endswith(("\n", "\r")) else old + newline
    block = ["# co2gate: its reports and local ledger", *missing]
    return head + newline.join(block) + newline


def _pattern_key(line: str) -> str:
    return line.strip().lstrip("!").strip("/")


def local_command(run: str) -> str:
    """`co2gate run -- ...` for a terminal, doing what the Action does with run (bash -c)."""
    words = run.split()
    simple = not re.search(r"[;&|<>()$`\\\"'*?\[\]{}~!#]", run) and "=" not in words[0]
    if simple:
        return f"co2gate run -- {run.strip()}"
    return f"co2gate run -- bash -eo pipefail -c {shlex.quote(run)}"


def next_steps(
    budget_file: Path, workflow_file: Path | None, gitignore: list[str], run: str
) -> list[str]:
    """What init wrote, then the three steps from here to a gated pull request."""
    lines = [
        f"wrote {budget_file}: edit annual_budget_kg, allocations and location (country, "
        "region, cloud or intensity) to match your project"
    ]
    if workflow_file is not None:
        lines.append(
            f"wrote {workflow_file}: runs `{run}` under co2gate on pull requests and pushes "
            "to main; add your install step above it"
        )
    else:
        lines.append(
            f"the workflow is on stdout: save it as {DEFAULT_WORKFLOW_FILE} or add its step "
            "to a workflow of yours"
        )
    if gitignore:
        lines.append(f"added {' and '.join(gitignore)} to {GITIGNORE}")
    files = [str(budget_file)]
    if workflow_file is not None:
        files.append(str(workflow_file))
    if gitignore:
        files.append(GITIGNORE)
    lines += [
        "next:",
        f"1. try it locally: {local_command(run)}",
        f"2. commit the files: git add {shlex.join(files)} && git commit -m 'Add a carbon budget'",
        "3. push a branch and open a pull request: co2gate comments on it with the run's "
        "CO2e against the budget",
    ]
    return lines


@dataclass(frozen=True)
class Planned:
    """A file init is about to write; `replace`: it may replace one that exists."""

    path: Path
    text: str
    replace: bool = False


def refuse_existing(planned: Sequence[Planned]) -> None:
    """Refuse, before anything is written, a target that is a directory, that exists and may
    not be replaced, or that is given twice."""
    seen: dict[Path, Path] = {}
    for p in planned:
        key = Path(os.path.normcase(os.path.abspath(p.path)))
        if key in seen:
            raise StarterError(f"{p.path}: init would write it twice (as {seen[key]} too)")
        seen[key] = p.path
        try:
            if p.path.is_dir():
                raise StarterError(f"{p.path}: is a directory, not a file")
            for folder in p.path.parents:
                if folder.exists() and not folder.is_dir():
                    raise StarterError(f"{p.path}: {folder} is a file, not a folder")
            if p.path.exists() and not p.replace:
                raise StarterError(f"{p.path}: already exists; use --force to overwrite it")
        except OSError as e:  # a name too long, a loop of links
            raise StarterWriteError(f"{p.path}: cannot write it: {e.strerror or e}") from e


def write_all(planned: Sequence[Planned]) -> None:
    """Write every planned file, creating folders, or none: a failure undoes what this call
    wrote (restores replaced files, removes created ones and their new folders)."""
    refuse_existing(planned)
    done: list[tuple[Path, bytes | None]] = []  # each path written, and what it held before
    folders: list[Path] = []
    try:
        for p in planned:
            try:
                folders += _make_folders(p.path.parent)
                if p.replace:
                    old = p.path.read_bytes() if p.path.exists() else None
                    _replace_file(p.path, p.text)
                    done.append((p.path, old))
                else:
                    with p.path.open("x", encoding="utf-8", newline="") as f:  # "x": no race
                        done.append((p.path, None))
                        f.write(p.text)
            except FileExistsError:
                raise StarterError(
                    f"{p.path}: already exists; use --force to overwrite it"
                ) from None
            except OSError as e:
                raise StarterWriteError(f"{p.path}: cannot write it: {e.strerror or e}") from e
    except BaseException:
        _undo(done, folders)
        raise


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _make_folders(folder: Path) -> list[Path]:
    """Create folder and its missing parents; the ones created, outermost first."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    for f in reversed(missing):
        f.mkdir()
        made.append(f)
    return made


def _undo(done: list[tuple[Path, bytes | None]], folders: list[Path]) -> None:
    # Best effort: the error being raised names the file that failed.
    for path, old in reversed(done):
        with contextlib.suppress(OSError):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_workflow_text(option: str, value: str) -> None:
    """Refuse what would not stay one literal line in the workflow's YAML."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            kind = "a line break" if ch in "\n\r\x85\u2028\u2029" else "a control character"
            raise StarterError(
                f"{option}: contains {kind} (U+{ord(ch):04X}); give one line of printable "
                "text (join commands with && or put them in a script)"
            )
    if "${{" in value:
        raise StarterError(
            f"{option}: contains '${{{{', which GitHub would evaluate as an expression; "
            "co2gate init writes only literal text (add expressions to the workflow by hand, "
            "through env:)"
        )


def _replace(text: str, key: str, value: str) -> str:
    """`key: <value>` on its line replaced, the comment after it kept in its column."""
    pattern = re.compile(rf"^({re.escape(key)}: )(\S+)( *)(#.*)?$", re.MULTILINE)
    found = pattern.search(text)
    if found is None:
        raise AssertionError(f"budget.STARTER has no line for {key.strip()}")
    width = len(found[2]) + len(found[3])
    spacing = " " * max(1, width - len(value)) if found[4] else ""
    line = f"{found[1]}{value}{spacing}{found[4] or ''}"
    return text[: found.start()] + line + text[found.end() :]


def _plain(x: float) -> str:
    """A number as YAML reads it everywhere: no exponent (YAML 1.1 reads 1e-05 as text)."""
    text = format(Decimal(repr(float(x))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
