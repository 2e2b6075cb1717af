"""Presentation of figures for people: numbers with units scaled to be readable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def verdict_lines(decision: Any, notes: Sequence[str]) -> list[str]:
    """The verdict after a gated run: the decision with its numbers, then the reasons."""
    d = decision.to_json()
    share = f" ({d['share']:.1%} of it)" if d["share"] is not None else ""
    lines = [
        f"{d['verdict'].upper()}: {d['category']} {fmt_mass(d['after_kg'])} of "
        f"{fmt_mass(d['allocation_kg'])}{share} after this run's {fmt_mass(d['run_kg'])}; "
        f"{fmt_mass(max(d['remaining_kg'], 0.0))} left; tier {d['tier']}"
    ]
    lines += list(d["reasons"])
    lines += [f"note: {note}" for note in notes]
    return lines


def standing_lines(standing: Mapping[str, Any]) -> list[str]:
    """`co2gate budget` as a terminal table."""
    lines = [
        f"budget year {standing['year_start']} to {standing['year_end']}: "
        f"{fmt_mass(standing['used_kg'])} of {fmt_mass(standing['annual_budget_kg'])} used",
        "",
        f"{'category':<16}{'allocated':>12}{'used':>12}{'remaining':>12}{'share':>8}{'runs':>6}",
    ]
    for c in standing["categories"]:
        share = f"{c['share']:.1%}" if c["share"] is not None else "-"
        lines.append(
            f"{c['category']:<16}{fmt_mass(c['allocation_kg']):>12}{fmt_mass(c['used_kg']):>12}"
            f"{fmt_mass(c['remaining_kg']):>12}{share:>8}{c['runs']:>6}"
        )
    if standing["top_runs"]:
        lines += ["", "runs that used the most:"]
        lines += [
            f"  {fmt_mass(float(r['emissions_kg'])):>10}  {r['category']:<12} {r['label']}"
            f"  {r['ended_at'][:10]}"
            for r in standing["top_runs"]
        ]
    return lines
