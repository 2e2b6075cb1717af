"""co2gate when: the best start for a run from the grid's forecast, and the helpers that
`run --start-within` and `run --pause-above` share with it (the grid source, the refusal on
GitHub-hosted runners, the series read around a moment)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from co2gate import budget as budgets
from co2gate import estimate as projections
from co2gate import fmt, units
from co2gate.app import Outcome
from co2gate.errors import InputError
from co2gate.grid import schedule
from co2gate.grid.signal import GridSource, Interval, ProviderError, Series

HOSTED_WHY = (
    "a GitHub-hosted runner bills the minutes it waits and stops the job after 6 h: ask "
    "`co2gate when` from a scheduled workflow and dispatch the job at the chosen time "
    "(examples/workflows/carbon-aware-dispatch.yml)"
)
READ_BACK = timedelta(hours=2)  # how far back the pauser reads the measured series
READ_AHEAD = timedelta(hours=2)


def refuse_hosted(env: Mapping[str, str], what: str, forced: bool) -> None:
    """Waiting and pausing are for self-hosted runners: InputError on a GitHub-hosted one
    (RUNNER_ENVIRONMENT=github-hosted) unless forced."""
    if env.get("RUNNER_ENVIRONMENT") == "github-hosted" and not forced:
        raise InputError(
            f"{what} refused on a GitHub-hosted runner: {HOSTED_WHY}; --force-hosted waits anyway"
        )


def grid_source(budget: budgets.Budget, env: Mapping[str, str]) -> GridSource:
    """The budget file's grid signal; an InputError when it has none."""
    from co2gate.grid.providers import open_source
    from co2gate.grid.signal import ProviderName

    if budget.intensity.provider is ProviderName.NONE:
        raise InputError(
            f"{budget.source}: no grid signal to plan on: set intensity.provider "
            "(carbonintensity-uk is free and keyless for Great Britain; file reads a CSV)"
        )
    return open_source(budget.intensity, env, base_dir=Path.cwd())


def forecast(source: GridSource, start: datetime, end: datetime) -> Series:
    """The source's forecast over [start, end); the provider's own message when it has none
    (e.g. a plan without forecasts: 'paid feature')."""
    try:
        return source.forecast(start, end)
    except ProviderError as e:
        raise type(e)(f"forecast from {source.name}: {e}") from e


def latest(source: GridSource) -> Interval | None:
    """The provider's current interval; None when it cannot answer (the caller goes on
    without it, as without a forecast)."""
    try:
        return source.latest()
    except ProviderError:
        return None


def _after(intervals: tuple[Interval, ...], current: Interval) -> tuple[Interval, ...]:
    """`current` as it extends the intervals: cut to start where they end, () when they
    already cover it."""
    end = intervals[-1].end if intervals else current.start
    if current.end <= end:
        return ()
    start = max(current.start, end)
    return (Interval(start, current.end, current.g_per_kwh, current.marginal_g_per_kwh),)


def around(source: GridSource) -> Any:
    """The series the pauser reads at a moment: what was measured up to it, the provider's
    latest interval when the measured series does not reach the moment, and what is
    forecast after that, as one series (history first, then latest, where they overlap)."""

    def read(now: datetime) -> Series:
        past = source.history(now - READ_BACK, now + timedelta(minutes=1))
        known = past.intervals
        if past.at(now) is None:
            current = latest(source)
            if current is not None:
                known += _after(known, current)
        try:
            ahead = source.forecast(now, now + READ_AHEAD)
        except ProviderError:
            return Series(known, source.name)
        end = known[-1].end if known else now - READ_BACK
        later = tuple(iv for iv in ahead.intervals if iv.start >= end)
        return Series(known + later, source.name)

    return read


def _starting_now(
    source: GridSource, series: Series, choice: schedule.Choice, duration: timedelta
) -> tuple[schedule.Choice, str | None]:
    """Choice's figure for starting now, and where it came from: the forecast when it covers
    now, else the provider's latest interval (when it holds now) followed by the forecast."""
    if choice.now_g_per_kwh is not None:
        return choice, "forecast"
    now = choice.now
    current = latest(source) if series.at(now) is None else None
    if current is None or not current.start <= now < current.end:
        return choice, None
    joined = Series(
        (current, *(iv for iv in series.intervals if iv.start >= current.end)), series.source
    )
    g = schedule.mean_intensity(joined, now, now + duration)
    return replace(choice, now_g_per_kwh=g), None if g is None else "latest"


@dataclass(frozen=True)
class WhenRequest:
    duration: timedelta
    within: timedelta
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    workload: str = "training"
    energy_kwh: float | None = None
    from_history: str | None = None
    as_json: bool = False


