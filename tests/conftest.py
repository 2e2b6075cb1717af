"""Shared pytest configuration for co2gate's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

CliRun = Callable[..., "subprocess.CompletedProcess[Any]"]


# Commands that start a process (the runner, its signals) run as a real child process;
# the others run in this one through click's CliRunner, which is much faster.
SPAWNING = ("measure", "run")


@pytest.fixture
def co2gate() -> CliRun:
    """Run the real CLI as a CI step would: co2gate(*args, env=, text=, process=). `env`
    replaces the whole environment, as it does for a child process; `process=True` runs
    any command as a child process."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, text: bool = True, process: bool = False
    ) -> subprocess.CompletedProcess[Any]:
        if process or not text or not args or args[0] in SPAWNING:
            if env is not None and "PYTHONPATH" in os.environ:  # a worktree's src/, not the
                env = {"PYTHONPATH": os.environ["PYTHONPATH"], **env}  # editable install's
            return subprocess.run(
                [sys.executable, "-m", "co2gate", *args],
                capture_output=True,
                text=text,
                timeout=120,
                env=env,
            )
        return in_process(list(args), env)

    return run


# co2gate/launch.py starts the command of `measure` and `run` before the CLI checks the line;
# when the CLI refuses it, the command is stopped at once and a last line says so.
STOPPED = "nothing was measured (co2gate checks its options and budget file while"


def refusal(stderr: str) -> str:
    """stderr without launch.py's last line about the command it stopped, if there is one."""
    lines = stderr.splitlines(keepends=True)
    if lines and STOPPED in lines[-1]:
        lines.pop()
    return "".join(lines)


def late(marker: os.PathLike[str] | str) -> list[str]:
    """A command that creates marker 5 s after it starts: a refused line stops it long before."""
    return [sys.executable, "-c", f"import time; time.sleep(5); open({str(marker)!r}, 'w')"]


def in_process(args: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[Any]:
    from click.testing import CliRunner

    from co2gate.cli import cli

    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        result = CliRunner().invoke(cli, args, prog_name="co2gate")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


# The fake GitHub API (tests/fakegithub.py), shared by the ledger and GitHub tests.
from collections.abc import Iterator  # noqa: E402

from fakegithub import FakeGitHub  # noqa: E402


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on 127.0.0.1 serving the repository octo/lab; `.api_url`, `.token`."""
    with FakeGitHub() as fake:
        yield fake
