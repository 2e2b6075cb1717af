"""`co2gate check --merge`: the measurements of one run's nodes and ranks as ONE Measurement.

Each rank's `co2gate measure` reads whole devices: every GPU it can see (NVML) and the
machine's CPU and RAM (codecarbon's machine mode). Summed naively, two ranks on one machine
would count that machine twice. So:

- a GPU is known by its UUID: readings of one GPU whose runs overlap in time are one reading;
- a machine is known by its boot id: the CPU and RAM readings of ranks on one machine whose
  runs overlap are one reading; runs on it that do not overlap are counted each;
- of readings that are one, the largest is kept, extended at its own mean power over the
  union of their runs (a rank that watched less of the run read less of the same device);
- everything else (energy, emissions, their ~90% ranges) is summed; the run spans the
  earliest start to the latest end; a component's method is the least accurate of the nodes'.

Pure: the standard library, the model and the measure enums; nothing heavy.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, TypeVar

from co2gate import uncertainty, units
from co2gate.errors import InputError
from co2gate.measure.interface import Component, Method
from co2gate.model import (
    MAX_NOTE,
    MAX_NOTES,
    MAX_TEXT,
    Bounds,
    Energy,
    EnergyRange,
    Gpu,
    Measurement,
    Node,
    NodeShare,
    PerComponent,
    Place,
    Run,
    Scheduler,
    Sci,
)
from co2gate.sci import SECONDS_PER_YEAR

T = TypeVar("T")
MAX_FILES: Final = 4096
_MACHINE_PARTS: Final = (Component.CPU, Component.RAM)
# Readings of the job's own share of a device, not of the whole device: never one another's.
_SHARES: Final = frozenset({Method.CGROUP_QUOTA_SHARE, Method.NVML_PROCESS_SHARE})


class MergeError(InputError):
    """Files that cannot be one run: one line naming them and why."""


@dataclass
class _File:
    source: str
    m: Measurement
    machine: str  # the boot id, or "file:N" when there is none

    @property
    def start(self) -> datetime:
        return self.m.run.started_at

    @property
    def end(self) -> datetime:
        return self.m.run.ended_at

    @property
    def rank(self) -> int | None:
        return self.m.node.rank if self.m.node else None


@dataclass
class _Unit:
    """One reading of one device (a GPU, a machine's CPU or RAM) from one file."""

    file: _File
    kwh: float
    bounds: Bounds
    method: Method
    gpu: Gpu | None = None


@dataclass
class _Kept:
    """What a file contributes to the merged run, after duplicates were set aside."""

    kwh: dict[Component, float] = field(default_factory=lambda: dict.fromkeys(Component, 0.0))
    bounds: dict[Component, Bounds] = field(
        default_factory=lambda: dict.fromkeys(Component, (0.0, 0.0))
    )

    def add(self, component: Component, kwh: float, bounds: Bounds) -> None:
        self.kwh[component] += kwh
        lo, hi = self.bounds[component]
        self.bounds[component] = (lo + bounds[0], hi + bounds[1])


def merge(files: Sequence[tuple[str, Measurement]]) -> Measurement:
    """One Measurement for the files of one run. Raises MergeError naming the files."""
    if not files:
        raise MergeError("--merge needs at least one measurement file")
    if len(files) > MAX_FILES:
        raise MergeError(f"--merge takes at most {MAX_FILES:,} files, not {len(files):,}")
    _check_one_run(files)
    ordered = sorted(
        enumerate(files),
        key=lambda f: (f[1][1].node is None or f[1][1].node.rank is None, _rank(f[1][1]), f[0]),
    )
    parts = [
        _File(source, m, m.node.boot_id if m.node and m.node.boot_id else f"file:{i}")
        for i, (source, m) in ordered
    ]
    kept = {id(p): _Kept() for p in parts}
    notes: list[str] = []
    gpus: list[tuple[_File, Gpu]] = []

    # CPU and RAM: once per machine over overlapping time.
    set_aside = 0
    for machine in _group(parts, lambda p: p.machine):
        for cluster in _overlapping(machine, lambda p: (p.start, p.end)):
            dropped = 0
            for component in _MACHINE_PARTS:
                whole = _keep_shares([_unit(p, component) for p in cluster], component, kept)
                if whole:
                    best, factor = _largest(whole, [u.file for u in whole])
                    kept[id(best.file)].add(
                        component, best.kwh * factor, _times(best.bounds, factor)
                    )
                    dropped = max(dropped, len(whole) - 1)
            set_aside += dropped
    if set_aside:
        notes.append(
            f"CPU and RAM counted once per machine: {set_aside} of {len(parts)} files ran on a "
            "machine (the same boot id) at the same time as another, so their CPU and RAM "
            "readings were of the same devices; for each such machine the largest reading is "
            "kept, extended at its mean power over the span of the overlapping runs. Runs on "
            "one machine that did not overlap are counted each."
        )
    unknown = sum(p.machine.startswith("file:") for p in parts)
    if unknown and len(parts) > 1:
        notes.append(
            f"{unknown} of {len(parts)} files name no boot id (files from before co2gate "
            "recorded the node): each is counted as a machine of its own, which double counts "
            "CPU and RAM if any of them shared one."
        )

    # GPUs: once per UUID over overlapping time; a reading without a UUID counts as it is.
    shared = 0
    anonymous: list[_Unit] = []
    by_uuid: dict[str, list[_Unit]] = {}
    for p in parts:
        for u in _gpu_units(p):
            if u.gpu is None or not u.gpu.uuid:
                anonymous.append(u)
            else:
                by_uuid.setdefault(u.gpu.uuid, []).append(u)
    for u in anonymous:
        kept[id(u.file)].add(Component.GPU, u.kwh, u.bounds)
        if u.gpu is not None:
            gpus.append((u.file, u.gpu))
    for same in by_uuid.values():
        for seen in _overlapping(same, lambda u: (u.file.start, u.file.end)):
            readings = _keep_shares(seen, Component.GPU, kept, gpus)
            if not readings:
                continue
            shared += len(readings) - 1
            best, factor = _largest(readings, [u.file for u in readings])
            kept[id(best.file)].add(Component.GPU, best.kwh * factor, _times(best.bounds, factor))
            assert best.gpu is not None
            energy = best.gpu.energy_kwh * factor
            gpus.append((best.file, dataclasses.replace(best.gpu, energy_kwh=energy)))
    if shared:
        notes.append(
            f"GPUs counted once by UUID: {shared} GPU readings were of a GPU that another rank "
            "also read at the same time; the largest reading of each GPU is kept."
        )
    shares = sum(p.m.methods.of(c) in _SHARES for p in parts for c in _MACHINE_PARTS)
    shares += sum(g.method in _SHARES for p in parts for g in p.m.gpus)
    if shares and len(parts) > 1:
        notes.append(
            f"{shares} readings were a job's own share of a device (cgroup-quota-share, "
            "nvml-process-share), not the whole device: shares add up, so they are summed, "
            "never counted once."
        )
    return _assemble(parts, kept, gpus, notes)


def _check_one_run(files: Sequence[tuple[str, Measurement]]) -> None:
    first_source, first = files[0]
    jobs: dict[str, str] = {}
    ids: dict[str, str] = {}
    for source, m in files:
        if m.nodes:
            raise MergeError(f"{source}: already a merged run: merge the nodes' own files")
        for what, mine, theirs in (
            ("label", m.run.label, first.run.label),
            ("workload", m.run.workload, first.run.workload),
        ):
            if mine != theirs:
                raise MergeError(
                    f"{first_source} and {source} cannot be one run: {what} {theirs!r} and {mine!r}"
                )
        job = m.node.job_id if m.node else None
        if job is not None:
            other = next(iter(jobs.items()), None)
            if other is not None and other[0] != job:
                raise MergeError(
                    f"{other[1]} and {source} cannot be one run: job {other[0]!r} and {job!r}"
                )
            jobs.setdefault(job, source)
        if m.run.id in ids:
            raise MergeError(f"{ids[m.run.id]} and {source} are the same measurement (run id)")
        ids[m.run.id] = source


def _rank(m: Measurement) -> int:
    return m.node.rank if m.node and m.node.rank is not None else 0


def _group(items: Iterable[T], key: Callable[[T], str]) -> list[list[T]]:
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def _overlapping(
    items: Sequence[T], when: Callable[[T], tuple[datetime, datetime]]
) -> list[list[T]]:
    """Items in clusters whose spans overlap, each cluster in start order."""
    clusters: list[list[T]] = []
    end: datetime | None = None
    for item in sorted(items, key=lambda i: when(i)[0]):
        start, stop = when(item)
        if end is not None and start < end:
            clusters[-1].append(item)
            end = max(end, stop)
        else:
            clusters.append([item])
            end = stop
    return clusters


def _unit(p: _File, component: Component) -> _Unit:
    m = p.m
    return _Unit(
        p, m.energy_kwh.of(component), m.energy_bounds.of(component), m.methods.of(component)
    )


def _gpu_units(p: _File) -> list[_Unit]:
    """The file's GPU energy as one unit per GPU record (its share of the GPU component,
    whose bounds it takes in proportion); the whole component when there are no records."""
    total, bounds, method = p.m.energy_kwh.gpu, p.m.energy_bounds.gpu, p.m.methods.gpu
    if not p.m.gpus:
        return [_Unit(p, total, bounds, method)] if total > 0 else []
    listed = sum(g.energy_kwh for g in p.m.gpus)
    shares = [g.energy_kwh / listed if listed > 0 else 1 / len(p.m.gpus) for g in p.m.gpus]
    return [
        _Unit(p, total * share, _times(bounds, share), g.method, g)
        for g, share in zip(p.m.gpus, shares, strict=True)
    ]


def _keep_shares(
    units_: list[_Unit],
    component: Component,
    kept: dict[int, _Kept],
    gpus: list[tuple[_File, Gpu]] | None = None,
) -> list[_Unit]:
    """Count at once each reading that is a job's own share of a device (a cgroup's CPU
    quota, a process's share of a GPU): shares of one device add up. The whole-device
    readings are returned, to be counted once."""
    whole = []
    for u in units_:
        if u.method in _SHARES:
            kept[id(u.file)].add(component, u.kwh, u.bounds)
            if gpus is not None and u.gpu is not None:
                gpus.append((u.file, u.gpu))
        else:
            whole.append(u)
    return whole


def _largest(cluster: Sequence[_Unit], files: Sequence[_File]) -> tuple[_Unit, float]:
    """The largest reading and the factor that extends it over the cluster's whole span."""
    best = max(cluster, key=lambda u: u.kwh)
    span = (max(f.end for f in files) - min(f.start for f in files)).total_seconds()
    own = best.file.m.run.duration_s
    return best, max(1.0, span / own) if own > 0 and len(files) > 1 else 1.0


def _times(bounds: Bounds, factor: float) -> Bounds:
    return bounds[0] * factor, bounds[1] * factor


def _worst(methods: Iterable[Method]) -> Method:
    """The least accurate of several methods: a failed source first, then the widest."""
    seen = [m for m in methods if m is not Method.NONE]
    if not seen:
        return Method.NONE
    if Method.FAILED in seen:
        return Method.FAILED
    return max(seen, key=lambda m: uncertainty.WIDTHS[m].high - uncertainty.WIDTHS[m].low)


def _kg(p: _File, kwh: float, bounds: Bounds) -> tuple[float, Bounds]:
    """A file's contribution in kg CO2e, with its range at that file's own kg per kWh."""
    m = p.m
    kg = units.emissions_kg(kwh, m.pue, m.intensity_g_per_kwh)
    (e_lo, e_hi), (k_lo, k_hi) = m.energy_bounds.total, m.emissions_bounds
    lo = bounds[0] * k_lo / e_lo if e_lo > 0 else kg
    hi = bounds[1] * k_hi / e_hi if e_hi > 0 else kg
    return kg, (min(lo, kg), max(hi, kg))


def _assemble(
    parts: list[_File], kept: dict[int, _Kept], gpus: list[tuple[_File, Gpu]], notes: list[str]
) -> Measurement:
    first = parts[0].m
    started = min(p.start for p in parts)
    ended = max(p.end for p in parts)
    duration = (ended - started).total_seconds()
    comp = {c: sum(kept[id(p)].kwh[c] for p in parts) for c in Component}
    comp_bounds = {c: _sum(kept[id(p)].bounds[c] for p in parts) for c in Component}
    total = sum(comp.values())
    # Emissions at each file's own PUE and intensity, summed; one grid keeps its exact figure.
    per_file = {
        id(p): _kg(p, sum(kept[id(p)].kwh.values()), _sum(kept[id(p)].bounds.values()))
        for p in parts
    }
    grids = {(p.m.pue, p.m.intensity_g_per_kwh, p.m.intensity_source) for p in parts}
    if len(grids) == 1:
        pue, intensity, source = first.pue, first.intensity_g_per_kwh, first.intensity_source
        location = first.location
        kg = units.emissions_kg(total, pue, intensity)
    else:
        kg = sum(k for k, _ in per_file.values())
        weight = total or 1.0
        pue = sum(p.m.pue * sum(kept[id(p)].kwh.values()) for p in parts) / weight if total else 1
        pue = max(1.0, pue)
        intensity = kg * 1000.0 / (total * pue) if total > 0 else first.intensity_g_per_kwh
        sources = sorted({p.m.intensity_source for p in parts})
        source = f"energy-weighted over {len(grids)} grids: " + "; ".join(sources)
        source = source if len(source) <= MAX_TEXT else source[: MAX_TEXT - 3] + "..."
        location = first.location if len({p.m.location for p in parts}) == 1 else Place()
        notes.append(
            f"The nodes ran under {len(grids)} different PUEs or grid intensities: each node's "
            "energy is priced at its own, and the PUE and intensity shown are energy-weighted."
        )
    kg_bounds = _sum(b for _, b in per_file.values())
    kg_bounds = (min(kg_bounds[0], kg), max(kg_bounds[1], kg))
    methods = PerComponent(*(_worst(p.m.methods.of(c) for p in parts) for c in Component))
    if any(len({p.m.methods.of(c) for p in parts} - {Method.NONE}) > 1 for c in Component):
        notes.append(
            "The nodes' figures were obtained by different methods: each component shows the "
            "least accurate of them."
        )
    requests = [p.m.requests for p in parts if p.m.requests is not None]
    served = sum(requests) if requests else None
    node_rows = _node_rows(parts, kept, per_file, gpus)
    kept_gpus = tuple(g for _, g in gpus)
    host = dict(first.host) | {"gpu_count": len(kept_gpus), "nodes": len(node_rows)}
    runs = [p.m.run for p in parts]
    measurement = Measurement(
        run=Run(
            id=str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL, "co2gate:merge:" + ",".join(sorted(r.id for r in runs))
                )
            ),
            label=first.run.label,
            workload=first.run.workload,
            command=first.run.command,
            exit_code=next((r.exit_code for r in runs if r.exit_code), 0),
            signal=next((r.signal for r in runs if r.signal), None),
            forwarded_signals=(),
            started_at=started,
            ended_at=ended,
            duration_s=duration,
            cpu_s=sum(r.cpu_s for r in runs if r.cpu_s is not None)
            if any(r.cpu_s is not None for r in runs)
            else None,
            limit_kg=next((r.limit_kg for r in runs if r.limit_kg is not None), None),
            stopped_by_guard=any(r.stopped_by_guard for r in runs),
            guard=next((r.guard for r in runs if r.guard is not None), None),
        ),
        energy_kwh=Energy(
            comp[Component.CPU], comp[Component.GPU], comp[Component.RAM], total=total
        ),
        power_w=PerComponent(*(units.kwh_to_mean_w(comp[c], duration) for c in Component)),
        methods=methods,
        coverage=PerComponent(*(_least(p.m.coverage.of(c) for p in parts) for c in Component)),
        pue=pue,
        intensity_g_per_kwh=intensity,
        intensity_source=source,
        location=location,
        emissions_kg=kg,
        gpus=kept_gpus,
        requests=served,
        unit=next((p.m.unit for p in parts if p.m.unit), None) if served else None,
        per_request_g=kg * 1000.0 / served if served else None,
        per_request_wh=total * 1000.0 / served if served else None,
        host=host,
        notes=_notes(notes, parts),
        ci=next((p.m.ci for p in parts if p.m.ci is not None), None),
        energy_kwh_range=EnergyRange(
            cpu=_hold(comp_bounds[Component.CPU], comp[Component.CPU]),
            gpu=_hold(comp_bounds[Component.GPU], comp[Component.GPU]),
            ram=_hold(comp_bounds[Component.RAM], comp[Component.RAM]),
            total=_hold(_sum(comp_bounds.values()), total),
        ),
        emissions_kg_range=kg_bounds,
        node=_common_node(parts),
        nodes=node_rows,
        # quality figures usually come from one rank: each name from the first file with it
        metrics=MappingProxyType({k: v for p in reversed(parts) for k, v in p.m.metrics.items()}),
    )
    return dataclasses.replace(measurement, sci=_sci(measurement, first, len(node_rows)))


