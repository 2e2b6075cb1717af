"""Many nodes: each rank's emissions.json names its node (nodes.read), and `check --merge`
gates them as ONE run, counting each GPU (UUID) and each machine's CPU and RAM (boot id) once
over overlapping time, with hand-computed figures."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun

from co2gate import report, uncertainty, units
from co2gate.measure.interface import Method
from co2gate.merge import MergeError, _worst, merge
from co2gate.model import Measurement, MeasurementError, NodeShare
from co2gate.nodes import read

PY = sys.executable
BOOT_A = "0a0a0a0a-0000-4000-8000-00000000000a"
BOOT_B = "0b0b0b0b-0000-4000-8000-00000000000b"
DAY = "2026-11-20"


def gpu(uuid: str, kwh: float, index: int = 0) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": uuid,
        "energy_kwh": kwh,
        "mean_power_w": 700.0,
        "mean_utilization_pct": 90.0,
        "method": "nvml-energy-counter",
    }


def record(
    *,
    cpu: float = 0.01,
    ram: float = 0.005,
    gpus: tuple[dict[str, Any], ...] = (),
    start: str = "00:00:00",
    end: str = "01:00:00",
    boot: str | None = BOOT_A,
    host: str = "node-a",
    rank: int | None = 0,
    world: int | None = 4,
    job: str | None = "4242",
    label: str = "train",
    workload: str = "training",
    pue: float = 1.0,
    intensity: float = 400.0,
    run_id: str | None = None,
    node: bool = True,
    ranges: bool = True,
) -> dict[str, Any]:
    """One rank's emissions.json, its figures consistent (kg = kWh x PUE x g/kWh / 1000)."""
    gpu_kwh = sum(g["energy_kwh"] for g in gpus)
    total = cpu + gpu_kwh + ram
    seconds = 3600.0 * (int(end[:2]) - int(start[:2])) + 60 * (int(end[3:5]) - int(start[3:5]))
    methods = {
        "cpu": "rapl",
        "gpu": "nvml-energy-counter" if gpus else "none",
        "ram": "ram-size-estimate",
    }
    doc: dict[str, Any] = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": run_id or f"{host}-{rank}-{start}",
            "label": label,
            "workload": workload,
            "command": ["python", "train.py"],
            "exit_code": 0,
            "started_at": f"{DAY}T{start}+00:00",
            "ended_at": f"{DAY}T{end}+00:00",
            "duration_s": seconds,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": cpu, "gpu": gpu_kwh, "ram": ram, "total": total},
        "power_w": {
            k: units.kwh_to_mean_w(v, seconds)
            for k, v in (("cpu", cpu), ("gpu", gpu_kwh), ("ram", ram))
        },
        "methods": methods,
        "pue": pue,
        "intensity_g_per_kwh": intensity,
        "intensity_source": f"test grid at {intensity:g} g/kWh",
        "emissions_kg": units.emissions_kg(total, pue, intensity),
        "gpus": list(gpus),
        "requests": None,
        "per_request_g": None,
        "notes": [],
        "ci": None,
    }
    if ranges:
        spans = {
            c: uncertainty.energy_bounds(kwh, Method(methods[c]))
            for c, kwh in (("cpu", cpu), ("gpu", gpu_kwh), ("ram", ram))
        }
        span_total = uncertainty.total_bounds(spans.values())
        doc["energy_kwh_range"] = {c: list(b) for c, b in spans.items()} | {
            "total": list(span_total)
        }
        doc["emissions_kg_range"] = list(uncertainty.emissions_bounds(span_total, pue, intensity))
    if node:
        doc["node"] = {
            "scheduler": "slurm",
            "host": host,
            "machine_id": None,
            "boot_id": boot,
            "job_id": job,
            "rank": rank,
            "local_rank": None,
            "world_size": world,
            "node_rank": None,
            "node_name": None,
        }
    return doc


def measurements(*docs: dict[str, Any]) -> list[tuple[str, Measurement]]:
    return [
        (f"rank{i}.json", Measurement.from_json(d, f"rank{i}.json")) for i, d in enumerate(docs)
    ]


