"""A run's projected energy and CO2e before it starts, checked against what remains.

Three ways to project one run (`Mode`): from the hardware (GPU model x count x hours), from
the compute (total FLOPs at a model FLOPs utilisation of the GPU's peak), or from the
ledger's history of runs with the same label. The projection is then decided like a
measured run (README: The verdict) against its category's allocation this budget year.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, NoReturn

from co2gate import budget as budgets
from co2gate import uncertainty, units
from co2gate.errors import InputError
from co2gate.gpus import Gpu, lookup
from co2gate.intensity import Intensity, Location, resolve
from co2gate.ledger.interface import Ledger, utc_day

__all__ = [
    "DEFAULT_LAST",
    "EstimateError",
    "Mode",
    "Projection",
    "check",
    "estimate",
    "from_compute",
    "from_hardware",
    "from_history",
    "mode_of",
    "preflight",
    "window",
]

DEFAULT_LAST: Final = 20  # how many of a label's most recent runs history mode looks at
HISTORY_DAYS: Final = 366  # how far back history mode looks, besides this budget year


class EstimateError(InputError, ValueError):
    """Input an estimate cannot be made from: one line, exit 2."""


class Mode(str, enum.Enum):
    """What a projection is computed from."""

    HARDWARE = "hardware"  # --gpu x --gpus x --hours
    COMPUTE = "compute"  # --flops at --mfu of --gpu's peak
    HISTORY = "history"  # --from-history LABEL: the ledger's recent runs of that label


# The option that selects each mode, the options it needs, and those it also accepts.
_SELECTOR: Final = {
    Mode.HARDWARE: "--hours",
    Mode.COMPUTE: "--flops",
    Mode.HISTORY: "--from-history",
}
_LOCATION: Final = ("--country", "--region", "--cloud", "--intensity", "--pue")
_NEEDS: Final = {
    Mode.HARDWARE: (),
    Mode.COMPUTE: ("--gpu", "--mfu"),
    Mode.HISTORY: (),
}
_TAKES: Final = {
    Mode.HARDWARE: ("--hours", "--gpu", "--gpus", "--watts", *_LOCATION),
    Mode.COMPUTE: ("--flops", "--gpu", "--gpus", "--mfu", "--watts", *_LOCATION),
    Mode.HISTORY: ("--from-history", "--last"),
}


@dataclass(frozen=True)
class Projection:
    """One run projected before it starts. Energies in kWh, emissions in kg CO2e.

    `energy_kwh` is what the devices would draw (the GPUs in the hardware and compute
    modes), before PUE; `emissions_kg = energy_kwh x pue x intensity / 1000`. In history
    mode the figures are the median of recorded runs, whose own PUE and intensity applied.
    """

    mode: Mode
    inputs: Mapping[str, Any]  # what it is computed from: the options and the table's figures
    emissions_kg: float
    energy_kwh: float | None
    energy_with_pue_kwh: float | None = None
    gpu_hours: float | None = None
    wall_hours: float | None = None
    pue: float | None = None
    intensity_g_per_kwh: float | None = None
    intensity_source: str = ""
    history: Mapping[str, Any] | None = field(default=None)  # history mode: runs and spread

    def emissions_range(self) -> list[float] | None:
        """[low, high] from the grid intensity's ~90% width alone (uncertainty.INTENSITY): the
        energy is a planning figure with no measuring method to bound it. None in history
        mode, whose spread over the recorded runs says more."""
        if self.mode is Mode.HISTORY:
            return None
        return list(uncertainty.INTENSITY.bounds(self.emissions_kg))

    def to_json(self, decision: budgets.Decision | None = None) -> dict[str, Any]:
        """`co2gate estimate --json`'s document; `verdict` is the decision's verdict.json."""
        return {
            "mode": self.mode.value,
            "inputs": dict(self.inputs),
            "gpu_hours": self.gpu_hours,
            "wall_hours": self.wall_hours,
            "energy_kwh": self.energy_kwh,
            "energy_with_pue_kwh": self.energy_with_pue_kwh,
            "pue": self.pue,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "emissions_kg": self.emissions_kg,
            "emissions_kg_range": self.emissions_range(),
            "history": None if self.history is None else dict(self.history),
            "verdict": None if decision is None else decision.to_json(),
        }


# ------------------------------------------------------------------------------ the inputs


def mode_of(given: Mapping[str, object]) -> Mode:
    """The mode that the options given (flag -> value, None when not given) select.

    Exactly one of --hours, --flops and --from-history; each mode's other options only
    with it, so that a figure given is never silently ignored.
    """
    chosen = [mode for mode, flag in _SELECTOR.items() if given.get(flag) is not None]
    if len(chosen) != 1:
        what = "cannot be combined" if chosen else "none given"
        flags = " and ".join(_SELECTOR[m] for m in chosen)
        raise EstimateError(
            f"{flags + ' ' if chosen else ''}{what}: give exactly one of --hours (with --gpu "
            "or --watts, and --gpus), --flops (with --gpu, --mfu and --gpus) or "
            "--from-history LABEL"
        )
    (mode,) = chosen
    for flag, value in given.items():
        if value is not None and flag not in _TAKES[mode]:
            raise EstimateError(
                f"{flag} does not apply with {_SELECTOR[mode]} ({mode.value} mode)"
                + (
                    ": the recorded runs' own PUE and intensity apply"
                    if mode is Mode.HISTORY and flag in _LOCATION
                    else ""
                )
            )
    for flag in _NEEDS[mode]:
        if given.get(flag) is None:
            raise EstimateError(f"{_SELECTOR[mode]} needs {flag} ({mode.value} mode)")
    if mode is Mode.HARDWARE and given.get("--gpu") is None and given.get("--watts") is None:
        raise EstimateError("--hours needs --gpu (or --watts: the power of one GPU)")
    return mode


def _positive(flag: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise EstimateError(f"{flag} must be a number > 0, got {value!r}")
    return float(value)


def _count(flag: str, value: int) -> int:
    if value < 1:
        raise EstimateError(f"{flag} must be a whole number >= 1, got {value!r}")
    return value


def _power(gpu: Gpu | None, watts: float | None) -> tuple[float, str]:
    """The power of one GPU and where it comes from: "--watts", else "table" (board power)."""
    if watts is not None:
        return _positive("--watts", watts), "--watts"
    if gpu is None:
        raise EstimateError("--watts or --gpu is needed: the power of one GPU")
    return float(gpu.board_power_w), "table"


# ----------------------------------------------------------------------------- projections


def _from_gpu_hours(
    mode: Mode,
    inputs: dict[str, Any],
    gpu_hours: float,
    wall_hours: float,
    watts: float,
    site: Intensity,
    pue: float,
) -> Projection:
    energy_kwh = units.watt_hours_to_kwh(watts, gpu_hours)
    return Projection(
        mode=mode,
        inputs=inputs,
        emissions_kg=units.emissions_kg(energy_kwh, pue, site.g_per_kwh),
        energy_kwh=energy_kwh,
        energy_with_pue_kwh=energy_kwh * pue,
        gpu_hours=gpu_hours,
        wall_hours=wall_hours,
        pue=pue,
        intensity_g_per_kwh=site.g_per_kwh,
        intensity_source=site.source,
    )


def _gpu_inputs(gpu: Gpu | None) -> dict[str, Any]:
    if gpu is None:
        return {"gpu": None}
    return {
        "gpu": gpu.name,
        "board_power_w": float(gpu.board_power_w),
        "peak_tflops": float(gpu.peak_tflops),
        "precision": gpu.precision,
        "gpu_source": gpu.source,
    }


def from_hardware(
    gpu: Gpu | None,
    gpus: int,
    hours: float,
    watts: float | None,
    site: Intensity,
    pue: float,
) -> Projection:
    """`gpus` GPUs busy for `hours` of wall time, each at `watts` (default: the table's)."""
    gpus, hours = _count("--gpus", gpus), _positive("--hours", hours)
    power_w, power_source = _power(gpu, watts)
    inputs = {
        **_gpu_inputs(gpu),
        "gpus": gpus,
        "hours": hours,
        "watts_per_gpu": power_w,
        "watts_source": power_source,
    }
    return _from_gpu_hours(Mode.HARDWARE, inputs, gpus * hours, hours, power_w, site, pue)


def from_compute(
    flops: float,
    gpu: Gpu,
    mfu: float,
    gpus: int,
    watts: float | None,
    site: Intensity,
    pue: float,
) -> Projection:
    """`flops` floating-point operations at `mfu` (model FLOPs utilisation) of the GPU's
    dense peak: GPU-hours = flops / (peak x mfu) / 3600, spread over `gpus` for wall time."""
    flops, gpus = _positive("--flops", flops), _count("--gpus", gpus)
    if not (math.isfinite(mfu) and 0 < mfu <= 1):
        raise EstimateError(f"--mfu must be a fraction > 0 and <= 1 (0.4 for 40%), got {mfu!r}")
    power_w, power_source = _power(gpu, watts)
    gpu_hours = units.flop_to_gpu_hours(flops, gpu.peak_tflops, mfu)
    inputs = {
        "flops": flops,
        **_gpu_inputs(gpu),
        "gpus": gpus,
        "mfu": mfu,
        "watts_per_gpu": power_w,
        "watts_source": power_source,
    }
    return _from_gpu_hours(Mode.COMPUTE, inputs, gpu_hours, gpu_hours / gpus, power_w, site, pue)


def _percentile(values: Sequence[float], q: float) -> float:
    """The q-th quantile (0..1) of sorted values, linearly interpolated between ranks."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _spread(values: Sequence[float]) -> dict[str, float] | None:

    from statistics import median

    ordered = sorted(values)
    if not ordered:
        return None
    return {
        "median": median(ordered),
        "min": ordered[0],
        "p90": _percentile(ordered, 0.9),
        "max": ordered[-1],
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def from_history(
    entries: Sequence[Mapping[str, Any]], label: str, last: int = DEFAULT_LAST
) -> Projection:
    """The median of the `last` most recent recorded runs of `label`, and their spread.

    Each figure (emissions, energy, duration) is the median of its own values.
    """
    last = _count("--last", last)
    runs = [e for e in entries if e.get("label") == label and _number(e.get("emissions_kg"))]
    runs.sort(key=lambda e: str(e.get("ended_at", "")), reverse=True)
    runs = runs[:last]
    kg = _spread([float(e["emissions_kg"]) for e in runs])
    if kg is None:
        raise EstimateError(f"--from-history {label!r}: no runs of that label in the ledger")
    kwh = _spread([v for e in runs if (v := _number(e.get("energy_kwh"))) is not None])
    seconds = _spread([v for e in runs if (v := _number(e.get("duration_s"))) is not None])
    history = {
        "runs": len(runs),
        "first_ended_at": runs[-1].get("ended_at"),
        "last_ended_at": runs[0].get("ended_at"),
        "emissions_kg": kg,
        "energy_kwh": kwh,
        "duration_s": seconds,
    }
    return Projection(
        mode=Mode.HISTORY,
        inputs={"label": label, "last": last},
        emissions_kg=kg["median"],
        energy_kwh=None if kwh is None else kwh["median"],
        wall_hours=None if seconds is None else seconds["median"] / units.SECONDS_PER_HOUR,
        intensity_source="the recorded runs' own (their PUE and grid intensity applied)",
        history=history,
    )


# ------------------------------------------------------------------------------ the verdict


def window(budget: budgets.Budget, today: date) -> tuple[date, date]:
    """The days to read from the ledger: this budget year, and the history before it."""
    start, end = budgets.budget_year(budget, today)
    return min(start, today - timedelta(days=HISTORY_DAYS)), end


def check(
    budget: budgets.Budget,
    category: str,
    projection: Projection,
    entries: Sequence[Mapping[str, Any]],
    today: date,
) -> budgets.Decision:
    """The verdict a run of `category` emitting the projection would get today."""
    start, end = budgets.budget_year(budget, today)
    low, high = start.isoformat(), end.isoformat()
    used = math.fsum(
        float(e["emissions_kg"] or 0.0)
        for e in entries
        if e.get("category") == category and low <= utc_day(str(e["ended_at"])) < high
    )
    return budgets.decide(budget, category, used, projection.emissions_kg)


def _never(value: NoReturn) -> NoReturn:
    """typing.assert_never (Python 3.11): mypy proves a dispatch covers every member."""
    raise AssertionError(f"unhandled: {value!r}")


def estimate(
    mode: Mode,
    budget: budgets.Budget,
    ledger: Ledger,
    category: str,
    today: date,
    *,
    location: Location,
    gpu: str | None = None,
    gpus: int | None = None,
    hours: float | None = None,
    watts: float | None = None,
    flops: float | None = None,
    mfu: float | None = None,
    label: str | None = None,
    last: int | None = None,
) -> tuple[Projection, budgets.Decision]:
    """`co2gate estimate`: project one run in `mode` and decide it against the budget.

    Raises EstimateError, gpus.UnknownGpu, intensity.LocationError, ledger LedgerError.
    """
    entries = ledger.entries(*window(budget, today))
    if mode is Mode.HISTORY:
        if label is None:
            raise EstimateError("--from-history needs a label")
        projection = from_history(entries, label, DEFAULT_LAST if last is None else last)
    elif mode is Mode.HARDWARE or mode is Mode.COMPUTE:
        card = None if gpu is None else lookup(gpu)
        site = resolve(location)
        if mode is Mode.HARDWARE:
            if hours is None:
                raise EstimateError("hardware mode needs --hours")
            projection = from_hardware(
                card, 1 if gpus is None else gpus, hours, watts, site, location.pue
            )
        else:
            if flops is None or card is None or mfu is None:
                raise EstimateError("compute mode needs --flops, --gpu and --mfu")
            projection = from_compute(
                flops, card, mfu, 1 if gpus is None else gpus, watts, site, location.pue
            )
    else:
        _never(mode)
    return projection, check(budget, category, projection, entries, today)


def preflight(
    budget: budgets.Budget,
    ledger: Ledger,
    category: str,
    label: str,
    today: date,
    last: int = DEFAULT_LAST,
) -> tuple[Projection, budgets.Decision] | None:
    """`run --preflight`: the label's history projected and decided; None without history.

    Raises LedgerError when the ledger cannot be read.
    """
    entries = ledger.entries(*window(budget, today))
    try:
        projection = from_history(entries, label, last)
    except EstimateError:
        return None
    return projection, check(budget, category, projection, entries, today)
