"""A budget year's usage from the ledger's entries, for sustainability reporting.

Pure: entries in, one frozen `Annual` out (totals by category, month and label, the measured
and estimated shares of the energy, PUE, SCI, water, preflight refusals, guard stops, the
largest runs, the data sources), and its JSON document and CSV table. One pass over the
entries; nothing is kept per entry but the emissions that the totals add up, so that a
category's and the year's kg are summed exactly as `co2gate budget` sums them.

Figures beyond the ledger's own checked fields (methods, PUE, water, ...) come from lines a
person can edit: each is used only when it is of the right type and within bounds, and
otherwise counted as not known.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from co2gate.ledger.interface import utc_day
from co2gate.measure.interface import Method
from co2gate.units import PUE_MAX, PUE_MIN

SCHEMA: Final = "co2gate/annual/v1"
TOP_RUNS: Final = 10
MAX_WATER_L: Final = 1e12  # beyond any CI job's cooling water
MAX_TEXT: Final = 1000  # characters in a source or version taken from a ledger line
# How a figure was obtained, by kind: measured by a counter, estimated, or not said.
MEASURED, ESTIMATED, UNKNOWN = "measured", "estimated", "unknown"
CSV_COLUMNS: Final = (
    "scope",
    "month",
    "category",
    "label",
    "runs",
    "refused",
    "stopped_by_guard",
    "location_based_scope2_kg",
    "energy_kwh",
    "pue",
    "facility_energy_kwh",
    "measured_energy_kwh",
    "estimated_energy_kwh",
    "unknown_method_energy_kwh",
    "water_l",
    "water_runs",
)


@dataclass
class Group:
    """The figures of one group of entries (a month, a category, a label, or all of them)."""

    runs: int = 0  # entries of runs that ran (refusals not counted)
    refused: int = 0
    stopped_by_guard: int = 0
    emissions_kg: float = 0.0
    energy_kwh: float = 0.0
    pue_energy_kwh: float = 0.0  # the energy of the entries that say their PUE
    pue_facility_kwh: float = 0.0  # the same times its PUE
    measured_kwh: float = 0.0
    estimated_kwh: float = 0.0
    unknown_kwh: float = 0.0
    water_l: float = 0.0
    water_runs: int = 0  # entries that say their water; none: water not measured

    def add(self, o: Group) -> None:
        self.runs += o.runs
        self.refused += o.refused
        self.stopped_by_guard += o.stopped_by_guard
        self.emissions_kg += o.emissions_kg
        self.energy_kwh += o.energy_kwh
        self.pue_energy_kwh += o.pue_energy_kwh
        self.pue_facility_kwh += o.pue_facility_kwh
        self.measured_kwh += o.measured_kwh
        self.estimated_kwh += o.estimated_kwh
        self.unknown_kwh += o.unknown_kwh
        self.water_l += o.water_l
        self.water_runs += o.water_runs

    @property
    def pue(self) -> float | None:
        """The energy-weighted PUE of the entries that say theirs."""
        return self.pue_facility_kwh / self.pue_energy_kwh if self.pue_energy_kwh > 0 else None

    @property
    def facility_energy_kwh(self) -> float:
        """The energy with PUE: each entry's times its PUE, 1 where it says none."""
        return self.pue_facility_kwh + max(self.energy_kwh - self.pue_energy_kwh, 0.0)

    @property
    def pue_coverage(self) -> float | None:
        """The share of the energy whose entries say their PUE."""
        return min(self.pue_energy_kwh / self.energy_kwh, 1.0) if self.energy_kwh > 0 else None

    @property
    def water(self) -> float | None:
        """Litres of water, or None where no entry measured any."""
        return self.water_l if self.water_runs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "refused": self.refused,
            "stopped_by_guard": self.stopped_by_guard,
            "location_based_scope2_kg": self.emissions_kg,
            "energy_kwh": self.energy_kwh,
            "pue": self.pue,
            "facility_energy_kwh": self.facility_energy_kwh,
            "pue_coverage": self.pue_coverage,
            "energy_by_kind_kwh": {
                MEASURED: self.measured_kwh,
                ESTIMATED: self.estimated_kwh,
                UNKNOWN: self.unknown_kwh,
            },
            "water_l": self.water,
            "water_runs": self.water_runs,
        }


@dataclass(frozen=True)
class Run:
    """One of the year's largest runs."""

    label: str
    category: str
    emissions_kg: float
    energy_kwh: float
    duration_s: float
    ended_at: str
    repository: str
    run_id: str
    ref: str | None
    pr: int | None
    stopped_by_guard: bool


