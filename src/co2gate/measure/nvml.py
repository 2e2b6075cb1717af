"""GPU energy from NVML: each GPU's own energy counter, else its power samples integrated.

Whole-device figures, for the GPUs that NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES let
the job use. NVML has no per-process energy: where other processes compute on the same GPU,
the job's share of the GPU's SM utilisation (nvmlDeviceGetProcessUtilization) is applied
to that GPU's energy.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from co2gate import fmt
from co2gate.measure.interface import (
    Component,
    ComponentReading,
    GpuReading,
    Meter,
    MeterError,
    Method,
    Reading,
)
from co2gate.units import kwh_to_mean_w, mj_to_kwh, mw_to_w, watt_seconds_to_kwh

log = logging.getLogger("co2gate")

SHORT_WINDOW_S = 2.0  # NVML's counter steps about every 100 ms: windows under ~2 s read low
JOIN_TIMEOUT_S = 5.0  # a sampling thread stuck in an NVML call must not hold up stop()


def _import_pynvml() -> Any:
    """The vendor library (package nvidia-ml-py), imported only when a GPU is to be measured."""
    return importlib.import_module("pynvml")


def _text(value: object) -> str:
    """NVML strings: older pynvml releases return bytes, newer ones str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _call(nvml: Any, call: str, where: str, *args: Any, optional: bool = False) -> Any:
    """One NVML call; its NVMLError comes out as MeterError naming the call and the device.

    With optional=True a NotSupported answer returns None instead.
    """
    try:
        return getattr(nvml, call)(*args)
    except nvml.NVMLError as e:
        if optional and isinstance(e, nvml.NVMLError_NotSupported):
            return None
        raise MeterError(f"NVML {call} failed on {where}: {e}") from e


@dataclass(frozen=True)
class NvidiaVisible:
    """NVIDIA_VISIBLE_DEVICES as the NVIDIA container runtime reads it.

    kind: "unset"; "all"; "none" (driver mounted, no GPU); "void" (also an empty value: the
    runtime leaves the container alone, as runc would); "list" (entries: indices, GPU- or
    MIG- UUIDs, or "gpu:mig" index pairs).
    """

    kind: str
    entries: tuple[str, ...] = ()


def parse_nvidia_visible(value: str | None) -> NvidiaVisible:
    """Read NVIDIA_VISIBLE_DEVICES; keywords are matched as the runtime matches them."""
    if value is None:
        return NvidiaVisible("unset")
    text = value.strip()
    if text in ("", "void"):
        return NvidiaVisible("void")
    if text in ("all", "none"):
        return NvidiaVisible(text)
    return NvidiaVisible("list", tuple(e.strip() for e in text.split(",") if e.strip()))


def _uuids(nvml: Any, indices: Sequence[int]) -> list[str]:
    return [_text(_call(nvml, "nvmlDeviceGetUUID", f"GPU {i}", _handle(nvml, i))) for i in indices]


