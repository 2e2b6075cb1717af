"""The use cases, one module per command (measure, run, check, budget, estimate, init).

Each takes a typed request and returns an Outcome; `cli.py` only parses options into the
request, calls one function and prints the outcome. This is the one layer that wires the
rooms below it together (runner, meters, budget, ledger, report, GitHub adapters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Say = Callable[[str], None]  # prints one of co2gate's lines now (on stderr)


@dataclass
class Outcome:
    """What a command did: its exit code, the files it wrote and what it has to print."""

    exit_code: int = 0
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # co2gate's lines for stderr, in order
    stdout: str | None = None  # the command's result for stdout (a JSON document, a table)
    lost: bool = False  # something measured or decided could not be written or recorded

    def finish(self, command: int = 0, *, failed: bool = False) -> Outcome:
        """Set the exit code: the command's own non-zero code; else 1 when the gate failed;
        else 2 when co2gate could not write or record what it measured; else 0."""
        self.exit_code = command or (1 if failed else 2 if self.lost else 0)
        return self
