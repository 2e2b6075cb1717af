"""The typed records co2gate passes between its rooms: one measured run is a Measurement.

`Measurement.from_json` is the one reader that checks an emissions.json (co2gate/emissions/v1,
the README's Files section): every field's type, every number finite and within sane bounds, every
text and list bounded, before any of it is used. The file may come from a fork's artifact, so
nothing in it is trusted. `to_json` writes exactly the document `emissions.build` writes.

Pure: the standard library, co2gate.errors and the measure enums; nothing heavy.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Final, Generic, Literal, NoReturn, TypeAlias, TypeVar

from co2gate import metrics
from co2gate.errors import InputError
from co2gate.labels import UNITS
from co2gate.measure.interface import Component, Method
from co2gate.units import MAX_INTENSITY_G_PER_KWH, PUE_MAX, PUE_MIN
from co2gate.water import MAX_SOURCE_L_PER_KWH, MAX_WUE_L_PER_KWH, Water

SCHEMA: Final = "co2gate/emissions/v1"

# Bounds from_json holds every field to; generous, so only a broken or hostile file fails.
MAX_KWH: Final = 1e9  # a GWh: far beyond any CI job
MAX_KG: Final = 1e9
MAX_WATER_L: Final = 1e12  # MAX_KWH at the largest factors, with room
MAX_W: Final = 1e9
MAX_SECONDS: Final = 1e9  # about 31 years
MAX_REQUESTS: Final = 10**15
MAX_PER_REQUEST: Final = 1e12  # g or Wh: MAX_KG or MAX_KWH over a single request
MAX_PCT: Final = 100.0
MAX_GPUS: Final = 1024
MAX_GPU_INDEX: Final = 65_535
MAX_NOTES: Final = 1000
MAX_NOTE: Final = 10_000  # characters in one note
MAX_NAME: Final = 200  # characters in a label, workload or job name: printable, one line
MAX_TEXT: Final = 1000  # characters in one line of text: sources, GPU names, CI facts
MAX_ID: Final = 65_536  # a run id; a codecarbon CSV's is its run ids joined
MAX_ARGS: Final = 100_000  # arguments in run.command
MAX_ARG: Final = 131_072  # characters in one argument (Linux's MAX_ARG_STRLEN)
MAX_COMMAND: Final = 2_097_152  # characters in the whole command (Linux's default ARG_MAX)
MAX_SIGNALS: Final = 1000
MAX_MAP_KEYS: Final = 100  # keys in host and ci
MAX_HOST_NUMBER: Final = 1e15
MAX_PR: Final = 2**31 - 1
MAX_EXIT_CODE: Final = 255
MAX_LIFETIME_YEARS: Final = 1000.0
MAX_DEPTH: Final = 32  # nesting of objects and lists; the document itself needs 4
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 2100
MAX_DATE_TEXT: Final = 64
GUARD_SIGNALS: Final = ("SIGTERM", "SIGKILL")
MAX_RANK: Final = 2**24  # ranks and world sizes: far beyond any cluster
MAX_NODES: Final = 4096  # rows of a merged run's by-node table
SCHEDULERS: Final = ("slurm", "torchrun", "ray", "mpi", "none")
Scheduler: TypeAlias = Literal["slurm", "torchrun", "ray", "mpi", "none"]
# The node's identity, as nodes.read and from_json both hold it.
BOOT_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MACHINE_ID: Final = re.compile(r"[0-9a-f]{32}")
HOSTNAME: Final = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@-]{0,127}")

T = TypeVar("T")
HostValue: TypeAlias = "str | int | float | bool | None"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class MeasurementError(InputError, ValueError):
    """A measurement file co2gate cannot use: one line naming the file, the field and what."""


@dataclass(frozen=True)
class PerComponent(Generic[T]):
    """One figure per device class, in Component order."""

    cpu: T
    gpu: T
    ram: T

    def of(self, component: Component) -> T:
        return {Component.CPU: self.cpu, Component.GPU: self.gpu, Component.RAM: self.ram}[
            component
        ]

    def items(self) -> Iterator[tuple[Component, T]]:
        return ((c, self.of(c)) for c in Component)


@dataclass(frozen=True)
class Energy(PerComponent[float]):
    """kWh the devices drew, before PUE, per component and in total."""

    total: float


Bounds: TypeAlias = tuple[float, float]  # [low, high] of a ~90% interval (uncertainty.py)


@dataclass(frozen=True)
class EnergyRange(PerComponent[Bounds]):
    """[low, high] kWh per component and in total (the components' bounds summed)."""

    total: Bounds

    @classmethod
    def exact(cls, energy: Energy) -> EnergyRange:
        """No width: each figure as its own bounds (a file from before co2gate wrote ranges)."""
        e = energy
        return cls((e.cpu, e.cpu), (e.gpu, e.gpu), (e.ram, e.ram), total=(e.total, e.total))

    def to_json(self) -> dict[str, list[float]]:
        return {c.value: list(b) for c, b in self.items()} | {"total": list(self.total)}


@dataclass(frozen=True)
class GuardInfo:
    """What the live guard did when it stopped the run."""

    limit_kg: float
    stopped_at_kg: float
    stopped_at_kwh: float | None  # None: a file from before co2gate wrote it
    stopped_after_s: float
    stopped_at: datetime
    grace_s: float | None
    signals: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "limit_kg": self.limit_kg,
            "stopped_at_kg": self.stopped_at_kg,
            "stopped_at_kwh": self.stopped_at_kwh,
            "stopped_after_s": self.stopped_after_s,
            "stopped_at": _iso(self.stopped_at),
            "grace_s": self.grace_s,
            "signals": list(self.signals),
        }


