"""What `co2gate when` and pause-and-resume save on a recorded week of a real grid.

The series is tests/data/grid/gb-2023-04-10-to-2023-04-17.csv: Great Britain's national
carbon intensity, 336 half hours, the Carbon Intensity API's forecast and its actual for each
(source, licence and caveats in tests/data/grid/README.md). Every decision is taken on the
forecast column by the package's own code (grid.schedule.best_start, pause_plan); every
saving is scored on the actual column.

- Flexible start: for each job length (1 h, 6 h, 24 h), every half hour of the week at which
  the whole 24 h window and the job after it fit in the week is a "now". `when --within 24h`
  picks a start on the forecast; the saving is 1 - actual(chosen) / actual(start now). The
  table gives the mean over the nows, the ratio of the summed emissions, and the same with
  the start chosen on the actuals (perfect foresight: what the forecast leaves on the table).
- Pause-and-resume: a 48 h job with a 72 h deadline, for every now whose 72 h fit in the week.
  The threshold is a percentile of the forecast over [now, now + 72 h): the 67th (the job needs
  2/3 of the hours, so it pauses through about the dirtiest third), with the 50th and 80th
  beside it. The plan pauses above it and resumes at the latest moment that still makes the
  deadline; the running hours are scored on the actuals against 48 h straight from now.

The forecast column is the API's last forecast for each half hour, made shortly before it;
a decision a day ahead would have seen an older one. Read the savings as upper bounds.

    python benchmarks/carbon_aware.py
"""

from __future__ import annotations

import csv
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path

from co2gate.grid import schedule
from co2gate.grid.signal import Interval, Series

DATA = Path(__file__).parent.parent / "tests" / "data" / "grid" / "gb-2023-04-10-to-2023-04-17.csv"
STEP = timedelta(minutes=30)
WITHIN = timedelta(hours=24)
JOBS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
PAUSE_WORK, PAUSE_DEADLINE = timedelta(hours=48), timedelta(hours=72)
PERCENTILES = (50, 67, 80)


def load() -> tuple[Series, Series]:
    """The forecast and the actual series."""
    forecast, actual = [], []
    with DATA.open() as f:
        for row in csv.DictReader(f):
            start = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
            forecast.append(Interval(start, start + STEP, float(row["forecast_g_per_kwh"])))
            actual.append(Interval(start, start + STEP, float(row["actual_g_per_kwh"])))
    return Series(tuple(forecast), "GB forecast", True), Series(tuple(actual), "GB actual")


def mean(series: Series, start: datetime, span: timedelta) -> float:
    value = schedule.mean_intensity(series, start, start + span)
    assert value is not None, "the benchmark only asks inside the week"
    return value


def nows(series: Series, ahead: timedelta) -> list[datetime]:
    """Every half hour from which `ahead` fits in the series."""
    assert series.start is not None and series.end is not None
    out, t = [], series.start
    while t + ahead <= series.end:
        out.append(t)
        t += STEP
    return out


def flexible_start(forecast: Series, actual: Series, job: timedelta) -> dict[str, float]:
    savings, oracle, now_g, chosen_g, best_g = [], [], [], [], []
    for now in nows(actual, WITHIN + job):
        start = schedule.best_start(forecast, job, now, WITHIN).start
        perfect = schedule.best_start(actual, job, now, WITHIN).start
        here, there, best = (
            mean(actual, now, job),
            mean(actual, start, job),
            mean(actual, perfect, job),
        )
        savings.append(1 - there / here)
        oracle.append(1 - best / here)
        now_g.append(here)
        chosen_g.append(there)
        best_g.append(best)
    return {
        "nows": len(savings),
        "mean": statistics.fmean(savings),
        "ratio": 1 - sum(chosen_g) / sum(now_g),
        "max": max(savings),
        "worse": sum(s < 0 for s in savings) / len(savings),
        "oracle": statistics.fmean(oracle),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def pause_and_resume(forecast: Series, actual: Series, q: float) -> dict[str, float]:
    savings, paused_h, now_g, run_g = [], [], [], []
    for now in nows(actual, PAUSE_DEADLINE):
        window = [iv.g_per_kwh for iv in forecast.between(now, now + PAUSE_DEADLINE).intervals]
        plan = schedule.pause_plan(
            forecast, PAUSE_WORK, now, now + PAUSE_DEADLINE, percentile(window, q)
        )
        running = [s for s in plan.segments if s.running]
        seconds = sum((s.end - s.start).total_seconds() for s in running)
        scored = (
            sum(
                (s.end - s.start).total_seconds() * mean(actual, s.start, s.end - s.start)
                for s in running
            )
            / seconds
        )
        straight = mean(actual, now, PAUSE_WORK)
        savings.append(1 - scored / straight)
        paused_h.append(sum((s.end - s.start).total_seconds() for s in plan.pauses) / 3600)
        now_g.append(straight)
        run_g.append(scored)
    return {
        "nows": len(savings),
        "mean": statistics.fmean(savings),
        "ratio": 1 - sum(run_g) / sum(now_g),
        "max": max(savings),
        "worse": sum(s < 0 for s in savings) / len(savings),
        "paused_h": statistics.fmean(paused_h),
    }


def row(r: dict[str, float]) -> str:
    """nows, mean saving, the ratio of the sums, the best saving, the share of nows it lost."""
    return (
        f"{r['nows']:>5} {r['mean']:>12.1%} {r['ratio']:>10.1%} {r['max']:>6.1%} {r['worse']:>6.1%}"
    )


def main() -> None:
    cpu0 = time.process_time()
    forecast, actual = load()
    values = [iv.g_per_kwh for iv in actual.intervals]
    print(
        f"{DATA.name}: {len(values)} half hours, actual {min(values):.0f}-{max(values):.0f} "
        f"gCO2e/kWh (mean {statistics.fmean(values):.0f})"
    )
    print()
    print("flexible start (when --within 24h), chosen on the forecast, scored on the actuals")
    head = f"{'nows':>5} {'mean saving':>12} {'sum ratio':>10} {'best':>6} {'worse':>6}"
    print(f"{'job':>5} {head} {'foresight':>10}")
    for job in JOBS:
        r = flexible_start(forecast, actual, job)
        hours = job.total_seconds() / 3600
        print(f"{hours:>4g}h {row(r)} {r['oracle']:>10.1%}")
    print()
    print(
        "pause-and-resume, 48 h of work by a 72 h deadline, threshold a percentile of the forecast"
    )
    print(f"{'pctl':>5} {head} {'paused h':>9}")
    for q in PERCENTILES:
        r = pause_and_resume(forecast, actual, q)
        print(f"{q:>5} {row(r)} {r['paused_h']:>9.1f}")
    print()
    print(f"CPU time: {time.process_time() - cpu0:.2f} s")


if __name__ == "__main__":
    main()