def _sum(bounds: Iterable[Bounds]) -> Bounds:
    return uncertainty.total_bounds(bounds)


def _hold(bounds: Bounds, figure: float) -> Bounds:
    """Bounds that hold their figure despite rounding in the sums."""
    return min(bounds[0], figure), max(bounds[1], figure)


def _least(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _host_of(p: _File, i: int) -> str:
    node = p.m.node
    return (node.host or node.node_name if node else None) or f"unnamed {i + 1}"


def _node_rows(
    parts: list[_File],
    kept: dict[int, _Kept],
    per_file: dict[int, tuple[float, Bounds]],
    gpus: list[tuple[_File, Gpu]],
) -> tuple[NodeShare, ...]:
    rows = []
    for i, machine in enumerate(_group(parts, lambda p: p.machine)):
        ranks = sorted({p.rank for p in machine if p.rank is not None})
        boot = machine[0].machine
        rows.append(
            NodeShare(
                host=_host_of(machine[0], i),
                boot_id=None if boot.startswith("file:") else boot,
                ranks=tuple(ranks),
                files=len(machine),
                gpus=sum(1 for f, _ in gpus if f.machine == boot),
                energy_kwh=sum(sum(kept[id(p)].kwh.values()) for p in machine),
                emissions_kg=sum(per_file[id(p)][0] for p in machine),
            )
        )
    return tuple(rows)


def _common_node(parts: list[_File]) -> Node:
    """What the nodes share: the scheduler, the job, the world size (no one machine)."""
    nodes = [p.m.node for p in parts if p.m.node is not None]
    schedulers = {n.scheduler for n in nodes}
    jobs = {n.job_id for n in nodes if n.job_id is not None}
    worlds = {n.world_size for n in nodes if n.world_size is not None}
    scheduler: Scheduler = schedulers.pop() if len(schedulers) == 1 else "none"
    return Node(
        scheduler=scheduler,
        job_id=jobs.pop() if len(jobs) == 1 else None,
        world_size=worlds.pop() if len(worlds) == 1 else None,
    )


def _notes(merged: list[str], parts: list[_File]) -> tuple[str, ...]:
    """The merge's notes, then the files' own: a note every file has once, others by node."""
    out = [
        f"One run over {len(parts)} measurement files, merged by co2gate check --merge.",
        *merged,
    ]
    counts: dict[str, int] = {}
    for p in parts:
        for note in dict.fromkeys(p.m.notes):
            counts[note] = counts.get(note, 0) + 1
    seen: set[str] = set()
    for i, p in enumerate(parts):
        for note in p.m.notes:
            if counts[note] == len(parts):
                line = note
            else:
                rank = f", rank {p.rank}" if p.rank is not None else ""
                line = f"{_host_of(p, i)}{rank}: {note}"[:MAX_NOTE]
            if line not in seen:
                seen.add(line)
                out.append(line)
    if len(out) > MAX_NOTES:
        out = [*out[: MAX_NOTES - 1], f"... and {len(out) - MAX_NOTES + 1} more notes"]
    return tuple(out)


def _sci(m: Measurement, first: Measurement, machines: int) -> Sci | None:
    """SCI over the merged run: the operational figure summed, the embodied share of every
    machine and GPU for the run's span (the first file's hardware figures for each)."""
    if first.sci is None:
        return None
    held = first.sci.embodied
    lifetime_s = held.lifetime_years * SECONDS_PER_YEAR
    time_share = m.run.duration_s / lifetime_s
    reserved = held.server_kg * held.server_share * machines + held.gpu_kg * len(m.gpus)
    embodied = reserved * time_share
    units_ = m.requests or 1
    return Sci(
        operational_kg=m.emissions_kg,
        embodied_kg=embodied,
        functional_unit="request" if m.requests else "run",
        units=units_,
        kg_per_unit=(m.emissions_kg + embodied) / units_,
        embodied=dataclasses.replace(held, gpus=len(m.gpus), time_share=time_share),
    )