def _exposed(nvml: Any, count: int, nvidia: str | None) -> tuple[list[int], list[str]]:
    """The NVML indices NVIDIA_VISIBLE_DEVICES gives the job, and notes.

    Inside a container the runtime has applied the variable already: NVML sees only the
    exposed GPUs, renumbered from 0, so host indices in the list no longer mean anything.
    That case shows as NVML seeing no more GPUs than the list names, and every GPU NVML
    sees is kept. Where NVML sees more (a host process, or a runner that sets the variable
    as the job's assignment without a runtime to enforce it), the list is applied here:
    indices as NVML's, UUIDs matched, MIG slices as their parent GPU.
    """
    parsed = parse_nvidia_visible(nvidia)
    if parsed.kind in ("unset", "void", "all"):
        return list(range(count)), []
    if parsed.kind == "none":
        return [], ["NVIDIA_VISIBLE_DEVICES=none: the container runtime gives the job no GPU"]
    if count <= len(parsed.entries):
        return list(range(count)), []
    chosen: list[int] = []
    notes: list[str] = []
    uuids: list[str] = []
    for entry in parsed.entries:
        index: int | None = None
        if entry.startswith(("GPU-", "MIG-")) and not uuids:
            uuids = _uuids(nvml, range(count))
        gpu, colon, mig = entry.partition(":")
        if entry.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        elif entry.startswith("MIG-") or (colon and gpu.isdigit() and mig.isdigit()):
            index = _mig_parent(nvml, entry, uuids) if not colon else int(gpu)
            if index is not None and index < count:
                notes.append(
                    f"NVIDIA_VISIBLE_DEVICES names MIG slice {entry}: MIG slices have no "
                    f"energy counter of their own, so the whole parent GPU {index} is "
                    "measured, other slices' work included"
                )
        elif entry.isascii() and entry.isdigit():
            index = int(entry)
        if index is None or index >= count:
            notes.append(f"NVIDIA_VISIBLE_DEVICES entry {entry!r} names no GPU: ignored")
            continue
        if index not in chosen:
            chosen.append(index)
    return chosen, notes


def _select(
    nvml: Any, count: int, visible: str | None, nvidia: str | None = None
) -> tuple[list[int], list[str]]:
    """The NVML indices the job may use, and notes: NVIDIA_VISIBLE_DEVICES, then within
    what it exposes CUDA_VISIBLE_DEVICES, read as CUDA reads it.

    CUDA numbers the exposed GPUs from 0 (as it does inside the container the runtime
    builds). Indices are taken as NVML (PCI bus) order. CUDA's default order is fastest
    first, so on a machine mixing GPU models they can differ unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID.
    """
    base, notes = _exposed(nvml, count, nvidia)
    if visible is None or not base:
        return base, notes
    if not visible.strip():
        return [], [*notes, "CUDA_VISIBLE_DEVICES is empty: no GPU is visible to the job"]
    chosen: list[int] = []
    uuids: list[str] = []
    for raw in visible.split(","):
        entry = raw.strip()
        index: int | None = None
        if entry.startswith(("GPU-", "MIG-")) and not uuids:
            uuids = _uuids(nvml, base)
        if entry.startswith("GPU-"):
            matches = [base[k] for k, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None  # ambiguous: names no GPU
        elif entry.startswith("MIG-"):
            parent = _mig_parent(nvml, entry, uuids)
            index = None if parent is None else base[parent]
            if index is not None:
                notes.append(
                    f"CUDA_VISIBLE_DEVICES names MIG slice {entry}: MIG slices have no energy "
                    f"counter of their own, so the whole parent GPU {index} is measured, "
                    "other slices' work included"
                )
        elif entry.isascii() and entry.isdigit() and int(entry) < len(base):
            index = base[int(entry)]
        if index is None:
            # CUDA stops at the first entry that names no device: "0,1,-1,2" is GPUs 0 and 1.
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {entry!r} names no GPU: it and the entries "
                "after it are ignored, as CUDA does"
            )
            break
        if index not in chosen:
            chosen.append(index)
    return chosen, notes


def _handle(nvml: Any, index: int) -> Any:
    return _call(nvml, "nvmlDeviceGetHandleByIndex", f"GPU {index}", index)


def _mig_parent(nvml: Any, mig_uuid: str, uuids: Sequence[str]) -> int | None:
    """NVML index of the GPU that holds a MIG slice, or None if NVML does not know the slice."""
    try:
        mig = _call(nvml, "nvmlDeviceGetHandleByUUID", mig_uuid, mig_uuid)
        parent = _call(nvml, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig_uuid, mig)
        parent_uuid = _text(_call(nvml, "nvmlDeviceGetUUID", f"parent of {mig_uuid}", parent))
    except MeterError:
        return None
    return uuids.index(parent_uuid) if parent_uuid in uuids else None


_PROC = Path("/proc")


