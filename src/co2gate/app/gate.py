"""Gate measured runs: their year so far from the ledger, the verdict, the record, verdict.json."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from co2gate import badge, burndown, pareto, regression, water
from co2gate import budget as budgets
from co2gate.app import Outcome
from co2gate.budget import CategoryUsage, Gated
from co2gate.emissions import write_atomic
from co2gate.github.context import BASE_COMMIT_EVENTS
from co2gate.ledger.interface import (
    Beside,
    Ledger,
    LedgerError,
    LedgerReadOnly,
    entry_key,
    make_entry,
)
from co2gate.model import CiInfo, Measurement
from co2gate.runner import AfterCommand, Cancelled


class Cancellable(Ledger):
    """A ledger whose reads and writes a cancelled job (SIGTERM, SIGINT) ends at once, as a
    LedgerError: the verdict and the report are still written, the entry may be lost."""

    def __init__(self, inner: Ledger, after: AfterCommand) -> None:
        self.inner, self.after, self.name = inner, after, inner.name

    def append(self, entry: Mapping[str, Any]) -> bool:
        try:
            with self.after.waiting():
                return self.inner.append(entry)
        except Cancelled as e:
            raise LedgerError(f"the job was cancelled ({e}) before the entry was written") from None

    def append_with(self, entry: Mapping[str, Any], beside: Beside) -> bool:
        try:
            with self.after.waiting():
                return self.inner.append_with(entry, beside)
        except Cancelled as e:
            raise LedgerError(f"the job was cancelled ({e}) before the entry was written") from None

    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        try:
            with self.after.waiting():
                return self.inner.entries(start, end)
        except Cancelled as e:
            raise LedgerError(f"the job was cancelled ({e}) while it was read") from None


def run_date(m: Measurement) -> date:
    return m.run.ended_at.date()


def base_runs_kg(
    entries: Sequence[Mapping[str, Any]], label: str, base_ref: str | None, unit: str | None = None
) -> list[float]:
    """The base branch's runs of the same label, oldest first: what a PR's run is compared with.

    With `unit`, kg per unit of the runs that counted the same unit (none: an empty list).
    """
    if not base_ref:
        return []
    ref = f"refs/heads/{base_ref}"
    same = [
        e
        for e in entries
        if e.get("label") == label and e.get("ref") == ref and e.get("refused") is not True
    ]  # a run preflight refused never ran: it is no base run
    same.sort(key=lambda e: str(e.get("ended_at", "")))
    if unit is None:
        return [float(e["emissions_kg"]) for e in same]
    return [
        float(e["emissions_kg"]) / _units(e) for e in same if e.get("unit") == unit and _units(e)
    ]


def _units(entry: Mapping[str, Any]) -> float:
    """An entry's units of work; 0 where it has none, or none that a run can have."""
    n = entry.get("units")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 < n < math.inf:
        return 0.0
    return float(n)


def base_run_kg(
    entries: Sequence[Mapping[str, Any]], label: str, base_ref: str | None
) -> float | None:
    """The base branch's latest run of the same label."""
    runs = base_runs_kg(entries, label, base_ref)
    return runs[-1] if runs else None


def gate(
    m: Measurement,
    budget: budgets.Budget,
    ledger: Ledger,
    *,
    record: bool,
    notes: Sequence[str] = (),
) -> Gated:
    """Decide a run against its category's allocation, then record it if asked.

    The run itself is excluded from `used` even when re-gated, so checking the same
    emissions.json twice gives the same verdict and records it once.
    """
    category = m.run.workload
    start, end = budgets.budget_year(budget, run_date(m))
    said = list(notes)  # the caller's first, then the ledger's
    entry: dict[str, Any] | None = None
    key = None
    try:
        entry = make_entry(m, category)
        key = entry_key(entry)
    except LedgerError as e:  # a run the ledger cannot hold is still decided and reported
        said.append(f"not recorded in the ledger: {e}")
    try:
        entries = ledger.entries(start, end)
    except LedgerError as e:
        entries = []
        said.append(f"ledger not read ({e}): the year's usage before this run is unknown")
    others = [e for e in entries if entry_key(e) != key]
    run_kg = m.emissions_kg
    ci = m.ci or CiInfo()
    base_runs = base_runs_kg(entries, m.run.label, ci.base_ref)
    base_kg = base_runs[-1] if base_runs else None
    # Per unit of work where the run and the base branch's runs counted the same unit.
    unit = (m.unit or "requests") if m.requests else None
    per_unit = base_runs_kg(entries, m.run.label, ci.base_ref, unit) if unit else []
    head = run_kg / m.requests if per_unit and m.requests else run_kg
    compared_runs, per = (per_unit, unit) if per_unit else (base_runs, None)
    is_pr = ci.event in BASE_COMMIT_EVENTS
    compared = (
        budgets.regression_check(budget, head, compared_runs, m.run.label, per) if is_pr else None
    )
    if compared is not None and compared.exceeded:
        compared, why = allow_if_better(budget, m, entries, compared)
        said += why
    usage = _usage(budget, others, category, run_kg)
    guard = m.run.guard if m.run.stopped_by_guard else None
    decision = budgets.decide(
        budget,
        category,
        next(u.used_before_kg for u in usage if u.category == category),
        run_kg,
        compared=compared,
        is_pull_request=is_pr,
        per_request_kg=run_kg / m.requests if m.requests else None,
        max_kg=m.run.limit_kg,
        stopped_by_guard=(guard.stopped_at_kg, guard.limit_kg) if guard else None,
        run_range_kg=m.emissions_bounds,
    )
    decision, water_gate = budgets.decide_water(
        budget, decision, _water_l(others), m.water.water_l if m.water else None
    )
    recorded = key is not None and any(entry_key(e) == key for e in entries)
    failed = record and entry is None
    if record and not recorded and entry is not None:
        try:
            ledger.append_with(entry, badges(budget, start, end))
            recorded = True
        except LedgerError as e:
            failed = not isinstance(e, LedgerReadOnly)  # a fork's token is no failure
            said.append(f"not recorded in the ledger: {e}")
    burn = _burn(others, category, start, run_date(m), run_kg)
    pace = burndown.forecast(
        category, decision.allocation_kg, decision.after_kg, start, end, run_date(m)
    )
    return Gated(
        decision,
        recorded,
        tuple(said),
        base_kg,
        compared,
        usage,
        burn,
        (start, end),
        failed,
        m.emissions_bounds,
        quality(budget, m, others),
        burndown=pace,
        water=water_gate,
    )