@dataclass(frozen=True)
class Run:
    """The command that ran: who said what it is, how it ended, how long it took."""

    id: str
    label: str
    workload: str
    command: tuple[str, ...]
    exit_code: int
    signal: str | None
    forwarded_signals: tuple[str, ...]
    started_at: datetime  # timezone-aware
    ended_at: datetime  # timezone-aware
    duration_s: float
    cpu_s: float | None
    limit_kg: float | None
    stopped_by_guard: bool
    guard: GuardInfo | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "workload": self.workload,
            "command": list(self.command),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "forwarded_signals": list(self.forwarded_signals),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_s": self.duration_s,
            "cpu_s": self.cpu_s,
            "limit_kg": self.limit_kg,
            "stopped_by_guard": self.stopped_by_guard,
            "guard": self.guard.to_json() if self.guard is not None else None,
        }


@dataclass(frozen=True)
class Place:
    """Where the grid intensity is for, as codecarbon's emissions.csv columns name it."""

    country_iso_code: str | None = None
    country_name: str | None = None
    region: str | None = None
    cloud_provider: str | None = None
    cloud_region: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "country_iso_code": self.country_iso_code,
            "country_name": self.country_name,
            "region": self.region,
            "cloud_provider": self.cloud_provider,
            "cloud_region": self.cloud_region,
        }


@dataclass(frozen=True)
class Gpu:
    index: int  # NVML index
    name: str
    uuid: str
    energy_kwh: float
    mean_power_w: float
    mean_utilization_pct: float | None
    method: Method

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "energy_kwh": self.energy_kwh,
            "mean_power_w": self.mean_power_w,
            "mean_utilization_pct": self.mean_utilization_pct,
            "method": self.method.value,
        }


@dataclass(frozen=True)
class Node:
    """Which machine and which rank of a multi-node run measured this file (nodes.read).

    machine_id is /etc/machine-id hashed for co2gate (the file itself is confidential);
    boot_id tells machines apart for `check --merge`. None: not known or not valid.
    """

    scheduler: Scheduler = "none"
    host: str | None = None
    machine_id: str | None = None
    boot_id: str | None = None
    job_id: str | None = None
    rank: int | None = None
    local_rank: int | None = None
    world_size: int | None = None
    node_rank: int | None = None  # the machine's index in the job: SLURM_NODEID, GROUP_RANK
    node_name: str | None = None  # the scheduler's name for it: SLURMD_NODENAME, RAY_NODE_ID

    def to_json(self) -> dict[str, Any]:
        return {
            "scheduler": self.scheduler,
            "host": self.host,
            "machine_id": self.machine_id,
            "boot_id": self.boot_id,
            "job_id": self.job_id,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "world_size": self.world_size,
            "node_rank": self.node_rank,
            "node_name": self.node_name,
        }


@dataclass(frozen=True)
class NodeShare:
    """One machine's part of a merged run (`check --merge`), after GPUs and CPU/RAM were
    counted once: the comment's "By node" table."""

    host: str
    boot_id: str | None
    ranks: tuple[int, ...]
    files: int
    gpus: int
    energy_kwh: float
    emissions_kg: float

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "boot_id": self.boot_id,
            "ranks": list(self.ranks),
            "files": self.files,
            "gpus": self.gpus,
            "energy_kwh": self.energy_kwh,
            "emissions_kg": self.emissions_kg,
        }


@dataclass(frozen=True)
class CiInfo:
    """The CI run a measurement belongs to (github/context.py writes it)."""

    provider: str | None = None
    repository: str | None = None
    sha: str | None = None
    ref: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    base_sha: str | None = None
    event: str | None = None
    pr: int | None = None
    workflow: str | None = None
    job: str | None = None
    run_id: str | None = None
    run_attempt: str | None = None
    server_url: str | None = None
    head_repository: str | None = None  # only the companion's trusted block has it

    @classmethod
    def from_context(cls, ci: Mapping[str, Any]) -> CiInfo:
        """The block co2gate itself made (ci_context, trusted_ci), taken as it is.

        A block read from a file goes through Measurement.from_json instead.
        """

        def text(key: str) -> str | None:
            value = ci.get(key)
            return None if value is None else str(value)

        pr = ci.get("pr")
        return cls(
            provider=text("provider"),
            repository=text("repository"),
            sha=text("sha"),
            ref=text("ref"),
            head_ref=text("head_ref"),
            base_ref=text("base_ref"),
            base_sha=text("base_sha"),
            event=text("event"),
            pr=pr if isinstance(pr, int) and not isinstance(pr, bool) else None,
            workflow=text("workflow"),
            job=text("job"),
            run_id=text("run_id"),
            run_attempt=text("run_attempt"),
            server_url=text("server_url"),
            head_repository=text("head_repository"),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "provider": self.provider,
            "repository": self.repository,
            "sha": self.sha,
            "ref": self.ref,
            "head_ref": self.head_ref,
            "base_ref": self.base_ref,
            "base_sha": self.base_sha,
            "event": self.event,
            "pr": self.pr,
            "workflow": self.workflow,
            "job": self.job,
            "run_id": self.run_id,
            "run_attempt": self.run_attempt,
            "server_url": self.server_url,
        }
        if self.head_repository is not None:
            doc["head_repository"] = self.head_repository
        return doc


