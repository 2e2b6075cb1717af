"""co2gate run: the main job. The budget is read and checked, then the command runs and is
measured, then the run is gated, recorded and reported."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from co2gate import budget as budgets
from co2gate.app import Outcome, Say
from co2gate.app.grid import provider_pricing
from co2gate.app.inputs import (
    check_templates,
    load_budget,
    prepare_out_dir,
)
from co2gate.app.measure import MeasureRequest, measure_command, track, warm_report
from co2gate.github.context import ci_context
from co2gate.guard import DEFAULT_GRACE_S, Watch, default_heartbeat_s
from co2gate.labels import RunLabels
from co2gate.ledger import open_ledger
from co2gate.runner import AfterCommand

if TYPE_CHECKING:
    from co2gate.grid.signal import Series
    from co2gate.pause import Pauser
    from co2gate.spawn import Started


@dataclass(frozen=True)
class RunRequest:
    measure: MeasureRequest  # the command, where it runs and where the files go
    no_record: bool = False
    comment: bool = True
    comment_author: str | None = None
    preflight: bool = False
    max_kg: float | None = None  # the live guard's cap; limits[workload] is one too
    grace_s: float = DEFAULT_GRACE_S
    heartbeat_s: float | None = None  # None: 300 s in GitHub Actions, else never
    carbon: CarbonOptions | None = None  # wait for the forecast's low, pause while dirty


@dataclass(frozen=True)
class CarbonOptions:
    """run --start-within, --pause-above/--deadline: for self-hosted runners."""

    start_within: timedelta | None = None
    duration: timedelta | None = None  # the command's run time unpaused, when known
    pause_above: float | None = None  # gCO2e/kWh
    deadline: datetime | None = None
    pause_signal: int | None = None
    pause_grace_s: float = 0.0
    force_hosted: bool = False


def run(
    request: RunRequest, env: Mapping[str, str], say: Say, started: Started | None = None
) -> Outcome:
    """Measure, check, record and report one command (`started`: already started, by
    co2gate/launch.py, which leaves --preflight and the carbon-aware options to this path).

    Exit code: the command's own when it failed (a command the guard stopped at its cap fails
    the gate: 1, not its signal's 143), else 1 when the gate fails, else 2 when the run could
    not be written or recorded, else 0.
    """
    m = request.measure
    labels = m.labels(env)
    wanted = m.wanted()
    ci = ci_context(env)  # read once; before the command where the event file matters (launch.py)
    budget, notes = load_budget(m.budget_file, ci, env, started)
    budgets.allocation_kg(budget, labels.workload)
    location = m.location.over(budget.location, budget.source)
    check_templates(m.template_dir)
    out_dir = prepare_out_dir(m.out)
    if request.preflight:
        record = not request.no_record and (ci is None or ci.get("event") in budget.ledger.count)
        refused = _preflight(budget, labels, out_dir, env, say, ci, record=record)
        if refused is not None:
            return refused
    pauser = None
    if request.carbon is not None:
        waited = _carbon_aware(request.carbon, budget, env, say, _heartbeat(request, env))
        if isinstance(waited, Outcome):
            return waited
        pauser = waited
    watch = Watch(
        limit_kg=budgets.run_limit_kg(budget, labels.workload, request.max_kg),
        grace_s=request.grace_s,
        heartbeat_s=_heartbeat(request, env),
    )
    with AfterCommand(started) as after:  # a cancelled job still gets its verdict and report
        measured = measure_command(
            m.command,
            location=location,
            labels=labels,
            out_dir=out_dir,
            env=env,
            ci=ci,
            watch=watch,
            say=say,
            embodied=budget.embodied,
            water=budget.water,
            beside=[functools.partial(warm_report, m.template_dir)],
            metrics=wanted,
            reprice=provider_pricing(budget, location, env, ci),
            pauser=pauser,
            started=started,
        )
        from co2gate.app.gate import Cancellable, gate_into, should_record  # after the command

        outcome = measured.outcome()
        opened, where = open_ledger(budget.ledger, env)
        record = should_record(budget, measured.measurement.ci, request.no_record)
        gated = gate_into(
            outcome,
            measured.measurement,
            budget,
            (Cancellable(opened, after), where),
            out_dir,
            record=record,
            notes=notes,
        )
        from co2gate.app.publish import Options, Run, publish_into

        options = Options(m.template_dir, request.comment, request.comment_author, after)
        publish_into(outcome, [Run(measured.measurement, gated)], budget, out_dir, env, options)
    # After the signals' deferral: a tracker's server may be slow, everything is written.
    track(outcome, [measured.measurement], m.trackers, env)
    command = 0 if measured.stopped_by_guard else measured.exit_code  # the gate's, not SIGTERM's
    return outcome.finish(command, failed=gated.decision.verdict is budgets.Verdict.FAIL)


def _preflight(
    budget: budgets.Budget,
    labels: RunLabels,
    out_dir: Path,
    env: Mapping[str, str],
    say: Say,
    ci: Mapping[str, Any] | None,
    *,
    record: bool,
) -> Outcome | None:
    """run --preflight: an outcome (exit 1, verdict.json) when the label's history fails the
    gate, before the command starts; None to go on. No history, or a ledger that cannot be
    read, is a note: the command runs. With `record`, a refusal is recorded as a zero-kg
    ledger entry marked `refused`, keyed by the run's `ci` block."""
    from co2gate import estimate, report
    from co2gate.app.gate import write_verdict
    from co2gate.ledger.interface import LedgerError, refusal_entry

    ledger, where = open_ledger(budget.ledger, env)
    if ledger.name == "branch":
        say(f"preflight: reading the {where} through the API before the command starts")
    try:
        found = estimate.preflight(budget, ledger, labels.workload, labels.label, date.today())
    except LedgerError as e:
        say(f"preflight: {where}: {e}; starting the command without a projection")
        return None
    if found is None:
        say(
            f"preflight: no runs of {labels.label!r} in the ledger to project from; starting anyway"
        )
        return None
    projection, decision = found
    doc = projection.to_json(decision)
    if decision.verdict is not budgets.Verdict.FAIL:
        say(report.preflight_line(doc))
        return None
    refused = dataclasses.replace(
        decision, reasons=(report.preflight_reason(doc), *decision.reasons)
    )
    said, recorded = [" ".join(refused.reasons)], False
    if record:
        try:
            entry = refusal_entry(
                ci, labels.label, labels.workload, datetime.now(timezone.utc), decision.run_kg
            )
            ledger.append(entry)  # False: this very refusal is there already
            recorded = True
            said.append(f"{where}: the refusal recorded (0 kg, refused)")
        except LedgerError as e:  # the refusal stands; only its record is lost
            said.append(f"{where}: the refusal not recorded: {e}")
    path = write_verdict(out_dir, budgets.Gated(refused, recorded=recorded))
    return Outcome(exit_code=1, files=[path], lines=[*said, f"wrote {path}"])


