"""The measured run as data: emissions.json (co2gate/emissions/v1) and codecarbon's CSV."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from co2gate import __version__, codecarbon_csv, fmt, uncertainty, units
from co2gate.guard import GuardStop
from co2gate.intensity import Intensity
from co2gate.labels import RunLabels
from co2gate.measure.interface import Component, Method
from co2gate.model import (
    CiInfo,
    Energy,
    EnergyRange,
    Gpu,
    GuardInfo,
    HostValue,
    Measurement,
    MeasurementError,
    Node,
    PerComponent,
    Place,
    Run,
)
from co2gate.runner import ChildResult, MeterOutcome
from co2gate.sci import Embodied, sci
from co2gate.tokens import mask
from co2gate.water import WaterFactors, litres

MAX_FILE_BYTES: Final = 32 * 1024 * 1024  # a measurement file larger than this is refused
_NO_COORDINATES: Any = None  # as codecarbon's offline tracker writes them: empty cells


@dataclasses.dataclass
class _Part:
    energy_kwh: float = 0.0
    method: Method = Method.NONE
    coverage: float | None = None  # None: nothing watched this component


def scale_to_lifetime(energy_kwh: float, window_s: float, lifetime_s: float) -> float:
    """Energy over the command's whole lifetime at the mean power a source saw in its window.

    A source that became ready after the command started saw only part of its life.
    """
    if window_s <= 0:
        return 0.0
    return energy_kwh * lifetime_s / window_s


def build(
    child: ChildResult,
    outcomes: Sequence[MeterOutcome],
    intensity: Intensity,
    *,
    pue: float,
    labels: RunLabels,
    ci: CiInfo | Mapping[str, Any] | None,
    embodied: Embodied | None = None,
    notes: Sequence[str] = (),
    node: Node | None = None,
    water: WaterFactors | None = None,
) -> Measurement:
    """The measurement of one run (`.to_json()`: its emissions.json); `embodied` feeds SCI;
    `node`: which machine and rank measured it (nodes.read).

    `ci` is co2gate's own block (github.context.ci_context), taken as it is; `notes` come
    first, before the sources' own.
    """
    from uuid import uuid4  # after the command: uuid imports platform

    lifetime = child.duration_s
    parts = {component: _Part() for component in Component}
    gpus: list[Gpu] = []
    host: dict[str, HostValue] = {}
    said: list[str] = list(notes)

    for outcome in outcomes:
        if outcome.error is not None:
            said.append(f"{outcome.name} failed: {outcome.error}")
            for component in outcome.meter.components if outcome.meter else ():
                parts[component].method = Method.FAILED
        reading = outcome.reading
        if reading is None:
            continue
        ready = outcome.ready_after_s or 0.0
        coverage = max(0.0, min(1.0, (lifetime - ready) / lifetime)) if lifetime > 0 else 0.0
        for part in reading.parts:
            parts[part.component] = _Part(
                scale_to_lifetime(part.energy_kwh, part.window_s, lifetime), part.method, coverage
            )
        for gpu in reading.gpus:
            window = reading.parts[0].window_s if reading.parts else 0.0
            energy = scale_to_lifetime(gpu.energy_kwh, window, lifetime)
            gpus.append(
                Gpu(
                    index=gpu.index,
                    name=gpu.name,
                    uuid=gpu.uuid,
                    energy_kwh=energy,
                    mean_power_w=units.kwh_to_mean_w(energy, lifetime),
                    mean_utilization_pct=gpu.mean_utilization_pct,
                    method=gpu.method,
                )
            )
        host.update({key: _host_value(value) for key, value in reading.host.items()})
        said.extend(reading.notes)
        if coverage < 0.99:
            said.append(
                f"{outcome.name} was ready {fmt.duration(ready)} after the command started: it "
                f"measured {fmt.pct(coverage, 0)} of the run and the rest is extrapolated at its "
                "mean power"
            )

    stop = child.guard_stop
    if stop is not None:
        said.append(stop.note())
    total = sum(p.energy_kwh for p in parts.values())
    emissions = units.emissions_kg(total, pue, intensity.g_per_kwh)
    requests = labels.requests
    host.setdefault("gpu_count", len(gpus))
    host["co2gate_version"] = __version__
    cpu, gpu_part, ram = (parts[c] for c in Component)
    spans = [uncertainty.energy_bounds(p.energy_kwh, p.method) for p in (cpu, gpu_part, ram)]
    span_total = uncertainty.total_bounds(spans)
    measurement = Measurement(
        run=Run(
            id=str(uuid4()),
            label=labels.label,
            workload=labels.workload,
            command=tuple(child.argv),
            exit_code=child.exit_code,
            signal=child.signal,
            forwarded_signals=tuple(child.forwarded),
            started_at=_to_ms(child.started_at),
            ended_at=_to_ms(child.ended_at),
            duration_s=lifetime,
            cpu_s=child.cpu_s,
            limit_kg=child.limit_kg,
            stopped_by_guard=stop is not None,
            guard=_guard_info(stop) if stop is not None else None,
        ),
        energy_kwh=Energy(cpu.energy_kwh, gpu_part.energy_kwh, ram.energy_kwh, total=total),
        power_w=PerComponent(
            *(units.kwh_to_mean_w(p.energy_kwh, lifetime) for p in (cpu, gpu_part, ram))
        ),
        methods=PerComponent(cpu.method, gpu_part.method, ram.method),
        coverage=PerComponent(cpu.coverage, gpu_part.coverage, ram.coverage),
        pue=pue,
        intensity_g_per_kwh=intensity.g_per_kwh,
        intensity_source=intensity.source,
        location=place_of(intensity),
        emissions_kg=emissions,
        gpus=tuple(gpus),
        requests=requests,
        unit=labels.unit if requests else None,
        per_request_g=emissions * 1000.0 / requests if requests else None,
        per_request_wh=total * 1000.0 / requests if requests else None,
        host=MappingProxyType(host),
        notes=tuple(said),
        ci=_ci(ci),
        energy_kwh_range=EnergyRange(spans[0], spans[1], spans[2], total=span_total),
        emissions_kg_range=uncertainty.emissions_bounds(span_total, pue, intensity.g_per_kwh),
        node=node,
    )
    return dataclasses.replace(
        measurement,
        sci=sci(measurement, embodied or Embodied()),
        water=litres(total, pue, water) if water else None,
    )


def _to_ms(moment: datetime) -> datetime:
    """A timestamp cut to the millisecond, as emissions.json writes it."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _guard_info(stop: GuardStop) -> GuardInfo:
    return GuardInfo(
        limit_kg=stop.limit_kg,
        stopped_at_kg=stop.at_kg,
        stopped_at_kwh=stop.energy_kwh,
        stopped_after_s=stop.after_s,
        stopped_at=_to_ms(stop.at),
        grace_s=stop.grace_s,
        signals=stop.signals,
    )