@dataclass(frozen=True)
class SciEmbodied:
    """The hardware figures behind SCI's M (sci.Embodied) and what the run reserved of them."""

    server_kg: float
    gpu_kg: float
    lifetime_years: float
    server_share: float
    source: str
    gpus: int
    time_share: float  # the run's duration over the hardware's lifetime

    def to_json(self) -> dict[str, Any]:
        return {
            "server_kg": self.server_kg,
            "gpu_kg": self.gpu_kg,
            "lifetime_years": self.lifetime_years,
            "server_share": self.server_share,
            "source": self.source,
            "gpus": self.gpus,
            "time_share": self.time_share,
        }


@dataclass(frozen=True)
class Sci:
    """Software Carbon Intensity: (operational_kg + embodied_kg) / units (sci.py)."""

    operational_kg: float
    embodied_kg: float
    functional_unit: Literal["request", "run"]
    units: int
    kg_per_unit: float
    embodied: SciEmbodied

    def to_json(self) -> dict[str, Any]:
        return {
            "operational_kg": self.operational_kg,
            "embodied_kg": self.embodied_kg,
            "functional_unit": self.functional_unit,
            "units": self.units,
            "kg_per_unit": self.kg_per_unit,
            "embodied": self.embodied.to_json(),
        }


INTENSITY_METHODS: Final = ("provider-hourly", "provider-latest")
ENERGY_SPREADS: Final = ("sampled", "even")
MAX_SERIES: Final = 1000  # intervals in intensity_series (grid.pricing bounds it)


@dataclass(frozen=True)
class SeriesInterval:
    """One interval of a provider's series and the kWh the run drew in it."""

    start: datetime
    end: datetime
    g_per_kwh: float
    marginal_g_per_kwh: float | None
    energy_kwh: float

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(timespec="milliseconds"),
            "end": self.end.isoformat(timespec="milliseconds"),
            "g_per_kwh": self.g_per_kwh,
            "marginal_g_per_kwh": self.marginal_g_per_kwh,
            "energy_kwh": self.energy_kwh,
        }


@dataclass(frozen=True)
class GridPricing:
    """How a live provider priced the run (emissions.json's intensity_method and
    intensity_series, marginal_g_per_kwh and marginal_emissions_kg): the figures the
    average intensity_g_per_kwh was weighted from, and the marginal one beside it, which is
    reported and never gated on or recorded."""

    method: str  # INTENSITY_METHODS
    energy: str  # ENERGY_SPREADS: how the run's energy was laid over the intervals
    intervals: tuple[SeriesInterval, ...]
    marginal_g_per_kwh: float | None = None
    marginal_emissions_kg: float | None = None


@dataclass(frozen=True)
class Measurement:
    """One measured run: emissions.json (co2gate/emissions/v1) as a typed record.

    energy_kwh is what the devices drew (before PUE);
    emissions_kg = energy_kwh.total x pue x intensity_g_per_kwh / 1000.
    """

    run: Run
    energy_kwh: Energy
    power_w: PerComponent[float]  # mean power over the run
    methods: PerComponent[Method]
    coverage: PerComponent[float | None]  # share of the run watched; None: nothing watched
    pue: float
    intensity_g_per_kwh: float
    intensity_source: str
    location: Place
    emissions_kg: float
    gpus: tuple[Gpu, ...]
    requests: int | None
    per_request_g: float | None
    per_request_wh: float | None
    host: Mapping[str, HostValue]  # read-only: cpu_model, ram_total_gb, co2gate_version, ...
    notes: tuple[str, ...]
    ci: CiInfo | None
    sci: Sci | None = None  # None: a file from before co2gate wrote it, or a codecarbon CSV
    # ~90% intervals (uncertainty.py); None: no width known, read as [figure, figure]
    energy_kwh_range: EnergyRange | None = None
    emissions_kg_range: Bounds | None = None

    @property
    def energy_bounds(self) -> EnergyRange:
        """energy_kwh_range, or each figure as its own bounds."""
        return self.energy_kwh_range or EnergyRange.exact(self.energy_kwh)

    @property
    def emissions_bounds(self) -> Bounds:
        """emissions_kg_range, or [emissions_kg, emissions_kg]."""
        return self.emissions_kg_range or (self.emissions_kg, self.emissions_kg)

    unit: str | None = None  # what `requests` counts (tokens, samples, steps); None: requests
    # The run's quality figures (--metric, --metrics-file): name -> value; empty: none given
    metrics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    grid: GridPricing | None = None  # a live provider priced the run (intensity: in the budget)
    node: Node | None = None  # None: a file from before co2gate wrote it
    nodes: tuple[NodeShare, ...] = ()  # a merged run's machines (merge.py); () otherwise
    water: Water | None = None  # None: no water factors were given ("not measured")

    def to_json(self) -> dict[str, Any]:
        """The emissions.json document, key for key as emissions.build has always written it."""
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "run": self.run.to_json(),
            "energy_kwh": {c.value: kwh for c, kwh in self.energy_kwh.items()}
            | {"total": self.energy_kwh.total},
            "power_w": {c.value: w for c, w in self.power_w.items()},
            "methods": {c.value: m.value for c, m in self.methods.items()},
            "coverage": {c.value: share for c, share in self.coverage.items()},
            "pue": self.pue,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "location": self.location.to_json(),
            "emissions_kg": self.emissions_kg,
            "gpus": [g.to_json() for g in self.gpus],
            "requests": self.requests,
            "per_request_g": self.per_request_g,
            "per_request_wh": self.per_request_wh,
            "host": dict(self.host),
            "notes": list(self.notes),
            "ci": self.ci.to_json() if self.ci is not None else None,
        }
        if self.sci is not None:
            doc["sci"] = self.sci.to_json()
        if self.energy_kwh_range is not None:
            doc["energy_kwh_range"] = self.energy_kwh_range.to_json()
        if self.emissions_kg_range is not None:
            doc["emissions_kg_range"] = list(self.emissions_kg_range)
        if self.unit is not None:
            doc["unit"] = self.unit
        if self.metrics:
            doc["metrics"] = dict(self.metrics)
        if self.grid is not None:
            g = self.grid
            doc["intensity_method"] = g.method
            doc["intensity_series"] = {
                "energy": g.energy,
                "intervals": [iv.to_json() for iv in g.intervals],
            }
            doc["marginal_g_per_kwh"] = g.marginal_g_per_kwh
            doc["marginal_emissions_kg"] = g.marginal_emissions_kg
        if self.node is not None:
            doc["node"] = self.node.to_json()
        if self.nodes:
            doc["nodes"] = [n.to_json() for n in self.nodes]
        if self.water is not None:
            doc["water_l"] = self.water.water_l
            doc["water"] = self.water.to_json()
        return doc

    @classmethod
    def from_json(cls, obj: object, source: str) -> Measurement:
        """Check a parsed emissions.json and type it; keys this version does not know are
        ignored. Raises MeasurementError: one line naming `source`, the field and what is
        wrong with it."""
        return _Reader(source).measurement(obj)