TOKEN_LIFETIME = timedelta(hours=24)  # a job's GITHUB_TOKEN expires after 24 h


def _heartbeat(request: RunRequest, env: Mapping[str, str]) -> float:
    return request.heartbeat_s if request.heartbeat_s is not None else default_heartbeat_s(env)


def _carbon_aware(
    carbon: CarbonOptions,
    budget: budgets.Budget,
    env: Mapping[str, str],
    say: Say,
    heartbeat_s: float,
) -> Pauser | Outcome | None:
    """Wait for the forecast's best start (--start-within), then the pauser to run beside the
    command (--pause-above); an Outcome when a cancelling signal ended the wait."""
    from co2gate.app.when import around, forecast, grid_source, refuse_hosted
    from co2gate.errors import InputError
    from co2gate.grid import schedule
    from co2gate.pause import Pauser, PauseSettings, hold, wait_until

    if (carbon.pause_above is None) != (carbon.deadline is None):
        raise InputError("--pause-above and --deadline go together: give both")
    if carbon.start_within is None and carbon.pause_above is None:
        if carbon.duration is not None:
            raise InputError("--duration is for --start-within or --pause-above: give one of them")
        return None
    what = "--start-within" if carbon.start_within is not None else "--pause-above"
    refuse_hosted(env, what, carbon.force_hosted)
    source = grid_source(budget, env)
    now = datetime.now(timezone.utc)
    if carbon.deadline is not None:
        if carbon.deadline <= now:
            raise InputError("--deadline has passed")
        if carbon.duration is not None and carbon.deadline - now < carbon.duration:
            raise InputError("--deadline leaves less time than --duration: the run cannot make it")
    longest = (carbon.start_within or timedelta(0)) + (carbon.duration or timedelta(0))
    if carbon.deadline is not None:
        longest = max(longest, carbon.deadline - now)
    if env.get("GITHUB_ACTIONS") == "true" and longest > TOKEN_LIFETIME:
        say(
            "this run may outlive the job's GITHUB_TOKEN (24 h): if the ledger or the comment "
            "cannot be written at the end, the workflow_run companion records the run from "
            "the uploaded co2gate-report artifact"
        )
    if carbon.start_within is not None:
        series = forecast(
            source,
            now,
            now + carbon.start_within + (carbon.duration or timedelta(0)) + timedelta(hours=1),
        )
        length = carbon.duration or _interval(series)
        choice = schedule.best_start(series, length, now, carbon.start_within)
        saving = f" ({choice.saving * 100:.1f}% less than now)" if choice.saving is not None else ""
        plan = (
            f"forecast {choice.g_per_kwh:.0f} gCO2e/kWh over {length.total_seconds() / 3600:g} h"
            f"{saving}, from {series.source}"
        )
        if choice.start > now:
            got = wait_until(choice.start, say, heartbeat_s, plan)
            if got is not None:
                return _cancelled(got)
        say(f"starting now: {plan}")
    if carbon.pause_above is None or carbon.deadline is None:
        return None
    settings = PauseSettings(
        carbon.pause_above,
        carbon.deadline,
        None if carbon.duration is None else carbon.duration.total_seconds(),
        carbon.pause_signal,
        carbon.pause_grace_s,
    )
    read = around(source)
    got = hold(settings, read, say, heartbeat_s)
    if got is not None:
        return _cancelled(got)
    return Pauser(settings, read, say)


def _cancelled(signum: int) -> Outcome:
    """A cancelling signal ended the wait: nothing ran, the shell's 128 + N."""
    import signal

    name = signal.Signals(signum).name
    return Outcome(
        128 + signum, lines=[f"{name} while waiting to start: the command was not started"]
    )


def _interval(series: Series) -> timedelta:
    """The forecast's step: the run length to plan with when --duration is not given."""
    return series.intervals[0].length if series.intervals else timedelta(minutes=30)
