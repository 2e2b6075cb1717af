"""Every mass, energy, power, duration, percentage and date as people read it.

A quantity reads with three significant figures in the unit that puts it between 1 and 999
(the largest unit goes on with thousands separators), never with an exponent. Each function
returns plain text; report.py's Jinja filters wrap it as Markup.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

# (unit, power of ten of the base unit), largest first; the base unit has power 0
_MASS = (("t", 3), ("kg", 0), ("g", -3), ("mg", -6))
_ENERGY = (("MWh", 3), ("kWh", 0), ("Wh", -3), ("mWh", -6))
_POWER = (("kW", 3), ("W", 0), ("mW", -3))
_DISTANCE = (("km", 0), ("m", -3))
_VOLUME = (("m³", 3), ("L", 0), ("mL", -3))


def _figures(x: float) -> Decimal:
    """x rounded to three significant figures, exactly (so 999.96 is 1.00E+3, not 999.96)."""
    return Decimal(f"{x:.2e}")


def _plain(d: Decimal) -> str:
    """A decimal without exponent or trailing zeros, thousands separated: 1,230, 5.53, 0.001."""
    text = f"{d:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scaled(value: float, units: tuple[tuple[str, int], ...]) -> str:
    """value (in the unit of power 0) in the largest unit it reaches once rounded."""
    base = next(unit for unit, power in units if power == 0)
    if value == 0:
        return f"0 {base}"
    if not math.isfinite(value):
        return f"{value} {base}"  # nan, inf: a broken figure shows as one
    rounded = _figures(abs(value))
    unit, power = next(((u, p) for u, p in units if rounded >= Decimal(1).scaleb(p)), units[-1])
    return f"{'-' if value < 0 else ''}{_plain(rounded.scaleb(-power))} {unit}"


def mass(kg: float) -> str:
    """CO2e as mg, g, kg or t: 5.53 mg, 1.23 t, 1,230 t; 0 kg."""
    return _scaled(kg, _MASS)


def mass_range(low_kg: float, high_kg: float) -> str:
    """A [low, high] interval of CO2e: "20-49 g", "800 g-1.2 kg" when the units differ."""
    low, high = mass(low_kg), mass(high_kg)
    low_num, _, low_unit = low.partition(" ")
    if low_kg == 0 or low_unit == high.partition(" ")[2]:
        return f"{low_num}-{high}"
    return f"{low}-{high}"


def energy(kwh: float) -> str:
    """Energy as mWh, Wh, kWh or MWh: 78.8 mWh, 289 MWh."""
    return _scaled(kwh, _ENERGY)


def water(litres: float) -> str:
    """Water as mL, L or m³ (1,000 L): 850 mL, 4.2 L, 1.5 m³."""
    return _scaled(litres, _VOLUME)


def power(w: float | None) -> str:
    """Power as mW, W or kW; "-" where there is none."""
    return "-" if w is None else _scaled(w, _POWER)


def distance(km: float) -> str:
    """A distance as m or km; "less than a metre" below."""
    return _scaled(km, _DISTANCE) if _figures(km) >= Decimal("0.001") else "less than a metre"


def duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 10 h 00 min: three figures below a minute, then whole seconds,
    then whole minutes from an hour on."""
    rounded = _figures(seconds)
    if rounded < 60:
        return f"{_plain(rounded)} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours:,} h {minutes:02d} min"


def pct(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with `digits` decimals: 0.584 -> 58.4%; "-" for None."""
    return "-" if fraction is None else f"{fraction * 100:,.{digits}f}%"


def count(n: float) -> str:
    """A whole number with thousands separators: 1,234."""
    return f"{n:,.0f}"


def counted(n: float, noun: str) -> str:
    """A count with its noun, plural but for one: 1 run, 1,234 runs."""
    return f"{count(n)} {noun}{'' if round(n) == 1 else 's'}"


def day(d: date) -> str:
    """A day, ISO 8601: 2026-01-01."""
    return d.isoformat()[:10]


def year(start: date, end_exclusive: date) -> str:
    """A budget year by its first and last day: 2026-01-01 to 2026-12-31."""
    return f"{day(start)} to {day(end_exclusive - timedelta(days=1))}"


def left(allocation_kg: float, used_kg: float) -> str:
    """What an allocation has left once used_kg is spent: "150 kg left", or "10 kg over"."""
    rest = allocation_kg - used_kg
    return f"{mass(rest)} left" if rest >= 0 else f"{mass(-rest)} over"
