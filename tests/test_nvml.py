"""NvmlMeter against FakeNvml: the real meter and its real sampling thread, a fake vendor library.

Timing tolerances: the fake's counter integrates power over real time, and the meter reads
it just before it notes each end of its window, so counter energy and power x window differ
only by the scheduling delay between a read and the clock read beside it (well under 1 ms
when idle) plus 1 mJ of integer truncation per read. 2% of a 0.6 s window is 12 ms of slack,
enough for a loaded CI machine.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import pynvml
import pytest

from co2gate.measure.fake import FakeGpu, FakeMeter, FakeNvml
from co2gate.measure.interface import Component, MeterError, Method, Reading
from co2gate.measure.nvml import NvmlMeter, gpu_meter

INTERVAL_S = 0.05
H100 = "NVIDIA H100 80GB HBM3"
P100 = "Tesla P100-PCIE-16GB"  # Pascal: no energy counter
UUIDS = (
    "GPU-8f3c2a10-5d1e-4b7a-9c21-0a1b2c3d4e5f",
    "GPU-8f3d9e77-1234-4abc-8def-112233445566",
    "GPU-1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff",
)
MIG_UUID = "MIG-7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"


def gpus(*powers: float, counter: bool = True, util: int | None = 50) -> list[FakeGpu]:
    return [
        FakeGpu(i, H100, UUIDS[i], power_w=p, has_energy_counter=counter, utilization_pct=util)
        for i, p in enumerate(powers)
    ]


def measure(nvml: FakeNvml, seconds: float, visible: str | None = None) -> Reading:
    meter = NvmlMeter(nvml, visible_devices=visible, interval_s=INTERVAL_S)
    meter.start()
    time.sleep(seconds)
    return meter.stop()


def co2gate_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "co2gate"]


# --- energy ---------------------------------------------------------------------------


def test_counter_energy_is_power_times_window() -> None:
    fake = FakeNvml(gpus(300.0))
    reading = measure(fake, 0.6)

    (part,) = reading.parts
    (gpu,) = reading.gpus
    assert part.component is Component.GPU
    assert part.method is Method.NVML_ENERGY_COUNTER
    assert gpu.method is Method.NVML_ENERGY_COUNTER
    assert part.window_s >= 0.6
    # 300 W x 0.6 s = 180 J = 180 / 3.6e6 kWh = 5.0e-5 kWh; the window is a little longer.
    assert part.energy_kwh >= 5.0e-5 * 0.98
    assert part.energy_kwh == pytest.approx(300.0 * part.window_s / 3.6e6, rel=0.02)
    assert gpu.energy_kwh == part.energy_kwh
    assert gpu.mean_power_w == pytest.approx(300.0, rel=0.02)
    assert (gpu.index, gpu.name, gpu.uuid) == (0, H100, UUIDS[0])
    assert any("reads low under about 2 s" in note for note in reading.notes)
    assert not fake.initialized  # stop() shut NVML down
    assert NvmlMeter.components == (Component.GPU,)


def test_sampling_integrates_constant_power_when_no_counter() -> None:
    fake = FakeNvml(gpus(250.0, counter=False))
    reading = measure(fake, 0.4)

    (part,) = reading.parts
    assert part.method is Method.NVML_POWER_SAMPLING
    assert reading.gpus[0].method is Method.NVML_POWER_SAMPLING
    # 250 W held: the trapezoids sum to exactly 250 W x window.
    assert part.energy_kwh == pytest.approx(250.0 * part.window_s / 3.6e6, rel=1e-6)
    assert any("no energy counter" in note for note in reading.notes)
    assert not any("reads low" in note for note in reading.notes)


def _step(t_step: float) -> Callable[[float], float]:
    return lambda elapsed: 100.0 if elapsed < t_step else 400.0


def _step_energy_j(t_step: float, a: float, b: float) -> float:
    below = max(0.0, min(b, t_step) - a)
    return 100.0 * below + 400.0 * (b - a - below)


def test_sampling_follows_a_power_step() -> None:
    """100 W then 400 W from 0.1 s: about 10 J + 160 J over 0.5 s. Start and end samples alone
    would give (100 + 400) / 2 x 0.5 = 125 J; the thread's samples must catch the step."""
    fake = FakeNvml([FakeGpu(0, P100, UUIDS[0], power_w=_step(0.1), has_energy_counter=False)])
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    before_start = time.monotonic() - fake.created_at
    meter.start()
    after_start = time.monotonic() - fake.created_at
    time.sleep(0.5)
    before_stop = time.monotonic() - fake.created_at
    reading = meter.stop()
    after_stop = time.monotonic() - fake.created_at

    energy_j = reading.parts[0].energy_kwh * 3.6e6
    # One interval straddles the step: a trapezoid there is off by at most 300 W x dt / 2.
    slack_j = 300.0 * (INTERVAL_S + 0.05) / 2
    assert energy_j >= _step_energy_j(0.1, after_start, before_stop) - slack_j
    assert energy_j <= _step_energy_j(0.1, before_start, after_stop) + slack_j


