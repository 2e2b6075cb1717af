"""What wrapping a command in `co2gate measure` costs, measured side by side.

A CPU-bound command of about 3 s and one of about 30 s run bare and under co2gate,
alternating, --runs times each. Printed (medians):
- wall time bare and wrapped, and what co2gate adds;
- co2gate's own CPU time: the wrapped process tree's CPU time less the command's own
  (as the kernel reported it to co2gate through wait4);
- how much of that grows with the command's length (30 s vs 5 s);
- start delay: from spawning to the command's first statement, bare vs wrapped (co2gate
  starts the command before importing click or its own rooms: co2gate/launch.py), and beside
  them co2gate with CO2GATE_CHECK_FIRST=1 (every check before the command starts, the path
  pull requests take) and the floor of that design: an interpreter that only imports click
  and the standard modules a wrapper needs, then spawns the command;
- exit latency: from the command's last statement to co2gate's exit;
- peak RSS: the largest resident set in the run's process tree (co2gate or the command).
The command stamps its first and last statements with time.monotonic(), which on Linux is
one clock for every process, so the benchmark can compare them with its own.

    python benchmarks/overhead.py [--runs 5] [--short 3] [--long 30]

Targets: at most 0.15 s of added wall time, at most 0.8 s of co2gate's own CPU, of which at
most 1% of the command's length grows with it, at most 0.1 s exit latency and at most 0.05 s
of added start delay (wrapped less bare).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
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
    peak_rss_mb: float


# The least any click-based wrapper can take before it spawns: an interpreter that imports
# click and the standard modules co2gate needs to spawn and supervise, then runs the command.
FLOOR = (
    "import click, dataclasses, json, logging, pathlib, subprocess, sys; "
    "subprocess.run(sys.argv[1:])"
)


# What users run: the console script the install made (the Action runs it), else -m co2gate.
SCRIPT = Path(sys.executable).with_name("co2gate")
CO2GATE = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "co2gate"]


def one_run(
    seconds: float, wrapped: bool, work: Path, floor: bool = False, check_first: bool = False
) -> Sample:
    stamps, out = work / "stamps", work / "out"
    command = [sys.executable, "-c", COMMAND, str(seconds), str(stamps)]
    if wrapped:
        command = [*CO2GATE, "measure", "--out", str(out), "--", *command]
    elif floor:
        command = [sys.executable, "-c", FLOOR, *command]
    env = {**os.environ, "CO2GATE_CHECK_FIRST": "1" if check_first else ""}
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    t1 = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    tree_cpu = usage.ru_utime + usage.ru_stime  # the child and every descendant it waited for
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed with {proc.returncode}: {command}")
    first, last = (float(x) for x in stamps.read_text().split())
    child_cpu = tree_cpu
    if wrapped:
        child_cpu = json.loads((out / "emissions.json").read_text())["run"]["cpu_s"]
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return Sample(t1 - t0, tree_cpu, child_cpu, first - t0, t1 - last, peak_mb)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (>= 5)")
    parser.add_argument("--short", type=float, default=3.0, help="short command, seconds")
    parser.add_argument("--long", type=float, default=30.0, help="long command, seconds")
    args = parser.parse_args()

    # As installed and run once: pip compiles co2gate's modules at install, and a runner writes
    # them on the first start (the action's cached virtualenv keeps them; action/install.sh
    # compiles the templates too). An editable checkout under PYTHONDONTWRITEBYTECODE would
    # compile them on every start instead.
    import co2gate
    from co2gate.report import compile_templates

    compileall.compile_dir(Path(co2gate.__file__).parent, quiet=1)
    compile_templates()
    print(f"co2gate overhead: {args.runs} runs each, alternating bare and wrapped")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"co2gate: {' '.join(CO2GATE)}\n")
    results: dict[float, dict[bool, list[Sample]]] = {}
    floors: list[float] = []  # start delays under FLOOR, one beside each pair
    first: list[float] = []  # start delays with CO2GATE_CHECK_FIRST=1, one beside each pair
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one_run(0.5, True, work)  # warm the file cache for both kinds
        for seconds in (args.short, args.long):
            results[seconds] = {False: [], True: []}
            for _ in range(args.runs):
                for wrapped in (False, True):
                    results[seconds][wrapped].append(one_run(seconds, wrapped, work))
                floors.append(one_run(0.1, False, work, floor=True).start_delay_s)
                first.append(one_run(0.1, True, work, check_first=True).start_delay_s)

    header = (
        f"{'command':>8} {'bare wall':>10} {'wrapped':>10} {'added wall':>11} "
        f"{'co2gate CPU':>12} {'start delay':>12} {'(bare)':>8} {'added':>7} "
        f"{'exit latency':>13} {'peak RSS':>9} {'(bare)':>8}"
    )
    print(header)
    own_cpu: dict[float, float] = {}
    bare_delays = [b.start_delay_s for kinds in results.values() for b in kinds[False]]
    wrapped_delays = [w.start_delay_s for kinds in results.values() for w in kinds[True]]
    for seconds, kinds in results.items():
        bare, wrapped = kinds[False], kinds[True]
        added = median([w.wall_s for w in wrapped]) - median([b.wall_s for b in bare])
        own_cpu[seconds] = median([w.tree_cpu_s - w.child_cpu_s for w in wrapped])
        rss_w, rss_b = max(w.peak_rss_mb for w in wrapped), max(b.peak_rss_mb for b in bare)
        delay_w = median([w.start_delay_s for w in wrapped])
        delay_b = median([b.start_delay_s for b in bare])
        print(
            f"{seconds:>7.0f}s {median([b.wall_s for b in bare]):>9.3f}s "
            f"{median([w.wall_s for w in wrapped]):>9.3f}s {added:>10.3f}s "
            f"{own_cpu[seconds]:>11.3f}s {delay_w:>11.3f}s {delay_b:>7.3f}s "
            f"{delay_w - delay_b:>6.3f}s {median([w.exit_latency_s for w in wrapped]):>12.3f}s "
            f"{rss_w:>7.0f}MB {rss_b:>6.0f}MB"
        )
    bare_delay = median(bare_delays)
    launched, checked = median(wrapped_delays) - bare_delay, median(first) - bare_delay
    print(
        f"\nstart delay added, {len(first)} runs each: co2gate {launched:.3f} s; with "
        f"CO2GATE_CHECK_FIRST=1 {checked:.3f} s; the floor of checking first (an interpreter "
        f"importing click and the modules a wrapper needs, then spawning) "
        f"{median(floors) - bare_delay:.3f} s"
    )
    growth = (own_cpu[args.long] - own_cpu[args.short]) / (args.long - args.short)
    print(
        f"\nco2gate CPU that grows with the command: {growth * 100:.2f}% of its length "
        f"({own_cpu[args.short]:.3f} s at {args.short:.0f} s, "
        f"{own_cpu[args.long]:.3f} s at {args.long:.0f} s)"
    )
    print(
        "targets: added wall <= 0.150 s, co2gate CPU <= 0.800 s, growth <= 1%, "
        "exit latency <= 0.100 s, added start delay <= 0.050 s"
    )


if __name__ == "__main__":
    main()
