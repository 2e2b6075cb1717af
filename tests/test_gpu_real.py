"""NvmlMeter against the real driver: runs where an NVIDIA GPU is present, skips elsewhere."""

from __future__ import annotations

import time

import pytest

from co2gate.measure.interface import Component, Method
from co2gate.measure.nvml import NvmlMeter, gpu_meter

pynvml = pytest.importorskip("pynvml")


def _driver_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _driver_works(), reason="no NVIDIA GPU or driver on this machine"),
]


def _volta_or_newer() -> list[bool]:
    """Per NVML index: compute capability 7.0 or above, where the energy counter exists."""
    pynvml.nvmlInit()
    try:
        return [
            pynvml.nvmlDeviceGetCudaComputeCapability(pynvml.nvmlDeviceGetHandleByIndex(i))[0] >= 7
            for i in range(pynvml.nvmlDeviceGetCount())
        ]
    finally:
        pynvml.nvmlShutdown()


def test_gpu_meter_finds_a_gpu() -> None:
    assert isinstance(gpu_meter({}), NvmlMeter)  # {}: CUDA_VISIBLE_DEVICES unset, all GPUs


def test_three_second_window_reads_positive_energy() -> None:
    meter = gpu_meter({})
    assert meter is not None
    meter.start()
    time.sleep(3.0)  # an idle GPU still draws tens of watts
    reading = meter.stop()

    (part,) = reading.parts
    assert part.component is Component.GPU
    assert part.window_s >= 3.0
    assert part.energy_kwh > 0
    volta = _volta_or_newer()
    for gpu in reading.gpus:
        assert gpu.name
        assert gpu.uuid.startswith("GPU-")
        assert gpu.energy_kwh > 0
        assert 1.0 < gpu.mean_power_w < 2000.0  # watts: a unit slip would be off by 1000x
        if volta[gpu.index]:
            assert gpu.method is Method.NVML_ENERGY_COUNTER
    if all(volta[gpu.index] for gpu in reading.gpus):
        assert part.method is Method.NVML_ENERGY_COUNTER
    assert reading.host["gpu_count"] == len(reading.gpus) >= 1
    # the real per-process call (NotFound on an idle GPU) is read, not reported as a failure
    assert not any("nvmlDeviceGetProcessUtilization" in note for note in reading.notes)
