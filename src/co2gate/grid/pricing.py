"""Price a run's energy interval by interval: the kWh drawn in each of the provider's
intervals x that interval's intensity, summed; never the mean of the intensities x the
energy (wrong whenever the energy is uneven over the run).

Energy arrives as samples (start, end, kWh), each drawn at an even rate over its own span;
a run with no finer samples is one sample over its whole lifetime, and `Priced.energy`
says so. Pure: no network, no files.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Final

from co2gate.grid.signal import Interval, ProviderError, Series

MAX_SERIES: Final = 1000  # intervals emissions.json keeps; longer runs merge neighbours
MAX_GAP: Final = timedelta(hours=2)  # time priced at the nearest interval when uncovered


class Method(str, enum.Enum):
    """emissions.json's `intensity_method` when a provider priced the run."""

    HOURLY = "provider-hourly"  # the run spans more than one of the provider's intervals
    LATEST = "provider-latest"  # the run fits in one interval: that one figure


class EnergySpread(str, enum.Enum):
    """How the run's energy was laid over time, as emissions.json says it."""

    SAMPLED = "sampled"  # the meters' samples over time
    EVEN = "even"  # no samples over time: the run's energy at its mean power


@dataclass(frozen=True)
class EnergySample:
    start: datetime
    end: datetime
    energy_kwh: float


@dataclass(frozen=True)
class PricedInterval:
    """One interval of the series with the energy the run drew in it."""

    start: datetime
    end: datetime
    g_per_kwh: float
    marginal_g_per_kwh: float | None
    energy_kwh: float


@dataclass(frozen=True)
class Priced:
    intervals: tuple[PricedInterval, ...]
    g_per_kwh: float  # energy-weighted: total x this = the sum over the intervals
    marginal_g_per_kwh: (
        float | None
    )  # the same for the marginal figure, where every interval has it
    method: Method
    energy: EnergySpread
    source: str


def _overlap(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> float:
    return max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds())


def _nearest(intervals: Sequence[Interval], start: datetime, end: datetime) -> int:
    """The interval closest in time to [start, end); ProviderError if none is within MAX_GAP."""
    best, distance = -1, timedelta.max
    for i, iv in enumerate(intervals):
        d = max(iv.start - end, start - iv.end, timedelta(0))
        if d < distance:
            best, distance = i, d
    if best < 0 or distance > MAX_GAP:
        span = f"{start.isoformat(timespec='minutes')}..{end.isoformat(timespec='minutes')}"
        raise ProviderError(f"no figure within {MAX_GAP} of {span}")
    return best


