"""co2gate measure, and the measuring every command that runs one shares: start the command,
measure it, price it, write emissions.json and emissions.csv."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from co2gate import budget as budgets
from co2gate import intensity
from co2gate.app import Outcome, Say
from co2gate.app.grid import Reprice, provider_pricing
from co2gate.app.inputs import (
    LocationOptions,
    budget_present,
    check_templates,
    check_workload,
    label_of,
    load_budget,
    prepare_out_dir,
)
from co2gate.github.context import ci_context
from co2gate.guard import Guard, Watch
from co2gate.labels import RunLabels
from co2gate.measure.interface import Meter
from co2gate.metrics import Wanted
from co2gate.runner import MeterFactory, Supervisor
from co2gate.sci import Embodied
from co2gate.tokens import github_token
from co2gate.trackers import Targets
from co2gate.water import WaterFactors

if TYPE_CHECKING:
    from co2gate.model import Measurement
    from co2gate.pause import Pauser
    from co2gate.spawn import Started


@dataclass(frozen=True)
class MeasureRequest:
    command: tuple[str, ...]
    out: Path
    label: str | None = None
    workload: str = "training"
    requests: int | None = None
    location: LocationOptions = field(default_factory=LocationOptions)
    budget_file: Path = Path(budgets.DEFAULT_FILE)
    template_dir: Path | None = None
    unit: str | None = None  # what `requests` counts when --units gave it
    metric: tuple[str, ...] = ()  # --metric NAME=VALUE, as given
    metrics_file: Path | None = None  # --metrics-file: read after the command exits

    def wanted(self) -> Wanted:
        """The run's quality figures as far as they are known before it starts."""
        return Wanted.of(self.metric, self.metrics_file)

    trackers: Targets = field(default_factory=Targets)  # where else the figures go

    def labels(self, env: Mapping[str, str]) -> RunLabels:
        """What the user said the run is; refuses a workload that cannot name a category."""
        return RunLabels(
            label_of(self.label, env), check_workload(self.workload), self.requests, self.unit
        )


@dataclass(frozen=True)
class Measured:
    measurement: Measurement  # emissions.json
    exit_code: int  # the command's own
    files: tuple[Path, ...]
    stopped_by_guard: bool = False
    lost: str | None = None  # what could not be written, and why

    def outcome(self) -> Outcome:
        """What co2gate says after the command: the figures, and the files or what was lost."""
        from co2gate import report

        lines = report.summary_lines(self.measurement)
        lines.append(self.lost or "wrote " + ", ".join(str(p) for p in self.files))
        return Outcome(files=list(self.files), lines=lines, lost=self.lost is not None)


def default_sources(
    env: Mapping[str, str], live_interval_s: float | None = None
) -> list[MeterFactory]:
    """The energy sources of this machine: NVML's GPUs where a driver is present, codecarbon.

    live_interval_s: how often codecarbon reads while the command runs, for the guard and
    the heartbeat; None reads once, at the end (NVML samples every 0.5 s either way).
    Each source's module is imported in its own thread, after the command has started.
    """

    def nvml() -> Meter | None:
        from co2gate.measure.nvml import gpu_meter

        return gpu_meter(env)

    def codecarbon() -> Meter:
        from co2gate.measure.codecarbon import CodecarbonMeter

        return CodecarbonMeter(live_interval_s=live_interval_s)

    return [nvml, codecarbon]


