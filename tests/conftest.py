"""Shared pytest configuration for co2gate's tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

CliRun = Callable[..., "subprocess.CompletedProcess[Any]"]


@pytest.fixture
def co2gate() -> CliRun:
    """Run the real CLI in a child process, as a CI step would: co2gate(*args, env=, text=)."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, text: bool = True
    ) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(
            [sys.executable, "-m", "co2gate", *args],
            capture_output=True,
            text=text,
            timeout=120,
            env=env,
        )

    return run


# The fake GitHub API (tests/fakegithub.py), shared by the ledger and GitHub tests.
from collections.abc import Iterator  # noqa: E402

from fakegithub import FakeGitHub  # noqa: E402


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on 127.0.0.1 serving the repository octo/lab; `.api_url`, `.token`."""
    with FakeGitHub() as fake:
        yield fake
