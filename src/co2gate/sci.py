"""Software Carbon Intensity (ISO/IEC 21031:2024): SCI = (E x I + M) / R.

E x I is the run's operational emissions (`emissions_kg`: energy x PUE x location-based
intensity); M its share of the hardware's embodied emissions; R the functional unit: the
requests the run served (`--requests`), else the run itself.

M = embodied x (time reserved / lifespan) x (resources reserved / total): the machine's
embodied kg times `server_share` (1: the whole machine; a VM's vCPUs over the host's threads
otherwise) plus each GPU's, over the run's share of a lifetime. The defaults are published
figures; the budget file's `embodied:` section overrides any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from co2gate.model import Measurement, Sci

SECONDS_PER_YEAR: Final = 365.25 * 24 * 3600

# Luccioni, Viguier & Ligozat (2022), "Estimating the Carbon Footprint of BLOOM, a 176B
# Parameter Language Model" (JMLR 24, 2023): 2,500 kg CO2e for a GPU server
# node without its GPUs (HPE Apollo 6500 Gen10 Plus, HPE's own figure) and 150 kg for each
# NVIDIA A100 board. Lifetime: 6 years, the depreciation period Microsoft (2022) and Google
# (2023) adopted for their servers; co2gate's assumption, not the paper's.
EMBODIED_SOURCE: Final = (
    "Luccioni et al. 2022 (BLOOM): 2,500 kg per server node, 150 kg per GPU; 6-year lifetime"
)


@dataclass(frozen=True)
class Embodied:
    """Embodied emissions of the hardware a run reserves, and how long it lives."""

    server_kg: float = 2500.0  # the machine without its GPUs
    gpu_kg: float = 150.0  # each GPU board
    lifetime_years: float = 6.0
    server_share: float = 1.0  # of the machine the run reserves
    source: str = EMBODIED_SOURCE


def embodied_kg(embodied: Embodied, duration_s: float, gpus: int) -> float:
    """M: the embodied kg of the reserved hardware times the run's share of its lifetime."""
    time_share = duration_s / (embodied.lifetime_years * SECONDS_PER_YEAR)
    reserved = embodied.server_kg * embodied.server_share + embodied.gpu_kg * gpus
    return reserved * time_share


def sci(m: Measurement, embodied: Embodied) -> Sci:
    """emissions.json's `sci` block for one measured run."""
    from co2gate.model import Sci, SciEmbodied

    duration = m.run.duration_s
    gpus = len(m.gpus)
    operational = m.emissions_kg
    embodied_share = embodied_kg(embodied, duration, gpus)
    units = m.requests or 1
    return Sci(
        operational_kg=operational,
        embodied_kg=embodied_share,
        functional_unit="request" if m.requests else "run",
        units=units,
        kg_per_unit=(operational + embodied_share) / units,
        embodied=SciEmbodied(
            server_kg=embodied.server_kg,
            gpu_kg=embodied.gpu_kg,
            lifetime_years=embodied.lifetime_years,
            server_share=embodied.server_share,
            source=embodied.source,
            gpus=gpus,
            time_share=duration / (embodied.lifetime_years * SECONDS_PER_YEAR),
        ),
    )
