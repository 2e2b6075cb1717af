"""The GitHub Actions runner's files and workflow commands: step outputs, job summary,
annotations. Each writer does nothing outside Actions (its file variable unset)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Literal

from co2gate.lines import WorkflowCommand
from co2gate.tokens import mask

# The runner refuses a step summary over 1 MiB (and shows none of it).
SUMMARY_LIMIT = 1024 * 1024
Level = Literal["error", "warning", "notice"]


def write_outputs(outputs: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Append step outputs to $GITHUB_OUTPUT, every value in the `name<<DELIMITER` form.

    The delimiter is random per value and checked against it, so no value (a command's
    text, a multi-line report) can end its own block early and set other outputs.
    """
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return False
    blocks = []
    for name, raw in outputs.items():
        value = mask(raw)
        delimiter = _delimiter(value)
        blocks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(blocks))
    return True


def _delimiter(value: str) -> str:
    while True:
        delimiter = f"co2gate_{secrets.token_hex(12)}"
        if delimiter not in value:
            return delimiter


def append_summary(markdown: str, env: Mapping[str, str]) -> bool:
    """Append Markdown to the job summary, cut so the file stays within the runner's 1 MiB.

    The file is the step's own, but the wrapped command may have written to it too: what is
    there is left alone and this report is cut (at a line) to what remains, saying so.
    """
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        used = os.path.getsize(path)
    except OSError:
        used = 0
    text = mask(markdown)
    text = text if text.endswith("\n") else text + "\n"
    data = _cut(text, SUMMARY_LIMIT - used)
    if data:
        with open(path, "ab") as f:
            f.write(data)
    return True


CUT_NOTE = "\n*co2gate: the rest of this report is cut to fit the job summary's 1 MiB.*\n"


def _cut(text: str, room: int) -> bytes:
    """`text` as UTF-8 in at most `room` bytes, cut after a whole line with CUT_NOTE."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return data
    note = CUT_NOTE.encode("utf-8")
    if room < len(note):
        return b""
    head = data[: room - len(note)]
    head = head[: head.rfind(b"\n") + 1]  # whole lines only (and never half a character)
    return head + note


def annotation(level: Level, message: str, *, title: str | None = None) -> WorkflowCommand:
    """A workflow command line (`::error title=...::message`) with both parts masked and
    escaped; the one kind of line co2gate prints that starts with `::`."""
    props = f" title={escape_property(mask(title))}" if title else ""
    return WorkflowCommand(f"::{level}{props}::{escape_data(mask(message))}")


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF escaped the way the runner unescapes them."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, and also : and ,."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