def merged(*docs: dict[str, Any]) -> Measurement:
    m = merge(measurements(*docs))
    # what the merge makes is itself a valid emissions.json
    assert Measurement.from_json(json.loads(json.dumps(m.to_json())), "merged") == m
    return m


# ------------------------------------------------------------------ GPUs: once by UUID


def test_two_ranks_seeing_the_same_gpus_count_each_gpu_once() -> None:
    both = (gpu("GPU-aaaa", 0.5, 0), gpu("GPU-bbbb", 0.7, 1))
    m = merged(
        record(rank=0, gpus=both),
        record(rank=1, gpus=(gpu("GPU-aaaa", 0.4, 0), gpu("GPU-bbbb", 0.8, 1))),
    )
    # each GPU's largest reading: 0.5 + 0.8, never 0.5 + 0.7 + 0.4 + 0.8
    assert m.energy_kwh.gpu == pytest.approx(1.3)
    assert sorted(g.uuid for g in m.gpus) == ["GPU-aaaa", "GPU-bbbb"]
    assert m.host["gpu_count"] == 2
    assert any("GPUs counted once by UUID: 2 GPU readings" in n for n in m.notes)
    (row,) = m.nodes
    assert (row.gpus, row.ranks, row.files) == (2, (0, 1), 2)


def test_each_node_with_its_own_gpus_counts_them_all() -> None:
    m = merged(
        record(rank=0, host="a", boot=BOOT_A, gpus=(gpu("GPU-a0", 0.5), gpu("GPU-a1", 0.5, 1))),
        record(rank=1, host="b", boot=BOOT_B, gpus=(gpu("GPU-b0", 0.5), gpu("GPU-b1", 0.5, 1))),
    )
    assert m.energy_kwh.gpu == pytest.approx(2.0)
    assert len(m.gpus) == 4 and [r.gpus for r in m.nodes] == [2, 2]
    assert not any("UUID" in n for n in m.notes)


def test_one_gpu_read_at_different_times_is_counted_each_time() -> None:
    m = merged(
        record(rank=0, gpus=(gpu("GPU-x", 0.5),), start="00:00:00", end="01:00:00"),
        record(rank=1, gpus=(gpu("GPU-x", 0.3),), start="02:00:00", end="03:00:00"),
    )
    assert m.energy_kwh.gpu == pytest.approx(0.8)


def test_gpus_without_a_uuid_are_never_merged_away() -> None:
    m = merged(
        record(rank=0, boot=BOOT_A, gpus=(gpu("", 0.5),)),
        record(rank=1, boot=BOOT_B, gpus=(gpu("", 0.5),)),
    )
    assert m.energy_kwh.gpu == pytest.approx(1.0)


# ------------------------------------------------------------------ CPU and RAM: once per machine


def test_ranks_on_one_machine_at_the_same_time_count_its_cpu_and_ram_once() -> None:
    m = merged(
        record(rank=0, cpu=0.010, ram=0.005),
        record(rank=1, cpu=0.012, ram=0.004),
        record(rank=2, cpu=0.011, ram=0.005),
    )
    # the largest CPU and RAM readings of the machine, not the sum of three
    assert m.energy_kwh.cpu == pytest.approx(0.012)
    assert m.energy_kwh.ram == pytest.approx(0.005)
    assert m.energy_kwh.total == pytest.approx(0.017)
    assert m.emissions_kg == pytest.approx(0.017 * 400 / 1000)
    assert any("2 of 3 files ran on a machine" in n for n in m.notes)
    assert len(m.nodes) == 1 and m.nodes[0].energy_kwh == pytest.approx(0.017)


def test_partly_overlapping_ranks_extend_the_largest_reading_over_their_span() -> None:
    m = merged(
        record(rank=0, cpu=0.010, ram=0.004, start="00:00:00", end="01:00:00"),
        record(rank=1, cpu=0.020, ram=0.006, start="00:30:00", end="01:30:00"),
    )
    # span 1.5 h; rank 1's readings (1 h) at their mean power over it: x 1.5
    assert m.energy_kwh.cpu == pytest.approx(0.030)
    assert m.energy_kwh.ram == pytest.approx(0.009)
    assert m.run.duration_s == 5400.0
    assert m.power_w.cpu == pytest.approx(0.030 * 3.6e6 / 5400)


