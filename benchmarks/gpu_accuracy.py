"""GPU energy of one fixed workload, three ways side by side, on a machine with an NVIDIA GPU.

The workload: square float32 matrix products on one GPU (torch) for --seconds. While it
runs, this script reads the GPU three ways over the same stretch of time:
- `co2gate measure -- python <workload>`: co2gate's own figure (emissions.json);
- NVML's total-energy counter (nvmlDeviceGetTotalEnergyConsumption), read before and after:
  the reference;
- NVML's power reading (nvmlDeviceGetPowerUsage) sampled every --sample-s and integrated
  (trapezoids), as tools without the counter do.
It prints each energy, the windows, and each figure's difference from the counter in percent.
co2gate's window opens a little after the counter's (after the workload's process starts)
and closes a little before, so it should read low by about idle power x that gap.

    python benchmarks/gpu_accuracy.py [--seconds 30] [--gpu 0] [--sample-s 1]

Without NVML, a driver, a GPU, or torch with CUDA it prints one line saying why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WORKLOAD = """
import sys, time
import torch
seconds, size = float(sys.argv[1]), int(sys.argv[2])
a = torch.randn(size, size, device="cuda")
b = torch.randn(size, size, device="cuda")
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(10):
        c = a @ b
    torch.cuda.synchronize()
print(float(c[0, 0]))
"""


def _why_not(gpu: int) -> tuple[Any, Any] | str:
    """(pynvml, the GPU's handle), or one line saying why this machine cannot run it."""
    try:
        import pynvml
    except ImportError:
        return "pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return f"no NVIDIA driver ({e})"
    count = pynvml.nvmlDeviceGetCount()
    if gpu >= count:
        return f"NVML sees {count} GPU(s), no GPU {gpu}"
    handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as e:
        return f"GPU {gpu} has no energy counter ({e}): the reference is missing"
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False)
    if done.returncode != 0:
        return "torch with CUDA is not installed for this Python: no workload to run"
    return pynvml, handle


class PowerSampler(threading.Thread):
    """nvmlDeviceGetPowerUsage every interval_s, integrated into joules (trapezoids)."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (monotonic s, W)

    def read(self) -> None:
        watts = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # mW -> W
        self.samples.append((time.monotonic(), watts))

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.read()

    def joules(self) -> float:
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum((wa + wb) / 2.0 * (tb - ta) for (ta, wa), (tb, wb) in pairs)


def _pct(value: float, reference: float) -> str:
    return f"{(value - reference) / reference * 100:+.1f}%" if reference > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="workload length")
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to load")
    parser.add_argument("--size", type=int, default=8192, help="matrix side")
    parser.add_argument("--sample-s", type=float, default=1.0, help="power sampling interval")
    args = parser.parse_args(argv)

    found = _why_not(args.gpu)
    if isinstance(found, str):
        print(f"gpu_accuracy: cannot run here: {found}")
        return 0
    nvml, handle = found
    name = nvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else name
    uuid = nvml.nvmlDeviceGetUUID(handle)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "workload.py")
        script.write_text(WORKLOAD)
        out = Path(tmp, "report")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": uuid}  # co2gate measures this GPU only
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
        command = [sys.executable, "-m", "co2gate", "measure", "--out", str(out)]
        command += ["--intensity", "100", "--", sys.executable, str(script)]
        command += [str(args.seconds), str(args.size)]

        sampler = PowerSampler(nvml, handle, args.sample_s)
        sampler.read()
        counter0_mj, t0 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.monotonic()
        sampler.start()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        sampler.stop_event.set()
        sampler.join()
        sampler.read()
        counter1_mj, t1 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.monotonic()
        nvml.nvmlShutdown()
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"gpu_accuracy: the measured workload failed ({done.returncode}): {tail}")
            return 1
        record = json.loads(Path(out, "emissions.json").read_text())

    counter_j = (counter1_mj - counter0_mj) / 1000.0  # mJ -> J
    sampled_j = sampler.joules()
    co2gate_j = float(record["energy_kwh"]["gpu"]) * 3.6e6  # kWh -> J
    window_s = t1 - t0
    print(f"GPU {args.gpu}: {name}; workload {args.seconds:g} s of {args.size}^2 matmuls")
    print(f"{'source':<34}{'energy J':>12}{'window s':>10}{'vs counter':>12}")
    rows = [
        ("NVML energy counter (reference)", counter_j, window_s),
        (f"NVML power sampled every {args.sample_s:g} s", sampled_j, window_s),
        (f"co2gate measure ({record['methods']['gpu']})", co2gate_j, record["run"]["duration_s"]),
    ]
    for label, joules, seconds in rows:
        print(f"{label:<34}{joules:>12.1f}{seconds:>10.2f}{_pct(joules, counter_j):>12}")
    gap_s = window_s - float(record["run"]["duration_s"])
    idle_w = sampler.samples[0][1]
    print(
        f"co2gate's window is {gap_s:.2f} s shorter; at the {idle_w:.0f} W seen before the "
        f"workload that gap is about {gap_s * idle_w:.0f} J"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