def read_timestamp(value: object, source: str, path: str) -> datetime:
    """An ISO 8601 timestamp checked as from_json checks one (a codecarbon CSV has them too).

    Raises MeasurementError: `source: path: what is wrong`.
    """
    return _Reader(source).date(value, path)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _show(value: object) -> str:
    """A value for a one-line message: repr, at most 40 characters, never a newline.

    Never reprs a container (it may be huge or nested thousands deep) nor converts a huge
    integer to text (Python refuses past 4,300 digits).
    """
    if isinstance(value, str):
        text = repr(value[:41])
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        if value.bit_length() > 100:
            digits = math.floor(value.bit_length() * math.log10(2)) + 1
            return f"an integer of about {digits} digits"
        text = repr(value)
    elif isinstance(value, dict):
        return f"an object of {len(value)} key{'' if len(value) == 1 else 's'}"
    elif isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    else:
        return f"a {type(value).__name__}"[:40]
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e6 else f"{x:g}"


def _child(path: str, key: object) -> str:
    """The path of an object's member: run.ended_at, host['odd key']."""
    name = key if isinstance(key, str) and _KEY.fullmatch(key) else f"[{_show(key)}]"
    if name.startswith("["):
        return f"{path}{name}" if path else name
    return f"{path}.{name}" if path else name


_ABSENT: Final[Any] = object()  # a key the document does not have


@dataclass(frozen=True)
class _Obj:
    """An object of the document and its path: each member comes with its own path."""

    reader: _Reader
    value: Mapping[Any, Any]
    path: str

    def need(self, key: str) -> tuple[Any, str]:
        where = _child(self.path, key)
        if key not in self.value:
            self.reader.fail(where, "missing")
        return self.value[key], where

    def may(self, key: str) -> tuple[Any, str]:
        """The member, or _ABSENT; None and _ABSENT both mean "not given" to the maybe_ reads."""
        return self.value.get(key, _ABSENT), _child(self.path, key)


