"""What a grid intensity provider answers, and the budget file's `intensity:` section.

A provider (Electricity Maps, WattTime, the GB Carbon Intensity API, a CSV file) gives a
`Series`: consecutive `Interval`s, each with the average (location-based) intensity and,
where the provider has it, the marginal one. Every figure is checked here, once, before
any arithmetic: an interval must be timezone-aware, non-empty and its intensities finite
and within units.MAX_INTENSITY_G_PER_KWH.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from co2gate.errors import ServiceError
from co2gate.grid.config import IntensityConfig, ProviderName, Signal
from co2gate.units import MAX_INTENSITY_G_PER_KWH

__all__ = [
    "ForecastUnavailable",
    "GridSource",
    "IntensityConfig",
    "Interval",
    "ProviderError",
    "ProviderName",
    "Series",
    "Signal",
]


class ProviderError(ServiceError):
    """A provider could not answer (network, 401, 429, a malformed body). Callers fall back
    to codecarbon's figure and say so; a run is never lost or failed by a provider."""


class ForecastUnavailable(ProviderError):
    """The provider (or the key's plan) has no forecast."""


def _intensity(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if not 0 <= value <= MAX_INTENSITY_G_PER_KWH:
        raise ValueError(f"{what} {value!r} is outside 0..{MAX_INTENSITY_G_PER_KWH:g} gCO2e/kWh")
    return float(value)


@dataclass(frozen=True, slots=True)
class Interval:
    """[start, end) at one intensity (gCO2e/kWh). Raises ValueError when a figure is bad:
    providers turn that into a ProviderError naming what answered."""

    start: datetime
    end: datetime
    g_per_kwh: float
    marginal_g_per_kwh: float | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("an interval's times must carry a timezone")
        if not self.end > self.start:
            raise ValueError(f"an interval must end after it starts ({self.start} .. {self.end})")
        _intensity(self.g_per_kwh, "g_per_kwh")
        _intensity(self.marginal_g_per_kwh, "marginal_g_per_kwh")

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Series:
    """Consecutive intervals in time order (gaps allowed, overlaps not).

    `source` names where the figures came from ("carbonintensity-uk national",
    "file intensity.csv"); `forecast` says whether they are predicted or measured.
    """

    intervals: tuple[Interval, ...]
    source: str
    forecast: bool = False

    def __post_init__(self) -> None:
        for before, after in zip(self.intervals, self.intervals[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"intervals overlap or are out of order at {after.start}")

    @property
    def start(self) -> datetime | None:
        return self.intervals[0].start if self.intervals else None

    @property
    def end(self) -> datetime | None:
        return self.intervals[-1].end if self.intervals else None

    def at(self, when: datetime) -> Interval | None:
        """The interval holding `when`, or None in a gap or outside the series."""
        i = bisect_right([iv.start for iv in self.intervals], when) - 1
        if i >= 0 and when < self.intervals[i].end:
            return self.intervals[i]
        return None

    def between(self, start: datetime, end: datetime) -> Series:
        """The intervals that overlap [start, end), uncut."""
        kept = tuple(iv for iv in self.intervals if iv.end > start and iv.start < end)
        return Series(kept, self.source, self.forecast)


class GridSource(Protocol):
    """One provider, opened with its configuration. Each call may raise ProviderError."""

    name: str  # e.g. "electricitymaps DE": what reports and notes call it

    def history(self, start: datetime, end: datetime) -> Series:
        """Measured intensities over [start, end)."""
        ...

    def forecast(self, start: datetime, end: datetime) -> Series:
        """Predicted intensities over [start, end); ForecastUnavailable if there are none."""
        ...

    def latest(self) -> Interval:
        """The provider's current figure: the interval holding now, or the last one it has
        published (providers publish with a lag, so it may have ended)."""
        ...
