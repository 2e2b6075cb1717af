"""Quality beside cost: the front of CO2e against a quality metric over a label's runs.

A run dominates another when it emitted no more CO2e and its metric is no worse, and is
strictly ahead on one of the two. The front is the runs no other run dominates: the trade-offs
worth having. A new run is "on the front" when none of the label's history dominates it.

Pure: the standard library only; ledger entries are read as plain mappings, and anything in
them that is not a finite number is skipped.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Better(str, enum.Enum):
    """Which way a metric improves."""

    LOWER = "lower"  # a loss, a perplexity, an error rate
    HIGHER = "higher"  # an accuracy, a BLEU score


@dataclass(frozen=True)
class Point:
    """One run: its CO2e, its metric, and how the report names it."""

    kg: float
    value: float
    name: str  # "a1b2c3d", a short commit or run id
    when: str = ""  # "2026-03-01", the day it ended


def ahead(a: float, b: float, better: Better) -> bool:
    """Whether metric value a is strictly better than b."""
    return a < b if better is Better.LOWER else a > b


def dominates(a: Point, b: Point, better: Better) -> bool:
    """a is no worse than b on CO2e and metric, and strictly better on one."""
    no_worse = a.kg <= b.kg and not ahead(b.value, a.value, better)
    return no_worse and (a.kg < b.kg or ahead(a.value, b.value, better))


def front(points: Iterable[Point], better: Better) -> list[Point]:
    """The points no other point dominates, lightest first (equal points all stay)."""
    pts = list(points)
    kept = [p for p in pts if not any(dominates(q, p, better) for q in pts)]
    sign = 1 if better is Better.LOWER else -1
    return sorted(kept, key=lambda p: (p.kg, sign * p.value))


@dataclass(frozen=True)
class Standing:
    """This run against its label's history on (CO2e, metric)."""

    metric: str
    better: Better
    run: Point
    history: int  # how many earlier runs had the metric
    front: tuple[Point, ...]  # the front of the history and this run together
    dominated_by: Point | None  # the lightest earlier run that dominates this one
    assumed: bool = False  # `better` is a guess (lower): regression.allow_if_better does not say

    @property
    def on_front(self) -> bool:
        return self.dominated_by is None

    def sentence(self) -> str:
        """'on the front' or 'dominated by run a1b2c3d (2026-03-01)'."""
        if self.dominated_by is None:
            return "on the front" if self.history else "the first run with this metric"
        d = self.dominated_by
        return f"dominated by run {d.name}" + (f" ({d.when})" if d.when else "")


def place(run: Point, history: Sequence[Point], metric: str, better: Better) -> Standing:
    """Where run stands against the earlier runs of its label."""
    dominating = [p for p in history if dominates(p, run, better)]
    sign = 1 if better is Better.LOWER else -1
    by = min(dominating, key=lambda p: (p.kg, sign * p.value), default=None)
    return Standing(metric, better, run, len(history), tuple(front([*history, run], better)), by)


def choose(configured: str | None, run_metrics: Mapping[str, float]) -> str | None:
    """The metric the front is drawn for: the budget file's allow_if_better metric, else the
    run's only metric; None when neither says."""
    if configured is not None:
        return configured
    return next(iter(run_metrics)) if len(run_metrics) == 1 else None


def value_of(entry: Mapping[str, Any], metric: str) -> float | None:
    """A ledger entry's figure for metric; None when it has none that is a finite number."""
    block = entry.get("metrics")
    value = block.get(metric) if isinstance(block, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _kg(entry: Mapping[str, Any]) -> float | None:
    kg = entry.get("emissions_kg")
    if isinstance(kg, bool) or not isinstance(kg, (int, float)) or not math.isfinite(kg):
        return None
    return float(kg) if kg >= 0 else None


def points(entries: Iterable[Mapping[str, Any]], label: str, metric: str) -> list[Point]:
    """The label's runs in the ledger that have the metric, oldest first."""
    found = []
    for e in sorted(entries, key=lambda e: str(e.get("ended_at", ""))):
        value, kg = value_of(e, metric), _kg(e)
        if e.get("label") != label or value is None or kg is None:
            continue
        sha, run_id = e.get("sha"), e.get("run_id")
        name = sha[:7] if isinstance(sha, str) and sha else str(run_id or "?")[:12]
        found.append(Point(kg, value, name, str(e.get("ended_at", ""))[:10]))
    return found


def improved(value: float, base_values: Sequence[float], better: Better) -> float | None:
    """The median of the base runs' figures when value is strictly better than it; else None
    (also when there is no base figure)."""
    import statistics  # here, not at the top: budget imports this module before the spawn

    if not base_values:
        return None
    median = statistics.median(base_values)
    return median if ahead(value, median, better) else None