def test_counter_reset_mid_run_loses_at_most_one_interval() -> None:
    fake = FakeNvml(gpus(300.0))
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    time.sleep(0.3)
    fake.gpus[0].reset_counter()  # driver reload: the counter restarts at 0
    time.sleep(0.3)
    reading = meter.stop()

    window = reading.parts[0].window_s
    energy_j = reading.parts[0].energy_kwh * 3.6e6
    assert energy_j <= 300.0 * window * 1.02
    assert energy_j >= 300.0 * (window - INTERVAL_S - 0.03)


def test_counter_reset_just_before_stop() -> None:
    """The final read is the one lower than the last: still no negative, no big loss."""
    fake = FakeNvml(gpus(300.0))
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    time.sleep(0.3)
    fake.gpus[0].reset_counter()
    reading = meter.stop()

    window = reading.parts[0].window_s
    energy_j = reading.parts[0].energy_kwh * 3.6e6
    assert 300.0 * (window - INTERVAL_S - 0.03) <= energy_j <= 300.0 * window * 1.02
    assert reading.gpus[0].mean_power_w > 0


def test_several_gpus_each_and_in_total() -> None:
    fake = FakeNvml(
        [
            FakeGpu(0, H100, UUIDS[0], power_w=100.0),
            FakeGpu(1, H100, UUIDS[1], power_w=200.0),
            FakeGpu(2, P100, UUIDS[2], power_w=150.0, has_energy_counter=False),
        ]
    )
    reading = measure(fake, 0.4)

    (part,) = reading.parts
    assert [g.index for g in reading.gpus] == [0, 1, 2]
    for gpu, watts in zip(reading.gpus, (100.0, 200.0, 150.0), strict=True):
        assert gpu.mean_power_w == pytest.approx(watts, rel=0.02)
        assert gpu.energy_kwh == pytest.approx(watts * part.window_s / 3.6e6, rel=0.02)
    assert [g.method for g in reading.gpus] == [
        Method.NVML_ENERGY_COUNTER,
        Method.NVML_ENERGY_COUNTER,
        Method.NVML_POWER_SAMPLING,
    ]
    assert part.method is Method.NVML_POWER_SAMPLING  # not every GPU has a counter
    assert part.energy_kwh == pytest.approx(sum(g.energy_kwh for g in reading.gpus), rel=1e-12)
    assert part.energy_kwh == pytest.approx(450.0 * part.window_s / 3.6e6, rel=0.02)
    assert reading.host == {"gpu_count": 3, "gpu_model": f"2 x {H100}, 1 x {P100}"}


def test_mean_utilisation_and_none_when_unsupported() -> None:
    fake = FakeNvml(
        [
            FakeGpu(0, H100, UUIDS[0], utilization_pct=70),
            FakeGpu(1, P100, UUIDS[1], has_energy_counter=False, utilization_pct=None),
        ]
    )
    reading = measure(fake, 0.15)
    assert reading.gpus[0].mean_utilization_pct == pytest.approx(70.0)
    assert reading.gpus[1].mean_utilization_pct is None