def when(
    request: WhenRequest,
    env: Mapping[str, str],
    now: datetime | None = None,
    today: date | None = None,
) -> Outcome:
    """Exit 0 with the best start; 2 when the forecast cannot answer (one line saying why)."""
    now = now or datetime.now(timezone.utc)
    today = today or now.date()
    if request.energy_kwh is not None and request.from_history is not None:
        raise InputError("--energy-kwh and --from-history both give the run's energy: give one")
    budget = budgets.load(request.budget_file)
    budgets.allocation_kg(budget, request.workload)
    source = grid_source(budget, env)
    series = forecast(source, now, now + request.within + request.duration)
    choice = schedule.best_start(series, request.duration, now, request.within)
    choice, now_from = _starting_now(source, series, choice, request.duration)
    doc = _document(request, choice, series, budget, env, today)
    doc["start_now"]["from"] = now_from
    text = json.dumps(doc, indent=2) if request.as_json else "\n".join(_lines(doc))
    return Outcome(stdout=text)


def _energy(
    request: WhenRequest, budget: budgets.Budget, env: Mapping[str, str], today: date
) -> tuple[float | None, str | None, list[dict[str, Any]]]:
    """The run's energy (kWh, before PUE), where it came from, and the ledger's entries."""
    if request.energy_kwh is None and request.from_history is None:
        return None, None, []
    from co2gate.ledger import open_ledger
    from co2gate.ledger.interface import LedgerError

    ledger, where = open_ledger(budget.ledger, env)
    try:
        entries = [dict(e) for e in ledger.entries(*projections.window(budget, today))]
    except LedgerError as e:
        raise LedgerError(f"{where}: {e}") from e
    if request.energy_kwh is not None:
        return request.energy_kwh, "--energy-kwh", entries
    assert request.from_history is not None
    past = projections.from_history(entries, request.from_history)
    if past.energy_kwh is None:
        raise InputError(f"--from-history {request.from_history!r}: its runs record no energy")
    runs = past.history["runs"] if past.history else 0
    return past.energy_kwh, f"median of {runs} recorded runs of {request.from_history!r}", entries


def _document(
    request: WhenRequest,
    choice: schedule.Choice,
    series: Series,
    budget: budgets.Budget,
    env: Mapping[str, str],
    today: date,
) -> dict[str, Any]:
    energy, energy_source, entries = _energy(request, budget, env, today)
    pue = budget.location.pue

    def at(start: datetime, g: float | None) -> dict[str, Any]:
        kg = None if energy is None or g is None else units.emissions_kg(energy, pue, g)
        verdict = None
        if kg is not None:
            projection = projections.Projection(
                mode=projections.Mode.HARDWARE, inputs={}, emissions_kg=kg, energy_kwh=energy
            )
            decision = projections.check(budget, request.workload, projection, entries, today)
            verdict = decision.to_json()
        return {
            "start": start.isoformat(timespec="minutes"),
            "end": (start + request.duration).isoformat(timespec="minutes"),
            "g_per_kwh": g,
            "emissions_kg": kg,
            "verdict": verdict,
        }

    best, now = at(choice.start, choice.g_per_kwh), at(choice.now, choice.now_g_per_kwh)
    saved_kg = (
        None
        if best["emissions_kg"] is None or now["emissions_kg"] is None
        else now["emissions_kg"] - best["emissions_kg"]
    )
    return {
        "duration_s": request.duration.total_seconds(),
        "within_s": request.within.total_seconds(),
        "now": choice.now.isoformat(timespec="seconds"),
        "wait_s": (choice.start - choice.now).total_seconds(),
        "best": best,
        "start_now": now,
        "saving": {"fraction": choice.saving, "emissions_kg": saved_kg},
        "energy_kwh": energy,
        "energy_source": energy_source,
        "pue": pue,
        "workload": request.workload,
        "forecast": {
            "source": series.source,
            "start": None if series.start is None else series.start.isoformat(),
            "end": None if series.end is None else series.end.isoformat(),
        },
    }


def _clock(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} gCO2e/kWh"


def _lines(doc: dict[str, Any]) -> list[str]:
    best, now, saving = doc["best"], doc["start_now"], doc["saving"]
    wait = doc["wait_s"]
    lines = [
        f"best start: {_clock(best['start'])}"
        + (f" (in {fmt.duration(wait)})" if wait > 0 else " (now)")
        + f", to {_clock(best['end'])}",
        f"expected intensity: {_g(best['g_per_kwh'])}; starting now: {_g(now['g_per_kwh'])}"
        + (" (from the latest figure)" if now.get("from") == "latest" else "")
        + (f" ({fmt.pct(saving['fraction'])} less)" if saving["fraction"] is not None else ""),
    ]
    if doc["energy_kwh"] is None:
        lines.append("budget verdict: give --energy-kwh or --from-history LABEL for one")
    else:
        for name, at in (("at the best start", best), ("starting now", now)):
            if at["verdict"] is not None:
                lines.append(
                    f"{name}: {at['verdict']['verdict']}, {fmt.mass(at['emissions_kg'])} CO2e "
                    f"({fmt.energy(doc['energy_kwh'])}, {doc['energy_source']})"
                )
    forecast = doc["forecast"]
    lines.append(
        f"forecast: {forecast['source']}, {_clock(forecast['start'])} to {_clock(forecast['end'])}"
    )
    return lines
