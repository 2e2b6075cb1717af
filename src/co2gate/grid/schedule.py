"""When to run, and when to pause, on a forecast: pure arithmetic over a `Series`.

Power is taken as constant while the command runs, so a run's emissions per kWh are the
time-weighted mean intensity over the hours it runs; partial intervals count by the part
the run covers. Nothing here reads a clock or a provider: callers pass `now`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from co2gate.errors import InputError
from co2gate.grid.signal import Series

__all__ = [
    "MAX_DURATION",
    "Choice",
    "PausePlan",
    "ScheduleError",
    "Segment",
    "best_start",
    "mean_intensity",
    "parse_deadline",
    "parse_duration",
    "pause_plan",
    "should_pause",
]

MAX_DURATION: Final = timedelta(days=14)  # no provider forecasts further; a typo is caught
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(s|m|min|h|d)")
_UNIT_S: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class ScheduleError(InputError):
    """The forecast cannot answer the question asked (too short, a gap, a deadline too near)."""


def parse_duration(text: str, what: str, maximum: timedelta = MAX_DURATION) -> timedelta:
    """'90m', '3h', '1.5h', '1d', '45s' (also '90min'): a positive duration up to `maximum`."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise InputError(f"{what}: {text!r} is not a duration: a number and s, m, h or d (90m, 3h)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"{what}: {text!r} must be longer than zero")
    if seconds > maximum.total_seconds():
        raise InputError(f"{what}: {text!r} is longer than {_show(maximum)}")
    return timedelta(seconds=seconds)


def _show(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} h"


def mean_intensity(series: Series, start: datetime, end: datetime) -> float | None:
    """The time-weighted mean gCO2e/kWh over [start, end); None where the series does not
    cover all of it (a gap, or outside it)."""
    if not end > start:
        raise ValueError("the span must end after it starts")
    covered = timedelta(0)
    weighted = 0.0
    for iv in series.between(start, end).intervals:
        part = min(iv.end, end) - max(iv.start, start)
        covered += part
        weighted += part.total_seconds() * iv.g_per_kwh
    if covered != end - start:
        return None
    return weighted / (end - start).total_seconds()


@dataclass(frozen=True)
class Choice:
    """The best start within a window, and what starting now would have meant."""

    start: datetime
    end: datetime
    g_per_kwh: float  # the run's expected mean intensity from `start`
    now: datetime
    now_g_per_kwh: float | None  # from now; None when the forecast does not cover it

    @property
    def saving(self) -> float | None:
        """The share of the emissions that starting at `start` saves against starting now."""
        if self.now_g_per_kwh is None or self.now_g_per_kwh <= 0:
            return None
        return 1.0 - self.g_per_kwh / self.now_g_per_kwh


def _candidates(
    series: Series, duration: timedelta, first: datetime, last: datetime
) -> set[datetime]:
    """The starts where the mean can reach its minimum: it is piecewise linear in the start,
    with corners where the run's start or end meets an interval's edge."""
    starts = {first, last}
    for iv in series.intervals:
        for edge in (iv.start, iv.end):
            for start in (edge, edge - duration):
                if first <= start <= last:
                    starts.add(start)
    return starts


def best_start(series: Series, duration: timedelta, now: datetime, within: timedelta) -> Choice:
    """The start in [now, now + within] whose run of `duration` has the lowest expected mean
    intensity on `series`; the earliest of equals. ScheduleError when no start in the window
    has the whole run inside the forecast."""
    if not series.intervals:
        raise ScheduleError(f"the forecast from {series.source} is empty")
    best: tuple[float, datetime] | None = None
    for start in sorted(_candidates(series, duration, now, now + within)):
        g = mean_intensity(series, start, start + duration)
        if g is not None and (best is None or g < best[0] - 1e-9):
            best = (g, start)
    if best is None:
        raise ScheduleError(
            f"the forecast from {series.source} ({_stamp(series.start)} to {_stamp(series.end)}) "
            f"does not cover a {_show(duration)} run starting within {_show(within)} of "
            f"{_stamp(now)}"
        )
    g, start = best
    return Choice(start, start + duration, g, now, mean_intensity(series, now, now + duration))