# --- which GPUs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [0, 1, 2]),
        ("1", [1]),
        ("2,0", [2, 0]),
        (" 0, 2 ", [0, 2]),
        ("1,1", [1]),
        ("0,-1,1", [0]),  # CUDA stops at the first entry that names no GPU
        ("0,1,-1,2", [0, 1]),
        ("7", []),
        ("-1", []),
        ("", []),
        ("GPU-8f3c", [0]),  # a unique UUID prefix
        (UUIDS[2], [2]),
        ("GPU-8f3", []),  # matches two GPUs
        ("GPU-8f3d,0", [1, 0]),
        ("GPU-ffff", []),
        (MIG_UUID, [2]),  # a MIG slice: its parent GPU is measured
        ("MIG-00000000-0000-0000-0000-000000000000", []),
    ],
)
def test_cuda_visible_devices(visible: str | None, expected: list[int]) -> None:
    devices = gpus(100.0, 200.0, 300.0)
    devices[2].mig_uuids = (MIG_UUID,)
    reading = measure(FakeNvml(devices), 0.0, visible=visible)
    assert [g.index for g in reading.gpus] == expected
    assert reading.host["gpu_count"] == len(expected)
    if not expected:
        assert reading.parts[0].method is Method.NONE
        assert reading.parts[0].energy_kwh == 0.0
        assert reading.notes  # says why no GPU was measured
    if visible == MIG_UUID:
        assert any("MIG" in note and "parent GPU 2" in note for note in reading.notes)


@pytest.mark.parametrize("visible", ["", "-1", "5", "GPU-ffff"])
def test_gpu_meter_none_when_no_gpu_is_visible(
    visible: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="co2gate")
    fake = FakeNvml(gpus(100.0, 200.0))
    assert gpu_meter({"CUDA_VISIBLE_DEVICES": visible}, nvml=fake) is None
    (record,) = co2gate_records(caplog)
    assert record.levelno == logging.INFO
    assert not fake.initialized


def test_gpu_meter_probe_is_cheap_and_returns_a_meter() -> None:
    fake = FakeNvml(gpus(100.0, 200.0))
    meter = gpu_meter({}, nvml=fake)
    assert isinstance(meter, NvmlMeter)
    assert fake.calls == {"nvmlInit": 1, "nvmlDeviceGetCount": 1, "nvmlShutdown": 1}
    assert not fake.initialized


def test_gpu_meter_passes_cuda_visible_devices_on() -> None:
    meter = gpu_meter({"CUDA_VISIBLE_DEVICES": "1"}, nvml=FakeNvml(gpus(100.0, 200.0)))
    assert meter is not None
    meter.start()
    assert [g.index for g in meter.stop().gpus] == [1]


# --- no driver, errors ------------------------------------------------------------------


def test_no_driver_gpu_meter_is_none_with_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="co2gate")
    assert gpu_meter({}, nvml=FakeNvml(gpus(100.0), init_error=True)) is None
    (record,) = co2gate_records(caplog)
    assert record.levelno == logging.INFO
    assert "no NVIDIA driver" in record.getMessage()


def test_no_pynvml_gpu_meter_is_none(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="co2gate")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    assert gpu_meter({}) is None
    (record,) = co2gate_records(caplog)
    assert record.levelno == logging.INFO


def _real_driver() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_real_driver(), reason="this machine has an NVIDIA driver")
def test_real_pynvml_without_driver_gpu_meter_is_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="co2gate")
    assert gpu_meter({}) is None
    assert len(co2gate_records(caplog)) == 1


def test_no_driver_start_raises_meter_error() -> None:
    meter = NvmlMeter(FakeNvml(gpus(100.0), init_error=True))
    with pytest.raises(MeterError, match="nvmlInit") as info:
        meter.start()
    assert isinstance(info.value.__cause__, pynvml.NVMLError_LibraryNotFound)


def test_start_error_names_gpu_and_call_and_shuts_down() -> None:
    fake = FakeNvml(gpus(100.0, 200.0))
    fake.gpus[1].fail("nvmlDeviceGetName", pynvml.NVMLError_NoPermission())
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    with pytest.raises(MeterError, match=r"nvmlDeviceGetName failed on GPU 1") as info:
        meter.start()
    assert isinstance(info.value.__cause__, pynvml.NVMLError)
    assert not fake.initialized


