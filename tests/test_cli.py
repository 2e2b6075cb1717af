"""The command line: help everywhere, bad input as one line and exit 2, CI context."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import CliRun, late, refusal

from co2gate import __version__
from co2gate.cli import cli

PY = sys.executable


def test_every_command_and_option_has_help() -> None:
    assert cli.help
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "Training!"], "--workload 'Training!'"),
        (["--country", "XYZ"], "country"),
        (["--country", "USA", "--region", "virgina"], "virginia"),
        (["--pue", "0.9"], "pue"),
        (["--requests", "0"], "--requests"),
    ],
)
def test_bad_input_is_exit_2_and_the_command_goes_no_further(
    co2gate: CliRun, tmp_path: Path, args: list[str], message: str
) -> None:
    marker = tmp_path / "ran"
    out = str(tmp_path / "out")
    result = co2gate("measure", "--out", out, *args, "--", *late(marker))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_unusable_out_dir_is_exit_2_and_one_line(co2gate: CliRun, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    marker = tmp_path / "ran"
    out = str(blocker / "out")
    result = co2gate("measure", "--out", out, "--", *late(marker))
    assert result.returncode == 2
    assert refusal(result.stderr).strip().count("\n") == 0 and "--out" in result.stderr
    assert not marker.exists()


def test_github_context_is_recorded(co2gate: CliRun, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12, "head": {"sha": "ab" * 20}}}))
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "octo/models",
        "GITHUB_SHA": "m" * 40,
        "GITHUB_REF": "refs/pull/12/merge",
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_BASE_REF": "main",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKFLOW": "train",
        "GITHUB_JOB": "train-small",
        "GITHUB_RUN_ID": "987",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    result = co2gate("measure", "--out", str(tmp_path / "out"), "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "emissions.json").read_text())
    ci = doc["ci"]
    assert (ci["repository"], ci["event"], ci["pr"]) == ("octo/models", "pull_request", 12)
    assert ci["sha"] == "ab" * 20  # the PR's head, not the merge commit
    assert (ci["job"], ci["run_id"], ci["run_attempt"]) == ("train-small", "987", "2")
    assert doc["run"]["label"] == "train-small"  # the label defaults to the job's name


def test_outside_ci_there_is_no_context(co2gate: CliRun, tmp_path: Path) -> None:
    result = co2gate(
        "measure", "--out", str(tmp_path), "--label", "exp-1", "--workload", "inference",
        "--requests", "40", "--", PY, "-c", "pass", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "emissions.json").read_text())
    assert doc["ci"] is None
    run = doc["run"]
    assert (run["label"], run["workload"], doc["requests"]) == ("exp-1", "inference", 40)
    assert "world average" in doc["intensity_source"]
