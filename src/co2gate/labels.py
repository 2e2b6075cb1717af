"""What the user says a run is: its label, its workload (budget category), its units of work."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from co2gate.errors import InputError

MAX_LABEL = 200  # characters: what emissions.json may hold (model.MAX_NAME)
UNITS = ("tokens", "samples", "steps")  # --unit: what --units counts (SCI's functional unit)


def check_label(label: str, given: str) -> str:
    """The label, or an InputError naming where it came from (`given`): at most MAX_LABEL
    printable characters, so the run it names can be written, read back and recorded."""
    if len(label) > MAX_LABEL:
        raise InputError(f"{given}: {len(label):,} characters; a label has at most {MAX_LABEL}")
    if not label.strip() or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in label):
        raise InputError(f"{given}: {label!r} is not a label (printable characters only)")
    return label


@dataclass(frozen=True)
class RunLabels:
    """What the user said this run is."""

    label: str
    workload: str
    requests: int | None = None  # the run's units of work: --requests, or --units
    unit: str | None = None  # what `requests` counts when --units gave it (UNITS)
