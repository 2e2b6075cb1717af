"""Water a run consumed: on-site (the data centre's cooling) and off-site (making its power).

The budget file's `location:` gives the factors; co2gate has no default for either, so a
run without them has no water figure ("not measured"):
- `wue_l_per_kwh`: on-site Water Usage Effectiveness, The Green Grid's WUE: the site's water
  over its IT equipment's energy. It multiplies the energy the devices drew (before PUE).
- `source_water_l_per_kwh`: the water consumed to generate a kWh of electricity (an energy
  water intensity factor). It multiplies the energy the facility drew: IT energy x PUE.
So litres = energy_kwh.total x wue + energy_kwh.total x pue x source_water.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

MAX_WUE_L_PER_KWH: Final = 20.0  # evaporative cooling in a hot, dry place stays well below
MAX_SOURCE_L_PER_KWH: Final = 100.0  # hydro's evaporation per kWh reaches tens of litres
MAX_SOURCE_TEXT: Final = 200


@dataclass(frozen=True)
class WaterFactors:
    """The budget file's water factors and where they come from; None: not given."""

    wue_l_per_kwh: float | None = None
    source_water_l_per_kwh: float | None = None
    source: str = ""  # location.water_source, or the budget file that set the factors

    @property
    def configured(self) -> bool:
        return self.wue_l_per_kwh is not None or self.source_water_l_per_kwh is not None


@dataclass(frozen=True)
class Water:
    """A run's water, in litres, with its parts, factors and their source (emissions.json)."""

    water_l: float
    onsite_l: float | None  # None: no on-site factor given
    offsite_l: float | None  # None: no source-water factor given
    wue_l_per_kwh: float | None
    source_water_l_per_kwh: float | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "onsite_l": self.onsite_l,
            "offsite_l": self.offsite_l,
            "wue_l_per_kwh": self.wue_l_per_kwh,
            "source_water_l_per_kwh": self.source_water_l_per_kwh,
            "source": self.source,
        }


def litres(energy_kwh: float, pue: float, factors: WaterFactors) -> Water | None:
    """The water of a run that drew `energy_kwh` (IT energy) at `pue`; None without factors."""
    if not factors.configured:
        return None
    if not (math.isfinite(energy_kwh) and energy_kwh >= 0 and math.isfinite(pue) and pue >= 1):
        raise ValueError(f"energy {energy_kwh!r} kWh at PUE {pue!r} has no water figure")
    wue, source_water = factors.wue_l_per_kwh, factors.source_water_l_per_kwh
    onsite = energy_kwh * wue if wue is not None else None
    offsite = energy_kwh * pue * source_water if source_water is not None else None
    return Water(
        water_l=(onsite or 0.0) + (offsite or 0.0),
        onsite_l=onsite,
        offsite_l=offsite,
        wue_l_per_kwh=wue,
        source_water_l_per_kwh=source_water,
        source=factors.source,
    )
