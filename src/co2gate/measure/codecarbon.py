"""CPU and RAM energy through codecarbon's OfflineEmissionsTracker, configured explicitly."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import math
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
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2; inside a container, the container's


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


def read_cpu_quota(path: Path = _CPU_MAX) -> float | None:
    """The CPUs a cgroup v2 quota allows: "200000 100000" -> 2.0; None for "max" (no quota),
    a missing file (cgroup v1, no controller) or text that is not a quota."""
    try:
        fields = path.read_text(errors="replace").split()
    except OSError:
        return None
    if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
        return None  # "max 100000", or not cpu.max at all
    quota_us, period_us = int(fields[0]), int(fields[1])
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


@dataclass(frozen=True)
class QuotaShare:
    share: float  # the quota's CPUs over the host's
    quota_cpus: float
    host_cpus: int


def quota_share(quota_cpus: float | None, host_cpus: int) -> QuotaShare | None:
    """The share of the host's CPUs a container's quota allows; None when it allows them all."""
    if quota_cpus is None or host_cpus <= 0 or quota_cpus >= host_cpus:
        return None
    return QuotaShare(quota_cpus / host_cpus, quota_cpus, host_cpus)


def cpu_figure(
    machine_kwh: float,
    *,
    rapl: bool,
    vm: SocketShare | None,
    quota: QuotaShare | None,
    model: str | None,
) -> tuple[float, Method, list[str]]:
    """The job's CPU energy, its method and notes, from codecarbon's machine-wide figure.

    The VM share (socket TDP -> this VM's vCPUs) and the quota share (this VM's CPUs -> the
    container's quota) stack: each is a fraction of the one before.
    """
    kwh, method, notes = machine_kwh, Method.TDP_LOAD_ESTIMATE, []
    if rapl:
        method = Method.RAPL
    elif vm is not None:
        kwh *= vm.share
        method = Method.VM_SHARE_ESTIMATE
        notes.append(
            f"CPU power scaled to this VM's {vm.vcpus} of {vm.socket_threads} hardware "
            f"threads of a {model}"
        )
    if quota is not None:
        kwh *= quota.share
        notes.append(
            f"CPU figure ({method.value}) scaled to the container's CPU quota: "
            f"{quota.quota_cpus:g} of {quota.host_cpus} CPUs (cgroup cpu.max)"
        )
        method = Method.CGROUP_QUOTA_SHARE
    return kwh, method, notes


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


@functools.cache
def cpu_power_table() -> tuple[list[str], dict[str, str]]:
    """codecarbon's CPU TDP table (data/hardware/cpu_power.csv): the names in file order, and
    each name's TDP as written (its first row, as codecarbon's lookup takes it; a few are not
    numbers, e.g. "27.29.5", which codecarbon's float() refuses too)."""
    from importlib.resources import files

    text = (files("codecarbon") / "data" / "hardware" / "cpu_power.csv").read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    names = [row["Name"] for row in rows]
    tdp: dict[str, str] = {}
    for row in rows:
        tdp.setdefault(row["Name"], row["TDP"] or "")
    return names, tdp


@contextlib.contextmanager
def _tdp_table_without_pandas(cc_cpu: Any) -> Iterator[None]:
    """Let codecarbon look its CPU up in its TDP table read with csv, not pandas.

    codecarbon's TDP lookup loads the table with pandas.read_csv: importing pandas and numpy
    for one column of names costs about 0.5 s of CPU beside the command, more than all the
    rest of co2gate's start. The match itself stays codecarbon's (TDP._get_matching_cpu,
    over the same names in the same order); only the loading changes. A codecarbon whose
    TDP class has changed shape keeps its own lookup.
    """
    tdp_class: Any = getattr(cc_cpu, "TDP", None)
    original = getattr(tdp_class, "_get_cpu_power_from_registry", None)
    if original is None or not hasattr(tdp_class, "_get_matching_cpu"):
        yield
        return

    def from_registry(self: Any, cpu_model_raw: str) -> float | None:
        names, tdp = cpu_power_table()
        match = self._get_matching_cpu(cpu_model_raw, {"Name": names})
        if not match:
            return None
        return float(tdp[match]) if tdp[match].strip() else math.nan  # pandas: empty is NaN

    tdp_class._get_cpu_power_from_registry = from_registry
    try:
        yield
    finally:
        tdp_class._get_cpu_power_from_registry = original


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
        self,
        cpuinfo_path: Path = _PROC_CPUINFO,
        *,
        live_interval_s: float | None = None,
        cpu_max_path: Path = _CPU_MAX,
    ) -> None:
        if live_interval_s is not None and live_interval_s <= 0:
            raise ValueError(f"live_interval_s must be positive, got {live_interval_s}")
        self._cpuinfo_path = cpuinfo_path
        self._cpu_max_path = cpu_max_path
        self._quota: QuotaShare | None = None
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
        with _cpu_brand_from(facts.model), contextlib.ExitStack() as patches:
            from codecarbon import OfflineEmissionsTracker
            from codecarbon.core import cpu as cc_cpu

            _machine_not_slurm_job()
            patches.enter_context(_tdp_table_without_pandas(cc_cpu))
            tracker = OfflineEmissionsTracker(
                project_name="co2gate",
                # No place: co2gate prices the energy itself (intensity is forced to 0 here), and
                # naming a country makes codecarbon load all its tables, CSVs through pandas.
                country_iso_code=None,
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
            self._quota = quota_share(read_cpu_quota(self._cpu_max_path), os.cpu_count() or 1)
            self._tracker = tracker  # last: so_far() must not see it before _share is known

    def so_far(self) -> float | None:
        """CPU and RAM kWh as of the tracker's last scheduled reading; None unless live.

        Reads the running totals that codecarbon's scheduler keeps, `_total_cpu_energy` and
        `_total_ram_energy` (each reading replaces the Energy object, so another thread
        reads a whole one). Nothing is measured here: flush() or a direct measurement from
        this thread would take a reading that races the scheduler's own and could count an
        interval twice. The figure is at most live_interval_s old. The VM and quota shares
        apply to the CPU part as at stop().
        """
        tracker = self._tracker
        if tracker is None or self._live_interval_s is None:
            return None
        try:
            cpu_kwh = float(tracker._total_cpu_energy.kWh)
            ram_kwh = float(tracker._total_ram_energy.kWh)
        except (AttributeError, TypeError, ValueError):  # a codecarbon that renamed them
            return None
        cpu_kwh, _, _ = cpu_figure(
            cpu_kwh, rapl=self._rapl, vm=self._share, quota=self._quota, model=self._model
        )
        return cpu_kwh + ram_kwh

    def stop(self) -> Reading:
        if self._tracker is None:
            raise MeterError("codecarbon's tracker was never started")
        if self._tracker.stop() is None:
            raise MeterError(f"codecarbon's tracker failed at stop: {self._errors()}")
        data = self._tracker.final_emissions_data
        cpu_kwh, cpu_method, notes = cpu_figure(
            float(data.cpu_energy),
            rapl=self._rapl,
            vm=self._share,
            quota=self._quota,
            model=self._model,
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


def _machine_not_slurm_job() -> None:
    """Make codecarbon count this machine's CPUs and RAM, never the SLURM job's.

    Under SLURM codecarbon sizes CPU and RAM from `scontrol show job` (the whole job, all its
    nodes: wrong for a machine-mode reading), and where scontrol is not on PATH (a container
    on a SLURM node) the FileNotFoundError stops its tracker from starting at all. It reads
    SLURM_JOB_ID once, at import, into these two modules.
    """
    from codecarbon.core import util
    from codecarbon.external import ram

    for module in (util, ram):
        setattr(module, "SLURM_JOB_ID", None)  # noqa: B010  (ram only imports the name)