@dataclass(frozen=True)
class Annual:
    """A budget year [start, end) summed from its ledger entries. Masses in kg CO2e
    (location-based: energy x PUE x the grid's average intensity), energy in kWh as the
    devices drew it (before PUE), water in litres."""

    start: date
    end: date  # exclusive
    total: Group
    by_month: dict[str, Group]  # every month of the year, `YYYY-MM`, in order
    by_category: dict[str, Group]  # largest first
    by_label: dict[str, Group]  # largest first
    cells: dict[tuple[str, str, str], Group]  # (month, category, label)
    category_kg: dict[str, float]  # summed in ledger order, as `co2gate budget` sums them
    total_kg: float
    by_method: dict[str, float]  # kWh per method, largest first
    embodied_kg: float
    embodied_runs: int
    per_unit: dict[str, tuple[float, float, float]]  # unit -> (units, operational, embodied kg)
    refusals_projected_kg: float
    largest: tuple[Run, ...]
    intensity_sources: dict[str, tuple[int, float]]  # source -> (runs, kg), most runs first
    codecarbon_versions: dict[str, int]  # version -> runs
    allocations_kg: dict[str, float] = field(default_factory=dict)
    annual_budget_kg: float | None = None

    @property
    def label(self) -> int:
        """The year's name: the calendar year it starts in (`annual-2026.*`)."""
        return self.start.year

    def share(self, kind: str) -> float | None:
        """The share of the year's energy that was measured, estimated or of unknown method."""
        kwh = {MEASURED: self.total.measured_kwh, ESTIMATED: self.total.estimated_kwh}
        value = kwh.get(kind, self.total.unknown_kwh)
        return value / self.total.energy_kwh if self.total.energy_kwh > 0 else None

    def sci(self) -> dict[str, Any]:
        """SCI over the year: (E x I + M) / R, R one run; and per unit of work where runs
        counted one (M only from the entries that recorded their embodied share)."""
        runs = self.total.runs
        per_unit = [
            {
                "functional_unit": unit,
                "units": units,
                "operational_kg": op,
                "embodied_kg": emb,
                "kg_per_unit": (op + emb) / units,
            }
            for unit, (units, op, emb) in sorted(self.per_unit.items())
        ]
        return {
            "functional_unit": "run",
            "units": runs,
            "operational_kg": self.total_kg,
            "embodied_kg": self.embodied_kg,
            "embodied_runs": self.embodied_runs,
            "kg_per_unit": (self.total_kg + self.embodied_kg) / runs if runs else None,
            "per_unit": per_unit,
        }

    def to_json(self) -> dict[str, Any]:
        """The document `annual-YYYY.json` holds (schema co2gate/annual/v1)."""
        total = self.total.to_json() | {"location_based_scope2_kg": self.total_kg}
        return {
            "schema": SCHEMA,
            "year": self.label,
            "year_start": self.start.isoformat(),
            "year_end": self.end.isoformat(),
            "annual_budget_kg": self.annual_budget_kg,
            "totals": total,
            "by_category": [
                {"category": name, "allocation_kg": self.allocations_kg.get(name)}
                | group.to_json()
                | {"location_based_scope2_kg": self.category_kg[name]}
                for name, group in self.by_category.items()
            ],
            "by_month": [{"month": m} | g.to_json() for m, g in self.by_month.items()],
            "by_label": [{"label": n} | g.to_json() for n, g in self.by_label.items()],
            "methods": {
                "measured_share": self.share(MEASURED),
                "estimated_share": self.share(ESTIMATED),
                "unknown_share": self.share(UNKNOWN),
                "by_method": [
                    {
                        "method": name,
                        "kind": kind_of(name),
                        "energy_kwh": kwh,
                        "share": kwh / self.total.energy_kwh if self.total.energy_kwh else None,
                    }
                    for name, kwh in self.by_method.items()
                ],
            },
            "sci": self.sci(),
            "refusals": {
                "count": self.total.refused,
                "projected_kg": self.refusals_projected_kg,
                "by_label": {n: g.refused for n, g in self.by_label.items() if g.refused},
            },
            "guard_stops": {
                "count": self.total.stopped_by_guard,
                "by_label": {
                    n: g.stopped_by_guard for n, g in self.by_label.items() if g.stopped_by_guard
                },
            },
            "largest_runs": [dataclasses.asdict(run) for run in self.largest],
            "sources": {
                "intensity": [
                    {"source": s, "runs": n, "location_based_scope2_kg": kg}
                    for s, (n, kg) in self.intensity_sources.items()
                ],
                "codecarbon": [
                    {"version": v, "runs": n} for v, n in self.codecarbon_versions.items()
                ],
            },
        }


def kind_of(method: str) -> str:
    """measured, estimated or unknown: how a method's figures were obtained."""
    return _KIND.get(method, UNKNOWN)


