"""The regression rule: is a PR's run really heavier than the base branch's, or just noise?

The head's run is compared with the median of the base branch's last runs of the same label.
A bootstrap over those base runs (resampled with a seeded `random.Random`, so the same inputs
always give the same verdict) gives the ratio head / median a lower bound at the configured
confidence; the rule fails only when that lower bound is above 1 + max_increase. With fewer
than MIN_RUNS base runs there is nothing to resample and the rule falls back to comparing
with the latest base run alone.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from co2gate import fmt

__all__ = ["MIN_RUNS", "RESAMPLES", "Check", "Method", "check"]

MIN_RUNS: Final = 3  # below this many base runs the bootstrap says nothing: compare with one
RESAMPLES: Final = 2000


class Method(str, enum.Enum):
    """How the head was compared with the base branch."""

    BOOTSTRAP = "bootstrap"  # the median of the last `runs` base runs, with a bootstrap bound
    LATEST = "latest"  # fewer than MIN_RUNS base runs: the latest one alone


@dataclass(frozen=True)
class Check:
    """The head's run against the base branch's runs of its label.

    `ratio` is head / base (the median of `base_runs`, or the latest for Method.LATEST);
    `low` and `high` bound it: the bootstrap's (1 - confidence) and confidence quantiles,
    both equal to `ratio` for Method.LATEST. It fails when `low > 1 + max_increase`.
    """

    method: Method
    head: float
    base: float  # the figure the head is compared with
    base_runs: tuple[float, ...]  # what it was taken from, oldest first
    ratio: float
    low: float
    high: float
    confidence: float
    max_increase: float
    per: str | None = None  # the unit of work the figures are per ("tokens"), None: per run
    # Why an exceeded rule still passes (regression.allow_if_better: the metric improved)
    allowed: str | None = None

    @property
    def exceeded(self) -> bool:
        """The increase is past max_increase (beyond noise, for Method.BOOTSTRAP)."""
        return self.low > 1 + self.max_increase

    @property
    def failed(self) -> bool:
        return self.exceeded and self.allowed is None

    @property
    def per_unit(self) -> str | None:
        """' per token': what the figures are per, as the text says it; None: per run."""
        return f" per {_singular(self.per)}" if self.per else None

    def reason(self) -> str:
        """One sentence: the increase, its interval, and the verdict."""
        show = fmt.mass
        per = self.per_unit or ""
        verdict = "fails" if self.failed else "passes"
        if self.exceeded and self.allowed is not None:
            verdict = f"exceeded, but {self.allowed}: passes"
        allowed = f"regression.max_increase allows {_signed(self.max_increase)}"
        if self.method is Method.LATEST:
            n = len(self.base_runs)
            runs = "1 base run" if n == 1 else f"{n} base runs"
            return (
                f"The run's {show(self.head)}{per} is {_signed(self.ratio - 1)} on the base "
                f"branch's latest run ({show(self.base)}{per}); {allowed} "
                f"(up to {show(self.base * (1 + self.max_increase))}{per}): {verdict}. "
                f"Only {runs} in the ledger, fewer than the {MIN_RUNS} a noise-aware "
                "comparison needs, so this is a single comparison."
            )
        return (
            f"Against the median of the base branch's last {len(self.base_runs)} runs "
            f"({show(self.base)}{per}): this run's {show(self.head)}{per} is "
            f"{_signed(self.ratio - 1)}, at least {_signed(self.low - 1)} at "
            f"{fmt.pct(self.confidence, 0)} confidence (bootstrap interval "
            f"{_signed(self.low - 1)} to {_signed(self.high - 1)}); {allowed}: {verdict}."
        )


def check(
    head: float,
    base_runs: Sequence[float],
    *,
    max_increase: float,
    runs: int = 5,
    confidence: float = 0.9,
    seed: str = "",
    per: str | None = None,
) -> Check | None:
    """The regression rule for one head figure against the base runs (oldest first).

    Uses the last `runs` of them; None when there is no base run or its figure is 0 (no
    ratio). `seed` (the label) seeds the resampling, so a verdict is reproducible.
    """
    for value in (head, *base_runs):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"regression figures must be finite and >= 0, got {value!r}")
    last = tuple(float(v) for v in base_runs[-runs:]) if runs > 0 else ()
    if not last:
        return None
    if len(last) < MIN_RUNS:
        base = last[-1]
        if base <= 0:
            return None
        ratio = head / base
        return Check(
            Method.LATEST, head, base, last, ratio, ratio, ratio, confidence, max_increase, per
        )
    import statistics  # here, not at the top: budget imports this module before the spawn

    base = statistics.median(last)
    if base <= 0:
        return None
    low, high = bootstrap_bounds(head, last, confidence, seed)
    return Check(
        Method.BOOTSTRAP, head, base, last, head / base, low, high, confidence, max_increase, per
    )


def bootstrap_bounds(
    head: float, base_runs: Sequence[float], confidence: float, seed: str
) -> tuple[float, float]:
    """The (1 - confidence) and confidence quantiles of head / median(resampled base runs).

    A resample whose median is 0 gives an infinite ratio (the head is infinitely heavier).
    """
    import random
    import statistics

    rng = random.Random(f"co2gate-regression:{seed}")  # a str seed: the same in every process
    n = len(base_runs)
    ratios = []
    for _ in range(RESAMPLES):
        median = statistics.median(rng.choices(base_runs, k=n))
        ratios.append(head / median if median > 0 else math.inf)
    ratios.sort()
    return _quantile(ratios, 1 - confidence), _quantile(ratios, confidence)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, by the nearest rank below (no interpolation)."""
    return ordered[min(len(ordered) - 1, max(0, math.floor(q * len(ordered))))]


def _signed(fraction: float) -> str:
    """+12.5%, -3.0%; +∞ for an infinite increase."""
    if not math.isfinite(fraction):
        return "+∞"
    return ("+" if fraction >= 0 else "") + fmt.pct(fraction)


def _singular(unit: str) -> str:
    return unit[:-1] if unit.endswith("s") else unit