def test_shares_of_one_device_are_summed_not_counted_once() -> None:
    a = record(rank=0, cpu=0.010, gpus=(gpu("GPU-s", 0.3),))
    b = record(rank=1, cpu=0.020, gpus=(gpu("GPU-s", 0.2),))
    for doc in (a, b):  # two containers' CPU quotas and their processes' GPU shares
        doc["methods"]["cpu"] = "cgroup-quota-share"
        doc["methods"]["gpu"] = doc["gpus"][0]["method"] = "nvml-process-share"
        del doc["energy_kwh_range"], doc["emissions_kg_range"]
    m = merged(a, b)
    assert m.energy_kwh.cpu == pytest.approx(0.030)
    assert m.energy_kwh.gpu == pytest.approx(0.5)
    assert m.energy_kwh.ram == pytest.approx(0.005)  # RAM is still the machine's: once
    assert any("shares add up" in n for n in m.notes)


def test_disjoint_runs_on_one_machine_are_both_counted() -> None:
    m = merged(
        record(rank=0, cpu=0.010, ram=0.004, start="00:00:00", end="01:00:00"),
        record(rank=1, cpu=0.020, ram=0.006, start="01:00:00", end="02:00:00"),
    )
    assert m.energy_kwh.cpu == pytest.approx(0.030)
    assert m.energy_kwh.ram == pytest.approx(0.010)
    assert not any("counted once per machine" in n for n in m.notes)
    assert m.nodes[0].files == 2


def test_different_machines_are_summed_by_hand() -> None:
    a = record(rank=0, host="a", boot=BOOT_A, cpu=0.010, ram=0.005, gpus=(gpu("GPU-1", 0.2),))
    b = record(rank=1, host="b", boot=BOOT_B, cpu=0.030, ram=0.005, gpus=(gpu("GPU-2", 0.3),))
    m = merged(a, b)
    assert (m.energy_kwh.cpu, m.energy_kwh.gpu, m.energy_kwh.ram) == pytest.approx(
        (0.040, 0.5, 0.010)
    )
    assert m.energy_kwh.total == pytest.approx(0.55)
    assert m.emissions_kg == pytest.approx(0.55 * 1.0 * 400 / 1000)  # 0.22 kg
    assert [(r.host, r.energy_kwh, r.emissions_kg) for r in m.nodes] == [
        ("a", pytest.approx(0.215), pytest.approx(0.086)),
        ("b", pytest.approx(0.335), pytest.approx(0.134)),
    ]


def test_nodes_on_different_grids_are_each_priced_at_their_own() -> None:
    a = record(rank=0, boot=BOOT_A, cpu=0.1, ram=0.0, pue=1.0, intensity=100.0)
    b = record(rank=1, boot=BOOT_B, cpu=0.1, ram=0.0, pue=1.5, intensity=400.0)
    m = merged(a, b)
    kg = 0.1 * 1.0 * 100 / 1000 + 0.1 * 1.5 * 400 / 1000  # 0.01 + 0.06
    assert m.emissions_kg == pytest.approx(kg)
    # the identity holds with the energy-weighted figures shown
    assert m.emissions_kg == pytest.approx(
        units.emissions_kg(m.energy_kwh.total, m.pue, m.intensity_g_per_kwh)
    )
    assert m.pue == pytest.approx(1.25)
    assert any("different PUEs or grid intensities" in n for n in m.notes)


# ------------------------------------------------------------------ ranges and methods