def _stamp(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


def should_pause(g_per_kwh: float | None, threshold: float, slack_s: float) -> bool:
    """The pause rule: pause while the intensity is above the threshold, unless the time left
    to the deadline is no more than the work left (slack <= 0: run to make the deadline).
    An unknown intensity never pauses."""
    return g_per_kwh is not None and g_per_kwh > threshold and slack_s > 0


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    running: bool
    g_per_kwh: float | None  # None where the series has no figure (the command runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "state": "running" if self.running else "paused",
            "g_per_kwh": self.g_per_kwh,
        }


@dataclass(frozen=True)
class PausePlan:
    """Pause-and-resume over a series: the segments, the finish and the saving."""

    segments: tuple[Segment, ...]
    g_per_kwh: float | None  # mean over the running segments
    unpaused_g_per_kwh: float | None  # mean had it run straight through from the start

    @property
    def finish(self) -> datetime:
        return self.segments[-1].end

    @property
    def pauses(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if not s.running)

    @property
    def saving(self) -> float | None:
        if self.g_per_kwh is None or not self.unpaused_g_per_kwh:
            return None
        return 1.0 - self.g_per_kwh / self.unpaused_g_per_kwh


def pause_plan(
    series: Series, work: timedelta, now: datetime, deadline: datetime, threshold: float
) -> PausePlan:
    """Run `work` from `now`, pausing while the series is above `threshold`, and resuming at
    the latest moment that still finishes by `deadline` (should_pause)."""
    if work > deadline - now:
        raise ScheduleError(
            f"the deadline {_stamp(deadline)} leaves {_show(deadline - now)}, less than the "
            f"{_show(work)} of work"
        )
    segments: list[Segment] = []
    t, left = now, work
    while left > timedelta(0):
        iv = series.at(t)
        g = iv.g_per_kwh if iv is not None else None
        edge = iv.end if iv is not None else _next_start(series, t)
        slack = (deadline - t) - left
        if should_pause(g, threshold, slack.total_seconds()):
            until = min(edge, t + slack) if edge is not None else t + slack
            _add(segments, Segment(t, until, False, g))
            t = until
        else:
            until = t + left if edge is None else min(edge, t + left)
            _add(segments, Segment(t, until, True, g))
            left -= until - t
            t = until
    running = [s for s in segments if s.running]
    known = all(s.g_per_kwh is not None for s in running)
    total = sum(((s.end - s.start).total_seconds() for s in running), 0.0)
    mean = (
        sum((s.end - s.start).total_seconds() * (s.g_per_kwh or 0.0) for s in running) / total
        if known
        else None
    )
    return PausePlan(tuple(segments), mean, mean_intensity(series, now, now + work))


def _next_start(series: Series, t: datetime) -> datetime | None:
    return next((iv.start for iv in series.intervals if iv.start > t), None)


def _add(segments: list[Segment], segment: Segment) -> None:
    """Append, merging with the last segment when nothing but the clock changed."""
    if segments:
        last = segments[-1]
        if last.running == segment.running and last.g_per_kwh == segment.g_per_kwh:
            segments[-1] = Segment(last.start, segment.end, last.running, last.g_per_kwh)
            return
    segments.append(segment)


def parse_deadline(text: str, now: datetime, what: str = "--deadline") -> datetime:
    """An ISO 8601 time with its timezone ('2026-05-03T06:00Z'), or a duration from now
    ('72h'); it must lie ahead, within MAX_DURATION."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return now + parse_duration(text, what)
    if when.tzinfo is None:
        raise InputError(f"{what}: {text!r} has no timezone (add Z or +00:00)")
    if when <= now:
        raise InputError(f"{what}: {text!r} has passed")
    if when - now > MAX_DURATION:
        raise InputError(f"{what}: {text!r} is more than {_show(MAX_DURATION)} away")
    return when
