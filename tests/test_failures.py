"""Hostile inputs and failures after the command, through the real entry point: a huge label,
writes that fail once the command has ended (a full disk, a cancelled job), budget files that
are no regular file or too big, GitHub's error messages, links in the report.

Each failure must keep the command's exit code (else 1 when the gate fails, else 2), say what
was lost in one line each, leave no temporary file and write what it still can."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub
from test_publish_cli import Step

import co2gate as co2gate_package
from co2gate.github.comments import fit, marker

PY = sys.executable
REPORT = "co2gate-report"
# A child process imports co2gate from where this one did (this worktree's src), not from
# wherever the venv's editable install points.
SRC = str(Path(co2gate_package.__file__).resolve().parent.parent)


def actions_env(step: Step, **kwargs: str) -> dict[str, str]:
    return step.env(**kwargs) | {"PYTHONPATH": SRC}


@pytest.fixture
def step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub) -> Step:
    monkeypatch.chdir(tmp_path)
    return Step(tmp_path, fake_github)


def co2gate_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("co2gate:", "::"))]


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


def strays(root: Path) -> list[Path]:
    """Temporary files co2gate's atomic writes could leave behind."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# -- 7. a label of any length ---------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "\U0001f600"])  # 1 and 12 characters each once encoded
def test_a_long_label_passes_and_its_comment_is_found_again(
    co2gate: CliRun, step: Step, char: str
) -> None:
    step.budget()
    label = char * 200  # the longest label emissions.json holds
    first = co2gate("run", "--label", label, "--", PY, "-c", "pass", env=actions_env(step))
    assert first.returncode == 0, first.stderr[-2000:]
    no_traceback(first.stderr)
    (comment,) = step.comments()
    assert len(comment["body"]) <= 65_536
    assert comment["body"].startswith(marker(label)), comment["body"][:400]
    assert len(marker(label)) < 300
    second = co2gate(
        "run", "--label", label, "--", PY, "-c", "pass", env=actions_env(step, run_id="78")
    )
    assert second.returncode == 0, second.stderr[-2000:]
    (edited,) = step.comments()  # found again by its (shortened) marker, not a second one
    assert edited["id"] == comment["id"] and "PR comment updated" in second.stderr
    other = label[:-1] + "y"  # differs only at its end, beyond the marker's readable start
    third = co2gate(
        "run", "--label", other, "--", PY, "-c", "pass", env=actions_env(step, run_id="79")
    )
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(step.comments()) == 2  # its own comment


@pytest.mark.parametrize("char", ["x", "\u20ac"])
def test_a_22000_character_label_is_refused_before_the_command_starts(
    co2gate: CliRun, step: Step, char: str
) -> None:
    step.budget()
    result = co2gate(
        "run", "--label", char * 22_000, "--", PY, "-c", "print('ran')", env=actions_env(step)
    )
    assert result.returncode == 2
    assert result.stdout == ""  # the command never started: nothing measured and lost
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: --label: 22,000 characters") and len(line) < 200
    assert not (step.root / REPORT).exists() and step.comments() == []


def test_a_marker_stays_short_and_fit_never_asserts() -> None:
    huge = marker("\u20ac" * 22_000)
    assert len(huge) < 300 and huge != marker("\u20ac" * 21_999 + "x")
    assert fit(huge + "\n" + "a" * 100_000).startswith(huge)
    assert len(fit(huge + "\n" + "a" * 100_000)) <= 65_536
    long_mark = "<!-- co2gate:comment label=" + "x" * 70_000 + " -->"  # from another tool
    assert len(fit(long_mark + "\nbody")) <= 65_536