class _Reader:
    """Reads one document, naming `source` and the field path in every refusal."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, what: str) -> NoReturn:
        line = f"{self.source}: {path}: {what}"
        raise MeasurementError(line.replace("\r", "\\r").replace("\n", "\\n"))

    # ------------------------------------------------------------------ shapes

    def mapping(self, value: object, path: str) -> _Obj:
        if not isinstance(value, dict):
            self.fail(path, f"{_show(value)} is not an object")
        return _Obj(self, value, path)

    def maybe_mapping(self, value: object, path: str) -> _Obj | None:
        return None if value is None or value is _ABSENT else self.mapping(value, path)

    def array(self, value: object, path: str, most: int) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"{_show(value)} is not a list")
        if len(value) > most:
            self.fail(path, f"{_show(value)}: more than {most}")
        return value

    def maybe_array(self, value: object, path: str, most: int) -> list[Any]:
        return [] if value is None or value is _ABSENT else self.array(value, path, most)

    def depth(self, doc: Mapping[Any, Any]) -> None:
        """Refuse nesting deeper than MAX_DEPTH, without recursion, before anything walks it."""
        stack: list[tuple[object, int, str]] = [
            (value, 2, _child("", key)) for key, value in doc.items()
        ]
        while stack:
            value, level, top = stack.pop()
            if isinstance(value, dict):
                children: Any = value.values()
            elif isinstance(value, list):
                children = value
            else:
                continue
            if level > MAX_DEPTH:
                self.fail(top, f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, level + 1, top) for child in children)

    # ------------------------------------------------------------------ scalars

    def number(
        self, value: object, path: str, low: float, high: float, *, above: bool = False
    ) -> float:
        """A finite number in [low, high] ((low, high] when `above`); bools are not numbers.

        Compared before any conversion: an int too large for a float is refused, not raised.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"{_show(value)} is not a number")
        inside = (low < value if above else low <= value) and value <= high  # NaN: False
        if not inside:
            within = (
                f"above {_bound(low)} and at most {_bound(high)}"
                if above
                else f"from {_bound(low)} to {_bound(high)}"
            )
            self.fail(path, f"{_show(value)} is not a finite number {within}")
        return float(value)

    def maybe_number(
        self, value: object, path: str, low: float, high: float, *, above: bool = False
    ) -> float | None:
        if value is None or value is _ABSENT:
            return None
        return self.number(value, path, low, high, above=above)

    def integer(self, value: object, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"{_show(value)} is not a whole number")
        if not low <= value <= high:
            self.fail(path, f"{_show(value)} is not a whole number from {low} to {_bound(high)}")
        return int(value)

    def maybe_integer(self, value: object, path: str, low: int, high: int) -> int | None:
        if value is None or value is _ABSENT:
            return None
        return self.integer(value, path, low, high)

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"{_show(value)} is not true or false")
        return value

    def text(
        self,
        value: object,
        path: str,
        most: int,
        kind: Literal["name", "line", "free"] = "line",
        *,
        empty: bool = True,
    ) -> str:
        """Text of at most `most` characters. A name is printable (a space is the only space
        or control character it may hold); a line has no control character; free text may
        hold any. None may hold a lone surrogate: it cannot be written as UTF-8."""
        if not isinstance(value, str):
            self.fail(path, f"{_show(value)} is not text")
        if len(value) > most:
            self.fail(path, f"{_show(value)} is longer than {most} characters")
        if not empty and not value.strip():
            self.fail(path, f"{_show(value)} is empty")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(path, f"{_show(value)} is not valid Unicode text")
        if kind == "name" and any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value):
            self.fail(path, f"{_show(value)} is not a name (printable characters only)")
        if kind == "line" and _CONTROL.search(value):
            self.fail(path, f"{_show(value)} holds a control character")
        return value

    def maybe_text(
        self,
        value: object,
        path: str,
        most: int,
        kind: Literal["name", "line", "free"] = "line",
    ) -> str | None:
        if value is None or value is _ABSENT:
            return None
        return self.text(value, path, most, kind)

    def date(self, value: object, path: str) -> datetime:
        """An ISO 8601 timestamp within MIN_YEAR..MAX_YEAR, to the millisecond; one without
        an offset is UTC."""
        if not isinstance(value, str) or len(value) > MAX_DATE_TEXT:
            self.fail(path, f"{_show(value)} is not an ISO 8601 date")
        text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value  # for Python 3.10
        try:
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError):
            self.fail(path, f"{_show(value)} is not an ISO 8601 date")
        # The year as written, before any conversion: 9999-12-31T23:59:59-14:00 would
        # overflow on its way to UTC.
        if not MIN_YEAR <= moment.year <= MAX_YEAR:
            self.fail(path, f"{_show(value)} is not a date within {MIN_YEAR}-{MAX_YEAR}")
        # co2gate writes milliseconds: finer digits would not survive to_json
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

    def method(self, value: object, path: str) -> Method:
        if isinstance(value, str) and value in Method._value2member_map_:
            return Method(value)
        self.fail(path, f"{_show(value)} is not a method co2gate knows")

    # ------------------------------------------------------------------ the document

    def measurement(self, value: object) -> Measurement:
        if not isinstance(value, dict):
            self.fail("top level", f"{_show(value)} is not an object")
        self.depth(value)
        doc = _Obj(self, value, "")
        schema, _ = doc.may("schema")
        if schema is _ABSENT:
            self.fail("schema", "missing: not a co2gate emissions.json")
        if schema != SCHEMA:
            self.fail("schema", f"{_show(schema)} is not {SCHEMA!r}: not a co2gate emissions.json")
        methods = self.per_component(doc, "methods", self.method)
        energy = self.energy(doc)
        emissions_kg = self.number(*doc.need("emissions_kg"), 0.0, MAX_KG)
        return Measurement(
            run=self.run(*doc.need("run")),
            energy_kwh=energy,
            power_w=self.per_component(doc, "power_w", self._watts),
            methods=methods,
            coverage=self.coverage(*doc.may("coverage")),
            pue=self.number(*doc.need("pue"), PUE_MIN, PUE_MAX),
            intensity_g_per_kwh=self.number(
                *doc.need("intensity_g_per_kwh"), 0.0, MAX_INTENSITY_G_PER_KWH
            ),
            intensity_source=self.text(*doc.need("intensity_source"), MAX_TEXT, empty=False),
            location=self.place(*doc.may("location")),
            emissions_kg=emissions_kg,
            gpus=self.gpus(*doc.may("gpus"), methods.gpu),
            requests=self.maybe_integer(*doc.may("requests"), 1, MAX_REQUESTS),
            per_request_g=self.maybe_number(*doc.may("per_request_g"), 0.0, MAX_PER_REQUEST),
            per_request_wh=self.maybe_number(*doc.may("per_request_wh"), 0.0, MAX_PER_REQUEST),
            host=MappingProxyType(self.host(*doc.may("host"))),
            notes=tuple(
                self.text(note, f"notes[{i}]", MAX_NOTE, "free")
                for i, note in enumerate(self.maybe_array(*doc.may("notes"), MAX_NOTES))
            ),
            ci=self.ci(*doc.may("ci")),
            sci=self.sci(*doc.may("sci")),
            energy_kwh_range=self.energy_range(*doc.may("energy_kwh_range"), energy),
            emissions_kg_range=self.maybe_bounds(
                *doc.may("emissions_kg_range"), emissions_kg, MAX_KG
            ),
            unit=self.unit(*doc.may("unit")),
            metrics=MappingProxyType(self.metrics(*doc.may("metrics"))),
            grid=self.grid(doc),
            node=self.node(*doc.may("node")),
            nodes=self.nodes(*doc.may("nodes")),
            water=self.water(doc),
        )

    def water(self, doc: _Obj) -> Water | None:
        """water_l and its block (parts, factors, source); both or neither."""
        total, where = doc.may("water_l")
        block = self.maybe_mapping(*doc.may("water"))
        if total is None or total is _ABSENT:
            if block is not None:
                self.fail("water_l", "missing: the water block needs its total")
            return None
        if block is None:
            self.fail("water", "missing: water_l needs its parts and source")
        litres = self.number(total, where, 0.0, MAX_WATER_L)
        onsite = self.maybe_number(*block.may("onsite_l"), 0.0, MAX_WATER_L)
        offsite = self.maybe_number(*block.may("offsite_l"), 0.0, MAX_WATER_L)
        if onsite is None and offsite is None:
            self.fail("water", "has neither onsite_l nor offsite_l")
        parts = (onsite or 0.0) + (offsite or 0.0)
        if abs(litres - parts) > 1e-9 * max(1.0, litres):
            self.fail(where, f"{_show(total)} is not onsite_l + offsite_l ({parts!r})")
        return Water(
            water_l=litres,
            onsite_l=onsite,
            offsite_l=offsite,
            wue_l_per_kwh=self.maybe_number(*block.may("wue_l_per_kwh"), 0.0, MAX_WUE_L_PER_KWH),
            source_water_l_per_kwh=self.maybe_number(
                *block.may("source_water_l_per_kwh"), 0.0, MAX_SOURCE_L_PER_KWH
            ),
            source=self.text(*block.need("source"), MAX_TEXT, empty=False),
        )

    def pattern(self, value: object, path: str, shape: re.Pattern[str], what: str) -> str | None:
        if value is None or value is _ABSENT:
            return None
        if not isinstance(value, str) or not shape.fullmatch(value):
            self.fail(path, f"{_show(value)} is not {what}")
        return value

    def node(self, value: object, path: str) -> Node | None:
        block = self.maybe_mapping(value, path)
        if block is None:
            return None
        scheduler, where = block.need("scheduler")
        if scheduler not in SCHEDULERS:
            self.fail(where, f"{_show(scheduler)} is not one of {', '.join(SCHEDULERS)}")
        rank = self.maybe_integer(*block.may("rank"), 0, MAX_RANK - 1)
        world = self.maybe_integer(*block.may("world_size"), 1, MAX_RANK)
        if rank is not None and world is not None and rank >= world:
            self.fail(_child(path, "rank"), f"{rank} is not below world_size {world}")
        return Node(
            scheduler=scheduler,
            host=self.pattern(*block.may("host"), HOSTNAME, "a host name"),
            machine_id=self.pattern(*block.may("machine_id"), MACHINE_ID, "32 hex digits"),
            boot_id=self.pattern(*block.may("boot_id"), BOOT_ID, "a boot id (a UUID)"),
            job_id=self.pattern(*block.may("job_id"), JOB_ID, "a job id"),
            rank=rank,
            local_rank=self.maybe_integer(*block.may("local_rank"), 0, MAX_RANK - 1),
            world_size=world,
            node_rank=self.maybe_integer(*block.may("node_rank"), 0, MAX_RANK - 1),
            node_name=self.pattern(*block.may("node_name"), JOB_ID, "a node name"),
        )

    def nodes(self, value: object, path: str) -> tuple[NodeShare, ...]:
        rows = []
        for i, item in enumerate(self.maybe_array(value, path, MAX_NODES)):
            row = self.mapping(item, f"{path}[{i}]")
            ranks, where = row.need("ranks")
            rows.append(
                NodeShare(
                    host=self.text(*row.need("host"), MAX_TEXT, "name", empty=False),
                    boot_id=self.pattern(*row.may("boot_id"), BOOT_ID, "a boot id (a UUID)"),
                    ranks=tuple(
                        self.integer(r, f"{where}[{j}]", 0, MAX_RANK - 1)
                        for j, r in enumerate(self.array(ranks, where, MAX_NODES))
                    ),
                    files=self.integer(*row.need("files"), 1, MAX_NODES * MAX_NODES),
                    gpus=self.integer(*row.need("gpus"), 0, MAX_GPUS),
                    energy_kwh=self._kwh(*row.need("energy_kwh")),
                    emissions_kg=self.number(*row.need("emissions_kg"), 0.0, MAX_KG),
                )
            )
        return tuple(rows)

    def grid(self, doc: _Obj) -> GridPricing | None:
        """The provider's pricing, when the file has it (older files do not)."""
        method, where = doc.may("intensity_method")
        if method is None or method is _ABSENT:
            return None
        if method not in INTENSITY_METHODS:
            self.fail(where, f"{_show(method)} is not one of {', '.join(INTENSITY_METHODS)}")
        series = self.mapping(*doc.need("intensity_series"))
        energy, where = series.need("energy")
        if energy not in ENERGY_SPREADS:
            self.fail(where, f"{_show(energy)} is not one of {', '.join(ENERGY_SPREADS)}")
        intervals = []
        raw, where = series.need("intervals")
        for i, item in enumerate(self.array(raw, where, MAX_SERIES)):
            iv = self.mapping(item, f"{where}[{i}]")
            start = self.date(*iv.need("start"))
            end = self.date(*iv.need("end"))
            if not end > start:
                self.fail(f"{where}[{i}]", "ends before it starts")
            intervals.append(
                SeriesInterval(
                    start,
                    end,
                    self.number(*iv.need("g_per_kwh"), 0.0, MAX_INTENSITY_G_PER_KWH),
                    self.maybe_number(*iv.may("marginal_g_per_kwh"), 0.0, MAX_INTENSITY_G_PER_KWH),
                    self._kwh(*iv.need("energy_kwh")),
                )
            )
        return GridPricing(
            method=str(method),
            energy=str(energy),
            intervals=tuple(intervals),
            marginal_g_per_kwh=self.maybe_number(
                *doc.may("marginal_g_per_kwh"), 0.0, MAX_INTENSITY_G_PER_KWH
            ),
            marginal_emissions_kg=self.maybe_number(*doc.may("marginal_emissions_kg"), 0.0, MAX_KG),
        )

    def metrics(self, value: object, path: str) -> dict[str, float]:
        """name -> finite number, as --metric takes them (co2gate.metrics)."""
        block = self.maybe_mapping(value, path)
        if block is None:
            return {}
        if len(block.value) > metrics.MAX_METRICS:
            self.fail(path, f"{_show(block.value)}: more than {metrics.MAX_METRICS}")
        checked = {}
        for key, item in block.value.items():
            where = _child(path, key)
            if not isinstance(key, str) or not metrics.NAME.fullmatch(key):
                self.fail(where, f"{_show(key)} is not a metric name")
            checked[key] = self.number(item, where, -metrics.MAX_VALUE, metrics.MAX_VALUE)
        return dict(sorted(checked.items()))

    def unit(self, value: object, path: str) -> str | None:
        if value is None or value is _ABSENT:
            return None
        if value not in UNITS:
            self.fail(path, f"{_show(value)} is not one of {', '.join(UNITS)}")
        return str(value)

    def _kwh(self, value: object, path: str) -> float:
        return self.number(value, path, 0.0, MAX_KWH)

    def _watts(self, value: object, path: str) -> float:
        return self.number(value, path, 0.0, MAX_W)

    def run(self, value: object, path: str) -> Run:
        run = self.mapping(value, path)
        command = self.maybe_array(*run.may("command"), MAX_ARGS)
        words = tuple(
            self.text(word, f"{path}.command[{i}]", MAX_ARG, "free")
            for i, word in enumerate(command)
        )
        if sum(len(w) for w in words) > MAX_COMMAND:
            self.fail(f"{path}.command", f"longer than {MAX_COMMAND} characters in all")
        signals = self.maybe_array(*run.may("forwarded_signals"), MAX_SIGNALS)
        guard = self.maybe_mapping(*run.may("guard"))
        return Run(
            id=self.text(*run.need("id"), MAX_ID, empty=False),
            label=self.text(*run.need("label"), MAX_NAME, "name", empty=False),
            workload=self.text(*run.need("workload"), MAX_NAME, "name", empty=False),
            command=words,
            exit_code=self.integer(*run.need("exit_code"), 0, MAX_EXIT_CODE),
            signal=self.maybe_text(*run.may("signal"), MAX_NAME, "name"),
            forwarded_signals=tuple(
                self.text(name, f"{path}.forwarded_signals[{i}]", MAX_NAME, "name")
                for i, name in enumerate(signals)
            ),
            started_at=self.date(*run.need("started_at")),
            ended_at=self.date(*run.need("ended_at")),
            duration_s=self.number(*run.need("duration_s"), 0.0, MAX_SECONDS),
            cpu_s=self.maybe_number(*run.may("cpu_s"), 0.0, MAX_SECONDS),
            limit_kg=self.maybe_number(*run.may("limit_kg"), 0.0, MAX_KG, above=True),
            stopped_by_guard=self.boolean(*run.need("stopped_by_guard")),
            guard=self.guard(guard) if guard is not None else None,
        )

    def guard(self, guard: _Obj) -> GuardInfo:
        signals, where = guard.need("signals")
        for i, name in enumerate(self.array(signals, where, len(GUARD_SIGNALS))):
            if name not in GUARD_SIGNALS:
                self.fail(f"{where}[{i}]", f"{_show(name)} is not SIGTERM or SIGKILL")
        return GuardInfo(
            limit_kg=self.number(*guard.need("limit_kg"), 0.0, MAX_KG, above=True),
            stopped_at_kg=self.number(*guard.need("stopped_at_kg"), 0.0, MAX_KG),
            stopped_at_kwh=self.maybe_number(*guard.may("stopped_at_kwh"), 0.0, MAX_KWH),
            stopped_after_s=self.number(*guard.need("stopped_after_s"), 0.0, MAX_SECONDS),
            stopped_at=self.date(*guard.need("stopped_at")),
            grace_s=self.maybe_number(*guard.may("grace_s"), 0.0, MAX_SECONDS),
            signals=tuple(signals),
        )

    def per_component(
        self, doc: _Obj, key: str, read: Callable[[object, str], T]
    ) -> PerComponent[T]:
        block = self.mapping(*doc.need(key))
        cpu, gpu, ram = (read(*block.need(c.value)) for c in Component)
        return PerComponent(cpu, gpu, ram)

    def energy(self, doc: _Obj) -> Energy:
        parts = self.per_component(doc, "energy_kwh", self._kwh)
        total = self.mapping(*doc.need("energy_kwh")).need("total")
        return Energy(parts.cpu, parts.gpu, parts.ram, total=self._kwh(*total))

    def bounds(self, value: object, path: str, figure: float, most: float) -> Bounds:
        """[low, high], finite numbers from 0 to `most`, with low <= figure <= high."""
        pair = self.array(value, path, 2)
        if len(pair) != 2:
            self.fail(path, f"{_show(value)} is not a pair [low, high]")
        low = self.number(pair[0], f"{path}[0]", 0.0, most)
        high = self.number(pair[1], f"{path}[1]", 0.0, most)
        if not low <= figure <= high:
            self.fail(path, f"[{_show(low)}, {_show(high)}] does not hold the figure {figure!r}")
        return low, high

    def maybe_bounds(self, value: object, path: str, figure: float, most: float) -> Bounds | None:
        if value is None or value is _ABSENT:
            return None
        return self.bounds(value, path, figure, most)

    def energy_range(self, value: object, path: str, energy: Energy) -> EnergyRange | None:
        block = self.maybe_mapping(value, path)
        if block is None:
            return None
        cpu, gpu, ram = (
            self.bounds(*block.need(c.value), energy.of(c), MAX_KWH) for c in Component
        )
        total = self.bounds(*block.need("total"), energy.total, MAX_KWH)
        return EnergyRange(cpu, gpu, ram, total=total)

    def coverage(self, value: object, path: str) -> PerComponent[float | None]:
        block = self.maybe_mapping(value, path)
        if block is None:
            return PerComponent(None, None, None)
        cpu, gpu, ram = (self.maybe_number(*block.may(c.value), 0.0, 1.0) for c in Component)
        return PerComponent(cpu, gpu, ram)

    def place(self, value: object, path: str) -> Place:
        block = self.maybe_mapping(value, path)
        if block is None:
            return Place()
        return Place(
            country_iso_code=self.maybe_text(*block.may("country_iso_code"), MAX_NAME),
            country_name=self.maybe_text(*block.may("country_name"), MAX_NAME),
            region=self.maybe_text(*block.may("region"), MAX_NAME),
            cloud_provider=self.maybe_text(*block.may("cloud_provider"), MAX_NAME),
            cloud_region=self.maybe_text(*block.may("cloud_region"), MAX_NAME),
        )

    def gpus(self, value: object, path: str, component_method: Method) -> tuple[Gpu, ...]:
        gpus = []
        for i, item in enumerate(self.maybe_array(value, path, MAX_GPUS)):
            gpu = self.mapping(item, f"{path}[{i}]")
            uuid, method = gpu.may("uuid"), gpu.may("method")
            gpus.append(
                Gpu(
                    index=self.integer(*gpu.need("index"), 0, MAX_GPU_INDEX),
                    name=self.text(*gpu.need("name"), MAX_TEXT),
                    uuid="" if uuid[0] is _ABSENT else self.text(*uuid, MAX_TEXT),
                    energy_kwh=self._kwh(*gpu.need("energy_kwh")),
                    mean_power_w=self._watts(*gpu.need("mean_power_w")),
                    mean_utilization_pct=self.maybe_number(
                        *gpu.may("mean_utilization_pct"), 0.0, MAX_PCT
                    ),
                    # a file without a method per GPU: the GPU component's
                    method=component_method if method[0] is _ABSENT else self.method(*method),
                )
            )
        return tuple(gpus)

    def host(self, value: object, path: str) -> dict[str, HostValue]:
        """A small object of scalars: text, finite numbers, true/false, null."""
        block = self.maybe_mapping(value, path)
        if block is None:
            return {}
        if len(block.value) > MAX_MAP_KEYS:
            self.fail(path, f"{_show(block.value)}: more than {MAX_MAP_KEYS}")
        host: dict[str, HostValue] = {}
        for key, item in block.value.items():
            where = _child(path, key)
            self.text(key, f"{where} (its name)", MAX_NAME, "name", empty=False)
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                self.number(item, where, -MAX_HOST_NUMBER, MAX_HOST_NUMBER)
            elif not (item is None or isinstance(item, bool)):
                self.text(item, where, MAX_TEXT, "free")
            host[key] = item
        return host

    def ci(self, value: object, path: str) -> CiInfo | None:
        ci = self.maybe_mapping(value, path)
        if ci is None:
            return None
        if len(ci.value) > MAX_MAP_KEYS:
            self.fail(path, f"{_show(ci.value)}: more than {MAX_MAP_KEYS}")

        def line(key: str) -> str | None:
            return self.maybe_text(*ci.may(key), MAX_TEXT)

        return CiInfo(
            provider=line("provider"),
            repository=line("repository"),
            sha=line("sha"),
            ref=line("ref"),
            head_ref=line("head_ref"),
            base_ref=line("base_ref"),
            base_sha=line("base_sha"),
            event=line("event"),
            pr=self.maybe_integer(*ci.may("pr"), 1, MAX_PR),
            workflow=line("workflow"),
            job=self.maybe_text(*ci.may("job"), MAX_NAME, "name"),
            run_id=line("run_id"),
            run_attempt=line("run_attempt"),
            server_url=line("server_url"),
            head_repository=line("head_repository"),
        )

    def sci(self, value: object, path: str) -> Sci | None:
        sci = self.maybe_mapping(value, path)
        if sci is None:
            return None
        unit, where = sci.need("functional_unit")
        if unit not in ("request", "run"):
            self.fail(where, f"{_show(unit)} is not 'request' or 'run'")
        held = self.mapping(*sci.need("embodied"))
        return Sci(
            operational_kg=self.number(*sci.need("operational_kg"), 0.0, MAX_KG),
            embodied_kg=self.number(*sci.need("embodied_kg"), 0.0, MAX_KG),
            functional_unit="request" if unit == "request" else "run",
            units=self.integer(*sci.need("units"), 1, MAX_REQUESTS),
            kg_per_unit=self.number(*sci.need("kg_per_unit"), 0.0, MAX_KG),
            embodied=SciEmbodied(
                server_kg=self.number(*held.need("server_kg"), 0.0, MAX_KG),
                gpu_kg=self.number(*held.need("gpu_kg"), 0.0, MAX_KG),
                lifetime_years=self.number(
                    *held.need("lifetime_years"), 0.0, MAX_LIFETIME_YEARS, above=True
                ),
                server_share=self.number(*held.need("server_share"), 0.0, 1.0),
                source=self.text(*held.need("source"), MAX_TEXT),
                gpus=self.integer(*held.need("gpus"), 0, MAX_GPUS),
                time_share=self.number(*held.need("time_share"), 0.0, MAX_SECONDS),
            ),
        )
