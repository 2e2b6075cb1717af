"""co2gate's own lines on stderr, safe to print in a GitHub Actions job.

The runner reads every line of a step's output for workflow commands: a line that starts
with `::` (after leading whitespace), or holds `##[` anywhere (the old form). A line built
from outside data (a budget key, an artifact's field, GitHub's error message) must neither
become several lines nor carry such a command, nor a token. `line()` makes any text one
such line; co2gate's own workflow commands (github/workflow.py `annotation`) are
WorkflowCommand strings, escaped where they are built, and pass as they are (masked).
"""

from __future__ import annotations

import re

from co2gate.tokens import mask

PREFIX = "co2gate: "

# What a terminal or the runner may take for the end of a line (str.splitlines' set).
_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# Other control characters (an ESC could start a terminal sequence that hides text).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f]")


class WorkflowCommand(str):
    """A workflow command co2gate built itself, its parts escaped (`::warning ...::...`)."""

    __slots__ = ()


def line(text: str, prefix: str = PREFIX) -> str:
    """text as one line for stderr: secrets masked, line breaks as spaces, other control
    characters as \\xNN, `##[` broken up, and prefix in front (so it never starts with
    `::`). A WorkflowCommand stays as it is, masked."""
    if isinstance(text, WorkflowCommand):
        return mask(text)
    return prefix + inert(text)


def inert(text: str) -> str:
    """text masked and made one line that carries no workflow command, with no prefix."""
    s = _BREAKS.sub(" ", mask(text))
    s = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    s = s.replace("##[", "##\\[")
    if s.lstrip().startswith("::"):
        s = "\\" + s.lstrip()
    return s
