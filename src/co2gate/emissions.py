"""The measured run as data: emissions.json (co2gate/emissions/v1) and codecarbon's CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from co2gate import __version__, fmt, units
from co2gate.intensity import Intensity
from co2gate.measure.interface import Component, Method
from co2gate.runner import ChildResult, MeterOutcome
from co2gate.sci import Embodied, sci

SCHEMA = "co2gate/emissions/v1"
_NO_COORDINATES: Any = None  # as codecarbon's offline tracker writes them: empty cells


@dataclasses.dataclass(frozen=True)
class RunLabels:
    """What the user said this run is."""

    label: str
    workload: str
    requests: int | None = None


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
    ci: Mapping[str, Any] | None,
    embodied: Embodied | None = None,
) -> dict[str, Any]:
    """The emissions.json document for one measured run; `embodied` feeds its SCI block."""
    lifetime = child.duration_s
    parts = {component: _Part() for component in Component}
    gpus: list[dict[str, Any]] = []
    host: dict[str, Any] = {}
    notes: list[str] = []

    for outcome in outcomes:
        if outcome.error is not None:
            notes.append(f"{outcome.name} failed: {outcome.error}")
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
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "uuid": gpu.uuid,
                    "energy_kwh": energy,
                    "mean_power_w": units.kwh_to_mean_w(energy, lifetime),
                    "mean_utilization_pct": gpu.mean_utilization_pct,
                    "method": gpu.method.value,
                }
            )
        host.update(reading.host)
        notes.extend(reading.notes)
        if coverage < 0.99:
            notes.append(
                f"{outcome.name} was ready {fmt.duration(ready)} after the command started: it "
                f"measured {fmt.pct(coverage, 0)} of the run and the rest is extrapolated at its "
                "mean power"
            )

    stop = child.guard_stop
    if stop is not None:
        notes.append(stop.note())
    total = sum(p.energy_kwh for p in parts.values())
    emissions = units.emissions_kg(total, pue, intensity.g_per_kwh)
    requests = labels.requests
    host.setdefault("gpu_count", len(gpus))
    host["co2gate_version"] = __version__
    doc = {
        "schema": SCHEMA,
        "run": {
            "id": str(uuid.uuid4()),
            "label": labels.label,
            "workload": labels.workload,
            "command": list(child.argv),
            "exit_code": child.exit_code,
            "signal": child.signal,
            "forwarded_signals": list(child.forwarded),
            "started_at": child.started_at.isoformat(timespec="milliseconds"),
            "ended_at": child.ended_at.isoformat(timespec="milliseconds"),
            "duration_s": lifetime,
            "cpu_s": child.cpu_s,
            "limit_kg": child.limit_kg,
            "stopped_by_guard": stop is not None,
            "guard": stop.to_json() if stop is not None else None,
        },
        "energy_kwh": {c.value: parts[c].energy_kwh for c in Component} | {"total": total},
        "power_w": {c.value: units.kwh_to_mean_w(parts[c].energy_kwh, lifetime) for c in Component},
        "methods": {c.value: parts[c].method.value for c in Component},
        "coverage": {c.value: parts[c].coverage for c in Component},
        "pue": pue,
        "intensity_g_per_kwh": intensity.g_per_kwh,
        "intensity_source": intensity.source,
        "location": {
            "country_iso_code": intensity.country_iso_code,
            "country_name": intensity.country_name,
            "region": intensity.region,
            "cloud_provider": intensity.cloud_provider,
            "cloud_region": intensity.cloud_region,
        },
        "emissions_kg": emissions,
        "gpus": gpus,
        "requests": requests,
        "per_request_g": emissions * 1000.0 / requests if requests else None,
        "per_request_wh": total * 1000.0 / requests if requests else None,
        "host": host,
        "notes": notes,
        "ci": dict(ci) if ci else None,
    }
    return doc | {"sci": sci(doc, embodied or Embodied())}


def csv_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One row of codecarbon's emissions.csv for a co2gate run.

    codecarbon's energy and power columns include PUE, and so do these; emissions.json's
    energy_kwh does not (it is what the devices drew).
    """
    from codecarbon.output_methods.emissions_data import EmissionsData

    run, energy, pue, host = doc["run"], doc["energy_kwh"], doc["pue"], doc["host"]
    duration = run["duration_s"]
    gpus = doc["gpus"]
    gpu_util = [g["mean_utilization_pct"] for g in gpus if g["mean_utilization_pct"] is not None]
    location = doc["location"]
    data = EmissionsData(
        timestamp=run["ended_at"][:19],
        project_name=run["label"],
        run_id=run["id"],
        experiment_id=run["workload"],
        duration=duration,
        emissions=doc["emissions_kg"],
        emissions_rate=doc["emissions_kg"] / duration if duration > 0 else 0.0,
        cpu_power=doc["power_w"]["cpu"] * pue,
        gpu_power=doc["power_w"]["gpu"] * pue,
        ram_power=doc["power_w"]["ram"] * pue,
        cpu_energy=energy["cpu"] * pue,
        gpu_energy=energy["gpu"] * pue,
        ram_energy=energy["ram"] * pue,
        energy_consumed=energy["total"] * pue,
        water_consumed=0.0,
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
        gpu_count=len(gpus),
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
        wue=0.0,
    )
    return dict(data.values)


