"""What wrapping a command in `co2gate measure` costs, measured side by side.

A CPU-bound command of about 5 s and one of about 30 s run bare and under co2gate,
alternating, --runs times each. Printed (medians):
- wall time bare and wrapped, and what co2gate adds;
- co2gate's own CPU time: the wrapped process tree's CPU time less the command's own
  (as the kernel reported it to co2gate through wait4);
- how much of that grows with the command's length (30 s vs 5 s);
- start delay: from spawning to the command's first statement, bare vs wrapped;
- exit latency: from the command's last statement to co2gate's exit.
The command stamps its first and last statements with time.monotonic(), which on Linux is
one clock for every process, so the benchmark can compare them with its own.

    python benchmarks/overhead.py [--runs 5] [--short 5] [--long 30]

Targets (issue 1/5): at most 0.3 s of added wall time, at most 0.8 s of CPU in all, of
which at most 1% of the command's length grows with it, and at most 0.2 s exit latency.
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
from dataclasses import dataclass
from pathlib import Path

COMMAND = """
import sys, time
stamps = open(sys.argv[2], "w")
stamps.write(f"{time.monotonic()}\\n")
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
stamps.write(f"{time.monotonic()}\\n")
stamps.close()
"""


@dataclass
class Sample:
    wall_s: float
    tree_cpu_s: float  # the whole process tree started for this run
    child_cpu_s: float  # the command alone; equals tree_cpu_s for a bare run
    start_delay_s: float
    exit_latency_s: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(seconds: float, wrapped: bool, work: Path) -> Sample:
    stamps, out = work / "stamps", work / "out"
    command = [sys.executable, "-c", COMMAND, str(seconds), str(stamps)]
    if wrapped:
        command = [sys.executable, "-m", "co2gate", "measure", "--out", str(out), "--", *command]
    cpu0 = children_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = time.monotonic()
    tree_cpu = children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed with {proc.returncode}: {command}")
    first, last = (float(x) for x in stamps.read_text().split())
    child_cpu = tree_cpu
    if wrapped:
        child_cpu = json.loads((out / "emissions.json").read_text())["run"]["cpu_s"]
    return Sample(t1 - t0, tree_cpu, child_cpu, first - t0, t1 - last)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (>= 5)")
    parser.add_argument("--short", type=float, default=5.0, help="short command, seconds")
    parser.add_argument("--long", type=float, default=30.0, help="long command, seconds")
    args = parser.parse_args()

    print(f"co2gate overhead: {args.runs} runs each, alternating bare and wrapped")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    results: dict[float, dict[bool, list[Sample]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one_run(0.5, True, work)  # warm the file cache for both kinds
        for seconds in (args.short, args.long):
            results[seconds] = {False: [], True: []}
            for _ in range(args.runs):
                for wrapped in (False, True):
                    results[seconds][wrapped].append(one_run(seconds, wrapped, work))

    header = (
        f"{'command':>8} {'bare wall':>10} {'wrapped':>10} {'added wall':>11} "
        f"{'co2gate CPU':>12} {'start delay':>12} {'(bare)':>8} {'exit latency':>13}"
    )
    print(header)
    own_cpu: dict[float, float] = {}
    for seconds, kinds in results.items():
        bare, wrapped = kinds[False], kinds[True]
        added = median([w.wall_s for w in wrapped]) - median([b.wall_s for b in bare])
        own_cpu[seconds] = median([w.tree_cpu_s - w.child_cpu_s for w in wrapped])
        print(
            f"{seconds:>7.0f}s {median([b.wall_s for b in bare]):>9.3f}s "
            f"{median([w.wall_s for w in wrapped]):>9.3f}s {added:>10.3f}s "
            f"{own_cpu[seconds]:>11.3f}s {median([w.start_delay_s for w in wrapped]):>11.3f}s "
            f"{median([b.start_delay_s for b in bare]):>7.3f}s "
            f"{median([w.exit_latency_s for w in wrapped]):>12.3f}s"
        )
    growth = (own_cpu[args.long] - own_cpu[args.short]) / (args.long - args.short)
    print(
        f"\nco2gate CPU that grows with the command: {growth * 100:.2f}% of its length "
        f"({own_cpu[args.short]:.3f} s at {args.short:.0f} s, "
        f"{own_cpu[args.long]:.3f} s at {args.long:.0f} s)"
    )
    print(
        "targets: added wall <= 0.300 s, co2gate CPU <= 0.800 s, growth <= 1%, "
        "exit latency <= 0.200 s"
    )


if __name__ == "__main__":
    main()