def measure_command(
    argv: Sequence[str],
    *,
    location: intensity.Location,
    labels: RunLabels,
    out_dir: Path,
    env: Mapping[str, str],
    ci: Mapping[str, Any] | None = None,
    sources: Sequence[MeterFactory] | None = None,
    watch: Watch | None = None,
    say: Say | None = None,
    embodied: Embodied | None = None,
    notes: Sequence[str] = (),
    beside: Sequence[Callable[[], object]] = (),
    metrics: Wanted | None = None,
    reprice: Reprice | None = None,
    pauser: Pauser | None = None,
    water: WaterFactors | None = None,
    started: Started | None = None,
) -> Measured:
    """Run argv under every energy source present and write emissions.json and emissions.csv.

    The location must already be validated. Signals stay forwarded or deferred until the
    files are written, so a cancelled job still leaves its partial measurement behind.
    With a watch (a cap, a heartbeat) a live guard watches the run; it prices what it reads
    in its own thread, so nothing heavy is imported before the command starts. `beside`:
    work for the report, done while the command runs. `metrics`: the run's quality figures,
    its file read after the command exits (one that cannot be used is a note, never a loss).
    `reprice`: a live grid signal's pricing (app.grid), applied once the command has exited.
    `started`: the command, already started by co2gate/launch.py, to measure instead of argv.
    """
    # The Action's token file is read (and deleted) before the command can look for it
    # (by launch.py, when it started the command); one that cannot be read stops here.
    github_token(env)
    guard = None
    if watch is not None and watch.wanted:
        guard = Guard(watch, pue=location.pue, price=lambda: _price(location), say=say)
    if sources is None:
        sources = default_sources(env, guard.watch.source_interval_s() if guard else None)
    if guard is not None and pauser is not None:
        guard.status = pauser.status  # the heartbeat says when the command is paused
    with Supervisor(argv, guard, pauser, started) as supervisor:
        child, outcomes = supervisor.run(sources, beside)
        from co2gate import emissions, nodes  # the record's modules: after the command

        quality, problem = metrics.collect() if metrics else ({}, None)
        node, odd = nodes.read(env)  # a value that is not valid: one note each
        m = emissions.build(
            child,
            outcomes,
            _price(location),
            pue=location.pue,
            labels=labels,
            ci=ci,
            embodied=embodied,
            notes=[
                *notes,
                *odd,
                *([problem] if problem else []),
                *(child.pauses.lines() if child.pauses is not None else ()),
            ],
            node=node,
            water=water,
        )
        if quality:
            m = dataclasses.replace(m, metrics=MappingProxyType(quality))
        if reprice is not None:
            m = reprice(m, guard.readings if guard is not None else ())
        files: tuple[Path, ...] = ()
        lost = None
        try:
            files = emissions.write(out_dir, m)
        except OSError as e:
            lost = f"could not write emissions.json in {out_dir}: {e.strerror or e}"
    stopped = child.guard_stop is not None
    return Measured(m, child.exit_code, files, stopped, lost)


# The location's intensity, resolved once (the guard's thread may ask first).
_price = functools.cache(intensity.resolve)


def measure(
    request: MeasureRequest, env: Mapping[str, str], say: Say, started: Started | None = None
) -> Outcome:
    """`co2gate measure`: run and measure the command; with a budget file, its location.
    `started`: the command, already started (co2gate/launch.py)."""
    labels = request.labels(env)
    wanted = request.wanted()
    present = budget_present(request.budget_file, started)
    # Read once. On the events that take anything from the event file (pull requests) this is
    # before the command, which could rewrite it: launch.py leaves those to this path.
    ci = ci_context(env, need_base=present)
    budget, notes = None, list[str]()
    if present:
        budget, notes = load_budget(request.budget_file, ci, env, started)
        notes.append(f"location and PUE from {budget.source}")
    source = budget.source if budget else None
    location = request.location.over(budget.location if budget else intensity.Location(), source)
    check_templates(request.template_dir)
    out_dir = prepare_out_dir(request.out)
    measured = measure_command(
        request.command,
        location=location,
        labels=labels,
        out_dir=out_dir,
        env=env,
        ci=ci,
        say=say,
        embodied=budget.embodied if budget else None,
        notes=notes,
        water=budget.water if budget else None,
        beside=[functools.partial(warm_report, request.template_dir)],
        metrics=wanted,
        reprice=provider_pricing(budget, location, env, ci),
        started=started,
    )
    outcome = measured.outcome()
    from co2gate.app.publish import Options, Run, publish_into  # warm by now

    options = Options(request.template_dir, comment=False)
    publish_into(outcome, [Run(measured.measurement)], budget, out_dir, env, options)
    track(outcome, [measured.measurement], request.trackers, env)
    return outcome.finish(measured.exit_code)


def track(
    outcome: Outcome, measurements: Sequence[Measurement], targets: Targets, env: Mapping[str, str]
) -> None:
    """Send each measurement to the trackers asked for, once its files are written: a line
    each, a warning for one that failed; the exit code and the verdict stay as they are."""
    if not targets.wanted:
        return
    from co2gate.trackers import send_all

    for m in measurements:
        outcome.lines.extend(send_all(m, targets, env))


def warm_report(template_dir: Path | None) -> None:
    """Import the report's modules, compile its templates and look up the cleaner grids
    while the command runs, so that co2gate's exit after it does not wait for them."""
    from co2gate import report
    from co2gate.app import publish  # noqa: F401  (its imports, for the same reason)

    report.check_templates(template_dir)
    intensity.low_carbon()
