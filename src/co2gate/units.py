"""Unit conversions, each in one place and each tested against a hand-computed figure.

Values enter co2gate in the units their source speaks (NVML: mJ and mW; samplers: W over s)
and are converted here, once, into the units the rest of the code uses: kWh, W, kg.
"""

from __future__ import annotations

JOULES_PER_KWH = 3.6e6  # 1 kWh = 1000 W x 3600 s

# Bounds on the figures that price a run, shared by the location's check and the record's.
PUE_MIN = 1.0  # a data centre cannot use less than its IT load
PUE_MAX = 10.0
# A bound against corrupt files, not a physical one: the dirtiest grids are about 1,200 g/kWh,
# but a configured intensity may be far higher to make a test run's figures large.
MAX_INTENSITY_G_PER_KWH = 1e6


def mj_to_kwh(millijoules: float) -> float:
    """NVML's energy counter (mJ) to kWh."""
    return millijoules / 1000.0 / JOULES_PER_KWH


def mw_to_w(milliwatts: float) -> float:
    """NVML's power reading (mW) to W."""
    return milliwatts / 1000.0


def watt_seconds_to_kwh(watts: float, seconds: float) -> float:
    """Mean power held for a duration, as energy."""
    return watts * seconds / JOULES_PER_KWH


def kwh_to_mean_w(energy_kwh: float, seconds: float) -> float:
    """Energy over a duration, as mean power; 0 for an empty duration."""
    return energy_kwh * JOULES_PER_KWH / seconds if seconds > 0 else 0.0


def emissions_kg(energy_kwh: float, pue: float, intensity_g_per_kwh: float) -> float:
    """Device energy x data-centre PUE x grid intensity (g/kWh), in kg CO2e."""
    return energy_kwh * pue * intensity_g_per_kwh / 1000.0


SECONDS_PER_HOUR = 3600.0
FLOPS_PER_TFLOPS = 1e12  # TFLOP/s, as GPU datasheets quote peak throughput


def flop_to_gpu_hours(flop: float, peak_tflops: float, mfu: float) -> float:
    """Floating-point operations done by one GPU at `mfu` of its peak TFLOP/s, as GPU-hours."""
    return flop / (peak_tflops * FLOPS_PER_TFLOPS * mfu) / SECONDS_PER_HOUR


def watt_hours_to_kwh(watts: float, hours: float) -> float:
    """Power held for a number of hours (GPU-hours at a per-GPU power), as energy."""
    return watts * hours / 1000.0


# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle" (EPA-420-F-23-014):
# about 400 g CO2 per mile. Per km: 0.400 kg / 1.609344 km.
CAR_KG_PER_MILE = 0.400
KM_PER_MILE = 1.609344


def car_km(kg: float) -> float:
    """The distance a typical passenger car drives emitting `kg` CO2 (EPA factor)."""
    return kg / (CAR_KG_PER_MILE / KM_PER_MILE)