@pytest.mark.parametrize(
    ("counter", "call"),
    [(True, "nvmlDeviceGetTotalEnergyConsumption"), (False, "nvmlDeviceGetPowerUsage")],
)
def test_error_mid_run_keeps_figures_so_far_and_notes_it(counter: bool, call: str) -> None:
    fake = FakeNvml(
        [
            FakeGpu(0, H100, UUIDS[0], power_w=300.0, has_energy_counter=counter),
            FakeGpu(1, H100, UUIDS[1], power_w=100.0),
        ]
    )
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    after_start = time.monotonic()
    time.sleep(0.2)
    failed_at = time.monotonic()
    fake.gpus[0].fail(call)  # GPU is lost
    time.sleep(0.2)
    reading = meter.stop()

    lost, healthy = reading.gpus
    window = reading.parts[0].window_s
    lost_j = lost.energy_kwh * 3.6e6
    # Counted up to its last good read: within one interval (plus scheduling) before the failure.
    assert 300.0 * (failed_at - after_start - INTERVAL_S - 0.03) <= lost_j
    assert lost_j <= 300.0 * (failed_at - after_start + 0.03)
    assert healthy.mean_power_w == pytest.approx(100.0, rel=0.02)
    assert reading.parts[0].energy_kwh == pytest.approx(lost.energy_kwh + healthy.energy_kwh)
    assert window >= 0.4
    (note,) = [n for n in reading.notes if call in n]
    assert "GPU 0" in note and "GPU is lost" in note
    assert not fake.initialized


def test_utilisation_error_mid_run_keeps_energy() -> None:
    fake = FakeNvml(gpus(300.0, util=80))
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    time.sleep(0.15)
    fake.gpus[0].fail("nvmlDeviceGetUtilizationRates")
    time.sleep(0.15)
    reading = meter.stop()
    (gpu,) = reading.gpus
    assert gpu.mean_utilization_pct == pytest.approx(80.0)
    assert gpu.mean_power_w == pytest.approx(300.0, rel=0.02)
    assert any("nvmlDeviceGetUtilizationRates" in note for note in reading.notes)


def test_shutdown_error_still_returns_the_reading() -> None:
    fake = FakeNvml(gpus(300.0))
    meter = NvmlMeter(fake, interval_s=INTERVAL_S)
    meter.start()
    fake.failures["nvmlShutdown"] = pynvml.NVMLError_Unknown()
    reading = meter.stop()
    assert reading.gpus[0].energy_kwh > 0
    assert any("nvmlShutdown" in note for note in reading.notes)


def test_stop_returns_at_once_not_after_an_interval() -> None:
    meter = NvmlMeter(FakeNvml(gpus(300.0)), interval_s=5.0)
    meter.start()
    began = time.monotonic()
    meter.stop()
    assert time.monotonic() - began < 0.5


def test_one_window_per_meter() -> None:
    meter = NvmlMeter(FakeNvml(gpus(300.0)), interval_s=INTERVAL_S)
    with pytest.raises(MeterError):
        meter.stop()
    meter.start()
    with pytest.raises(MeterError):
        meter.start()
    meter.stop()
    with pytest.raises(MeterError):
        meter.stop()


# --- FakeMeter, used by the runner's tests ------------------------------------------------


def test_fake_meter_energy_is_power_times_window() -> None:
    meter = FakeMeter({Component.CPU: 36.0, Component.RAM: 10.0}, setup_s=0.05)
    began = time.monotonic()
    meter.start()
    assert time.monotonic() - began >= 0.05
    time.sleep(0.1)
    assert meter.components == (Component.CPU, Component.RAM)
    cpu, ram = meter.stop().parts
    assert cpu.method is Method.FAKE and cpu.window_s >= 0.1
    # 36 W x 0.1 s = 3.6 J = 1e-6 kWh
    assert cpu.energy_kwh == pytest.approx(1e-6 * cpu.window_s / 0.1)
    assert ram.energy_kwh == pytest.approx(cpu.energy_kwh * 10.0 / 36.0)


@pytest.mark.parametrize("where", ["start", "stop"])
def test_fake_meter_fails_where_asked(where: str) -> None:
    meter = FakeMeter({Component.CPU: 1.0}, fail=where)
    if where == "start":
        with pytest.raises(MeterError):
            meter.start()
    else:
        meter.start()
        with pytest.raises(MeterError):
            meter.stop()
