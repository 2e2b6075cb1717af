"""CPU and RAM energy through codecarbon's OfflineEmissionsTracker, configured explicitly."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2gate.measure.interface import (
    Component,
    ComponentReading,
    Meter,
    MeterError,
    Method,
    Reading,
)
from co2gate.quiet import quiet_codecarbon

_PROC_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFacts:
    """What /proc/cpuinfo says about the first logical CPU."""

    model: str | None
    threads_per_core: int
    hypervisor: bool


def read_cpu_facts(text: str) -> CpuFacts:
    first = text.split("\n\n", 1)[0]
    fields: dict[str, str] = {}
    for line in first.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    siblings, cores = fields.get("siblings", ""), fields.get("cpu cores", "")
    tpc = (
        int(siblings) // int(cores) if siblings.isdigit() and cores.isdigit() and int(cores) else 1
    )
    return CpuFacts(
        model=fields.get("model name") or None,
        threads_per_core=max(tpc, 1),
        hypervisor="hypervisor" in fields.get("flags", "").split(),
    )


@dataclass(frozen=True)
class SocketShare:
    share: float  # the VM's vCPUs over the socket's hardware threads
    vcpus: int
    socket_threads: int


def vm_socket_share(facts: CpuFacts, vcpus: int) -> SocketShare | None:
    """The share of a CPU socket a VM holds, when the brand string names its core count.

    codecarbon prices a matched CPU at its whole-socket TDP: a 4-vCPU GitHub runner on an
    AMD EPYC 7763 (64 cores, 128 threads, 280 W) is priced as the whole 280 W socket.
    """
    if not facts.hypervisor or not facts.model:
        return None
    match = re.search(r"(\d+)-Core", facts.model)
    if not match:
        return None
    socket_threads = int(match.group(1)) * facts.threads_per_core
    if socket_threads <= vcpus:
        return None
    return SocketShare(vcpus / socket_threads, vcpus, socket_threads)


@contextlib.contextmanager
def _cpu_brand_from(model: str | None) -> Iterator[None]:
    """Give codecarbon the CPU brand without py-cpuinfo's probe.

    codecarbon asks py-cpuinfo for the brand string only; py-cpuinfo answers by starting a
    Python subprocess that times the clock in a busy loop (about 1 s of CPU here). That
    costs co2gate's overhead budget, and in machine mode the loop is counted as load in
    the very run being measured. /proc/cpuinfo holds the same string.
    """
    if model is None:
        yield
        return
    import cpuinfo

    original = cpuinfo.get_cpu_info
    cpuinfo.get_cpu_info = lambda: {"brand_raw": model}
    try:
        yield
    finally:
        cpuinfo.get_cpu_info = original


class _Collect(logging.Handler):
    """Keeps codecarbon's error lines for the report instead of printing them mid-run."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage().strip().splitlines()[0][:300])