def _host_value(value: object) -> HostValue:
    """A host fact as emissions.json can hold it: a scalar, a finite number (a source that
    could not read one may report NaN), else its text."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _ci(ci: CiInfo | Mapping[str, Any] | None) -> CiInfo | None:
    if isinstance(ci, CiInfo) or ci is None:
        return ci
    return CiInfo.from_context(ci) if ci else None


def place_of(intensity: Intensity) -> Place:
    """Where intensity's figure is for, as emissions.json's `location` names it."""
    return Place(
        country_iso_code=intensity.country_iso_code,
        country_name=intensity.country_name,
        region=intensity.region,
        cloud_provider=intensity.cloud_provider,
        cloud_region=intensity.cloud_region,
    )


def csv_row(m: Measurement) -> dict[str, Any]:
    """One row of codecarbon's emissions.csv for a co2gate run.

    codecarbon's energy and power columns include PUE, and so do these; emissions.json's
    energy_kwh does not (it is what the devices drew).
    """
    from codecarbon.output_methods.emissions_data import EmissionsData

    run, energy, power, pue = m.run, m.energy_kwh, m.power_w, m.pue
    host: Mapping[str, Any] = m.host  # codecarbon's own facts, passed back as they came
    location: dict[str, Any] = m.location.to_json()  # None: an empty cell, as codecarbon's
    duration = run.duration_s
    gpu_util = [g.mean_utilization_pct for g in m.gpus if g.mean_utilization_pct is not None]
    data = EmissionsData(
        timestamp=run.ended_at.isoformat(timespec="seconds")[:19],
        project_name=run.label,
        run_id=run.id,
        experiment_id=run.workload,
        duration=duration,
        emissions=m.emissions_kg,
        emissions_rate=m.emissions_kg / duration if duration > 0 else 0.0,
        cpu_power=power.cpu * pue,
        gpu_power=power.gpu * pue,
        ram_power=power.ram * pue,
        cpu_energy=energy.cpu * pue,
        gpu_energy=energy.gpu * pue,
        ram_energy=energy.ram * pue,
        energy_consumed=energy.total * pue,
        water_consumed=m.water.water_l if m.water else 0.0,
        country_name=location["country_name"],
        country_iso_code=location["country_iso_code"],
        region=location["region"],
        cloud_provider=location["cloud_provider"],
        cloud_region=location["cloud_region"],
        os=host.get("os", ""),
        python_version=host.get("python_version", ""),
        codecarbon_version=host.get("codecarbon_version", ""),
        cpu_count=host.get("cpu_count", ""),
        cpu_model=host.get("cpu_model", ""),
        gpu_count=len(m.gpus),
        gpu_model=host.get("gpu_model", ""),
        longitude=_NO_COORDINATES,
        latitude=_NO_COORDINATES,
        ram_total_size=host.get("ram_total_gb", ""),
        tracking_mode="machine",
        cpu_utilization_percent=host.get("cpu_utilization_pct", 0.0),
        gpu_utilization_percent=sum(gpu_util) / len(gpu_util) if gpu_util else 0.0,
        ram_utilization_percent=host.get("ram_utilization_pct", 0.0),
        ram_used_gb=host.get("ram_used_gb", 0.0),
        on_cloud="Y" if location["cloud_provider"] else "N",
        pue=pue,
        wue=(m.water.wue_l_per_kwh or 0.0) if m.water else 0.0,
    )
    return dict(data.values)


def write(out_dir: Path, m: Measurement) -> tuple[Path, Path]:
    """Write emissions.json and emissions.csv into out_dir, each atomically."""
    import csv

    row = csv_row(m)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    json_path, csv_path = out_dir / "emissions.json", out_dir / "emissions.csv"
    write_atomic(json_path, json.dumps(m.to_json(), indent=2) + "\n")
    write_atomic(csv_path, buffer.getvalue())
    return json_path, csv_path


def write_atomic(path: Path, text: str) -> None:
    """Write text so a reader sees the old file or the new one, never half of it; no token
    in it (tokens.mask)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(mask(text), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written stray behind
        raise


def from_codecarbon_csv(
    path: Path, labels: RunLabels, ci: CiInfo | Mapping[str, Any] | None
) -> Measurement:
    """One measurement for an emissions.csv (or a task file) that a user's own codecarbon
    code wrote: see codecarbon_csv. Raises MeasurementError naming the file, and the line
    and column where one is at fault."""
    return codecarbon_csv.read(_read_text(path), path, labels, ci)


def read_measurement(
    path: Path, labels: RunLabels, ci: CiInfo | Mapping[str, Any] | None
) -> Measurement:
    """A measurement to gate: a co2gate emissions.json, or a codecarbon emissions.csv.

    labels and ci apply to a CSV; an emissions.json names its own. Raises MeasurementError
    (a ValueError) with one line naming the file and what is wrong with it.
    """
    text = _read_text(path)
    if path.suffix.lower() == ".csv":
        return codecarbon_csv.read(text, path, labels, ci)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise MeasurementError(f"{path}: not JSON ({e})") from e
    except RecursionError as e:
        raise MeasurementError(f"{path}: not JSON co2gate reads: nested too deeply") from e
    return Measurement.from_json(doc, str(path))


def _read_text(path: Path) -> str:
    try:
        # O_NONBLOCK: a FIFO opens without waiting for a writer, and is refused below.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                kind = "a directory" if path.is_dir() else "not a regular file"
                raise MeasurementError(f"{path}: {kind}, not a measurement file")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise MeasurementError(f"{path}: cannot read it: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise MeasurementError(
            f"{path}: larger than {MAX_FILE_BYTES:,} bytes: not a measurement file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MeasurementError(f"{path}: not UTF-8 text (byte {e.start})") from e
