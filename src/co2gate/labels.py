"""What the user says a run is: its label, its workload (budget category), its units of work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunLabels:
    """What the user said this run is."""

    label: str
    workload: str
    requests: int | None = None
