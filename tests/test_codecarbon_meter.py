"""CPU and RAM through the real codecarbon on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from co2gate.measure.codecarbon import (
    CodecarbonMeter,
    CpuFacts,
    quota_share,
    read_cpu_facts,
    read_cpu_quota,
    vm_socket_share,
)
from co2gate.measure.interface import Component, MeterError, Method

ROOT = Path(__file__).resolve().parents[1]

# /proc/cpuinfo on a GitHub-hosted ubuntu-latest runner (4 vCPU), first processor block.
RUNNER_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
siblings\t: 4
core id\t\t: 0
cpu cores\t: 2
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep hypervisor lahf_lm

processor\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
"""


def test_cpu_facts_of_a_github_runner() -> None:
    facts = read_cpu_facts(RUNNER_CPUINFO)
    assert facts == CpuFacts("AMD EPYC 7763 64-Core Processor", threads_per_core=2, hypervisor=True)


def test_vm_share_of_a_github_runner() -> None:
    share = vm_socket_share(read_cpu_facts(RUNNER_CPUINFO), vcpus=4)
    assert share is not None
    # 64 cores x 2 threads = 128 threads; 4 / 128 = 0.03125 of the socket
    assert (share.vcpus, share.socket_threads) == (4, 128)
    assert share.share == pytest.approx(0.03125, rel=1e-12)
    # codecarbon's 280 W for the EPYC 7763 becomes 280 x 0.03125 = 8.75 W for this VM
    assert 280 * share.share == pytest.approx(8.75, rel=1e-12)


def test_no_vm_share_on_bare_metal_or_without_a_core_count() -> None:
    bare = RUNNER_CPUINFO.replace(" hypervisor", "")
    assert vm_socket_share(read_cpu_facts(bare), vcpus=4) is None
    unnamed = RUNNER_CPUINFO.replace("64-Core Processor", "Processor")
    assert vm_socket_share(read_cpu_facts(unnamed), vcpus=4) is None
    # a VM that holds the whole socket is not scaled
    assert vm_socket_share(read_cpu_facts(RUNNER_CPUINFO), vcpus=128) is None


def test_real_codecarbon_measures_cpu_and_ram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hostile config in the user's checkout must not write files or send data anywhere.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".codecarbon.config").write_text(
        "[codecarbon]\nsave_to_file = true\noutput_dir = .\nemissions_endpoint = http://127.0.0.1:9/x\n"
        "save_to_api = true\ntracking_mode = process\nlog_level = debug\n"
    )
    meter = CodecarbonMeter()
    meter.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        sum(range(10_000))
    reading = meter.stop()
    parts = {p.component: p for p in reading.parts}
    assert parts[Component.CPU].energy_kwh > 0
    assert parts[Component.RAM].energy_kwh > 0
    rapl = Path("/sys/class/powercap/intel-rapl").exists()
    if quota_share(read_cpu_quota(), os.cpu_count() or 1) is not None:  # in a container
        assert parts[Component.CPU].method is Method.CGROUP_QUOTA_SHARE
    else:
        assert parts[Component.CPU].method in (
            (Method.RAPL,) if rapl else (Method.TDP_LOAD_ESTIMATE, Method.VM_SHARE_ESTIMATE)
        )
    assert parts[Component.RAM].method is Method.RAM_SIZE_ESTIMATE
    assert 1.4 < parts[Component.CPU].window_s < 5
    assert reading.host["cpu_model"]
    assert sorted(os.listdir(tmp_path)) == [".codecarbon.config"]  # nothing written


def test_stop_without_start_is_a_meter_error() -> None:
    with pytest.raises(MeterError, match="never started"):
        CodecarbonMeter().stop()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux only")
def test_the_brand_we_give_codecarbon_is_py_cpuinfos() -> None:
    import cpuinfo

    facts = read_cpu_facts(Path("/proc/cpuinfo").read_text())
    if facts.model is None:
        pytest.skip("/proc/cpuinfo has no model name on this architecture")
    assert facts.model == cpuinfo.get_cpu_info()["brand_raw"]