def process_tree(root: int, proc: Path = _PROC) -> set[int]:
    """root and every process descended from it, from the parent ids in /proc/<pid>/stat."""
    parents: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = {root}, [root]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def process_share(job_sm: float, all_sm: float) -> float | None:
    """The job's share of a GPU from summed SM utilisation samples; None: leave it whole.

    Whole when nobody else computed on it (no change), and also when the job's processes
    never showed up while others did: in a container NVML reports the host's process ids,
    which cannot be told apart from strangers', so the job is charged the whole GPU rather
    than nothing (a budget gate must not under-count).
    """
    if all_sm <= 0 or job_sm <= 0 or job_sm >= all_sm:
        return None
    return job_sm / all_sm


def _model_string(names: Sequence[str]) -> str:
    """'2 x NVIDIA H100 80GB HBM3', as codecarbon's gpu_model; mixed models comma-separated."""
    return ", ".join(f"{n} x {name}" for name, n in Counter(names).items())


def _integrate_kwh(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Energy under (time, W) samples over [t0, t1]: trapezoids, each end held flat."""
    if not samples or t1 <= t0:
        return 0.0
    points = [(min(max(t, t0), t1), w) for t, w in samples]
    points = [(t0, points[0][1]), *points, (t1, points[-1][1])]
    return sum(
        watt_seconds_to_kwh((wa + wb) / 2.0, tb - ta)
        for (ta, wa), (tb, wb) in itertools.pairwise(points)
    )


@dataclass
class _Gpu:
    """What is known about one watched GPU; mutated only under NvmlMeter._lock."""

    index: int
    name: str
    uuid: str
    handle: Any
    has_counter: bool
    counter_mj: int = 0  # last raw counter value: mJ since driver load
    energy_mj: float = 0.0  # counted since the window opened
    power: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, W)
    power_kwh: float = 0.0  # the power samples integrated from the window's start to the last
    util: list[float] | None = field(default_factory=list)  # None: not supported
    util_on: bool = True
    active: bool = True  # False once a read failed: its figures stop there
    last_good_t: float = 0.0
    proc_on: bool = True  # per-process utilisation sampled (False: unsupported or failed)
    proc_ts: int = 0  # NVML's timestamp (us) of the newest per-process sample seen
    job_sm: float = 0.0  # SM utilisation samples of the job's processes, summed
    all_sm: float = 0.0  # the same for every process on the GPU

    def share(self) -> float | None:
        return process_share(self.job_sm, self.all_sm)


class NvmlMeter(Meter):
    """GPU energy over a window, per GPU and in total, from NVML.

    GPUs with an energy counter (Volta and newer) are measured from counter deltas; older
    ones from power samples taken every interval_s and integrated.
    """

    name = "nvml"
    components = (Component.GPU,)

    def __init__(
        self,
        nvml: object | None = None,
        *,
        visible_devices: str | None = None,
        nvidia_visible_devices: str | None = None,
        interval_s: float = 0.5,
        job_pid: int | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._nvml: Any = nvml
        self._visible = visible_devices
        self._nvidia_visible = nvidia_visible_devices
        self._job_pid = os.getpid() if job_pid is None else job_pid  # its tree is the job
        self._job_pids: set[int] = set()
        self._strangers: set[int] = set()  # pids seen on a GPU that are not the job's
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpus: list[_Gpu] = []
        self._notes: list[str] = []
        self._t0 = 0.0
        self._state = "new"  # new -> started -> stopped: one window per meter

    def start(self) -> None:
        """Init NVML, pick the visible GPUs, take the first readings, start sampling."""
        if self._state != "new":
            raise MeterError("nvml: a meter measures one window; make a new one")
        if self._nvml is None:
            try:
                self._nvml = _import_pynvml()
            except ImportError as e:
                raise MeterError("nvml: pynvml (package nvidia-ml-py) is not installed") from e
        nvml = self._nvml
        _call(nvml, "nvmlInit", "this machine")
        try:
            count = int(_call(nvml, "nvmlDeviceGetCount", "this machine"))
            indices, notes = _select(nvml, count, self._visible, self._nvidia_visible)
            gpus = [self._open(index) for index in indices]
        except MeterError:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
            raise
        self._t0 = time.monotonic()
        for gpu in gpus:
            gpu.last_good_t = self._t0
        with self._lock:
            self._gpus = gpus
            self._notes = notes
        self._state = "started"
        if gpus:
            self._thread = threading.Thread(target=self._run, name="co2gate-nvml", daemon=True)
            self._thread.start()

    def _open(self, index: int) -> _Gpu:
        """Name a GPU and take its first reading; raises MeterError naming the GPU and call."""
        nvml = self._nvml
        where = f"GPU {index}"
        handle = _handle(nvml, index)
        name = _text(_call(nvml, "nvmlDeviceGetName", where, handle))
        uuid = _text(_call(nvml, "nvmlDeviceGetUUID", where, handle))
        where = f"GPU {index} ({name})"
        # Energy counter: mJ since driver load, Volta and newer; NotSupported before.
        counter = _call(nvml, "nvmlDeviceGetTotalEnergyConsumption", where, handle, optional=True)
        gpu = _Gpu(index, name, uuid, handle, has_counter=counter is not None)
        if counter is not None:
            gpu.counter_mj = int(counter)
        else:
            milliwatts = _call(nvml, "nvmlDeviceGetPowerUsage", where, handle, optional=True)
            if milliwatts is None:
                raise MeterError(f"NVML on {where}: neither energy counter nor power reading")
            gpu.power.append((time.monotonic(), mw_to_w(float(milliwatts))))
        rates = _call(nvml, "nvmlDeviceGetUtilizationRates", where, handle, optional=True)
        if rates is None:
            gpu.util, gpu.util_on = None, False
        else:
            gpu.util = [float(rates.gpu)]
        # Per-process samples already in NVML's buffer are from before the window: skip them.
        gpu.proc_ts = int(time.time() * 1e6)  # NVML stamps them in wall-clock microseconds
        return gpu

    def _processes(self, gpu: _Gpu) -> None:
        """Add the per-process SM samples since the last call to the GPU's job/all sums."""
        if not gpu.proc_on:
            return
        nvml = self._nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(gpu.handle, gpu.proc_ts)
        except nvml.NVMLError as e:
            if isinstance(e, nvml.NVMLError_NotFound) or getattr(e, "value", None) == 0:
                return  # no sample since the last call (pynvml raises NVMLError(0) too)
            gpu.proc_on = False
            if not isinstance(e, nvml.NVMLError_NotSupported):
                with self._lock:
                    self._notes.append(
                        f"NVML nvmlDeviceGetProcessUtilization failed on GPU {gpu.index} "
                        f"({gpu.name}): {e}; the GPU's energy is not shared out after that"
                    )
            return
        job = all_ = 0.0
        for sample in samples:
            gpu.proc_ts = max(gpu.proc_ts, int(sample.timeStamp))
            sm = float(sample.smUtil)
            if sm <= 0:
                continue
            pid = int(sample.pid)
            if pid not in self._job_pids and pid not in self._strangers:
                self._job_pids = process_tree(self._job_pid)  # a new process of the job?
                if pid not in self._job_pids:
                    self._strangers.add(pid)
            all_ += sm
            if pid in self._job_pids:
                job += sm
        with self._lock:
            gpu.job_sm += job
            gpu.all_sm += all_

    def _run(self) -> None:
        """Sampling thread: read every GPU every interval_s until stop() sets the event."""
        try:
            while not self._stop_event.wait(self._interval_s):
                for gpu in self._gpus:
                    if gpu.active:
                        self._sample(gpu)
        except Exception as e:  # a bug here must show in the reading, not vanish with the thread
            with self._lock:
                self._notes.append(f"GPU sampling stopped early: {e!r}")

    def _sample(self, gpu: _Gpu) -> None:
        """Read one GPU; on an NVML error keep its figures so far, stop watching it, note it."""
        nvml = self._nvml
        where = f"GPU {gpu.index} ({gpu.name})"
        self._processes(gpu)  # first: the window's end is the energy read, not this one
        try:
            if gpu.has_counter:
                counter = int(_call(nvml, "nvmlDeviceGetTotalEnergyConsumption", where, gpu.handle))
                watts = None
            else:
                counter = None
                watts = mw_to_w(float(_call(nvml, "nvmlDeviceGetPowerUsage", where, gpu.handle)))
            now = time.monotonic()
        except MeterError as e:
            with self._lock:
                gpu.active = False
                self._notes.append(
                    f"{e}; its energy covers only the first "
                    f"{fmt.duration(gpu.last_good_t - self._t0)}"
                )
            return
        utilization: float | None = None
        util_error: MeterError | None = None
        if gpu.util_on:
            try:
                rates = _call(nvml, "nvmlDeviceGetUtilizationRates", where, gpu.handle)
                utilization = float(rates.gpu)
            except MeterError as e:
                util_error = e
        with self._lock:
            if counter is not None:
                # Lower than the last read: the driver reloaded and the counter restarted at
                # 0, so the value itself is the energy since; at most one interval is lost.
                delta = counter - gpu.counter_mj if counter >= gpu.counter_mj else counter
                gpu.energy_mj += delta
                gpu.counter_mj = counter
            if watts is not None:
                if gpu.power:  # one more trapezoid, as _integrate_kwh adds them up at stop
                    then, before = gpu.power[-1]
                    start = max(then, self._t0)
                    if now > start:
                        gpu.power_kwh += watt_seconds_to_kwh((before + watts) / 2.0, now - start)
                gpu.power.append((now, watts))
            gpu.last_good_t = now
            if utilization is not None and gpu.util is not None:
                gpu.util.append(utilization)
            if util_error is not None:
                gpu.util_on = False
                self._notes.append(f"{util_error}; utilisation not sampled after that")

    def so_far(self) -> float | None:
        """GPU energy since start() as of the sampling thread's last reading (every interval_s).

        No NVML call: the counter deltas (or integrated power samples) that the sampling
        thread has already taken, so the figure is at most one interval old.
        """
        if self._state != "started":
            return None
        with self._lock:
            return sum(
                (mj_to_kwh(gpu.energy_mj) if gpu.has_counter else gpu.power_kwh)
                * (gpu.share() or 1.0)
                for gpu in self._gpus
            )

    def stop(self) -> Reading:
        """Stop sampling, take the last readings, shut NVML down, return the window's energy."""
        if self._state != "started":
            raise MeterError("nvml: stop() called without a running start()")
        self._state = "stopped"
        self._stop_event.set()
        hung = False
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            hung = self._thread.is_alive()
        if hung:  # a final read racing the thread's could count a stale value as a reset
            with self._lock:
                self._notes.append(
                    f"GPU sampling thread still busy after {JOIN_TIMEOUT_S:.0f} s (an NVML "
                    "call hung?): energy is as of its last completed reading"
                )
        else:
            for gpu in self._gpus:
                if gpu.active:
                    self._sample(gpu)
        t1 = time.monotonic()
        try:
            _call(self._nvml, "nvmlShutdown", "this machine")
        except MeterError as e:  # the figures are read already; losing them would help no one
            with self._lock:
                self._notes.append(str(e))
        with self._lock:
            return self._reading(t1)

    def _reading(self, t1: float) -> Reading:
        window_s = t1 - self._t0
        gpus: list[GpuReading] = []
        notes = list(self._notes)
        for gpu in self._gpus:
            if gpu.has_counter:
                energy_kwh = mj_to_kwh(gpu.energy_mj)
                method = Method.NVML_ENERGY_COUNTER
            else:
                end = t1 if gpu.active else gpu.last_good_t
                energy_kwh = _integrate_kwh(gpu.power, self._t0, end)
                method = Method.NVML_POWER_SAMPLING
            util = sum(gpu.util) / len(gpu.util) if gpu.util else None
            share = gpu.share()
            if share is not None:
                energy_kwh *= share
                method = Method.NVML_PROCESS_SHARE
                notes.append(
                    f"GPU {gpu.index} was shared with other processes: the job's processes "
                    f"had {fmt.pct(share)} of its SM utilisation samples, so that share "
                    "of its energy is counted"
                )
            gpus.append(
                GpuReading(
                    index=gpu.index,
                    name=gpu.name,
                    uuid=gpu.uuid,
                    energy_kwh=max(energy_kwh, 0.0),
                    mean_power_w=kwh_to_mean_w(max(energy_kwh, 0.0), window_s),
                    mean_utilization_pct=util,
                    method=method,
                )
            )
        if not self._gpus:
            part_method = Method.NONE
        elif any(g.method is Method.NVML_PROCESS_SHARE for g in gpus):
            part_method = Method.NVML_PROCESS_SHARE
        elif all(gpu.has_counter for gpu in self._gpus):
            part_method = Method.NVML_ENERGY_COUNTER
        else:
            part_method = Method.NVML_POWER_SAMPLING
        if not all(gpu.has_counter for gpu in self._gpus):
            sampled = ", ".join(str(gpu.index) for gpu in self._gpus if not gpu.has_counter)
            notes.append(
                f"GPU {sampled}: no energy counter (pre-Volta); power sampled every "
                f"{self._interval_s:g} s and integrated, which can be off by tens of percent"
            )
        if window_s < SHORT_WINDOW_S and any(gpu.has_counter for gpu in self._gpus):
            notes.append(
                f"GPU window was {fmt.duration(window_s)}: NVML's counter reads low under about 2 s"
            )
        total_kwh = sum(g.energy_kwh for g in gpus)
        return Reading(
            parts=(ComponentReading(Component.GPU, total_kwh, part_method, window_s),),
            gpus=tuple(gpus),
            host={"gpu_count": len(gpus), "gpu_model": _model_string([g.name for g in gpus])},
            notes=tuple(notes),
        )


def gpu_meter(env: Mapping[str, str] = os.environ, nvml: object | None = None) -> NvmlMeter | None:
    """An NvmlMeter for the GPUs the job can see, or None where it sees none.

    No driver is the normal case on CPU runners: one INFO line, never an error. The probe
    is cheap: init, count, shutdown (plus UUID look-ups if CUDA_VISIBLE_DEVICES has UUIDs).
    """
    lib: Any = nvml
    if lib is None:
        try:
            lib = _import_pynvml()
        except ImportError:
            log.info("pynvml (nvidia-ml-py) not installed: GPU energy not measured")
            return None
    try:
        lib.nvmlInit()
    except lib.NVMLError as e:
        log.info("no NVIDIA driver found (%s): GPU energy not measured", e)
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    nvidia = env.get("NVIDIA_VISIBLE_DEVICES")
    try:
        count = int(lib.nvmlDeviceGetCount())
        chosen, _ = _select(lib, count, visible, nvidia)
    except (lib.NVMLError, MeterError) as e:
        log.warning("NVML failed while listing GPUs (%s): GPU energy not measured", e)
        return None
    finally:
        with contextlib.suppress(lib.NVMLError):
            lib.nvmlShutdown()
    if not chosen:
        if count == 0:
            log.info("NVML found no GPU: GPU energy not measured")
        else:
            log.info(
                "CUDA_VISIBLE_DEVICES=%r, NVIDIA_VISIBLE_DEVICES=%r select no GPU: "
                "GPU energy not measured",
                visible,
                nvidia,
            )
        return None
    return NvmlMeter(lib, visible_devices=visible, nvidia_visible_devices=nvidia)
