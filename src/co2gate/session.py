"""One measured run, end to end: start the command, measure it, price it, write the files."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2gate import emissions, intensity
from co2gate.errors import InputError
from co2gate.github.context import ci_context
from co2gate.guard import Guard, Watch
from co2gate.measure.codecarbon import CodecarbonMeter
from co2gate.measure.interface import Meter
from co2gate.measure.nvml import gpu_meter
from co2gate.runner import MeterFactory, Supervisor
from co2gate.sci import Embodied


class SetupError(InputError):
    """Something the user gave is unusable; found before the command starts."""


@dataclass(frozen=True)
class Measured:
    doc: dict[str, Any]  # the emissions.json document
    exit_code: int  # the command's own
    files: tuple[Path, ...]
    stopped_by_guard: bool = False


def default_sources(
    env: Mapping[str, str], live_interval_s: float | None = None
) -> list[MeterFactory]:
    """The energy sources of this machine: NVML's GPUs where a driver is present, codecarbon.

    live_interval_s: how often codecarbon reads while the command runs, for the guard and
    the heartbeat; None reads once, at the end (NVML samples every 0.5 s either way).
    """

    def nvml() -> Meter | None:
        return gpu_meter(env)

    def codecarbon() -> Meter:
        return CodecarbonMeter(live_interval_s=live_interval_s)

    return [nvml, codecarbon]


def prepare_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"--out {str(path)!r}: cannot create the directory: {e.strerror}") from e
    if not os.access(path, os.W_OK):
        raise SetupError(f"--out {str(path)!r}: the directory is not writable")
    return path


def measure_command(
    argv: Sequence[str],
    *,
    location: intensity.Location,
    labels: emissions.RunLabels,
    out_dir: Path,
    env: Mapping[str, str],
    sources: Sequence[MeterFactory] | None = None,
    watch: Watch | None = None,
    say: Callable[[str], None] | None = None,
    embodied: Embodied | None = None,
) -> Measured:
    """Run argv under every energy source present and write emissions.json and emissions.csv.

    The location must already be validated. Signals stay forwarded or deferred until the
    files are written, so a cancelled job still leaves its partial measurement behind.
    With a watch (a cap, a heartbeat) a live guard watches the run: the intensity is then
    resolved before the command starts, and `say` prints the guard's lines.
    """
    guard, price = None, None
    if watch is not None and watch.wanted:
        price = intensity.resolve(location)
        guard = Guard(watch, pue=location.pue, intensity_g_per_kwh=price.g_per_kwh, say=say)
    if sources is None:
        sources = default_sources(env, guard.watch.source_interval_s() if guard else None)
    with Supervisor(argv, guard) as supervisor:
        child, outcomes = supervisor.run(sources)
        doc = emissions.build(
            child,
            outcomes,
            price if price is not None else intensity.resolve(location),
            pue=location.pue,
            labels=labels,
            ci=ci_context(env),
            embodied=embodied,
        )
        files = emissions.write(out_dir, doc)
    stopped = child.guard_stop is not None
    return Measured(doc=doc, exit_code=child.exit_code, files=files, stopped_by_guard=stopped)
