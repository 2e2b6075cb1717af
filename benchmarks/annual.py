"""What `co2gate report --format html` costs over a busy year: time, memory, the page's size.

Writes a file ledger of --entries entries over 2026 (four categories, 40 labels, entries as
make_entry writes them now: energy per method, PUE, intensity source, embodied
kg, water on a third, a guard stop in 1%, a preflight refusal in 1%), and a budget file
naming it; then runs `co2gate report --year 2026 --format html` in a child process (the
real command line, as a user runs it) --runs times and prints, for the median run, its wall
time, its CPU time (user + system: steadier than wall time on a shared machine) and the
child's peak RSS; then the HTML's size. The same for `--format md --format csv --format
json --format html` once, for comparison. Target: well under 10 s and modest memory.

    python benchmarks/annual.py [--entries 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from co2gate.ledger.interface import entry_key, shard_of

CATEGORIES = {"training": 0.45, "inference": 0.35, "evaluation": 0.15, "fine-tuning": 0.05}
METHODS = (
    ("rapl", "nvml-energy-counter", "ram-size-estimate"),
    ("vm-share-estimate", "none", "ram-size-estimate"),
    ("tdp-load-estimate", "nvml-power-sampling", "ram-size-estimate"),
)


def make_year(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """n entries spread over 2026, shaped like make_entry's output."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seconds = 365 * 24 * 3600
    labels = [f"{v}-{m}" for v in ("train", "eval", "serve", "tune") for m in range(10)]
    names, weights = list(CATEGORIES), list(CATEGORIES.values())
    out = []
    for i, offset in enumerate(sorted(rng.randrange(seconds) for _ in range(n))):
        ended = start + timedelta(seconds=offset, milliseconds=rng.randrange(1000))
        kwh = rng.lognormvariate(-1.0, 1.5)
        pue = rng.choice((1.0, 1.1, 1.2, 1.58))
        refused = rng.random() < 0.01
        cpu, gpu = kwh * 0.2, kwh * 0.7
        entry: dict[str, Any] = {
            "repository": f"org/model-{i % 25}",
            "run_id": str(10_000_000 + i),
            "run_attempt": "1",
            "job": "train",
            "label": rng.choice(labels),
            "category": rng.choices(names, weights)[0],
            "emissions_kg": 0.0 if refused else kwh * pue * 0.4,
            "energy_kwh": 0.0 if refused else kwh,
            "duration_s": 0.0 if refused else rng.uniform(30, 36_000),
            "ended_at": ended.isoformat(timespec="milliseconds"),
            "sha": f"{rng.getrandbits(160):040x}",
            "ref": "refs/heads/main",
            "event": "push",
            "pr": None,
        }
        if refused:
            entry |= {"refused": True, "projected_kg": kwh * 0.4}
        else:
            entry |= {
                "kwh_by_method": dict(
                    zip(rng.choice(METHODS), (cpu, gpu, kwh - cpu - gpu), strict=True)
                ),
                "pue": pue,
                "intensity_source": "codecarbon 3.3.2: USA/virginia (eGRID 2023)",
                "embodied_kg": kwh * 0.01,
            }
            if i % 3 == 0:
                entry["water_l"] = kwh * 1.8
            if rng.random() < 0.01:
                entry["stopped_by_guard"] = True
        entry["key"] = entry_key(entry)
        out.append(entry)
    return out


def write_ledger(root: Path, entries: list[dict[str, Any]]) -> None:
    shards: dict[str, list[str]] = {}
    for e in entries:
        shards.setdefault(shard_of(e), []).append(json.dumps(e, separators=(",", ":")))
    for shard, lines in shards.items():
        path = root / shard
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


# The report in a child that says its own peak RSS last on stderr (RUSAGE_CHILDREN would
# give the largest child so far: the one that wrote the ledger).
CHILD = """
import resource, runpy, sys
sys.argv = ["co2gate", *sys.argv[1:]]
try:
    runpy.run_module("co2gate", run_name="__main__")
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def timed(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS in bytes) of one child `co2gate ...`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"co2gate {' '.join(args)} exited {done.returncode}: {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(done.stderr.split()[-1]) * 1024  # ru_maxrss is in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-ledger", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.write_ledger:
        write_ledger(opts.write_ledger, make_year(opts.entries))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Written by a child: this process stays small, and so do the report's children
        # at their start (ru_maxrss survives exec).
        subprocess.run(
            [sys.executable, __file__, "--entries", str(opts.entries), "--write-ledger",
             str(root / "ledger")],
            check=True,
        )  # fmt: skip
        entries = range(opts.entries)
        size = sum(p.stat().st_size for p in (root / "ledger").rglob("*.jsonl"))
        (root / ".github").mkdir()
        (root / ".github" / "carbon-budget.yml").write_text(
            "version: 1\nannual_budget_kg: 500000\n"
            "allocations: {training: 0.5, inference: 0.3, evaluation: 0.15, fine-tuning: 0.05}\n"
            "ledger: {backend: file, path: ledger}\n"
        )
        print(f"ledger: {len(entries):,} entries of 2026, {size / 1e6:.1f} MB in 12 shards")
        env_path = os.environ.get("PYTHONPATH")
        print(f"python {sys.version.split()[0]}; PYTHONPATH={env_path or '-'}")
        html = ["report", "--year", "2026", "--format", "html"]
        runs = sorted((timed(html, root) for _ in range(opts.runs)), key=lambda r: r[1])
        wall, cpu, _ = runs[len(runs) // 2]
        peak = max(r[2] for r in runs)
        print(
            f"report --format html: wall {wall:.2f} s, CPU {cpu:.2f} s (median of {opts.runs}; "
            f"CPU {statistics.median(r[1] for r in runs):.2f} s), peak RSS {peak / 2**20:.0f} MiB"
        )
        page = root / "co2gate-report" / "annual-2026.html"
        print(f"annual-2026.html: {page.stat().st_size / 1024:.1f} KiB")
        every = ["report", "--year", "2026"]
        every += [a for f in ("md", "csv", "json", "html") for a in ("--format", f)]
        wall, cpu, _ = timed(every, root)
        sizes = ", ".join(
            f"{p.suffix[1:]} {p.stat().st_size / 1024:.1f} KiB"
            for p in sorted((root / "co2gate-report").iterdir())
        )
        print(f"all four formats: wall {wall:.2f} s, CPU {cpu:.2f} s; {sizes}")


if __name__ == "__main__":
    main()
