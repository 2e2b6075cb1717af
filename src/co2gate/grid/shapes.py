"""Reading a provider's JSON: every field checked, every failure one ProviderError line that
names the provider, the field and what was wrong with it (never the body itself)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from co2gate.grid.signal import Interval, ProviderError, Series

MAX_POINTS: Final = 20_000  # a month of 5-minute points and then some
LB_PER_MWH_TO_G_PER_KWH: Final = 0.45359237  # 1 lb = 453.59237 g; 1 MWh = 1000 kWh


def fail(name: str, what: str) -> ProviderError:
    return ProviderError(f"{name}: malformed answer: {what}")


def obj(value: object, name: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(name, f"{where} is not an object")
    return value


def array(value: object, name: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(name, f"{where} is not a list")
    if len(value) > MAX_POINTS:
        raise fail(name, f"{where} has more than {MAX_POINTS} points")
    return value


def when(value: object, name: str, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise fail(name, f"{where} is not a timestamp")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise fail(name, f"{where} {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise fail(name, f"{where} {value!r} has no timezone")
    return moment


def number(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(name, f"{where} is not a number")
    if not math.isfinite(value):
        raise fail(name, f"{where} is not finite")
    return float(value)


def interval(
    name: str,
    where: str,
    start: datetime,
    end: datetime,
    g_per_kwh: float,
    marginal: float | None = None,
) -> Interval:
    """An Interval, its checks (finite, in bounds, ends after it starts) as ProviderErrors."""
    try:
        return Interval(start, end, g_per_kwh, marginal)
    except ValueError as e:
        raise fail(name, f"{where}: {e}") from None


def series(
    points: Sequence[tuple[datetime, float, float | None]],
    name: str,
    step: timedelta,
    *,
    forecast: bool = False,
) -> Series:
    """Points (start, average, marginal), each lasting to the next point or `step`, whichever
    is sooner (a gap in the data stays a gap); duplicates keep the last one seen."""
    ordered = sorted({p[0]: p for p in points}.values(), key=lambda p: p[0])
    intervals = []
    for i, (start, average, marginal) in enumerate(ordered):
        end = start + step
        if i + 1 < len(ordered):
            end = min(end, ordered[i + 1][0])
        intervals.append(interval(name, start.isoformat(), start, end, average, marginal))
    try:
        return Series(tuple(intervals), name, forecast)
    except ValueError as e:
        raise fail(name, str(e)) from None
