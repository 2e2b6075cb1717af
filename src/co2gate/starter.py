"""`co2gate init`: the commented starter budget file, and the workflow that uses it."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Final

from co2gate import budget as budgets
from co2gate import intensity
from co2gate.errors import InputError

DEFAULT_ANNUAL_KG: Final = 500.0

# Printed after the budget file is written: a workflow to paste, valid YAML as it stands.
WORKFLOW: Final = """\
# .github/workflows/carbon.yml: measure the training step, gate it against the budget
# in {budget_file}, record it and comment on the pull request.
name: carbon
on:
  push:
    branches: [main]
  pull_request:

permissions: {{}}

jobs:
  train:
    runs-on: ubuntu-latest
    permissions:
      contents: write        # co2gate records each run in the ledger branch (co2gate-ledger)
      pull-requests: write   # co2gate upserts its report as one comment on the pull request
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      # Install what your step needs here (pip install -r requirements.txt, ...).
      - uses: co2gate/co2gate@v1
        with:
          run: python train.py
          workload: training
# Pull requests from forks get a read-only token: co2gate still gates them and writes the
# job summary; the README's workflow_run companion comments on them and records them.
"""


class StarterError(InputError):
    """The starter file cannot be written; one line naming the file."""


def budget_text(annual_kg: float = DEFAULT_ANNUAL_KG, country: str | None = None) -> str:
    """budget.STARTER with the annual budget and the country filled in, checked by parsing it.

    Raises StarterError for a country codecarbon's data does not know (with a suggestion)
    or an annual budget that is not a finite number > 0.
    """
    if not (math.isfinite(annual_kg) and annual_kg > 0):
        raise StarterError(f"--annual-kg {annual_kg!r}: must be a finite number of kg > 0")
    text = _replace(budgets.STARTER, "annual_budget_kg", _plain(annual_kg))
    if country is not None:
        try:
            place = intensity.validate(intensity.Location(country=country))
        except intensity.LocationError as e:
            raise StarterError(f"--country: {e}") from e
        text = _replace(text, "  country", str(place.country))
    try:
        budgets.parse(text, "the starter budget file")
    except budgets.BudgetError as e:  # a bug here, not the user's: say so plainly
        raise StarterError(f"co2gate's starter budget file does not parse: {e}") from e
    return text


def write_budget(path: Path, text: str, *, force: bool = False) -> Path:
    """Write the budget file, creating its folders; never over an existing file unless force."""
    if path.is_dir():
        raise StarterError(f"{path}: is a directory, not a budget file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if force:
            from co2gate.emissions import write_atomic

            write_atomic(path, text)
        else:
            with path.open("x", encoding="utf-8") as f:  # "x": fails if it exists, no race
                f.write(text)
    except FileExistsError:
        raise StarterError(f"{path}: already exists; use --force to overwrite it") from None
    except OSError as e:
        raise StarterError(f"{path}: cannot write it: {e.strerror or e}") from e
    return path


def workflow(budget_file: Path) -> str:
    """The workflow snippet `co2gate init` prints: one job that gates a training step."""
    return WORKFLOW.format(budget_file=budget_file.as_posix())


def next_steps(path: Path) -> str:
    """The line that says what was written and what to edit in it."""
    return (
        f"wrote {path}: edit annual_budget_kg, allocations and location (country, cloud or "
        "intensity) to match your project, then add the workflow below as "
        ".github/workflows/carbon.yml, with your own step under run:"
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
