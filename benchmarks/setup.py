"""How long the action's install step takes: action/install.sh into a fresh virtualenv.

Three cases, each `--rounds` times, medians printed side by side:
- cold: empty uv and pip caches (everything comes from the package registry);
- warm: the caches as the cold run left them (a runner whose package cache is warm);
- cached venv: the virtualenv actions/cache restored (install.sh only checks it).
and, for comparison, warm with pip alone (CO2GATE_NO_UV=1, the fallback when uv cannot be had).
Target: at most 10 s warm.

    python benchmarks/setup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "action" / "install.sh"


def install(venv: Path, caches: Path, **extra: str) -> float:
    env = dict(os.environ)
    env.update(
        UV_CACHE_DIR=str(caches / "uv"),
        PIP_CACHE_DIR=str(caches / "pip"),
        PATH=os.pathsep.join(
            p for p in env["PATH"].split(os.pathsep) if not Path(p, "uv").exists()
        ),
        **extra,
    )
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", str(INSTALL), sys.executable, str(venv), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"install.sh failed:\n{done.stdout}{done.stderr}")
    version = subprocess.run(
        [str(venv / "bin" / "co2gate"), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {
        "cold": [],
        "warm": [],
        "warm, pip only": [],
        "cached venv": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for n in range(args.rounds):
            caches = base / f"caches{n}"
            times["cold"].append(install(base / f"cold{n}", caches))
            times["warm"].append(install(base / f"warm{n}", caches))
            times["cached venv"].append(install(base / f"warm{n}", caches))
            times["warm, pip only"].append(install(base / f"pip{n}", caches, CO2GATE_NO_UV="1"))
            for path in (base / f"cold{n}", base / f"warm{n}", base / f"pip{n}"):
                shutil.rmtree(path, ignore_errors=True)
    print(f"action install step, {args.rounds} rounds, medians (Python {sys.version.split()[0]}):")
    for case, values in times.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"  {case:<16} {statistics.median(values):6.2f} s   (range {spread} s)")
    warm = statistics.median(times["warm"])
    print(f"target: warm <= 10 s: {'met' if warm <= 10 else 'MISSED'} ({warm:.2f} s)")


if __name__ == "__main__":
    main()