def months(start: date, end: date) -> list[str]:
    """`YYYY-MM` of every month with a day in [start, end)."""
    out, (y, m) = [], (start.year, start.month)
    last = date.fromordinal(end.toordinal() - 1)
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _number(value: Any, high: float) -> float | None:
    """value as a float when it is a finite number in [0, high] (never a bool); else None."""
    if type(value) is not float and type(value) is not int:
        return None
    if not 0 <= value <= high:  # False for NaN; an int is compared, never converted first
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return value if type(value) is str and 0 < len(value) <= MAX_TEXT else None


_CODECARBON: Final = re.compile(r"codecarbon ([0-9][0-9A-Za-z.+-]{0,40})[:,; ]")
_KIND: Final = {m.value: MEASURED if m.is_measured else ESTIMATED for m in Method}


def _kinds(by_method: Any, kwh: float) -> list[tuple[str, float]]:
    """An entry's energy split by method, in proportion to its `kwh_by_method`; all of it
    `unknown` where the entry does not say how it was obtained."""
    if type(by_method) is dict and 0 < len(by_method) <= len(_KIND):
        whole = 0.0
        for value in by_method.values():
            if (type(value) is float or type(value) is int) and 0 <= value <= 1e12:
                whole += value  # exact types: a bool is no figure
            else:
                return [(UNKNOWN, kwh)]
        if whole > 0:
            scale = kwh / whole
            return [
                (name if name in _KIND else UNKNOWN, value * scale)
                for name, value in by_method.items()
                if value  # 0 kWh adds nothing
            ]
    return [(UNKNOWN, kwh)]


class _Largest:
    """The `top` entries with the most emissions seen so far, kept as the entries stream by."""

    def __init__(self, top: int) -> None:
        self.top, self.seq = top, 0
        self.heap: list[tuple[float, int, Mapping[str, Any]]] = []

    def offer(self, kg: float, entry: Mapping[str, Any]) -> None:
        self.seq -= 1  # ties: the earlier entry ranks first, as heapq.nlargest ranks them
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, (kg, self.seq, entry))
        elif kg > self.heap[0][0]:
            heapq.heapreplace(self.heap, (kg, self.seq, entry))

    def runs(self) -> tuple[Run, ...]:
        return tuple(_run(e) for _, _, e in sorted(self.heap, key=lambda t: (-t[0], -t[1])))


def summarise(
    entries: Iterable[Mapping[str, Any]],
    start: date,
    end: date,
    *,
    allocations_kg: Mapping[str, float] | None = None,
    annual_budget_kg: float | None = None,
    top: int = TOP_RUNS,
) -> Annual:
    """The year [start, end) from valid ledger entries (as Ledger.entries gives them), in
    one pass: entries may be a stream (a generator over the ledger's months)."""
    cells: dict[tuple[str, str, str], Group] = {}
    category_kgs: dict[str, list[float]] = {}
    all_kg: list[float] = []
    by_method: dict[str, float] = {}
    embodied, embodied_runs, projected = 0.0, 0, 0.0
    per_unit: dict[str, list[float]] = {}
    sources: dict[str, list[float]] = {}
    versions: dict[str, int] = {}
    largest = _Largest(top)
    kind_of_name = _KIND.get
    for e in entries:
        get = e.get
        kg, kwh = e["emissions_kg"], e["energy_kwh"]
        category = e["category"]
        all_kg.append(kg)
        kgs = category_kgs.get(category)
        if kgs is None:
            category_kgs[category] = [kg]
        else:
            kgs.append(kg)
        where = (utc_day(e["ended_at"])[:7], category, e["label"])
        cell = cells.get(where)
        if cell is None:
            cell = cells[where] = Group()
        cell.emissions_kg += kg
        cell.energy_kwh += kwh
        refused = get("refused") is True
        if refused:
            cell.refused += 1
            projected += _number(get("projected_kg"), 1e12) or 0.0
        else:
            cell.runs += 1
            largest.offer(kg, e)
        if get("stopped_by_guard") is True:
            cell.stopped_by_guard += 1
        pue = _number(get("pue"), PUE_MAX)
        if pue is not None and pue >= PUE_MIN:
            cell.pue_energy_kwh += kwh
            cell.pue_facility_kwh += kwh * pue
        if kwh > 0:
            for name, part in _kinds(get("kwh_by_method"), kwh):
                by_method[name] = by_method.get(name, 0.0) + part
                kind = kind_of_name(name)
                if kind == MEASURED:
                    cell.measured_kwh += part
                elif kind == ESTIMATED:
                    cell.estimated_kwh += part
                else:
                    cell.unknown_kwh += part
        water = get("water_l")
        if water is not None and (water := _number(water, MAX_WATER_L)) is not None:
            cell.water_l += water
            cell.water_runs += 1
        m = _number(get("embodied_kg"), 1e9)
        if m is not None and not refused:
            embodied += m
            embodied_runs += 1
        units = get("units")
        if units is not None:
            units, unit = _number(units, 1e15), _text(get("unit"))
            if units and unit:
                acc = per_unit.setdefault(unit, [0.0, 0.0, 0.0])
                acc[0] += units
                acc[1] += kg
                acc[2] += m or 0.0
        source = get("intensity_source")
        if source is not None and (source := _text(source)):
            tally = sources.get(source)
            if tally is None:
                sources[source] = [1, kg]
            else:
                tally[0] += 1
                tally[1] += kg
        version = _CODECARBON.match(source) if source else None  # "codecarbon 3.3.2: ..."
        if version:
            versions[version[1]] = versions.get(version[1], 0) + 1

    total = Group()
    by_month = {m: Group() for m in months(start, end)}
    by_category: dict[str, Group] = {}
    by_label: dict[str, Group] = {}
    for (month, category, label), cell in cells.items():
        total.add(cell)
        by_month.setdefault(month, Group()).add(cell)  # a month outside: only if given one
        by_category.setdefault(category, Group()).add(cell)
        by_label.setdefault(label, Group()).add(cell)
    for name in allocations_kg or {}:  # every allocated category, used or not
        by_category.setdefault(name, Group())
        category_kgs.setdefault(name, [])
    return Annual(
        start=start,
        end=end,
        total=total,
        by_month=by_month,
        by_category=_largest_first(by_category),
        by_label=_largest_first(by_label),
        cells=dict(sorted(cells.items())),
        category_kg={name: sum(kgs) if kgs else 0.0 for name, kgs in category_kgs.items()},
        total_kg=sum(all_kg) if all_kg else 0.0,
        by_method=dict(sorted(by_method.items(), key=lambda kv: (-kv[1], kv[0]))),
        embodied_kg=embodied,
        embodied_runs=embodied_runs,
        per_unit={u: (a[0], a[1], a[2]) for u, a in per_unit.items()},
        refusals_projected_kg=projected,
        largest=largest.runs(),
        intensity_sources={
            s: (int(a[0]), a[1]) for s, a in sorted(sources.items(), key=lambda kv: -kv[1][0])
        },
        codecarbon_versions=dict(sorted(versions.items())),
        allocations_kg=dict(allocations_kg or {}),
        annual_budget_kg=annual_budget_kg,
    )