def test_range_bounds_are_summed() -> None:
    a = record(rank=0, host="a", boot=BOOT_A, cpu=0.01, ram=0.002, gpus=(gpu("GPU-1", 0.2),))
    b = record(rank=1, host="b", boot=BOOT_B, cpu=0.02, ram=0.004, gpus=(gpu("GPU-2", 0.4),))
    m = merged(a, b)
    for part in ("cpu", "gpu", "ram", "total"):
        pairs = zip(a["energy_kwh_range"][part], b["energy_kwh_range"][part], strict=True)
        want = [x + y for x, y in pairs]
        assert list(getattr(m.energy_bounds, part)) == pytest.approx(want)
    want_kg = [x + y for x, y in zip(a["emissions_kg_range"], b["emissions_kg_range"], strict=True)]
    assert list(m.emissions_bounds) == pytest.approx(want_kg)
    low, high = m.emissions_bounds
    assert low < m.emissions_kg < high


def test_the_least_accurate_method_wins() -> None:
    assert _worst([Method.RAPL, Method.TDP_LOAD_ESTIMATE]) is Method.TDP_LOAD_ESTIMATE
    assert _worst([Method.NONE, Method.NVML_ENERGY_COUNTER]) is Method.NVML_ENERGY_COUNTER
    assert _worst([Method.NVML_POWER_SAMPLING, Method.FAILED]) is Method.FAILED
    assert _worst([Method.NONE, Method.NONE]) is Method.NONE
    a = record(rank=0, boot=BOOT_A)
    b = record(rank=1, boot=BOOT_B)
    b["methods"]["cpu"] = "tdp-load-estimate"
    del b["energy_kwh_range"], b["emissions_kg_range"]
    m = merged(a, b)
    assert m.methods.cpu is Method.TDP_LOAD_ESTIMATE
    assert any("different methods" in n for n in m.notes)


# ------------------------------------------------------------------ old files, refusals


def test_old_files_without_a_node_still_merge_each_as_its_own_machine() -> None:
    a = record(rank=None, node=False, ranges=False, cpu=0.01, ram=0.01, run_id="old-1")
    b = record(rank=None, node=False, ranges=False, cpu=0.01, ram=0.01, run_id="old-2")
    m = merged(a, b)
    assert m.energy_kwh.total == pytest.approx(0.04)
    assert m.emissions_bounds == pytest.approx((m.emissions_kg, m.emissions_kg))
    assert len(m.nodes) == 2 and all(r.boot_id is None for r in m.nodes)
    assert any("2 of 2 files name no boot id" in n for n in m.notes)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"label": "eval"}, "label 'train' and 'eval'"),
        ({"workload": "inference"}, "workload 'training' and 'inference'"),
        ({"job": "9999"}, "job '4242' and '9999'"),
        ({"run_id": "node-a-0-00:00:00"}, "the same measurement"),
    ],
)
def test_files_that_cannot_be_one_run_are_refused(change: dict[str, Any], words: str) -> None:
    args: dict[str, Any] = {"rank": 1} | change
    with pytest.raises(MergeError, match=r"rank0\.json and rank1\.json") as e:
        merge(measurements(record(rank=0), record(**args)))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_an_already_merged_file_is_refused() -> None:
    m = merged(record(rank=0), record(rank=1))
    with pytest.raises(MergeError, match="already a merged run"):
        merge([("merged.json", m), *measurements(record(rank=2))])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("boot_id", "not-a-uuid", "is not a boot id"),
        ("host", "evil\nhost", "is not a host name"),
        ("host", "a" * 300, "is not a host name"),
        ("scheduler", "pbs", "is not one of slurm"),
        ("rank", -1, "is not a whole number"),
        ("rank", 4, "is not below world_size 4"),
        ("world_size", 0, "is not a whole number"),
        ("job_id", "x;rm -rf /", "is not a job id"),
        ("machine_id", "XYZ", "is not 32 hex digits"),
    ],
)
def test_a_file_with_a_bad_node_is_refused_in_one_line(field: str, value: Any, words: str) -> None:
    doc = record()
    doc["node"][field] = value
    with pytest.raises(MeasurementError, match=f"node.{field}") as e:
        Measurement.from_json(doc, "rank0.json")
    assert words in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ reading the node


