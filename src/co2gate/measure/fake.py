"""Test stand-ins: FakeNvml for the vendor's pynvml module, FakeMeter for any Meter.

FakeNvml runs on real time, so NvmlMeter's own sampling thread works against it unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pynvml  # the real module: its error classes import and work without a GPU or driver

from co2gate.measure.interface import (
    Component,
    ComponentReading,
    Meter,
    MeterError,
    Method,
    Reading,
)
from co2gate.units import watt_seconds_to_kwh

_STEP_S = 0.001  # integration step for power given as a function of time


@dataclass(frozen=True)
class FakeUtilization:
    """What nvmlDeviceGetUtilizationRates returns: percentages over NVML's last sample period."""

    gpu: int
    memory: int = 0


@dataclass(frozen=True)
class FakeProcessSample:
    """One entry of nvmlDeviceGetProcessUtilization: a process's use over NVML's last period."""

    pid: int
    timeStamp: int  # wall-clock microseconds (NVML's field names)
    smUtil: int
    memUtil: int = 0
    encUtil: int = 0
    decUtil: int = 0


@dataclass(eq=False)
class FakeGpu:
    """One fake device. power_w is watts, or a function of seconds since the FakeNvml was made.

    failures maps an NVML call name to the exception that call raises for this device.
    processes maps a pid to the SM utilisation (%) it shows in every per-process sample;
    None makes nvmlDeviceGetProcessUtilization NotSupported.
    """

    index: int
    name: str
    uuid: str
    power_w: float | Callable[[float], float] = 300.0
    has_energy_counter: bool = True  # False: NotSupported, as on GPUs before Volta
    utilization_pct: int | None = 50  # None: NotSupported
    mig_uuids: tuple[str, ...] = ()  # MIG slices carved from this GPU
    processes: dict[int, int] | None = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)
    _origin: float = field(default=0.0, init=False, repr=False)
    _last_t: float = field(default=0.0, init=False, repr=False)
    _energy_mj: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def attach(self, origin: float) -> None:
        """Start the energy counter at origin (time.monotonic()), as a driver load does."""
        with self._lock:
            self._origin = self._last_t = origin
            self._energy_mj = 0.0

    def power_at(self, elapsed_s: float) -> float:
        """Watts drawn elapsed_s after the FakeNvml was made."""
        return float(self.power_w(elapsed_s)) if callable(self.power_w) else float(self.power_w)

    def energy_mj(self) -> float:
        """Energy since driver load (or the last reset_counter), in mJ, advanced to now."""
        with self._lock:
            self._advance(time.monotonic())
            return self._energy_mj

    def reset_counter(self) -> None:
        """Simulate a driver reload: the counter restarts at 0."""
        with self._lock:
            self._advance(time.monotonic())
            self._energy_mj = 0.0

    def fail(self, call: str, error: Exception | None = None) -> None:
        """Make an NVML call on this device raise from now on (default: GPU is lost)."""
        self.failures[call] = error if error is not None else pynvml.NVMLError_GpuIsLost()

    def _advance(self, now: float) -> None:
        if now <= self._last_t:
            return
        if not callable(self.power_w):  # constant power: exact
            self._energy_mj += float(self.power_w) * (now - self._last_t) * 1000.0
        else:  # midpoint rule in steps of at most 1 ms
            t = self._last_t
            while t < now:
                dt = min(_STEP_S, now - t)
                self._energy_mj += self.power_at(t + dt / 2.0 - self._origin) * dt * 1000.0
                t += dt
        self._last_t = now


@dataclass(frozen=True)
class _FakeMigHandle:
    parent: FakeGpu
    uuid: str


