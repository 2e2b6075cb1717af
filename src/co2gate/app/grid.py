"""Price a measured run with the live grid signal the budget file names (`intensity:`).

Called after the command has exited, never before it starts: opening a provider sends
nothing, and its history is asked for only once the run's start and end are known. On any
failure (a refused key, a 429, a timeout, a malformed answer, a gap in the figures) the
run keeps codecarbon's figure and one note says why: a provider never loses or fails a run.
The ledger records the average figure; the marginal one is reported beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from co2gate import fmt, intensity, uncertainty, units
from co2gate.errors import Co2gateError
from co2gate.grid.config import IntensityConfig, ProviderName
from co2gate.sci import Embodied, sci

if TYPE_CHECKING:
    from co2gate.budget import Budget
    from co2gate.grid.signal import Series
    from co2gate.model import Measurement

# (measurement, the live guard's (when, kWh so far) readings) -> the measurement priced
Reprice = Callable[["Measurement", "Sequence[tuple[datetime, float]]"], "Measurement"]


def provider_pricing(
    budget: Budget | None,
    location: intensity.Location,
    env: Mapping[str, str],
    ci: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> Reprice | None:
    """What re-prices the run once it is measured, or None: no budget file, provider
    `none`, or a fixed figure (`--intensity`, `location.intensity`), which wins."""
    if budget is None or budget.intensity.provider is ProviderName.NONE:
        return None
    if location.intensity_g_per_kwh is not None:
        return None
    config, embodied = budget.intensity, budget.embodied

    def reprice(m: Measurement, readings: Sequence[tuple[datetime, float]]) -> Measurement:
        return priced_by_provider(
            m, config, env, embodied, ci=ci, base_dir=base_dir, readings=readings
        )

    return reprice


def _name(config: IntensityConfig) -> str:
    """What notes call the provider: "electricitymaps DE", "file grid.csv"."""
    if config.provider is ProviderName.FILE:
        return f"file {Path(config.path or '').name}"
    return f"{config.provider.value} {config.zone or ''}".strip()


def _history(
    config: IntensityConfig,
    env: Mapping[str, str],
    m: Measurement,
    ci: Mapping[str, Any] | None,
    base_dir: Path | None,
) -> Series:
    start, end = m.run.started_at, m.run.ended_at
    if config.provider is ProviderName.FILE:
        series = _file_at_base(config, env, ci, base_dir, start, end)
        if series is not None:
            return series
    from co2gate.grid.providers import open_source

    return open_source(config, env, base_dir=base_dir).history(start, end)


def _file_at_base(
    config: IntensityConfig,
    env: Mapping[str, str],
    ci: Mapping[str, Any] | None,
    base_dir: Path | None,
    start: Any,
    end: Any,
) -> Series | None:
    """On a pull request the `file` provider's CSV is read at the base commit, as the budget
    file is: a PR cannot lower the intensity its own run is priced at. None elsewhere."""
    from co2gate.github.context import BASE_COMMIT_EVENTS

    base_sha, event = (ci or {}).get("base_sha"), (ci or {}).get("event")
    if not base_sha or event not in BASE_COMMIT_EVENTS:
        return None
    from co2gate.github.contents import read_at_commit
    from co2gate.grid import file
    from co2gate.grid.signal import ProviderError

    path = Path(config.path or "")
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    text = read_at_commit(path, base_sha, env, file.MAX_BYTES)
    if text is None:
        raise ProviderError(f"the base commit {str(base_sha)[:7]} has no {path}")
    return file.parse(text, f"{path} (at base {str(base_sha)[:7]})").between(start, end)


def priced_by_provider(
    m: Measurement,
    config: IntensityConfig,
    env: Mapping[str, str],
    embodied: Embodied,
    *,
    ci: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    readings: Sequence[tuple[datetime, float]] = (),
) -> Measurement:
    """m priced interval by interval with the provider's history over its run; m with a note
    (codecarbon's figure kept) when the provider cannot answer. `readings`: the live guard's
    (when, kWh so far), how the energy fell over time; without them it is spread evenly."""
    from co2gate.grid import pricing
    from co2gate.model import GridPricing, SeriesInterval

    name = _name(config)
    run = m.run
    if run.forwarded_signals:
        # A cancelled job has seconds before it is killed: write the files, ask nobody.
        signals = ", ".join(run.forwarded_signals)
        return dataclasses.replace(
            m, notes=(*m.notes, f"{name}: not asked after {signals}; codecarbon's figure used")
        )
    try:
        series = _history(config, env, m, ci, base_dir)
        samples, spread = pricing.samples_from_readings(
            run.started_at, run.ended_at, m.energy_kwh.total, readings
        )
        priced = pricing.price(series, samples, spread)
        if config.provider is ProviderName.FILE:  # its name, not the runner's path to it
            priced = dataclasses.replace(priced, source=name)
    except Co2gateError as e:
        why = str(e)
        if not why.startswith(name):
            why = f"{name}: {why}"
        kept = f"{m.intensity_g_per_kwh:.4g} g/kWh, {m.intensity_source}"
        return dataclasses.replace(m, notes=(*m.notes, f"{why}; codecarbon's figure used ({kept})"))
    total, pue = m.energy_kwh.total, m.pue
    kg = units.emissions_kg(total, pue, priced.g_per_kwh)
    marginal_kg = (
        None
        if priced.marginal_g_per_kwh is None
        else units.emissions_kg(total, pue, priced.marginal_g_per_kwh)
    )
    grid = GridPricing(
        method=priced.method.value,
        energy=priced.energy.value,
        intervals=tuple(
            SeriesInterval(iv.start, iv.end, iv.g_per_kwh, iv.marginal_g_per_kwh, iv.energy_kwh)
            for iv in priced.intervals
        ),
        marginal_g_per_kwh=priced.marginal_g_per_kwh,
        marginal_emissions_kg=marginal_kg,
    )
    count = len(priced.intervals)
    said = (
        f"intensity from {priced.source}: {count} interval{'s' if count != 1 else ''} over the "
        f"run ({priced.method.value}), "
        + (
            "the energy in each from the live guard's readings"
            if priced.energy is pricing.EnergySpread.SAMPLED
            else "the run's energy spread evenly over them (no readings over time)"
        )
        + f"; codecarbon's figure was {m.intensity_g_per_kwh:.4g} g/kWh"
    )
    if marginal_kg is not None:
        said += (
            f"; marginal {priced.marginal_g_per_kwh:.4g} g/kWh = {fmt.mass(marginal_kg)}, "
            "reported beside the average, never gated on or recorded"
        )
    out = dataclasses.replace(
        m,
        intensity_g_per_kwh=priced.g_per_kwh,
        intensity_source=priced.source,
        emissions_kg=kg,
        emissions_kg_range=uncertainty.emissions_bounds(
            m.energy_bounds.total, pue, priced.g_per_kwh
        ),
        per_request_g=kg * 1000.0 / m.requests if m.requests else None,
        notes=(*m.notes, said),
        grid=grid,
    )
    return dataclasses.replace(out, sci=sci(out, embodied))