def test_the_node_is_read_from_slurm_variables(tmp_path: Path) -> None:
    boot, machine = tmp_path / "boot_id", tmp_path / "machine-id"
    boot.write_text(BOOT_A + "\n")
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_NODEID": "2",
        "SLURMD_NODENAME": "gpu-a02",
    }
    node, warnings = read(env, boot_id_file=boot, machine_id_file=machine)
    assert warnings == []
    assert (node.scheduler, node.job_id, node.rank, node.local_rank) == ("slurm", "4242", 5, 1)
    assert (node.world_size, node.node_rank, node.node_name) == (8, 2, "gpu-a02")
    assert node.boot_id == BOOT_A
    # the confidential machine id is never written, only a stable hash of it
    assert node.machine_id is not None and len(node.machine_id) == 32
    assert node.machine_id != "0123456789abcdef0123456789abcdef"
    assert read(env, boot_id_file=boot, machine_id_file=machine)[0].machine_id == node.machine_id


@pytest.mark.parametrize(
    ("env", "scheduler", "rank", "world", "job"),
    [
        (
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "r7"},
            "torchrun",
            3,
            4,
            "r7",
        ),
        ({"RANK": "0", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"}, "torchrun", 0, 2, None),
        (  # torchrun under srun: torchrun's rank, the batch job's id
            {"SLURM_JOB_ID": "77", "SLURM_PROCID": "0", "RANK": "5", "WORLD_SIZE": "8"},
            "torchrun",
            5,
            8,
            "77",
        ),
        ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}, "mpi", 2, 3, None),
        ({"PMI_RANK": "1", "PMI_SIZE": "2"}, "mpi", 1, 2, None),
        ({"RAY_JOB_ID": "02000000", "RAY_NODE_ID": "abc123"}, "ray", None, None, "02000000"),
        ({}, "none", None, None, None),
    ],
)
def test_each_launcher_is_recognised(
    tmp_path: Path,
    env: dict[str, str],
    scheduler: str,
    rank: int | None,
    world: int | None,
    job: str | None,
) -> None:
    node, warnings = read(env, boot_id_file=tmp_path / "none", machine_id_file=tmp_path / "none")
    assert warnings == []
    assert (node.scheduler, node.rank, node.world_size, node.job_id) == (
        scheduler,
        rank,
        world,
        job,
    )
    assert node.boot_id is None and node.machine_id is None


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SLURM_JOB_ID": "1", "SLURM_PROCID": "-3"}, "rank"),
        ({"SLURM_JOB_ID": "1", "SLURM_PROCID": "1e9"}, "rank"),
        ({"SLURM_JOB_ID": "1", "SLURM_PROCID": "99999999999999999999"}, "rank"),
        ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "0"}, "world_size"),
        ({"SLURM_JOB_ID": "1", "SLURM_PROCID": "9", "SLURM_NTASKS": "4"}, "rank"),
        ({"SLURM_JOB_ID": "1\n2"}, "job_id"),
        ({"SLURM_JOB_ID": "x" * 500}, "job_id"),
        ({"SLURM_JOB_ID": "1", "SLURMD_NODENAME": "<img src=x>"}, "node_name"),
        ({"RANK": "٣", "WORLD_SIZE": "4"}, "rank"),  # an Arabic-Indic digit: int() takes it
    ],
)
def test_a_bad_variable_is_one_warning_and_the_field_none(
    tmp_path: Path, env: dict[str, str], field: str
) -> None:
    node, warnings = read(env, boot_id_file=tmp_path / "none", machine_id_file=tmp_path / "none")
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert getattr(node, field) is None


def test_a_hostile_host_name_is_a_warning_and_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.uname()
    fake = os.uname_result((real.sysname, "evil|<img src=x>\n", *real[2:]))
    monkeypatch.setattr(os, "uname", lambda: fake)
    node, warnings = read({}, boot_id_file=tmp_path / "none", machine_id_file=tmp_path / "none")
    assert node.host is None and len(warnings) == 1


