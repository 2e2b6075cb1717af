"""How far each figure may be off: a ~90% interval per method, with the source behind it.

Every component figure is as good as the method that produced it. WIDTHS gives each Method
the factors its low and high bounds are of the figure (0.95 and 1.05: +-5%) and the source of
that width; INTENSITY does the same for the grid intensity. A bound is the figure times its
factor; a total's bounds are its parts' bounds summed (the worst case: the parts' errors are
not assumed to cancel); an emissions bound is an energy bound x PUE x an intensity bound.

Pure: the standard library and the measure enums; nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from co2gate import units
from co2gate.measure.interface import Method


@dataclass(frozen=True)
class Width:
    """A ~90% interval as factors of the figure: [figure x low, figure x high]."""

    low: float  # <= 1
    high: float  # >= 1
    source: str

    def bounds(self, value: float) -> tuple[float, float]:
        """[low, high] around a figure >= 0."""
        return value * self.low, value * self.high


_NVML_DOCS = (
    "NVIDIA NVML API reference (nvmlDeviceGetPowerUsage, nvmlDeviceGetTotalEnergyConsumption) "
    "and nvidia-smi documentation: board power readings accurate to about +-5% on recent boards"
)
_SAMPLING = (
    "Yang et al., SC24, 'Part-time Power Measurements: nvidia-smi's Lack of Attention': on "
    "A100/H100 the power reading covers about 25% of runtime, so integrated samples can be off "
    "by tens of percent"
)
_RAPL = (
    "Khan et al., ACM TOMPECS 2018, 'RAPL in Action'; Desrochers et al., MEMSYS 2016, "
    "'A Validation of DRAM RAPL Power Measurements': RAPL within a few percent of a wall meter"
)
_TDP = (
    "codecarbon's TDP x load model (P = TDP x (0.1 + 0.9 x load^3)): comparisons against wall "
    "meters report errors up to about 40%"
)
_VM = (
    "a TDP model scaled to a VM's vCPUs; published VM models (Cloud Carbon Footprint, "
    "SPECpower-based, Teads) agree only within about +-30% and none is validated on cloud VMs"
)
_RAM = (
    "a constant per installed size (codecarbon: 5 W per DIMM; about 3 W per 8 GB elsewhere), "
    "whatever the use: -50%/+100%"
)
_PROCESS_SHARE = (
    "the job's share of NVML's per-process SM-utilisation samples applied to the GPU's energy: "
    "utilisation is time on the SMs, not power, and the samples are coarse, so the share is "
    "taken as wide as a model: +-40%"
)
_QUOTA_SHARE = (
    "a cgroup CPU quota's share (quota CPUs / host CPUs) of the host's CPU figure: the quota "
    "caps CPU time, not power, and the figure under it is often the TDP model: +-40%"
)

# The factors behind each method's ~90% interval; a test checks every Method is here.
WIDTHS: Final[Mapping[Method, Width]] = MappingProxyType(
    {
        Method.NVML_ENERGY_COUNTER: Width(0.95, 1.05, _NVML_DOCS),
        Method.NVML_POWER_SAMPLING: Width(0.7, 1.3, _SAMPLING),
        Method.RAPL: Width(0.95, 1.05, _RAPL),
        Method.TDP_LOAD_ESTIMATE: Width(0.6, 1.4, _TDP),
        Method.VM_SHARE_ESTIMATE: Width(0.6, 1.4, _VM),
        Method.RAM_SIZE_ESTIMATE: Width(0.5, 2.0, _RAM),
        Method.NVML_PROCESS_SHARE: Width(0.6, 1.4, _PROCESS_SHARE),
        Method.CGROUP_QUOTA_SHARE: Width(0.6, 1.4, _QUOTA_SHARE),
        Method.USER_CONSTANT: Width(
            1.0, 1.0, "given by the user: co2gate takes it as stated and cannot judge it"
        ),
        Method.CODECARBON: Width(
            0.6,
            1.4,
            "the user's own codecarbon, method not recorded in its CSV: its TDP x load model's "
            f"width, the widest it uses for CPU ({_TDP})",
        ),
        Method.CODECARBON_TOTAL: Width(
            0.5,
            2.0,
            "the user's own codecarbon, total only: the widest of its parts, the constant RAM "
            f"model ({_RAM})",
        ),
        Method.FAKE: Width(0.9, 1.1, "a test double: +-10% by construction"),
        Method.NONE: Width(1.0, 1.0, "no such device: nothing drawn"),
        Method.FAILED: Width(
            1.0, 1.0, "the source broke: the figure is missing (see the notes), not bounded"
        ),
    }
)

# A dataset's annual average against the grid of the hours a job actually ran.
INTENSITY: Final = Width(
    0.7,
    1.3,
    "an annual average against the hour's grid: Miller, Novan and Jenn, Environmental "
    "Research Letters 2022, 'Hourly accounting of carbon emissions from electricity "
    "consumption': annual-average factors over- or under-estimate by as much as 30%",
)


def energy_bounds(kwh: float, method: Method) -> tuple[float, float]:
    """A component's kWh as [low, high] by its method's width."""
    return WIDTHS[method].bounds(kwh)


def total_bounds(parts: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """The total of several figures' bounds: lows summed, highs summed."""
    pairs = list(parts)
    return sum(lo for lo, _ in pairs), sum(hi for _, hi in pairs)


def emissions_bounds(
    energy_kwh: tuple[float, float], pue: float, intensity_g_per_kwh: float
) -> tuple[float, float]:
    """kg CO2e as [low, high]: energy bounds x PUE x the intensity's bounds."""
    low_i, high_i = INTENSITY.bounds(intensity_g_per_kwh)
    return (
        units.emissions_kg(energy_kwh[0], pue, low_i),
        units.emissions_kg(energy_kwh[1], pue, high_i),
    )