def badges(budget: budgets.Budget, start: date, end: date) -> Beside:
    """The badges written with each entry: every allocated category's year so far."""
    allocations = {name: budgets.allocation_kg(budget, name) for name in budget.allocations}
    return Beside(start, end, lambda entries: badge.files(entries, allocations, budget.warn_at))


def _water_l(entries: Sequence[Mapping[str, Any]]) -> float:
    """The litres of water the entries recorded (runs without a figure count none)."""
    return sum(float(e.get("water_l") or 0.0) for e in entries)


def with_water(m: Measurement, budget: budgets.Budget) -> Measurement:
    """m with its water from the budget file's factors, where it has no water figure of its
    own (a codecarbon CSV, a run measured without a budget file)."""
    if m.water is not None or not budget.water.configured:
        return m
    litres = water.litres(m.energy_kwh.total, m.pue, budget.water)
    note = f"water from {budget.source}'s factors, applied when the run was checked"
    return replace(m, water=litres, notes=(*m.notes, note))


def allow_if_better(
    budget: budgets.Budget,
    m: Measurement,
    entries: Sequence[Mapping[str, Any]],
    compared: regression.Check,
) -> tuple[regression.Check, list[str]]:
    """regression.allow_if_better: an exceeded regression rule passes when the run's metric
    is better than the median of the base branch's last runs' figures for it. Notes say why
    the rule stays as it is (no metric in the run, none in the base runs)."""
    rule = budget.regression_allow_if_better
    if rule is None:
        return compared, []
    metric, better = rule
    key = "regression.allow_if_better"
    value = m.metrics.get(metric)
    if value is None:
        return compared, [
            f"{key}: this run has no {metric!r} metric (--metric, --metrics-file), so the "
            "regression rule applies as it is"
        ]
    base_ref = (m.ci or CiInfo()).base_ref
    ref = f"refs/heads/{base_ref}"
    same = [e for e in entries if e.get("label") == m.run.label and e.get("ref") == ref]
    figures = [p.value for p in pareto.points(same, m.run.label, metric)]
    figures = figures[-budget.regression_runs :]
    if not figures:
        return compared, [
            f"{key}: the base branch's runs have no {metric!r} metric to compare with, so the "
            "regression rule applies as it is"
        ]
    median = pareto.improved(value, figures, better)
    runs = "run" if len(figures) == 1 else f"{len(figures)} runs"
    if median is None:
        return compared, [
            f"{key}: this run's {metric} {value:.6g} is not {better.value} than the median "
            f"{statistics.median(figures):.6g} of the base branch's last {runs}, so the "
            "regression rule applies as it is"
        ]
    allowed = (
        f"{key} lets it pass: this run's {metric} {value:.6g} is {better.value} (better) than "
        f"the median {median:.6g} of the base branch's last {runs}"
    )
    return dataclasses.replace(compared, allowed=allowed), []


def quality(
    budget: budgets.Budget, m: Measurement, history: Sequence[Mapping[str, Any]]
) -> pareto.Standing | None:
    """The run against its label's earlier runs on (CO2e, metric): the metric of
    regression.allow_if_better, else the run's only one; None without one the run has."""
    rule = budget.regression_allow_if_better
    metric = pareto.choose(rule[0] if rule else None, m.metrics)
    if metric is None or metric not in m.metrics:
        return None
    better = rule[1] if rule else pareto.Better.LOWER
    run = pareto.Point(m.emissions_kg, m.metrics[metric], "this run")
    placed = pareto.place(run, pareto.points(history, m.run.label, metric), metric, better)
    return placed if rule else dataclasses.replace(placed, assumed=True)


