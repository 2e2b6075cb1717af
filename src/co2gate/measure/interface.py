"""The one interface every energy source implements: start a window, stop it, get a Reading."""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from co2gate.errors import ServiceError


class Component(str, enum.Enum):
    """A class of device whose energy is reported separately."""

    CPU = "cpu"
    GPU = "gpu"
    RAM = "ram"


class Method(str, enum.Enum):
    """How a figure was obtained; reports print these labels."""

    NVML_ENERGY_COUNTER = "nvml-energy-counter"  # measured: the GPU's own energy counter
    NVML_POWER_SAMPLING = "nvml-power-sampling"  # measured: power samples, integrated
    NVML_PROCESS_SHARE = "nvml-process-share"  # measured GPU energy x the job's SM share
    RAPL = "rapl"  # measured: the CPU's RAPL energy counters
    TDP_LOAD_ESTIMATE = "tdp-load-estimate"  # estimated: TDP scaled by CPU load
    VM_SHARE_ESTIMATE = "vm-share-estimate"  # estimated: the above, scaled to a VM's vCPUs
    CGROUP_QUOTA_SHARE = "cgroup-quota-share"  # the CPU figure x the container's CPU quota
    RAM_SIZE_ESTIMATE = "ram-size-estimate"  # estimated: watts per DIMM from installed RAM
    USER_CONSTANT = "user-constant"  # given by the user
    CODECARBON = "codecarbon"  # the user's own codecarbon wrote the figure (co2gate check)
    CODECARBON_TOTAL = "codecarbon-total"  # the same, total only: its CSV has no split
    FAKE = "fake"  # a test double
    NONE = "none"  # no such device
    FAILED = "failed"  # the source broke; the figure is missing, see notes

    @property
    def is_measured(self) -> bool:
        return self in (Method.NVML_ENERGY_COUNTER, Method.NVML_POWER_SAMPLING, Method.RAPL)


@dataclass(frozen=True)
class ComponentReading:
    """Energy one source read for one component over the window it actually watched."""

    component: Component
    energy_kwh: float
    method: Method
    window_s: float  # seconds between the source becoming ready and stop()


@dataclass(frozen=True)
class GpuReading:
    index: int  # NVML index
    name: str
    uuid: str
    energy_kwh: float
    mean_power_w: float
    mean_utilization_pct: float | None
    method: Method


@dataclass(frozen=True)
class Reading:
    parts: tuple[ComponentReading, ...]
    gpus: tuple[GpuReading, ...] = ()
    host: Mapping[str, object] = field(default_factory=dict)  # cpu_model, ram_total_gb, ...
    notes: tuple[str, ...] = ()  # what went wrong or was approximated, in a sentence each


class MeterError(ServiceError):
    """A source could not start or read; the message says which and why."""


class Meter(abc.ABC):
    """An energy source. start() may be slow (it runs beside the command); stop() must be quick."""

    name: str = "meter"
    components: tuple[Component, ...] = ()  # what its Reading covers, even when it fails

    @abc.abstractmethod
    def start(self) -> None:
        """Open the measurement window. Raises MeterError."""

    @abc.abstractmethod
    def stop(self) -> Reading:
        """Close the window and return what was read in it. Raises MeterError."""

    def so_far(self) -> float | None:
        """kWh its components drew since start(), as read so far; None if it cannot say.

        Called from another thread while the command runs, about once a second (the live
        guard): it must be cheap and leave the window alone, so it returns what the source
        has already read rather than taking a new reading.
        """
        return None
