"""Presentation of figures for people: numbers with units scaled to be readable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fmt_energy(kwh: float) -> str:
    """kWh as kWh, Wh or mWh, three significant figures."""
    if kwh >= 1:
        return f"{kwh:.3g} kWh"
    if kwh * 1e3 >= 1:
        return f"{kwh * 1e3:.3g} Wh"
    return f"{kwh * 1e6:.3g} mWh"


def fmt_mass(kg: float) -> str:
    """kg CO2e as t, kg, g or mg, three significant figures."""
    if kg >= 1000:
        return f"{kg / 1000:.3g} t"
    if kg >= 1:
        return f"{kg:.3g} kg"
    if kg * 1e3 >= 1:
        return f"{kg * 1e3:.3g} g"
    return f"{kg * 1e6:.3g} mg"


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """The few lines `co2gate measure` prints on stderr after the command's own output."""
    energy, methods = doc["energy_kwh"], doc["methods"]
    parts = ", ".join(
        f"{c} {fmt_energy(energy[c])} ({methods[c]})" if methods[c] != "none" else f"{c} none"
        for c in ("cpu", "gpu", "ram")
    )
    run = doc["run"]
    lines = [
        f"{fmt_energy(energy['total'])} in {run['duration_s']:.1f} s: {parts}",
        f"{fmt_mass(doc['emissions_kg'])} CO2e = {fmt_energy(energy['total'])} x PUE {doc['pue']:g}"
        f" x {doc['intensity_g_per_kwh']:.4g} g/kWh ({doc['intensity_source']})",
    ]
    lines += [f"note: {note}" for note in doc["notes"]]
    return lines