def test_the_example_measured_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "co2gate",
            "measure",
            "--out",
            str(tmp_path),
            "--country",
            "DEU",
            "--",
            sys.executable,
            str(ROOT / "examples" / "train.py"),
            "--seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stdout
    doc = json.loads((tmp_path / "emissions.json").read_text())
    assert doc["energy_kwh"]["cpu"] > 0 and doc["energy_kwh"]["ram"] > 0
    assert doc["methods"]["cpu"] in ("rapl", "tdp-load-estimate", "vm-share-estimate")
    assert doc["methods"]["ram"] == "ram-size-estimate"
    assert doc["methods"]["gpu"] in ("none", "nvml-energy-counter", "nvml-power-sampling")
    # How much codecarbon watched depends on how busy the machine is (on a loaded 2-core
    # machine its start can outlast this 2 s command: coverage 0, figures from the window
    # after it); that the figure is there and the report owns up to the extrapolation does not.
    assert 0 <= doc["coverage"]["cpu"] <= 1
    if doc["coverage"]["cpu"] < 0.99:
        assert any("extrapolated" in note for note in doc["notes"])
    assert doc["intensity_source"].startswith("codecarbon ")
    assert "co2gate: " in result.stderr


# Brand strings as /proc/cpuinfo writes them: matched exactly, after codecarbon's clean-up
# ("(R)", " CPU @ 2.80GHz"), by token set, ambiguous, unknown; and one whose TDP cell is
# malformed in codecarbon's table ("27.29.5"), which its float() refuses.
BRANDS = (
    "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz",
    "Intel(R) Xeon(R) CPU E5-2673 v4 @ 2.30GHz",
    "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",
    "AMD EPYC 7763 64-Core Processor",
    "AMD EPYC 9654 96-Core Processor",
    "AMD Ryzen 9 5950X 16-Core Processor",
    "AMD EPYC",
    "Apple M1",
    "Neoverse-N1",
    "Intel Celeron 1000A",
    "A CPU nobody has heard of",
    "",
)


def _registry_lookup(tdp: object, model: str) -> object:
    try:
        return tdp._get_cpu_power_from_registry(model)  # type: ignore[attr-defined]
    except ValueError as e:
        return f"ValueError: {e}"


def test_the_tdp_table_read_without_pandas_gives_codecarbons_own_figures() -> None:
    from codecarbon.core import cpu as cc_cpu

    from co2gate.measure.codecarbon import _tdp_table_without_pandas, cpu_power_table

    names, _ = cpu_power_table()
    assert len(names) > 4000  # the whole table, not a sample of it
    models = [*BRANDS, *names[::97], *(n.upper() + " Processor" for n in names[5::331])]
    tdp = cc_cpu.TDP.__new__(cc_cpu.TDP)  # the lookup alone, without probing this machine
    theirs = [_registry_lookup(tdp, m) for m in models]  # codecarbon's own: pandas.read_csv
    with _tdp_table_without_pandas(cc_cpu):
        ours = [_registry_lookup(tdp, m) for m in models]
    assert ours == theirs
    found = [t for t in theirs if isinstance(t, float)]
    assert len(found) > len(models) // 2  # most are in the table: the comparison compares TDPs
    assert None in theirs and any(isinstance(t, str) for t in theirs)  # unknown, malformed
    assert theirs[models.index("AMD EPYC 7763 64-Core Processor")] == 280.0


def test_the_tdp_lookup_is_codecarbons_own_again_after_start() -> None:
    from codecarbon.core import cpu as cc_cpu

    original = cc_cpu.TDP._get_cpu_power_from_registry
    meter = CodecarbonMeter()
    meter.start()
    try:
        assert cc_cpu.TDP._get_cpu_power_from_registry is original
    finally:
        meter.stop()


def test_a_codecarbon_whose_tdp_class_changed_keeps_its_own_lookup() -> None:
    from types import SimpleNamespace

    from co2gate.measure.codecarbon import _tdp_table_without_pandas

    changed = SimpleNamespace(TDP=type("TDP", (), {"lookup": staticmethod(lambda m: 1.0)}))
    with _tdp_table_without_pandas(changed):
        assert not hasattr(changed.TDP, "_get_cpu_power_from_registry")
    with _tdp_table_without_pandas(SimpleNamespace()):  # no TDP class at all
        pass


def test_the_meter_never_imports_pandas(tmp_path: Path) -> None:
    # pandas and numpy cost about 0.5 s of CPU to import: as much as all of co2gate's start.
    script = (
        "import sys, time\n"
        "from co2gate.measure.codecarbon import CodecarbonMeter\n"
        "meter = CodecarbonMeter(live_interval_s=0.2)\n"
        "meter.start()\n"
        "time.sleep(0.5)\n"
        "so_far = meter.so_far()\n"
        "reading = meter.stop()\n"
        "print(sum(p.energy_kwh for p in reading.parts) > 0, so_far is not None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy')))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    measured, modules = done.stdout.splitlines()
    assert measured == "True True"
    assert modules == "[]"
