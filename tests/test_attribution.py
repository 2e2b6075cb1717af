"""The job's share of shared hardware: which GPUs (NVIDIA_VISIBLE_DEVICES with
CUDA_VISIBLE_DEVICES), its share of a GPU other processes also use (nvml-process-share),
and a container's CPU quota (cgroup-quota-share). NVML through FakeNvml, processes real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import jsonschema
import pynvml
import pytest

from co2gate import emissions, report
from co2gate.intensity import Location, resolve
from co2gate.measure.codecarbon import (
    CodecarbonMeter,
    QuotaShare,
    SocketShare,
    cpu_figure,
    quota_share,
    read_cpu_quota,
)
from co2gate.measure.fake import FakeGpu, FakeNvml
from co2gate.measure.interface import Component, ComponentReading, GpuReading, Method, Reading
from co2gate.measure.nvml import (
    NvidiaVisible,
    NvmlMeter,
    gpu_meter,
    parse_nvidia_visible,
    process_share,
    process_tree,
)
from co2gate.model import Measurement
from co2gate.runner import ChildResult, MeterOutcome

INTERVAL_S = 0.05
H100 = "NVIDIA H100 80GB HBM3"
UUIDS = tuple(f"GPU-{i}a1b2c3d-5d1e-4b7a-9c21-0a1b2c3d4e5{i}" for i in range(8))
MIG_UUID = "MIG-7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"
WH = 1e-3  # kWh per Wh
ROOT = Path(__file__).resolve().parent.parent


def devices(n: int, power_w: float = 300.0) -> list[FakeGpu]:
    return [FakeGpu(i, H100, UUIDS[i], power_w=power_w) for i in range(n)]


def measure(nvml: FakeNvml, seconds: float, **kwargs: object) -> Reading:
    meter = NvmlMeter(nvml, interval_s=INTERVAL_S, **kwargs)  # type: ignore[arg-type]
    meter.start()
    time.sleep(seconds)
    return meter.stop()


# --- NVIDIA_VISIBLE_DEVICES ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, NvidiaVisible("unset")),
        ("all", NvidiaVisible("all")),
        (" all ", NvidiaVisible("all")),
        ("none", NvidiaVisible("none")),
        ("void", NvidiaVisible("void")),
        ("", NvidiaVisible("void")),  # empty: the runtime leaves the container alone
        ("0", NvidiaVisible("list", ("0",))),
        ("2,0", NvidiaVisible("list", ("2", "0"))),
        (" 1 , 3 ,", NvidiaVisible("list", ("1", "3"))),
        (UUIDS[1], NvidiaVisible("list", (UUIDS[1],))),
        (f"0,{MIG_UUID}", NvidiaVisible("list", ("0", MIG_UUID))),
        ("0:1,1:0", NvidiaVisible("list", ("0:1", "1:0"))),
        ("ALL", NvidiaVisible("list", ("ALL",))),  # keywords are lower-case, as the runtime's
    ],
)
def test_parse_nvidia_visible_devices(value: str | None, expected: NvidiaVisible) -> None:
    assert parse_nvidia_visible(value) == expected


@pytest.mark.parametrize(
    ("nvidia", "cuda", "seen", "expected"),
    [
        # NVML sees the host's 4 GPUs: the list is applied here
        (None, None, 4, [0, 1, 2, 3]),
        ("all", None, 4, [0, 1, 2, 3]),
        ("void", None, 4, [0, 1, 2, 3]),
        ("", None, 4, [0, 1, 2, 3]),
        ("none", None, 4, []),
        ("2,3", None, 4, [2, 3]),
        ("3,1,3", None, 4, [3, 1]),
        (f"{UUIDS[2]},0", None, 4, [2, 0]),
        ("1,9", None, 4, [1]),  # 9 names no GPU: dropped, noted
        ("GPU-ffff", None, 4, []),
        (MIG_UUID, None, 4, [3]),  # a MIG slice: its parent GPU
        ("3:0", None, 4, [3]),  # the runtime's gpu:mig form
        # CUDA_VISIBLE_DEVICES indexes within what NVIDIA_VISIBLE_DEVICES exposes
        ("2,3", "1", 4, [3]),
        ("2,3", "1,0", 4, [3, 2]),
        ("2,3", "2", 4, []),  # only two exposed: CUDA's 2 names none
        ("2,3", UUIDS[3], 4, [3]),
        ("2,3", UUIDS[0], 4, []),  # not exposed, so CUDA cannot name it
        ("none", "0", 4, []),
        ("all", "1", 4, [1]),
        # inside the container the runtime built: NVML sees only the exposed GPUs (2 of the
        # host's 8, renumbered 0 and 1), so the host indices are not applied again
        ("6,7", None, 2, [0, 1]),
        ("6,7", "1", 2, [1]),
        (f"{UUIDS[0]},{UUIDS[1]}", None, 2, [0, 1]),
    ],
)
def test_nvidia_and_cuda_visible_devices(
    nvidia: str | None, cuda: str | None, seen: int, expected: list[int]
) -> None:
    gpus = devices(seen)
    gpus[-1].mig_uuids = (MIG_UUID,)
    reading = measure(FakeNvml(gpus), 0.0, visible_devices=cuda, nvidia_visible_devices=nvidia)
    assert [g.index for g in reading.gpus] == expected
    if not expected:
        assert reading.parts[0].method is Method.NONE
        assert reading.notes  # says why no GPU is measured
    if nvidia in ("1,9", "GPU-ffff"):
        assert any("NVIDIA_VISIBLE_DEVICES entry" in n and "ignored" in n for n in reading.notes)
    if nvidia in (MIG_UUID, "3:0"):
        assert any("MIG" in n and "parent GPU 3" in n for n in reading.notes)


def test_gpu_meter_reads_nvidia_visible_devices_from_the_environment() -> None:
    env = {"NVIDIA_VISIBLE_DEVICES": "1,2", "CUDA_VISIBLE_DEVICES": "1"}
    meter = gpu_meter(env, nvml=FakeNvml(devices(4)))
    assert meter is not None
    meter.start()
    assert [g.index for g in meter.stop().gpus] == [2]
    assert gpu_meter({"NVIDIA_VISIBLE_DEVICES": "none"}, nvml=FakeNvml(devices(4))) is None


# --- a GPU shared with other processes ---------------------------------------------------


@pytest.mark.parametrize(
    ("job", "everyone", "expected"),
    [
        (30.0, 40.0, 0.75),
        (1.0, 4.0, 0.25),
        (50.0, 50.0, None),  # nobody else: no change
        (0.0, 0.0, None),  # nothing computed
        (0.0, 20.0, None),  # the job never showed (host pids in a container): whole GPU
    ],
)
def test_process_share(job: float, everyone: float, expected: float | None) -> None:
    assert process_share(job, everyone) == expected


def test_shared_gpu_counts_the_jobs_share_of_its_energy() -> None:
    # The job (this process) 30% SM, a stranger (our parent, not in our tree) 10%: the job
    # gets 30 / (30 + 10) = 75% of the GPU's energy. GPU 1 is the job's alone: unchanged.
    gpus = devices(2, power_w=400.0)
    gpus[0].processes = {os.getpid(): 30, os.getppid(): 10}
    gpus[1].processes = {os.getpid(): 60}
    reading = measure(FakeNvml(gpus), 0.6)

    shared, alone = reading.gpus
    window_s = reading.parts[0].window_s
    whole_kwh = 400.0 * window_s / 3.6e6
    assert shared.method is Method.NVML_PROCESS_SHARE
    assert shared.energy_kwh == pytest.approx(0.75 * whole_kwh, rel=0.02)
    assert shared.mean_power_w == pytest.approx(300.0, rel=0.02)  # 75% of 400 W
    assert alone.method is Method.NVML_ENERGY_COUNTER
    assert alone.energy_kwh == pytest.approx(whole_kwh, rel=0.02)
    assert reading.parts[0].method is Method.NVML_PROCESS_SHARE
    assert reading.parts[0].energy_kwh == pytest.approx(shared.energy_kwh + alone.energy_kwh)
    assert any("GPU 0 was shared" in n and "75.0%" in n for n in reading.notes)


def test_unshared_gpu_is_unchanged() -> None:
    gpus = devices(1)
    gpus[0].processes = {os.getpid(): 80}
    reading = measure(FakeNvml(gpus), 0.3)
    (gpu,) = reading.gpus
    assert gpu.method is Method.NVML_ENERGY_COUNTER
    assert gpu.energy_kwh == pytest.approx(300.0 * reading.parts[0].window_s / 3.6e6, rel=0.02)
    assert not any("shared" in n for n in reading.notes)


def test_a_child_process_of_the_job_counts_as_the_job() -> None:
    # A real child (the measured command is one) computing beside a stranger: 20 vs 20.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gpus = devices(1)
        gpus[0].processes = {child.pid: 20, os.getppid(): 20}
        reading = measure(FakeNvml(gpus), 0.3)
    finally:
        child.kill()
        child.wait()
    (gpu,) = reading.gpus
    assert gpu.method is Method.NVML_PROCESS_SHARE
    assert gpu.energy_kwh == pytest.approx(0.5 * 300.0 * reading.parts[0].window_s / 3.6e6, 0.02)


def test_job_never_seen_on_a_busy_gpu_is_charged_the_whole_gpu() -> None:
    gpus = devices(1)
    gpus[0].processes = {os.getppid(): 90}
    reading = measure(FakeNvml(gpus), 0.3)
    assert reading.gpus[0].method is Method.NVML_ENERGY_COUNTER
    assert reading.gpus[0].energy_kwh == pytest.approx(
        300.0 * reading.parts[0].window_s / 3.6e6, rel=0.02
    )


def test_per_process_sampling_not_supported_leaves_the_gpu_whole() -> None:
    gpus = devices(1)
    gpus[0].processes = None
    reading = measure(FakeNvml(gpus), 0.3)
    assert reading.gpus[0].method is Method.NVML_ENERGY_COUNTER
    assert not reading.notes[:-1]  # only the short-window note


def test_per_process_error_mid_run_stops_sharing_and_says_so() -> None:
    gpus = devices(1)
    gpus[0].processes = {os.getpid(): 10, os.getppid(): 30}
    fake = FakeNvml(gpus)
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    time.sleep(0.2)
    gpus[0].fail("nvmlDeviceGetProcessUtilization", pynvml.NVMLError_NoPermission())
    time.sleep(0.2)
    reading = meter.stop()
    # the samples before the error still count: 10 / 40
    assert reading.gpus[0].method is Method.NVML_PROCESS_SHARE
    assert reading.gpus[0].energy_kwh == pytest.approx(
        0.25 * 300.0 * reading.parts[0].window_s / 3.6e6, rel=0.02
    )
    assert any("nvmlDeviceGetProcessUtilization failed on GPU 0" in n for n in reading.notes)
    assert fake.calls["nvmlDeviceGetProcessUtilization"] >= 2


def test_so_far_applies_the_share() -> None:
    gpus = devices(1, power_w=360.0)
    gpus[0].processes = {os.getpid(): 50, os.getppid(): 50}
    meter = NvmlMeter(FakeNvml(gpus), interval_s=INTERVAL_S)
    meter.start()
    time.sleep(0.5)
    live = meter.so_far()
    reading = meter.stop()
    assert live is not None
    assert 0.0 < live <= reading.parts[0].energy_kwh
    assert live == pytest.approx(0.5 * 360.0 * 0.5 / 3.6e6, rel=0.25)  # at most 1 interval old


def test_process_tree_holds_children_and_grandchildren_only() -> None:
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print(p.pid, flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        tree = process_tree(os.getpid())
        assert {os.getpid(), child.pid, grandchild} <= tree
        assert os.getppid() not in tree
        assert process_tree(child.pid) == {child.pid, grandchild}
    finally:
        child.kill()
        child.wait()
        os.kill(grandchild, 9)


def test_process_tree_reads_a_proc_directory(tmp_path: Path) -> None:
    # comm with spaces and parentheses: the parent id follows the last ")"
    for pid, ppid, comm in [(10, 1, "a"), (11, 10, "b (x) y"), (12, 11, "c"), (20, 1, "d")]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} 0 0\n")
    assert process_tree(10, tmp_path) == {10, 11, 12}
    assert process_tree(99, tmp_path) == {99}


# --- a container's CPU quota -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000\n", None),  # no quota
        ("200000 100000\n", 2.0),
        ("50000 100000", 0.5),
        ("150000 50000\n", 3.0),
        ("", None),
        ("max", None),
        ("-1 100000", None),  # cgroup v1's "no limit", not v2 text
        ("0 100000", None),
        ("200000 0", None),
        ("abc 100000", None),
        ("200000", None),
    ],
)
def test_read_cpu_quota(tmp_path: Path, text: str, expected: float | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert read_cpu_quota(path) == expected


def test_read_cpu_quota_without_the_file(tmp_path: Path) -> None:
    assert read_cpu_quota(tmp_path / "cpu.max") is None  # cgroup v1, or no cpu controller


@pytest.mark.parametrize(
    ("quota", "host", "expected"),
    [
        (2.0, 8, 0.25),
        (0.5, 2, 0.25),
        (8.0, 8, None),  # the whole host: no change
        (16.0, 8, None),  # capped at 1
        (None, 8, None),
    ],
)
def test_quota_share(quota: float | None, host: int, expected: float | None) -> None:
    share = quota_share(quota, host)
    assert (share and share.share) == expected


def test_cpu_figure_quota_of_an_estimate() -> None:
    # 2 of 8 CPUs -> 25% of 40 Wh = 10 Wh
    kwh, method, notes = cpu_figure(
        40 * WH, rapl=False, vm=None, quota=quota_share(2.0, 8), model="x"
    )
    assert kwh == pytest.approx(10 * WH)
    assert method is Method.CGROUP_QUOTA_SHARE
    assert notes == [
        "CPU figure (tdp-load-estimate) scaled to the container's CPU quota: 2 of 8 CPUs "
        "(cgroup cpu.max)"
    ]


def test_cpu_figure_quota_of_rapl() -> None:
    kwh, method, notes = cpu_figure(
        40 * WH, rapl=True, vm=SocketShare(0.5, 4, 8), quota=QuotaShare(0.5, 1.0, 2), model="x"
    )
    assert kwh == pytest.approx(20 * WH)  # RAPL is this machine's: no VM share, only the quota
    assert method is Method.CGROUP_QUOTA_SHARE
    assert "(rapl)" in notes[0]


def test_cpu_figure_vm_then_quota_stack() -> None:
    # A 4-vCPU VM on a 128-thread socket (1/32), a container with 1 of its 4 CPUs (1/4):
    # 64 Wh x 1/32 x 1/4 = 0.5 Wh
    vm = SocketShare(4 / 128, 4, 128)
    kwh, method, notes = cpu_figure(
        64 * WH, rapl=False, vm=vm, quota=quota_share(1.0, 4), model="AMD EPYC 7763 64-Core"
    )
    assert kwh == pytest.approx(0.5 * WH)
    assert method is Method.CGROUP_QUOTA_SHARE
    assert len(notes) == 2
    assert "4 of 128 hardware threads" in notes[0]
    assert "(vm-share-estimate)" in notes[1]


def test_cpu_figure_without_quota_is_unchanged() -> None:
    assert cpu_figure(40 * WH, rapl=False, vm=None, quota=None, model=None) == (
        40 * WH,
        Method.TDP_LOAD_ESTIMATE,
        [],
    )
    assert cpu_figure(40 * WH, rapl=True, vm=None, quota=None, model=None)[1] is Method.RAPL


def test_real_codecarbon_applies_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    host = os.cpu_count() or 1
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(f"{25_000 * host} 100000\n")  # a quarter of the host's CPUs
    meter = CodecarbonMeter(cpu_max_path=cpu_max)
    meter.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        sum(range(10_000))
    reading = meter.stop()
    cpu = next(p for p in reading.parts if p.component is Component.CPU)
    machine_kwh = float(meter._tracker.final_emissions_data.cpu_energy)
    before_quota = machine_kwh * (meter._share.share if meter._share else 1.0)
    assert cpu.method is Method.CGROUP_QUOTA_SHARE
    assert cpu.energy_kwh == pytest.approx(0.25 * before_quota)
    assert cpu.energy_kwh > 0
    assert any(f"0.25 x {host}" in n or f"of {host} CPUs" in n for n in reading.notes)


# --- the new methods in the record and the report ----------------------------------------


def test_new_methods_survive_the_record_and_the_schema() -> None:
    start = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)
    child = ChildResult(
        argv=("python", "train.py"),
        exit_code=0,
        signal=None,
        forwarded=(),
        started_at=start,
        ended_at=start + timedelta(seconds=60),
        duration_s=60.0,
        cpu_s=50.0,
        limit_kg=None,
        guard_stop=None,
    )
    gpu = GpuReading(0, H100, UUIDS[0], 0.005, 300.0, 40.0, Method.NVML_PROCESS_SHARE)
    outcomes = [
        MeterOutcome(
            "nvml",
            reading=Reading(
                parts=(ComponentReading(Component.GPU, 0.005, Method.NVML_PROCESS_SHARE, 60.0),),
                gpus=(gpu,),
            ),
            ready_after_s=0.0,
        ),
        MeterOutcome(
            "codecarbon",
            reading=Reading(
                parts=(
                    ComponentReading(Component.CPU, 0.001, Method.CGROUP_QUOTA_SHARE, 60.0),
                    ComponentReading(Component.RAM, 0.0002, Method.RAM_SIZE_ESTIMATE, 60.0),
                )
            ),
            ready_after_s=1.0,
        ),
    ]
    m = emissions.build(
        child,
        outcomes,
        resolve(Location(intensity_g_per_kwh=100.0, pue=1.0)),
        pue=1.0,
        labels=emissions.RunLabels("train", "training"),
        ci=None,
    )
    doc = json.loads(json.dumps(m.to_json()))
    schema = json.loads(
        resources.files("co2gate").joinpath("schemas/emissions.v1.json").read_text()
    )
    jsonschema.validate(doc, schema)
    assert doc["methods"]["gpu"] == "nvml-process-share"
    assert doc["methods"]["cpu"] == "cgroup-quota-share"
    back = Measurement.from_json(doc, "emissions.json")
    assert back == m
    assert back.methods.of(Component.GPU) is Method.NVML_PROCESS_SHARE
    for method in (Method.NVML_PROCESS_SHARE, Method.CGROUP_QUOTA_SHARE):
        assert not method.is_measured  # the share is an attribution
        assert "share" in report.ABOUT[method]
    lines = "\n".join(report.summary_lines(m))
    assert "cgroup-quota-share" in lines or "nvml-process-share" in lines


# --- the GPU accuracy benchmark ---------------------------------------------------------


def test_gpu_accuracy_benchmark_says_why_it_cannot_run(tmp_path: Path) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver: the benchmark would run for real")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_accuracy.py"), "--seconds", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert line.startswith("gpu_accuracy: cannot run here: ")
    assert list(tmp_path.iterdir()) == []
