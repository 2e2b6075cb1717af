"""One measured run, end to end: start the command, measure it, price it, write the files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from co2gate import emissions, intensity
from co2gate.github.context import ci_context
from co2gate.measure.codecarbon import CodecarbonMeter
from co2gate.measure.interface import Meter
from co2gate.measure.nvml import gpu_meter
from co2gate.runner import MeterFactory, Supervisor


class SetupError(Exception):
    """Something the user gave is unusable; found before the command starts."""


@dataclass(frozen=True)
class Measured:
    doc: dict[str, Any]  # the emissions.json document
    exit_code: int  # the command's own
    files: tuple[Path, ...]


def default_sources(env: Mapping[str, str]) -> list[MeterFactory]:
    """The energy sources of this machine: NVML's GPUs where a driver is present, codecarbon."""

    def nvml() -> Meter | None:
        return gpu_meter(env)

    return [nvml, CodecarbonMeter]


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
) -> Measured:
    """Run argv under every energy source present and write emissions.json and emissions.csv.

    The location must already be validated. Signals stay forwarded or deferred until the
    files are written, so a cancelled job still leaves its partial measurement behind.
    """
    with Supervisor(argv) as supervisor:
        child, outcomes = supervisor.run(sources if sources is not None else default_sources(env))
        doc = emissions.build(
            child,
            outcomes,
            intensity.resolve(location),
            pue=location.pue,
            labels=labels,
            ci=ci_context(env),
        )
        files = emissions.write(out_dir, doc)
    return Measured(doc=doc, exit_code=child.exit_code, files=files)