def _usage(
    budget: budgets.Budget, entries: Sequence[Mapping[str, Any]], category: str, run_kg: float
) -> tuple[CategoryUsage, ...]:
    """Every allocated category's usage this year (the run's category has an allocation)."""
    return tuple(
        CategoryUsage(
            name,
            budgets.allocation_kg(budget, name),
            sum(float(e["emissions_kg"]) for e in entries if e.get("category") == name),
            run_kg if name == category else 0.0,
        )
        for name in budget.allocations
    )


def _burn(
    entries: Sequence[Mapping[str, Any]], category: str, start: date, day: date, run_kg: float
) -> tuple[tuple[str, float], ...]:
    """Cumulative kg of `category` at the end of each month from `start` to `day`'s month."""
    per_month: dict[str, float] = {}
    for e in entries:
        if e.get("category") == category:
            month = str(e.get("ended_at", ""))[:7]
            per_month[month] = per_month.get(month, 0.0) + float(e["emissions_kg"])
    per_month[day.isoformat()[:7]] = per_month.get(day.isoformat()[:7], 0.0) + run_kg
    months, (y, m) = [], (start.year, start.month)
    while (y, m) <= (day.year, day.month):
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    total, burn = 0.0, []
    for month in months:
        total += per_month.get(month, 0.0)
        burn.append((month, total))
    return tuple(burn)


def write_verdict(out_dir: Path, gated: Gated) -> Path:
    path = out_dir / "verdict.json"
    write_atomic(path, json.dumps(gated.to_json(), indent=2) + "\n")
    return path


def should_record(budget: budgets.Budget, ci: CiInfo | None, no_record: bool) -> bool:
    """Record unless told not to; in CI only for the events the budget file counts."""
    if no_record:
        return False
    return ci is None or ci.event in budget.ledger.count


def verdict_document(results: Sequence[Gated]) -> dict[str, Any]:
    """What `check --json` prints: one decision, or the worst of several and each."""
    docs = [r.to_json() for r in results]
    if len(docs) == 1:
        return docs[0]
    worst = budgets.worst(r.decision.verdict for r in results)
    return {"verdict": worst.value, "runs": docs}


def standing(budget: budgets.Budget, ledger: Ledger, today: date, top: int = 5) -> dict[str, Any]:
    """The budget year so far: per category allocated, used, remaining, and the top runs."""
    start, end = budgets.budget_year(budget, today)
    entries = ledger.entries(start, end)
    categories = []
    for category in budget.allocations:
        allocation = budgets.allocation_kg(budget, category)
        used = sum(float(e["emissions_kg"]) for e in entries if e.get("category") == category)
        pace = burndown.forecast(category, allocation, used, start, end, today)
        categories.append(
            {
                "category": category,
                "allocation_kg": allocation,
                "used_kg": used,
                "remaining_kg": allocation - used,
                "share": used / allocation if allocation > 0 else None,
                "runs": sum(
                    1
                    for e in entries
                    if e.get("category") == category and e.get("refused") is not True
                ),
            }
            | pace.to_json()
        )
    heaviest = sorted(entries, key=lambda e: float(e["emissions_kg"]), reverse=True)[:top]
    return {
        "year_start": start.isoformat(),
        "year_end": end.isoformat(),
        "annual_budget_kg": budget.annual_budget_kg,
        "used_kg": sum(float(e["emissions_kg"]) for e in entries),
        "warn_at": budget.warn_at,
        "as_of": min(max(today, start), end - timedelta(days=1)).isoformat(),
        "categories": categories,
        "water_used_l": _water_l(entries) if budget.water.configured else None,
        "water_budget_l": budget.water_budget_l,
        "top_runs": [
            {k: e.get(k) for k in ("label", "category", "emissions_kg", "ended_at", "ref", "pr")}
            for e in heaviest
        ],
    }


def gate_into(
    outcome: Outcome,
    m: Measurement,
    budget: budgets.Budget,
    ledger: tuple[Ledger, str],
    out_dir: Path,
    *,
    record: bool,
    notes: Sequence[str] = (),
    quiet: bool = False,
) -> Gated:
    """gate() one run, write its verdict.json and add what happened to the outcome.

    `quiet` leaves the verdict lines out (check --json prints the document instead).
    """
    from co2gate import report

    opened, where = ledger
    gated = gate(m, budget, opened, record=record, notes=notes)
    try:
        path: Path | None = write_verdict(out_dir, gated)
        outcome.files.append(out_dir / "verdict.json")
    except OSError as e:
        path = None
        outcome.lines.append(f"could not write {out_dir / 'verdict.json'}: {e.strerror or e}")
    if not quiet:
        outcome.lines += report.verdict_lines(gated.decision, gated.notes)
        said = "recorded" if gated.recorded else "not recorded"
        outcome.lines.append(f"{where}: {said}" + (f"; wrote {path}" if path else ""))
    if path is None or gated.record_failed:
        outcome.lost = True
    return gated
