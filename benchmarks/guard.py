"""How far past its cap a guarded run gets, at the default sampling interval.

Each run wraps `python -c "time.sleep(60)"` under a cap it crosses after a few seconds, and
reports, from the emissions.json it leaves:
- cap: the limit the guard enforced, kg;
- guard saw: the emissions the sources had read when the guard acted;
- recorded: the run's emissions as recorded (the command's shutdown included, and for a
  source that became ready after the command started, the part before it extrapolated);
- overshoot: recorded less the cap, in kg and as a share of the cap;
- unseen: the command's first seconds, before its slowest source was ready; the guard does
  not count them (it acts on measured figures only), the recorded figure extrapolates them;
- crossing: when the recorded emissions reached the cap, from the known burn rate;
- to exit: seconds from that crossing to the command's exit.

Fake runs burn a FakeMeter at a known rate from the command's start (it is ready within
milliseconds), so the crossing is exact: cap / rate. The real runs use this machine's
sources (codecarbon, and NVML where there is a GPU) through `co2gate run` with
`--intensity` set so that the cap is crossed REAL_CROSSINGS_S in, after a calibration run;
their burn rate is each run's recorded mean (emissions_kg / duration_s), from which the
crossing is computed.

    python benchmarks/guard.py [--runs 3] [--no-real]

Target (issue "Predict and prevent", part 2): the command exits within 2 s of crossing
its cap, at the default GUARD_INTERVAL_S.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2gate import guard
from co2gate.app.measure import measure_command
from co2gate.emissions import RunLabels
from co2gate.guard import Watch
from co2gate.intensity import Location
from co2gate.measure.fake import FakeMeter
from co2gate.measure.interface import Component, Meter

TARGET_S = 2.0
REAL_CROSSINGS_S = (3.3, 4.2)  # caps set to cross there, once the sources are ready
SLEEP_60 = [sys.executable, "-c", "import time; time.sleep(60)"]
# (watts, g/kWh, cap kg): kg per second = W / 3.6e6 x g/kWh / 1000
FAKE_CASES = (
    (3600.0, 1000.0, 0.00155),  # 1 g/s: crossed 1.55 s in, between two readings
    (3600.0, 1000.0, 0.00423),  # crossed 4.23 s in
    (700.0, 400.0, 0.000_285),  # a GPU's 700 W on a 400 g/kWh grid: 0.078 g/s, 3.66 s in
)


@dataclass(frozen=True)
class Result:
    kind: str
    unseen_s: float  # the command's first seconds, before its last source was ready
    cap_kg: float
    seen_kg: float | None
    recorded_kg: float
    crossing_s: float
    exit_s: float
    stopped: bool

    @property
    def overshoot_kg(self) -> float:
        return self.recorded_kg - self.cap_kg

    @property
    def to_exit_s(self) -> float:
        return self.exit_s - self.crossing_s

    @property
    def met(self) -> bool:
        return self.stopped and self.to_exit_s <= TARGET_S


def fake_run(watts: float, g_per_kwh: float, cap_kg: float, work: Path) -> Result:
    def source() -> Meter:
        return FakeMeter({Component.GPU: watts})

    measured = measure_command(
        SLEEP_60,
        location=Location(intensity_g_per_kwh=g_per_kwh),
        labels=RunLabels("bench", "training"),
        out_dir=work,
        env={},
        sources=[source],
        watch=Watch(limit_kg=cap_kg),
        say=lambda _line: None,
    )
    rate_kg_per_s = watts / 3.6e6 * g_per_kwh / 1000.0
    doc = measured.measurement.to_json()
    return _result(f"fake {watts:g} W at {g_per_kwh:g} g/kWh", doc, cap_kg / rate_kg_per_s)


def real_runs(work: Path, runs: int) -> list[Result]:
    """co2gate run with this machine's sources; the cap set from a calibration run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    budget = work / "carbon-budget.yml"
    budget.write_text(
        "version: 1\nannual_budget_kg: 1000000\nallocations: {training: 1}\n"
        "ledger: {backend: none}\n"
    )
    intensity = "1000000"  # g/kWh: a machine's idle watts emit grams a second
    calibrate = work / "calibrate"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "co2gate",
            "measure",
            "--intensity",
            intensity,
            "--out",
            str(calibrate),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(4)",
        ],
        check=True,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    probe = json.loads((calibrate / "emissions.json").read_text())
    rate = probe["emissions_kg"] / probe["run"]["duration_s"]
    return [
        _guarded_real_run(work, env, budget, intensity, rate * crossing)
        for crossing in REAL_CROSSINGS_S
        for _ in range(runs)
    ]