def write(out_dir: Path, doc: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write emissions.json and emissions.csv into out_dir, each atomically."""
    row = csv_row(doc)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    json_path, csv_path = out_dir / "emissions.json", out_dir / "emissions.csv"
    write_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    write_atomic(csv_path, buffer.getvalue())
    return json_path, csv_path


def write_atomic(path: Path, text: str) -> None:
    """Write text so a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def from_codecarbon_csv(
    path: Path, labels: RunLabels, ci: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One record for an emissions.csv that a user's own codecarbon code wrote.

    codecarbon's flush() appends cumulative rows for the same run_id, so each run counts
    by its last row; separate runs in the file are added up. Figures are codecarbon's:
    its emissions (with its PUE and intensity) and its energy columns (which include PUE).
    """
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    last: dict[str, tuple[float, float, dict[str, float], str]] = {}
    for number, row in enumerate(rows, start=2):
        try:
            pue = float(row.get("pue") or 1.0) or 1.0
            energy = {c: float(row[f"{c}_energy"]) / pue for c in ("cpu", "gpu", "ram")}
            last[row["run_id"]] = (
                float(row["emissions"]),
                float(row["duration"]),
                energy,
                row["timestamp"],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: line {number}: not a codecarbon emissions.csv row ({e})"
            ) from e
    if not last:
        raise ValueError(f"{path}: no rows: not a codecarbon emissions.csv with a run in it")
    kg = sum(v[0] for v in last.values())
    energy = {c: sum(v[2][c] for v in last.values()) for c in ("cpu", "gpu", "ram")}
    total = sum(energy.values())
    ended = max(v[3] for v in last.values())
    return {
        "schema": SCHEMA,
        "run": {
            "id": ",".join(last),
            "label": labels.label,
            "workload": labels.workload,
            "command": [],
            "exit_code": 0,
            "started_at": ended,
            "ended_at": ended,
            "duration_s": sum(v[1] for v in last.values()),
            "stopped_by_guard": False,
        },
        "energy_kwh": energy | {"total": total},
        "methods": {c: "codecarbon" for c in ("cpu", "gpu", "ram")},
        "pue": 1.0,
        "intensity_g_per_kwh": kg * 1000 / total if total > 0 else 0.0,
        "intensity_source": f"codecarbon's own figures in {path.name}",
        "emissions_kg": kg,
        "gpus": [],
        "requests": labels.requests,
        "per_request_g": kg * 1000 / labels.requests if labels.requests else None,
        "notes": [f"{len(last)} codecarbon run(s) from {path}"],
        "ci": dict(ci) if ci else None,
    }


def read_measurement(path: Path, labels: RunLabels, ci: Mapping[str, Any] | None) -> dict[str, Any]:
    """A measurement to gate: a co2gate emissions.json, or a codecarbon emissions.csv.

    Raises ValueError with one line naming the file and what is wrong with it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e.strerror}") from e
    if path.suffix.lower() == ".csv":
        return from_codecarbon_csv(path, labels, ci)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f'{path}: not a co2gate emissions.json (no "schema": "{SCHEMA}")')
    run = doc.get("run")
    fields_ok = isinstance(run, dict) and all(
        isinstance(run.get(k), str) for k in ("workload", "label", "ended_at")
    )
    if not fields_ok or not isinstance(doc.get("emissions_kg"), (int, float)):
        raise ValueError(f"{path}: incomplete emissions.json: run or emissions_kg is missing")
    return doc
