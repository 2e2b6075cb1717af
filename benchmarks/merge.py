"""What `co2gate check --merge` costs for a big multi-node run: time and memory.

Writes 64 node files (each a whole node measured by one `co2gate measure`, as the SLURM example
does: 8 H100s with their UUIDs, RAPL CPU, ranges, SCI, codecarbon's host facts and notes, a
SLURM node block), then runs the real command `co2gate check --merge --json` over them with a
--no-record, as a child process, --runs times. Prints the median wall time, CPU time (user +
system) and peak RSS of the child; the same for a plain `check` of one of the files (what
any check costs: its imports, the report); and, in this process, the CPU time of reading
and checking the files and of merge() alone.
Target: well under 1 s and under 150 MB.

    python benchmarks/merge.py [--nodes 64] [--gpus 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from co2gate import emissions, uncertainty, units
from co2gate.labels import RunLabels
from co2gate.measure.interface import Method
from co2gate.merge import merge

LABELS = RunLabels("pretrain-7b", "training", None, None)
BUDGET = """version: 1
annual_budget_kg: 100000
allocations: {training: 1}
location: {intensity: 350}
ledger: {backend: file, path: ledger}
"""


def node_file(node: int, gpus: int, nodes: int) -> dict[str, Any]:
    """One node's emissions.json: an hour of training on `gpus` GPUs, started within seconds
    of the others."""
    start = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc) + timedelta(seconds=node % 7)
    seconds = 3600.0 + node % 5
    cards = [
        {
            "index": i,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": f"GPU-{uuid.UUID(int=node * 1000 + i)}",
            "energy_kwh": 0.62 + 0.01 * ((node + i) % 9),
            "mean_power_w": 620.0,
            "mean_utilization_pct": 93.0,
            "method": "nvml-energy-counter",
        }
        for i in range(gpus)
    ]
    energy = {"cpu": 0.35, "gpu": sum(c["energy_kwh"] for c in cards), "ram": 0.04}
    total = sum(energy.values())
    methods = {"cpu": "rapl", "gpu": "nvml-energy-counter", "ram": "ram-size-estimate"}
    spans = {k: uncertainty.energy_bounds(v, Method(methods[k])) for k, v in energy.items()}
    span_total = uncertainty.total_bounds(spans.values())
    kg = units.emissions_kg(total, 1.2, 350.0)
    return {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": str(uuid.UUID(int=node + 1)),
            "label": "pretrain-7b",
            "workload": "training",
            "command": ["torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(gpus), "t.py"],
            "exit_code": 0,
            "signal": None,
            "forwarded_signals": [],
            "started_at": start.isoformat(timespec="milliseconds"),
            "ended_at": (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds"),
            "duration_s": seconds,
            "cpu_s": 230_000.0,
            "limit_kg": None,
            "stopped_by_guard": False,
            "guard": None,
        },
        "energy_kwh": energy | {"total": total},
        "power_w": {k: units.kwh_to_mean_w(v, seconds) for k, v in energy.items()},
        "methods": methods,
        "coverage": {"cpu": 0.999, "gpu": 1.0, "ram": 0.999},
        "pue": 1.2,
        "intensity_g_per_kwh": 350.0,
        "intensity_source": "configured: location.intensity in .github/carbon-budget.yml",
        "location": {"country_iso_code": None, "country_name": None, "region": None},
        "emissions_kg": kg,
        "gpus": cards,
        "requests": None,
        "per_request_g": None,
        "per_request_wh": None,
        "host": {
            "cpu_model": "AMD EPYC 9654 96-Core Processor",
            "cpu_count": 192,
            "ram_total_gb": 2015.6,
            "gpu_model": f"{gpus} x NVIDIA H100 80GB HBM3",
            "gpu_count": gpus,
            "os": "Linux-5.15.0-x86_64-with-glibc2.35",
            "python_version": "3.11.9",
            "codecarbon_version": "3.3.2",
        },
        "notes": [
            "location and PUE from .github/carbon-budget.yml",
            f"codecarbon was ready 1.{node % 9} s after the command started",
        ],
        "ci": None,
        "energy_kwh_range": {k: list(v) for k, v in spans.items()} | {"total": list(span_total)},
        "emissions_kg_range": list(uncertainty.emissions_bounds(span_total, 1.2, 350.0)),
        "node": {
            "scheduler": "slurm",
            "host": f"gpu-{node:03d}",
            "machine_id": f"{node:032x}",
            "boot_id": str(uuid.UUID(int=(node + 1) << 64)),
            "job_id": "918273",
            "rank": node,
            "local_rank": 0,
            "world_size": nodes,
            "node_rank": node,
            "node_name": f"gpu-{node:03d}",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "budget.yml").write_text(BUDGET)
        files = []
        for n in range(args.nodes):
            path = root / f"node-{n:03d}" / "emissions.json"
            path.parent.mkdir()
            path.write_text(json.dumps(node_file(n, args.gpus, args.nodes), indent=2))
            files.append(path)
        size = sum(f.stat().st_size for f in files)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI"))}

        def timed(extra: list[str], paths: list[Path], tag: str) -> tuple[float, float, float, str]:
            """Median wall and CPU seconds and peak RSS (MB) of `co2gate check` over paths."""
            walls, cpus, rss = [], [], []
            for i in range(args.runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "co2gate", "check", *extra, "--json", "--no-record",
                     "--budget-file", str(root / "budget.yml"), "--out", str(root / f"{tag}{i}"),
                     *map(str, paths)],
                    capture_output=True, text=True, cwd=root, env=env, check=False,
                )  # fmt: skip
                walls.append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    sys.exit(f"check {' '.join(extra)} failed ({done.returncode}): {done.stderr}")
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                rss.append(after.ru_maxrss / 1024)  # KiB on Linux: the largest child so far
            return statistics.median(walls), statistics.median(cpus), max(rss), done.stdout

        wall, cpu, peak, stdout = timed(["--merge"], files, "merged")
        one_wall, one_cpu, _, _ = timed([], files[:1], "one")
        verdict = json.loads(stdout)

        t0 = time.process_time()
        docs = [(str(f), emissions.read_measurement(f, LABELS, None)) for f in files]
        t1 = time.process_time()
        merged = merge(docs)
        t2 = time.process_time()

    print(f"{args.nodes} node files x {args.gpus} GPUs ({size / 1e6:.1f} MB of JSON)")
    print(f"  merged: {len(merged.gpus)} GPUs, {len(merged.nodes)} machines, "
          f"{merged.energy_kwh.total:.2f} kWh, {merged.emissions_kg:.2f} kg; verdict "
          f"{verdict['verdict']}")  # fmt: skip
    print(f"  check --merge, median of {args.runs}: wall {wall:.3f} s, CPU {cpu:.3f} s, "
          f"peak RSS {peak:.0f} MB")  # fmt: skip
    print(f"  a plain check of one of the files (the command's own start): wall "
          f"{one_wall:.3f} s, CPU {one_cpu:.3f} s")  # fmt: skip
    print(f"  in process, CPU: reading and checking the {args.nodes} files {(t1 - t0) * 1000:.0f} "
          f"ms, merge() {(t2 - t1) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
