"""Experiment trackers: a measured run's figures and methods, sent where the user asked.

One module per destination (mlflow.py, wandb.py, prometheus.py), each a `send(m, ...)` that
returns what it did in a line or raises TrackerError. `send_all` calls the ones asked for and
turns every failure into one warning line: a tracker never changes the verdict or the exit
code, and it is called only after emissions.json is on disk. Nothing is sent unless asked.
The trackers' packages are imported inside their functions, after the measured command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from co2gate.errors import ServiceError

if TYPE_CHECKING:
    from co2gate.model import Measurement

PREFIX: Final = "co2gate."  # of every metric and tag name
MAX_MESSAGE: Final = 300  # characters of a tracker's own error message in the warning


class TrackerError(ServiceError):
    """A tracker could not take the figures: its package is missing, its server is down or
    refused, the run it should write to does not exist."""


def missing(extra: str) -> TrackerError:
    return TrackerError(f"not installed: pip install 'co2gate[{extra}]'")


@dataclass(frozen=True)
class Targets:
    """Where the figures go besides co2gate's own files; by default nowhere."""

    mlflow: bool = False
    wandb: bool = False
    prometheus_textfile: Path | None = None
    prometheus_pushgateway: str | None = None

    @property
    def wanted(self) -> bool:
        return bool(
            self.mlflow or self.wandb or self.prometheus_textfile or self.prometheus_pushgateway
        )


def metrics(m: Measurement) -> dict[str, float]:
    """The figures, by the names every tracker shows them (kg, kWh, g/kWh, s)."""
    low, high = m.emissions_bounds
    e = m.energy_kwh
    figures = {
        "emissions_kg": m.emissions_kg,
        "emissions_kg_low": low,
        "emissions_kg_high": high,
        "energy_kwh.cpu": e.cpu,
        "energy_kwh.gpu": e.gpu,
        "energy_kwh.ram": e.ram,
        "energy_kwh.total": e.total,
        "intensity_g_per_kwh": m.intensity_g_per_kwh,
        "pue": m.pue,
        "duration_s": m.run.duration_s,
    }
    if m.per_request_g is not None:
        figures["per_request_g"] = m.per_request_g
    return {PREFIX + name: value for name, value in figures.items()}


def tags(m: Measurement) -> dict[str, str]:
    """How the figures were obtained and what the run is; no token (masked) and never the
    command line, which can carry secrets."""
    from co2gate.tokens import mask

    found = {f"method.{c.value}": method.value for c, method in m.methods.items()}
    found |= {
        "intensity_source": m.intensity_source,
        "label": m.run.label,
        "workload": m.run.workload,
        "run_id": m.run.id,
    }
    return {PREFIX + name: mask(value) for name, value in found.items()}


def send_all(m: Measurement, targets: Targets, env: Mapping[str, str]) -> list[str]:
    """Send m to every target asked for; one line each: what was sent, or a warning."""
    from co2gate import tokens

    tokens.watch(env)  # every token variable in env is masked in what is sent
    said: list[str] = []
    if targets.mlflow:
        from co2gate.trackers import mlflow

        said.append(_attempt("mlflow", lambda: mlflow.send(m, env)))
    if targets.wandb:
        from co2gate.trackers import wandb

        said.append(_attempt("wandb", lambda: wandb.send(m, env)))
    if targets.prometheus_textfile is not None:
        from co2gate.trackers import prometheus

        path = targets.prometheus_textfile
        said.append(_attempt("prometheus", lambda: prometheus.write_textfile(m, path)))
    if targets.prometheus_pushgateway is not None:
        from co2gate.trackers import prometheus

        url = targets.prometheus_pushgateway
        said.append(_attempt("prometheus", lambda: prometheus.push(m, url)))
    return said


def _attempt(name: str, send: Callable[[], str]) -> str:
    import warnings

    try:
        with warnings.catch_warnings():  # a library's deprecation notices are not co2gate's
            warnings.simplefilter("ignore")
            return f"{name}: {send()}"
    except TrackerError as e:
        return f"warning: {name}: {_short(str(e))}; the figures were not sent there"
    except Exception as e:  # a tracker's library may raise anything: never the verdict's end
        what = _short(f"{type(e).__name__}: {e}")
        return f"warning: {name}: {what}; the figures were not sent there"


def _short(text: str) -> str:
    """A library's message as one short line (its first non-empty line)."""
    first = next((s.strip() for s in text.splitlines() if s.strip()), "no reason given")
    return first if len(first) <= MAX_MESSAGE else first[: MAX_MESSAGE - 1] + "…"