def price(
    series: Series,
    samples: Sequence[EnergySample],
    spread: EnergySpread = EnergySpread.EVEN,
) -> Priced:
    """The run's samples priced by the series. Time the series leaves uncovered (the current
    hour not yet published, a gap) is priced at the nearest interval within MAX_GAP; further
    than that raises ProviderError. A run that drew nothing is weighted by time instead."""
    intervals = series.intervals
    if not intervals:
        raise ProviderError(f"{series.source}: no figures over the run")
    starts = [iv.start for iv in intervals]
    energy = [0.0] * len(intervals)
    seconds = [0.0] * len(intervals)
    for sample in samples:
        span = (sample.end - sample.start).total_seconds()
        if span <= 0:
            continue
        covered = 0.0
        i = max(0, bisect_right(starts, sample.start) - 1)  # intervals are in time order
        while i < len(intervals) and intervals[i].start < sample.end:
            iv = intervals[i]
            overlap = _overlap(sample.start, sample.end, iv.start, iv.end)
            if overlap:
                energy[i] += sample.energy_kwh * overlap / span
                seconds[i] += overlap
                covered += overlap
            i += 1
        if covered < span:
            # Attribute what no interval covers to the interval nearest to each uncovered part.
            cursor = sample.start
            ends: list[Interval | None] = [*intervals, None]
            for edge in ends:
                gap_end = sample.end if edge is None else min(edge.start, sample.end)
                if gap_end > cursor:
                    j = _nearest(intervals, cursor, gap_end)
                    part = (gap_end - cursor).total_seconds()
                    energy[j] += sample.energy_kwh * part / span
                    seconds[j] += part
                if edge is not None:
                    cursor = max(cursor, edge.end)
                if cursor >= sample.end:
                    break
    weights = energy if sum(energy) > 0 else seconds
    used = [i for i, w in enumerate(weights) if w > 0]
    if not used:
        raise ProviderError(f"{series.source}: no figures over the run")
    total = sum(weights[i] for i in used)
    g = sum(weights[i] * intervals[i].g_per_kwh for i in used) / total
    marginals = [intervals[i].marginal_g_per_kwh for i in used]
    marginal = None
    if all(m is not None for m in marginals):
        marginal = sum(weights[i] * (intervals[i].marginal_g_per_kwh or 0.0) for i in used) / total
    kept = tuple(
        PricedInterval(
            intervals[i].start,
            intervals[i].end,
            intervals[i].g_per_kwh,
            intervals[i].marginal_g_per_kwh,
            energy[i],
        )
        for i in used
    )
    method = Method.LATEST if len(kept) == 1 else Method.HOURLY
    return Priced(_bounded(kept), g, marginal, method, spread, series.source)


def _bounded(intervals: tuple[PricedInterval, ...]) -> tuple[PricedInterval, ...]:
    """At most MAX_SERIES intervals: neighbours merged, each merged figure energy-weighted
    (so the series still sums to the run's emissions)."""
    if len(intervals) <= MAX_SERIES:
        return intervals
    size = -(-len(intervals) // MAX_SERIES)
    out = []
    for k in range(0, len(intervals), size):
        group = intervals[k : k + size]
        kwh = sum(iv.energy_kwh for iv in group)
        w = [iv.energy_kwh for iv in group] if kwh > 0 else [1.0] * len(group)
        total = sum(w)
        g = sum(wi * iv.g_per_kwh for wi, iv in zip(w, group, strict=True)) / total
        marginal = None
        if all(iv.marginal_g_per_kwh is not None for iv in group):
            marginal = (
                sum(wi * (iv.marginal_g_per_kwh or 0.0) for wi, iv in zip(w, group, strict=True))
                / total
            )
        out.append(PricedInterval(group[0].start, group[-1].end, g, marginal, kwh))
    return tuple(out)


def samples_from_readings(
    start: datetime,
    end: datetime,
    total_kwh: float,
    readings: Sequence[tuple[datetime, float]],
) -> tuple[list[EnergySample], EnergySpread]:
    """The run's energy as samples between the live guard's readings (when, kWh read so far),
    scaled so they sum to total_kwh (the run's figure, extrapolated to its lifetime); the
    stretch after the last reading at the mean rate seen. Without readings that moved: one
    even sample over the run."""
    points = [(t, e) for t, e in readings if start < t < end]
    even = [EnergySample(start, end, total_kwh)], EnergySpread.EVEN
    if not points or total_kwh <= 0:
        return even
    edges = [start, *(t for t, _ in points)]
    steps = []
    before = 0.0
    for (t0, t1), (_, energy) in zip(pairwise(edges), points, strict=True):
        steps.append((t0, t1, max(0.0, energy - before)))
        before = max(before, energy)
    seen_s = (points[-1][0] - start).total_seconds()
    if before <= 0 or seen_s <= 0:
        return even
    tail_s = (end - points[-1][0]).total_seconds()
    steps.append((points[-1][0], end, before / seen_s * tail_s))
    read = sum(kwh for _, _, kwh in steps)
    return (
        [EnergySample(t0, t1, total_kwh * kwh / read) for t0, t1, kwh in steps if t1 > t0],
        EnergySpread.SAMPLED,
    )