class CodecarbonMeter(Meter):
    """Machine-wide CPU and RAM energy from codecarbon (RAPL where readable, else estimates).

    Every setting that matters is passed to the constructor: a `.codecarbon.config` in the
    user's checkout or a CODECARBON_* variable must not send data anywhere, write files or
    change the method. GPUs are left to NvmlMeter.

    By default the tracker takes one reading, at stop. With live_interval_s its scheduler
    takes one every live_interval_s instead, so that so_far() can say how much was drawn
    while the command runs (the live guard and the heartbeat need that).
    """

    name = "codecarbon"
    components = (Component.CPU, Component.RAM)

    def __init__(
        self, cpuinfo_path: Path = _PROC_CPUINFO, *, live_interval_s: float | None = None
    ) -> None:
        if live_interval_s is not None and live_interval_s <= 0:
            raise ValueError(f"live_interval_s must be positive, got {live_interval_s}")
        self._cpuinfo_path = cpuinfo_path
        self._live_interval_s = live_interval_s
        self._tracker: Any = None
        self._log = _Collect()
        self._quiet = True  # codecarbon's lines are collected, not printed
        self._rapl = False
        self._share: SocketShare | None = None
        self._model: str | None = None

    def start(self) -> None:
        try:
            facts = read_cpu_facts(self._cpuinfo_path.read_text(errors="replace"))
        except OSError:
            facts = CpuFacts(model=None, threads_per_core=1, hypervisor=False)
        self._quiet = quiet_codecarbon()
        with _cpu_brand_from(facts.model):
            from codecarbon import OfflineEmissionsTracker
            from codecarbon.core import cpu as cc_cpu

            tracker = OfflineEmissionsTracker(
                project_name="co2gate",
                country_iso_code="USA",  # unused: intensity is forced; co2gate applies its own
                region=None,
                cloud_provider=None,
                cloud_region=None,
                country_2letter_iso_code=None,
                force_carbon_intensity_g_co2e_kwh=0.0,
                # One reading at stop unless live (the 1 s power monitor samples either way).
                measure_power_secs=self._live_interval_s or 3600,
                api_call_interval=-1,
                output_methods=[],
                output_handlers=[],
                emissions_endpoint=None,
                electricitymaps_api_token=None,
                tracking_mode="machine",
                log_level="critical",
                gpu_ids=[],
                force_cpu_power=None,
                force_ram_power=None,
                force_mode_cpu_load=False,
                pue=1.0,
                wue=0.0,
                allow_multiple_runs=True,
                rapl_include_dram=False,
                rapl_prefer_psys=False,
                metadata=None,
            )
            self._quiet_codecarbon_logger()
            tracker.start()  # codecarbon swallows its own errors: check that it really started
            if getattr(tracker, "_start_time", None) is None:
                raise MeterError(f"codecarbon's tracker did not start: {self._errors()}")
            # The first emissions computation loads codecarbon's location data: do it now,
            # beside the command, rather than in stop(), between its exit and co2gate's.
            tracker.flush()
            self._rapl = bool(cc_cpu.is_rapl_available())
            self._model = tracker._conf.get("cpu_model") or facts.model
            if not self._rapl and self._socket_tdp_matched(cc_cpu):
                self._share = vm_socket_share(facts, os.cpu_count() or 1)
            self._tracker = tracker  # last: so_far() must not see it before _share is known

    def so_far(self) -> float | None:
        """CPU and RAM kWh as of the tracker's last scheduled reading; None unless live.

        Reads the running totals that codecarbon's scheduler keeps, `_total_cpu_energy` and
        `_total_ram_energy` (each reading replaces the Energy object, so another thread
        reads a whole one). Nothing is measured here: flush() or a direct measurement from
        this thread would take a reading that races the scheduler's own and could count an
        interval twice. The figure is at most live_interval_s old. The VM share applies to
        the CPU part as at stop().
        """
        tracker = self._tracker
        if tracker is None or self._live_interval_s is None:
            return None
        try:
            cpu_kwh = float(tracker._total_cpu_energy.kWh)
            ram_kwh = float(tracker._total_ram_energy.kWh)
        except (AttributeError, TypeError, ValueError):  # a codecarbon that renamed them
            return None
        if self._share is not None:
            cpu_kwh *= self._share.share
        return cpu_kwh + ram_kwh

    def stop(self) -> Reading:
        if self._tracker is None:
            raise MeterError("codecarbon's tracker was never started")
        if self._tracker.stop() is None:
            raise MeterError(f"codecarbon's tracker failed at stop: {self._errors()}")
        data = self._tracker.final_emissions_data
        cpu_kwh, cpu_method, notes = float(data.cpu_energy), Method.TDP_LOAD_ESTIMATE, []
        if self._rapl:
            cpu_method = Method.RAPL
        elif self._share is not None:
            cpu_kwh *= self._share.share
            cpu_method = Method.VM_SHARE_ESTIMATE
            notes.append(
                f"CPU power scaled to this VM's {self._share.vcpus} of "
                f"{self._share.socket_threads} hardware threads of a {self._model}"
            )
        notes.extend(f"codecarbon: {line}" for line in self._log.lines)
        window = float(data.duration)
        return Reading(
            parts=(
                ComponentReading(Component.CPU, cpu_kwh, cpu_method, window),
                ComponentReading(
                    Component.RAM, float(data.ram_energy), Method.RAM_SIZE_ESTIMATE, window
                ),
            ),
            host={
                "cpu_model": data.cpu_model or self._model or "",
                "cpu_count": data.cpu_count,
                "ram_total_gb": data.ram_total_size,
                "cpu_utilization_pct": data.cpu_utilization_percent,
                "ram_utilization_pct": data.ram_utilization_percent,
                "ram_used_gb": data.ram_used_gb,
                "os": data.os,
                "python_version": data.python_version,
                "codecarbon_version": data.codecarbon_version,
            },
            notes=tuple(notes),
        )

    def _quiet_codecarbon_logger(self) -> None:
        # Each tracker constructor attaches a StreamHandler to stderr, which would print in
        # the middle of the command's own output: swap it for a collector.
        # With CODECARBON_LOG_LEVEL set, its own handler stays and the collector joins it.
        logger = logging.getLogger("codecarbon")
        logger.handlers = [self._log] if self._quiet else [*logger.handlers, self._log]
        if self._quiet:
            logger.setLevel(logging.ERROR)
        logger.propagate = False

    @staticmethod
    def _socket_tdp_matched(cc_cpu: Any) -> bool:
        """Whether codecarbon found this CPU in its table (a whole-socket TDP).

        Unmatched CPUs get 4 W per visible thread, which already fits a VM's share.
        """
        from codecarbon.core.hardware_cache import get_cached_tdp
        from codecarbon.core.util import count_cpus

        tdp = get_cached_tdp(cc_cpu)  # type: ignore[no-untyped-call]
        generic = count_cpus() * cc_cpu.DEFAULT_POWER_PER_CORE
        return tdp.tdp is not None and float(tdp.tdp) != float(generic)

    def _errors(self) -> str:
        return "; ".join(self._log.lines) or "no error was logged"