def test_a_garbled_boot_id_file_is_a_warning(tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_bytes(b"\xff\xfe garbage")
    node, warnings = read({}, boot_id_file=boot, machine_id_file=tmp_path / "none")
    assert node.boot_id is None and len(warnings) == 1


# ------------------------------------------------------------------ the comment


def test_the_comment_has_a_node_table_that_escapes_a_hostile_host() -> None:
    m = merged(
        record(rank=0, host="a", boot=BOOT_A, gpus=(gpu("GPU-1", 0.2),)),
        record(rank=1, host="a", boot=BOOT_A, gpus=(gpu("GPU-1", 0.2),)),
        record(rank=2, host="b", boot=BOOT_B),
    )
    hostile = "evil|</details><img src=x onerror=alert(1)>`@team [x](https://e.vil)"
    rows = (NodeShare(hostile, BOOT_A, (0, 1, 2, 5), 4, 2, 0.2, 0.08), *m.nodes[1:])
    body = report.render("comment.md.j2", report.context(dataclasses.replace(m, nodes=rows)))
    table = [line for line in body.splitlines() if line.startswith("| `")]
    assert len(table) == 2  # one row per machine, none split or added
    row = table[0]
    assert row.count(" | ") == 4 and "\\|" in row  # the | inside the name cannot split the row
    assert "0-2, 5" in row
    assert "<img" not in body.replace("`evil\\|</details><img", "")  # only inside the code span
    assert "By node: 2 machines, 5 measurements" in body


# ------------------------------------------------------------------ the command, end to end

BUDGET = """version: 1
annual_budget_kg: 1000
allocations: {training: 1}
location: {intensity: 400}
ledger: {backend: file, path: ledger}
"""


def clean_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "PYTHONPATH", "LANG")
    return (
        {k: v for k, v in os.environ.items() if k in keep}
        | {"CODECARBON_LOG_LEVEL": "error"}
        | extra
    )