def _guarded_real_run(
    work: Path, env: dict[str, str], budget: Path, intensity: str, cap: float
) -> Result:
    out = work / "real"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "co2gate",
            "run",
            "--budget-file",
            str(budget),
            "--no-record",
            "--intensity",
            intensity,
            "--max-kg",
            f"{cap:.6g}",
            "--out",
            str(out),
            "--",
            *SLEEP_60,
        ],
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=work,
    )
    doc = json.loads((out / "emissions.json").read_text())
    if proc.returncode != 1:
        print(f"  (co2gate run exited {proc.returncode}, expected 1)")
    run = doc["run"]
    real_rate = doc["emissions_kg"] / run["duration_s"]
    kinds = ", ".join(f"{c} {m}" for c, m in doc["methods"].items() if m != "none")
    return _result(f"real ({kinds})", doc, run["limit_kg"] / real_rate)


def _result(kind: str, doc: dict[str, Any], crossing_s: float) -> Result:
    run = doc["run"]
    stop = run.get("guard") or {}
    watched = [c for c in doc["coverage"].values() if c is not None]
    return Result(
        kind=kind,
        unseen_s=float(run["duration_s"]) * (1.0 - min(watched, default=1.0)),
        cap_kg=float(run["limit_kg"]),
        seen_kg=stop.get("stopped_at_kg"),
        recorded_kg=float(doc["emissions_kg"]),
        crossing_s=crossing_s,
        exit_s=float(run["duration_s"]),
        stopped=bool(run["stopped_by_guard"]),
    )


def show(results: Sequence[Result]) -> None:
    print(
        f"{'source':<52} {'cap kg':>10} {'guard saw':>10} {'recorded':>10} "
        f"{'overshoot kg':>13} {'%':>6} {'unseen':>7} {'crossing':>9} {'exit':>7} "
        f"{'to exit':>8}  met"
    )
    for r in results:
        seen = f"{r.seen_kg:>10.4g}" if r.seen_kg is not None else f"{'-':>10}"
        print(
            f"{r.kind:<52} {r.cap_kg:>10.4g} {seen} {r.recorded_kg:>10.4g} "
            f"{r.overshoot_kg:>13.3g} {r.overshoot_kg / r.cap_kg:>6.0%} {r.unseen_s:>6.2f}s "
            f"{r.crossing_s:>8.2f}s {r.exit_s:>6.2f}s {r.to_exit_s:>7.2f}s  "
            f"{'yes' if r.met else 'NO'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each case")
    parser.add_argument("--no-real", action="store_true", help="skip the real-sources run")
    args = parser.parse_args()

    print(f"co2gate live guard: sampling every {guard.GUARD_INTERVAL_S:g} s (GUARD_INTERVAL_S)")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for watts, g_per_kwh, cap in FAKE_CASES:
            for _ in range(args.runs):
                results.append(fake_run(watts, g_per_kwh, cap, work))
        if not args.no_real:
            results.extend(real_runs(work, args.runs))
    show(results)
    worst = max(r.to_exit_s for r in results)
    fakes = [r.to_exit_s for r in results if r.kind.startswith("fake")]
    print(
        f"\nfrom crossing to exit: median {statistics.median(fakes):.2f} s (fake sources), "
        f"worst {worst:.2f} s (all)"
    )
    met = all(r.met for r in results)
    print(
        f"target: the command exits within {TARGET_S:.0f} s of crossing its cap: "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