def _largest_first(groups: dict[str, Group]) -> dict[str, Group]:
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1].emissions_kg, kv[0])))


def _run(e: Mapping[str, Any]) -> Run:
    return Run(
        label=e["label"],
        category=e["category"],
        emissions_kg=e["emissions_kg"],
        energy_kwh=e["energy_kwh"],
        duration_s=e.get("duration_s") or 0.0,
        ended_at=e["ended_at"],
        repository=e["repository"],
        run_id=e["run_id"],
        ref=e.get("ref"),
        pr=e.get("pr"),
        stopped_by_guard=e.get("stopped_by_guard") is True,
    )


# ------------------------------------------------------------------------------ the CSV

# A cell a spreadsheet would take for a formula (CWE-1236) starts with one of these.
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: object) -> str:
    """A value as a CSV cell: numbers as Python writes them (repr: exact), None empty, text
    that a spreadsheet would run as a formula quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _row(scope: str, month: str, category: str, label: str, g: Group) -> list[str]:
    values: tuple[object, ...] = (
        scope,
        month,
        category,
        label,
        g.runs,
        g.refused,
        g.stopped_by_guard,
        g.emissions_kg,
        g.energy_kwh,
        g.pue,
        g.facility_energy_kwh,
        g.measured_kwh,
        g.estimated_kwh,
        g.unknown_kwh,
        g.water,
        g.water_runs,
    )
    return [_cell(v) for v in values]


def to_csv(annual: Annual) -> str:
    """The tidy table `annual-YYYY.csv` holds: one header, then rows by `scope`:
    `total` (the year), `month`, `category`, `label`, and `cell` (month x category x label).
    Filter on one scope and its rows add up to the total (up to float rounding)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = _row("total", "", "", "", annual.total)
    total[CSV_COLUMNS.index("location_based_scope2_kg")] = _cell(annual.total_kg)
    writer.writerow(total)
    writer.writerows(_row("month", m, "", "", g) for m, g in annual.by_month.items())
    for name, g in annual.by_category.items():
        row = _row("category", "", name, "", g)
        row[CSV_COLUMNS.index("location_based_scope2_kg")] = _cell(annual.category_kg[name])
        writer.writerow(row)
    writer.writerows(_row("label", "", "", n, g) for n, g in annual.by_label.items())
    writer.writerows(_row("cell", m, c, n, g) for (m, c, n), g in annual.cells.items())
    return out.getvalue()
