"""The burn-down forecast: at this budget year's pace, the day a category's allocation runs out.

The pace assumes a constant rate since the budget year's start: the category's kg used so far
over the days elapsed, today counted whole (on the year's first day, one day has elapsed).
A run-out day is the day during which the used kg reaches the allocation at that pace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

# Past this many days from the year's start a run-out day is no forecast worth a date.
HORIZON_DAYS: Final = 3660


@dataclass(frozen=True)
class Burndown:
    """One category's forecast on `today`, in the budget year [start, end)."""

    category: str
    allocation_kg: float
    used_kg: float
    start: date
    end: date  # exclusive: the next year's first day
    today: date
    elapsed_days: int
    pace_kg_per_day: float
    runs_out_on: date | None  # None: no use yet (pace 0), or over HORIZON_DAYS away

    @property
    def before_year_end(self) -> bool:
        """True when the allocation runs out before the budget year ends: the warning."""
        return self.runs_out_on is not None and self.runs_out_on < self.end

    @property
    def run_out(self) -> bool:
        """True when the allocation is already spent."""
        return self.used_kg >= self.allocation_kg and self.pace_kg_per_day > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "pace_kg_per_day": self.pace_kg_per_day,
            "pace_since": self.start.isoformat(),
            "runs_out_on": self.runs_out_on.isoformat() if self.runs_out_on else None,
            "runs_out_before_year_end": self.before_year_end,
        }


def forecast(
    category: str, allocation_kg: float, used_kg: float, start: date, end: date, today: date
) -> Burndown:
    """The forecast for a category that used `used_kg` of `allocation_kg` from `start` to the
    end of `today` (clamped into the year [start, end))."""
    if not (math.isfinite(used_kg) and used_kg >= 0):
        raise ValueError(f"used_kg must be a finite number >= 0, got {used_kg!r}")
    if not (math.isfinite(allocation_kg) and allocation_kg >= 0):
        raise ValueError(f"allocation_kg must be a finite number >= 0, got {allocation_kg!r}")
    last = end - timedelta(days=1)
    day = min(max(today, start), last)
    elapsed = (day - start).days + 1
    pace = used_kg / elapsed
    runs_out_on = None
    if pace > 0:
        days = allocation_kg / pace  # from the start of the year's first day
        if days < HORIZON_DAYS:
            runs_out_on = start + timedelta(days=max(0, math.ceil(days) - 1))
    return Burndown(category, allocation_kg, used_kg, start, end, day, elapsed, pace, runs_out_on)