def measure_ranks(tmp_path: Path, ranks: list[dict[str, str]]) -> list[Path]:
    """Real `co2gate measure` processes, side by side, one per simulated SLURM rank."""
    procs, outs = [], []
    for i, slurm in enumerate(ranks):
        out = tmp_path / f"rank{i}"
        env = clean_env(**slurm)
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        procs.append(
            subprocess.Popen(
                [PY, "-m", "co2gate", "measure", "--label", "train", "--out", str(out),
                 "--budget-file", str(tmp_path / "budget.yml"),
                 "--", PY, "-c", "import time; time.sleep(6)"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )  # fmt: skip
        outs.append(out / "emissions.json")
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    return outs


def slurm(rank: int, node: int) -> dict[str, str]:
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": str(rank),
        "SLURM_NTASKS": "3",
        "SLURM_LOCALID": str(rank if node == 0 else 0),
        "SLURM_NODEID": str(node),
        "SLURMD_NODENAME": f"gpu-{node:02d}",
    }


def test_simulated_slurm_ranks_are_measured_then_gated_as_one_run(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "budget.yml").write_text(BUDGET)
    files = measure_ranks(tmp_path, [slurm(0, 0), slurm(1, 0), slurm(2, 1)])
    docs = [json.loads(f.read_text()) for f in files]
    assert [d["node"]["rank"] for d in docs] == [0, 1, 2]
    assert {d["node"]["job_id"] for d in docs} == {"4242"}
    assert docs[0]["node"]["boot_id"] == docs[2]["node"]["boot_id"]  # one real machine here
    # rank 2 ran "on another machine": give it that machine's boot id and host
    docs[2]["node"]["boot_id"] = BOOT_B
    docs[2]["node"]["host"] = "other-node"
    files[2].write_text(json.dumps(docs[2]))

    monkeypatch.chdir(tmp_path)
    args = ["check", "--merge", "--budget-file", str(tmp_path / "budget.yml")]
    out = ["--out", str(tmp_path / "out"), *map(str, files)]
    result = co2gate(*args, "--json", *out, env=clean_env())
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert isinstance(verdict, dict) and verdict["verdict"] == "pass"  # one verdict
    ledger = [
        json.loads(line)
        for f in (tmp_path / "ledger").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert len(ledger) == 1  # one entry
    # ranks 0 and 1 shared a machine at the same time: its CPU and RAM once, the larger
    cpu = [d["energy_kwh"]["cpu"] for d in docs]
    ram = [d["energy_kwh"]["ram"] for d in docs]
    assert all(d["methods"]["cpu"] != "failed" for d in docs), [d["notes"] for d in docs]
    assert cpu[0] > 0 and cpu[2] > 0
    kg = ledger[0]["emissions_kg"]
    start = [datetime.fromisoformat(d["run"]["started_at"]) for d in docs[:2]]
    end = [datetime.fromisoformat(d["run"]["ended_at"]) for d in docs[:2]]
    union = (max(end) - min(start)).total_seconds()
    machine_a = 0.0
    for part in (cpu, ram):  # the larger reading, at its mean power over both ranks' span
        i = 0 if part[0] >= part[1] else 1
        machine_a += part[i] * max(1.0, union / docs[i]["run"]["duration_s"])
    assert kg == pytest.approx((machine_a + cpu[2] + ram[2]) * 400 / 1000)
    assert kg < sum(d["emissions_kg"] for d in docs)  # never the naive sum
    written = json.loads((tmp_path / "out" / "emissions.json").read_text())  # the merged run
    assert written["emissions_kg"] == pytest.approx(kg)
    assert len(written["nodes"]) == 2 and (tmp_path / "out" / "emissions.csv").exists()
    body = (tmp_path / "out" / "report.md").read_text()
    assert "By node: 2 machines, 3 measurements" in body
    assert "| `other-node` | 2 |" in body
    # gating again is the same run: the ledger does not count it twice
    again = co2gate(*args, *out, env=clean_env())
    assert again.returncode == 0, again.stderr
    shards = list((tmp_path / "ledger").rglob("*.jsonl"))
    assert sum(len(f.read_text().splitlines()) for f in shards) == 1


def test_mixed_runs_are_exit_2_in_one_line_naming_the_files(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "budget.yml").write_text(BUDGET)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(record(rank=0)))
    b.write_text(json.dumps(record(rank=1, label="eval")))
    result = co2gate(
        "check", "--merge", "--budget-file", str(tmp_path / "budget.yml"),
        "--out", str(tmp_path / "out"), str(a), str(b), env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(a) in line and str(b) in line and "Traceback" not in result.stderr
    assert not (tmp_path / "ledger").exists()


def test_merge_never_writes_over_one_of_its_files(co2gate: CliRun, tmp_path: Path) -> None:
    (tmp_path / "budget.yml").write_text(BUDGET)
    node = tmp_path / "node-0"
    node.mkdir()
    a, b = node / "emissions.json", tmp_path / "b.json"
    a.write_text(json.dumps(record(rank=0)))
    b.write_text(json.dumps(record(rank=1)))
    before = a.read_text()
    result = co2gate(
        "check", "--merge", "--budget-file", str(tmp_path / "budget.yml"),
        "--out", str(node), str(a), str(b), env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "is one of the files to merge" in line
    assert a.read_text() == before


def test_merge_and_workflow_run_together_are_refused(co2gate: CliRun, tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(record()))
    result = co2gate("check", "--merge", "--workflow-run", str(a), env=clean_env())
    assert result.returncode == 2 and "--merge and --workflow-run" in result.stderr


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAKE_SRUN = """#!/bin/sh
# srun for two nodes on this machine: drops srun's options, runs the step once per node
while [ "${1#--}" != "$1" ]; do shift; done
for node in 0 1; do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_NNODES=2 SLURM_NTASKS=2 \
    SLURMD_NODENAME=node-$node "$@" &
done
wait
"""


def test_the_slurm_example_runs_under_simulated_slurm(tmp_path: Path) -> None:
    """examples/slurm/train.sbatch as sbatch would run it, with srun, scontrol and torchrun
    stood in for by scripts: two "nodes" (on this one machine) measured, then merged."""
    shims = tmp_path / "bin"
    shims.mkdir()
    scripts = {
        "srun": FAKE_SRUN,
        "scontrol": "#!/bin/sh\necho node-0\necho node-1\n",
        "torchrun": f"#!/bin/sh\nexec {shlex.quote(PY)} -c 'import time; time.sleep(6)'\n",
        "co2gate": f'#!/bin/sh\nexec {shlex.quote(PY)} -m co2gate "$@"\n',
    }
    for name, text in scripts.items():
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    env = clean_env(SLURM_JOB_ID="777", SLURM_JOB_NODELIST="node-[0-1]")
    env["PATH"] = f"{shims}:{env['PATH']}"
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        ["bash", str(EXAMPLES / "slurm" / "train.sbatch")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    nodes = [json.loads(f.read_text())["node"] for f in tmp_path.glob("co2gate-777/node-*/*.json")]
    assert sorted((n["node_rank"], n["rank"], n["job_id"]) for n in nodes) == [
        (0, 0, "777"),
        (1, 1, "777"),
    ]
    verdict = json.loads((tmp_path / "co2gate-777" / "report" / "verdict.json").read_text())
    assert verdict["verdict"] == "pass"
    body = (tmp_path / "co2gate-777" / "report" / "report.md").read_text()
    assert "By node: 1 machine, 2 measurements" in body  # one real machine: counted once
    ledger = list((tmp_path / "ledger").rglob("*.jsonl"))
    assert sum(len(f.read_text().splitlines()) for f in ledger) == 1


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_example_scripts_pass_shellcheck() -> None:
    scripts = [EXAMPLES / "slurm" / "train.sbatch", EXAMPLES / "torchrun" / "run.sh"]
    done = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# ------------------------------------------------------------------ torchrun on the CPU

TORCHRUN_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "torchrun" / "train.py"


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(PY).parent)) is None,
    reason="torch is not installed (examples/torchrun needs it; not a dev dependency)",
)
def test_torchrun_on_the_cpu_two_ranks_merge_to_one_run(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the budget's file ledger
    (tmp_path / "budget.yml").write_text(BUDGET)
    torchrun = str(Path(PY).parent / "torchrun")
    env = clean_env()
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    # torchrun starts one `co2gate measure` per rank, each wrapping the training script
    per_rank = (
        f"exec {shlex.quote(PY)} -m co2gate measure --label ddp "
        f"--budget-file {shlex.quote(str(tmp_path / 'budget.yml'))} "
        f'--out {shlex.quote(str(tmp_path))}/rank-"$RANK" '
        f"-- {shlex.quote(PY)} {shlex.quote(str(TORCHRUN_SCRIPT))} --steps 20"
    )
    run = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", "sh", "-c", per_rank],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    files = sorted(tmp_path.glob("rank-*/emissions.json"))
    assert len(files) == 2, run.stderr[-3000:]
    docs = [json.loads(f.read_text()) for f in files]
    assert sorted(d["node"]["rank"] for d in docs) == [0, 1]
    assert {d["node"]["scheduler"] for d in docs} == {"torchrun"}
    result = co2gate(
        "check", "--merge", "--json", "--budget-file", str(tmp_path / "budget.yml"),
        "--out", str(tmp_path / "out"), *map(str, files), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "By node: 1 machine, 2 measurements" in (tmp_path / "out" / "report.md").read_text()
    (entry,) = [line for f in tmp_path.rglob("ledger/**/*.jsonl") for line in f.open()]
    # both ranks read the one machine's CPU and RAM: counted once, not twice
    assert json.loads(entry)["emissions_kg"] < 0.8 * sum(d["emissions_kg"] for d in docs)


def test_quality_figures_are_kept_each_from_the_first_file_that_has_it() -> None:
    first, second = record(rank=0), record(rank=1)
    first["metrics"] = {"val_loss": 0.41}
    second["metrics"] = {"val_loss": 0.5, "accuracy": 0.9}
    m = merged(first, second)
    assert dict(m.metrics) == {"val_loss": 0.41, "accuracy": 0.9}
