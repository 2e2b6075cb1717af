"""A codecarbon emissions.csv, or one of its task files, as one Measurement.

Every layout codecarbon has written (tests/data/codecarbon/README.md lists them): totals
only without run_id (before 2.0), per-component columns from 2.0, `pue` from 2.2.3, task
files (`emissions_<experiment>_<run_id>.csv`, a `task_name` column) from 2.3. What each
row means:
- a run's flush() rows are cumulative: a run counts by its last row;
- runs are told apart by run_id; where it says nothing (blank, `None`: codecarbon's API
  output offline) or is absent, by start time (timestamp - duration) too;
- a task file's rows are one task each, all under one run_id: each counts;
- energies already include the row's `pue` (codecarbon multiplies every reading by it
  before pricing it: `EmissionsTracker._do_measurements`), so it is divided out here.

Pure: the standard library and co2gate's records; nothing heavy.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from co2gate import model, uncertainty, units
from co2gate.labels import RunLabels
from co2gate.measure.interface import Component, Method
from co2gate.model import (
    CiInfo,
    Energy,
    EnergyRange,
    Measurement,
    MeasurementError,
    PerComponent,
    Place,
    Run,
)

# Flush rows of one run share their start to within this: codecarbon writes the timestamp
# to the whole second, and the duration from a monotonic clock.
SAME_START_S: Final = 2.0
# run_id values that do not tell runs apart (codecarbon 2.x wrote `None` offline)
_NO_ID: Final = frozenset({"", "none", "nan", "null"})
_PARTS: Final = tuple(f"{c.value}_energy" for c in Component)
# Columns codecarbon may leave empty: its append of 2026 (codecarbon #1304) dropped them
# from the row, shifting every later cell left. A row shorter than its header is trusted
# only before the first of them.
_DROPPABLE: Final = frozenset(
    {"region", "cloud_provider", "cloud_region", "gpu_count", "gpu_model", "longitude"}
    | {"latitude"}
)
_LOOK_BACK: Final = 64  # runs under one key that a row may continue: runs interleave little
MAX_RUN_ID: Final = 4096  # characters of joined run ids kept before they are digested


@dataclasses.dataclass
class _Row:
    line: int
    run_id: str
    task: str | None
    start: datetime  # this row's: timestamp - duration
    began: datetime  # the run's first row's start
    end: datetime
    duration_s: float
    kg: float
    parts: PerComponent[float] | None  # kWh with PUE; None: the layout has totals only
    total: float  # kWh with PUE
    pue: float | None  # None: the row does not say


@dataclasses.dataclass
class _Layout:
    names: list[str]
    split: bool  # cpu/gpu/ram_energy columns
    id_column: str | None  # run_id, else experiment_id (1.x: a fresh uuid per run)
    tasks: bool
    trusted_when_short: int  # cells of a short row that stand where the header says


def read(
    text: str, path: Path, labels: RunLabels, ci: CiInfo | Mapping[str, Any] | None
) -> Measurement:
    """One measurement for the runs (or tasks) in a codecarbon CSV's text.

    Raises MeasurementError naming the file, and the line and column where one is at fault.
    """
    text = text.removeprefix("\ufeff")  # Excel saves one
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = _rows(reader, path)
    except csv.Error as e:  # a NUL byte, a field over the csv module's limit
        raise MeasurementError(f"{path}: not a CSV codecarbon wrote ({e})") from e
    runs, layout, short = rows
    if not runs:
        raise MeasurementError(f"{path}: no rows: not a codecarbon emissions.csv with a run in it")
    return _measurement(runs, layout, short, path, labels, ci)


def _rows(reader: Any, path: Path) -> tuple[list[_Row], _Layout, int]:
    """The last row of each run (or each task), in the order the runs began in the file."""
    header = next(reader, None)
    if header is None:
        raise MeasurementError(f"{path}: no rows: not a codecarbon emissions.csv with a run in it")
    layout = _layout([name.strip().lower() for name in header], path)
    runs: list[_Row] = []
    seen: dict[tuple[str, str | None], list[int]] = {}  # a run's key: where its runs are
    short = 0
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        where = f"{path}: line {reader.line_num}"
        if len(cells) > len(layout.names):
            raise MeasurementError(
                f"{where}: {len(cells)} cells under a header of {len(layout.names)}: "
                "not a codecarbon emissions.csv row"
            )
        trusted = len(cells)
        if len(cells) < len(layout.names):
            short += 1
            trusted = min(trusted, layout.trusted_when_short)
        named = dict(zip(layout.names[:trusted], cells[:trusted], strict=True))
        row = _row(named, layout, reader.line_num, where)
        _add(runs, seen.setdefault((row.run_id, row.task), []), row)
    return runs, layout, short


def _layout(names: list[str], path: Path) -> _Layout:
    where = f"{path}: line 1"
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise MeasurementError(f"{where}: column {name!r} appears twice")
        seen.add(name)
    split = all(part in seen for part in _PARTS)
    for column in ("timestamp", "duration", "emissions", *(() if split else ("energy_consumed",))):
        if column not in seen:
            shown = "cpu_energy or energy_consumed" if column == "energy_consumed" else column
            raise MeasurementError(f"{where}: no {shown} column: not a codecarbon emissions.csv")
    id_column = (
        "run_id" if "run_id" in seen else "experiment_id" if "experiment_id" in seen else None
    )
    droppable = [i for i, name in enumerate(names) if name in _DROPPABLE]
    return _Layout(
        names=names,
        split=split,
        id_column=id_column,
        tasks="task_name" in seen,
        trusted_when_short=min(droppable, default=len(names)),
    )


def _row(cells: Mapping[str, str], layout: _Layout, line: int, where: str) -> _Row:
    pue: float | None = None
    if "pue" in cells:
        pue = _figure(cells, "pue", where, units.PUE_MAX) or None  # empty or 0: unset
        if pue is not None and pue < units.PUE_MIN:
            raise MeasurementError(f"{where}: pue {pue!r} is below 1: not a codecarbon row")
    end = model.read_timestamp(_cell(cells, "timestamp", where).strip(), where, "timestamp")
    duration = _figure(cells, "duration", where, model.MAX_SECONDS)
    kg = _figure(cells, "emissions", where, model.MAX_KG)
    parts = None
    if layout.split:
        parts = PerComponent(*(_figure(cells, name, where, model.MAX_KWH) for name in _PARTS))
        total = parts.cpu + parts.gpu + parts.ram
    else:
        total = _figure(cells, "energy_consumed", where, model.MAX_KWH)
    run_id = cells.get(layout.id_column, "").strip() if layout.id_column else ""
    try:
        start = end - timedelta(seconds=duration)
    except OverflowError:  # a duration reaching back before year 1
        start = datetime.min.replace(tzinfo=end.tzinfo)
    return _Row(
        line=line,
        run_id=run_id,
        task=cells.get("task_name", "").strip() if layout.tasks else None,
        start=start,
        began=start,
        end=end,
        duration_s=duration,
        kg=kg,
        parts=parts,
        total=total,
        pue=pue,
    )


def _add(runs: list[_Row], same_key: list[int], row: _Row) -> None:
    """Count `row` as a later (cumulative) row of a run already seen, or as a new run.

    `same_key`: where the runs under the row's run_id (and task) are in `runs`; the latest
    few are looked at, so a file of many runs sharing `None` reads in linear time.
    """
    told_apart = row.run_id.lower() not in _NO_ID and row.task is None
    for i in reversed(same_key[-_LOOK_BACK:]):
        run = runs[i]
        if row.duration_s < run.duration_s:
            continue  # figures only grow within a run: this one began again
        # A named run's start is not compared: a suspended laptop moves the wall clock
        # and not codecarbon's monotonic duration.
        # Compared with the run's latest row: slow drift between the clocks adds up.
        near = abs((row.start - run.start).total_seconds()) <= SAME_START_S
        if told_apart or near:
            pue = row.pue if row.pue is not None else run.pue
            runs[i] = dataclasses.replace(row, pue=pue, began=run.began)
            return
    same_key.append(len(runs))
    runs.append(row)


def _measurement(
    runs: Sequence[_Row],
    layout: _Layout,
    short: int,
    path: Path,
    labels: RunLabels,
    ci: CiInfo | Mapping[str, Any] | None,
) -> Measurement:
    # Device energy: each run's figures over its own PUE (1 where the row does not say).
    device = [1.0 / (run.pue or 1.0) for run in runs]
    with_pue = sum(run.total for run in runs)
    total = sum(run.total * f for run, f in zip(runs, device, strict=True))
    if layout.split:
        cpu, gpu, ram = (
            sum(run.parts.of(c) * f for run, f in zip(runs, device, strict=True) if run.parts)
            for c in Component
        )
        method = Method.CODECARBON
    else:
        cpu = gpu = ram = 0.0
        method = Method.CODECARBON_TOTAL
    stated = {run.pue for run in runs if run.pue is not None}
    pue = with_pue / total if total > 0 else max(stated, default=1.0)
    pue = min(max(pue, units.PUE_MIN), units.PUE_MAX)  # rounding only
    kg = sum(run.kg for run in runs)
    duration = sum(run.duration_s for run in runs)
    requests = labels.requests
    spans = [uncertainty.energy_bounds(kwh, method) for kwh in (cpu, gpu, ram)]
    # One width for every part, so the total's bounds are its parts' summed; taken from the
    # total itself, which a file without a split has alone and which need not be the parts' sum
    span_total = uncertainty.energy_bounds(total, method)
    width, grid = uncertainty.WIDTHS[method], uncertainty.INTENSITY
    measurement = Measurement(
        run=Run(
            id=_run_id(runs),
            label=labels.label,
            workload=labels.workload,
            command=(),
            exit_code=0,
            signal=None,
            forwarded_signals=(),
            started_at=min(run.began for run in runs),
            ended_at=max(run.end for run in runs),
            duration_s=duration,
            cpu_s=None,
            limit_kg=None,
            stopped_by_guard=False,
            guard=None,
        ),
        energy_kwh=Energy(cpu, gpu, ram, total=total),
        # the mean power codecarbon's figures imply over the time it measured
        power_w=PerComponent(*(units.kwh_to_mean_w(kwh, duration) for kwh in (cpu, gpu, ram))),
        methods=PerComponent(method, method, method),
        coverage=PerComponent(None, None, None),
        pue=pue,
        # codecarbon's own price of its energy, PUE included: emissions / energy_consumed
        intensity_g_per_kwh=kg * 1000 / with_pue if with_pue > 0 else 0.0,
        intensity_source=f"codecarbon's own figures in {path.name}",
        location=Place(),
        emissions_kg=kg,
        gpus=(),
        requests=requests,
        unit=labels.unit if requests else None,
        per_request_g=kg * 1000 / requests if requests else None,
        per_request_wh=total * 1000 / requests if requests else None,
        host=MappingProxyType({}),
        notes=tuple(_notes(runs, layout, short, stated, pue, path)),
        ci=_ci(ci),
        energy_kwh_range=EnergyRange(spans[0], spans[1], spans[2], total=span_total),
        # codecarbon's own kg, by the method's and the intensity's factors
        emissions_kg_range=(kg * width.low * grid.low, kg * width.high * grid.high),
    )
    # Held to the bounds of a co2gate file; a broken one is refused in one line naming it.
    return Measurement.from_json(measurement.to_json(), str(path))


def _notes(
    runs: Sequence[_Row],
    layout: _Layout,
    short: int,
    stated: set[float],
    pue: float,
    path: Path,
) -> list[str]:
    if layout.tasks:
        ids = sorted({run.run_id for run in runs})
        notes = [f"{len(runs)} codecarbon task(s) of run {', '.join(ids)} from {path}"]
    else:
        notes = [f"{len(runs)} codecarbon run(s) from {path}"]
    if not layout.split:
        notes.append(
            "this file has codecarbon's total energy only (no cpu_energy, gpu_energy and "
            "ram_energy columns, as before codecarbon 2.0): how it splits between the "
            "devices is unknown"
        )
    if layout.id_column != "run_id":
        notes.append("no run_id column: runs are told apart by their start (timestamp - duration)")
    if any(run.pue is not None and run.pue != 1.0 for run in runs):
        shown = ", ".join(f"{p:g}" for p in sorted(stated))
        notes.append(
            f"codecarbon's energy figures include the PUE it was given ({shown}): it "
            "multiplies every reading by it before pricing it; co2gate divides it out to show "
            f"what the devices drew, and prices that at PUE {pue:.4g}"
        )
    unknown = sum(run.pue is None for run in runs)
    if unknown and layout.tasks:
        notes.append(
            "a task file has no pue column: its energy is shown as codecarbon wrote it, "
            "with any PUE the tracker was given (see its emissions.csv)"
        )
    elif unknown and "pue" in layout.names:
        notes.append(
            f"{unknown} run(s) have no pue in their last row: taken as 1, so their energy "
            "is shown with any PUE codecarbon was given"
        )
    if short:
        notes.append(
            f"{short} row(s) are shorter than the header (codecarbon #1304 dropped empty "
            "cells and shifted the rest): only their cells before the first such column "
            "are read"
        )
    return notes


def _run_id(runs: Sequence[_Row]) -> str:
    """The runs' ids, joined: each run's own, with its start where the id tells nothing."""
    names: list[str] = []
    for run in runs:
        if run.task is not None:
            name = f"{run.run_id}:{run.task}"
        elif run.run_id.lower() in _NO_ID:
            name = f"{run.run_id or 'no-run-id'}@{run.began:%Y-%m-%dT%H:%M:%S}"
        else:
            name = run.run_id
        if name not in names:
            names.append(name)
    joined = ",".join(names)
    if len(joined) <= MAX_RUN_ID:
        return joined
    digest = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{names[0]},... ({len(names)} runs, sha256 {digest})"


def _cell(cells: Mapping[str, str], column: str, where: str) -> str:
    cell = cells.get(column)
    if cell is None:
        raise MeasurementError(f"{where}: no {column} cell: not a codecarbon emissions.csv row")
    return cell


def _figure(cells: Mapping[str, str], column: str, where: str, high: float) -> float:
    """A number from 0 to `high` in a codecarbon CSV cell; an empty cell is 0."""
    cell = _cell(cells, column, where)
    try:
        value = float(cell.strip() or 0.0)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= high:  # NaN and the infinities too
        shown = repr(cell[:41])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise MeasurementError(
            f"{where}: {column} {shown} is not a number from 0 to {high:g}: "
            "not a codecarbon emissions.csv row"
        )
    return value


def _ci(ci: CiInfo | Mapping[str, Any] | None) -> CiInfo | None:
    if isinstance(ci, CiInfo) or ci is None:
        return ci
    return CiInfo.from_context(ci) if ci else None