class FakeNvml:
    """The pynvml calls NvmlMeter makes, answered from FakeGpu devices.

    init_error=True makes nvmlInit raise NVMLError_LibraryNotFound, as on a machine without
    the driver. failures maps a call name to the exception it raises for every device.
    calls counts the calls made, by name.
    """

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NotFound = pynvml.NVMLError_NotFound

    def __init__(self, gpus: Sequence[FakeGpu] = (), *, init_error: bool = False) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.failures: dict[str, Exception] = {}
        self.calls: Counter[str] = Counter()
        self.created_at = time.monotonic()
        self._init_count = 0
        self._lock = threading.Lock()
        for position, gpu in enumerate(self.gpus):
            if gpu.index != position:
                raise ValueError(
                    f"FakeGpu {gpu.name!r} has index {gpu.index}, listed at {position}"
                )
            gpu.attach(self.created_at)

    @property
    def initialized(self) -> bool:
        """True between nvmlInit and its matching nvmlShutdown (NVML counts nested inits)."""
        return self._init_count > 0

    def _enter(self, call: str, handle: object = None) -> None:
        """Count the call, then raise what NVML would: uninitialised, or a failure asked for."""
        with self._lock:
            self.calls[call] += 1
        if call != "nvmlInit" and not self.initialized:
            raise pynvml.NVMLError_Uninitialized()
        if call in self.failures:
            raise self.failures[call]
        gpu = handle.parent if isinstance(handle, _FakeMigHandle) else handle
        if isinstance(gpu, FakeGpu) and call in gpu.failures:
            raise gpu.failures[call]

    def _device(self, call: str, handle: object) -> FakeGpu:
        self._enter(call, handle)
        if isinstance(handle, _FakeMigHandle):
            raise pynvml.NVMLError_NotSupported()  # a MIG slice has no power or energy of its own
        if not isinstance(handle, FakeGpu):
            raise pynvml.NVMLError_InvalidArgument()
        return handle

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error:
            raise pynvml.NVMLError_LibraryNotFound()
        with self._lock:
            self._init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        with self._lock:
            self._init_count -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        gpu = self.gpus[index] if 0 <= index < len(self.gpus) else None
        self._enter("nvmlDeviceGetHandleByIndex", gpu)
        if gpu is None:
            raise pynvml.NVMLError_InvalidArgument()
        return gpu

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu | _FakeMigHandle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
            if uuid in gpu.mig_uuids:
                return _FakeMigHandle(gpu, uuid)
        raise pynvml.NVMLError_NotFound()

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: object) -> FakeGpu:
        self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
        if not isinstance(handle, _FakeMigHandle):
            raise pynvml.NVMLError_InvalidArgument()
        return handle.parent

    def nvmlDeviceGetName(self, handle: object) -> str:
        gpu = self._device("nvmlDeviceGetName", handle)
        return gpu.name

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        if isinstance(handle, _FakeMigHandle):
            self._enter("nvmlDeviceGetUUID", handle)
            return handle.uuid
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        gpu = self._device("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not gpu.has_energy_counter:
            raise pynvml.NVMLError_NotSupported()
        return int(gpu.energy_mj())  # mJ, an integer, as NVML gives it

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        gpu = self._device("nvmlDeviceGetPowerUsage", handle)
        return round(gpu.power_at(time.monotonic() - self.created_at) * 1000.0)  # mW

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> FakeUtilization:
        gpu = self._device("nvmlDeviceGetUtilizationRates", handle)
        if gpu.utilization_pct is None:
            raise pynvml.NVMLError_NotSupported()
        return FakeUtilization(gpu=gpu.utilization_pct)

    def nvmlDeviceGetProcessUtilization(
        self, handle: object, last_seen_us: int
    ) -> list[FakeProcessSample]:
        """One sample per process, stamped now; NotFound when nothing is newer than last_seen."""
        gpu = self._device("nvmlDeviceGetProcessUtilization", handle)
        if gpu.processes is None:
            raise pynvml.NVMLError_NotSupported()
        now_us = int(time.time() * 1e6)
        if not gpu.processes or now_us <= last_seen_us:
            raise pynvml.NVMLError_NotFound()
        return [FakeProcessSample(pid, now_us, sm) for pid, sm in dict(gpu.processes).items()]


class FakeMeter(Meter):
    """A Meter drawing constant power per component, for tests of code that runs meters.

    start() sleeps setup_s first (a slow source such as codecarbon), then opens the window;
    fail="start" or "stop" raises MeterError there (after the sleep, for "start").
    so_far() burns at the same watts, exactly, unless live=False (a source that cannot say).
    """

    name = "fake"

    def __init__(
        self,
        power_w: Mapping[Component, float],
        *,
        setup_s: float = 0.0,
        fail: str | None = None,
        live: bool = True,
    ) -> None:
        if fail not in (None, "start", "stop"):
            raise ValueError(f"fail must be None, 'start' or 'stop', got {fail!r}")
        self.power_w = dict(power_w)
        self.components = tuple(self.power_w)
        self.setup_s = setup_s
        self.fail = fail
        self.live = live
        self._t0: float | None = None

    @property
    def total_w(self) -> float:
        """The burn rate: every component's watts together."""
        return sum(self.power_w.values())

    def so_far(self) -> float | None:
        t0 = self._t0
        if not self.live or t0 is None:
            return None
        return watt_seconds_to_kwh(self.total_w, time.monotonic() - t0)

    def start(self) -> None:
        time.sleep(self.setup_s)
        if self.fail == "start":
            raise MeterError("fake: start failed as asked")
        self._t0 = time.monotonic()

    def stop(self) -> Reading:
        if self._t0 is None:
            raise MeterError("fake: stop() called without start()")
        window_s = time.monotonic() - self._t0
        self._t0 = None
        if self.fail == "stop":
            raise MeterError("fake: stop failed as asked")
        return Reading(
            parts=tuple(
                ComponentReading(
                    component, watt_seconds_to_kwh(watts, window_s), Method.FAKE, window_s
                )
                for component, watts in self.power_w.items()
            )
        )
