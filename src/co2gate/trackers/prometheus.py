"""Prometheus: the figures as gauges, in a node_exporter textfile-collector file or pushed to
a Pushgateway (job "co2gate", grouped by the run's label and workload).

The textfile is written by hand: the exposition format is a few lines, and writing it needs no
package (prometheus_client, for the push, is a dependency of codecarbon's anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

from co2gate.trackers import TrackerError, missing

if TYPE_CHECKING:
    from co2gate.model import Measurement

JOB: Final = "co2gate"
PUSH_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]  # (labels, value)


def gauges(m: Measurement) -> list[Gauge]:
    """The run's gauges, without the label and workload (the textfile and the grouping key
    add those)."""
    low, high = m.emissions_bounds
    e = m.energy_kwh
    energy = [({"component": c.value}, kwh) for c, kwh in e.items()]
    energy.append(({"component": "total"}, e.total))
    methods = [
        ({"component": c.value, "method": method.value}, 1.0) for c, method in m.methods.items()
    ]
    one: Mapping[str, str] = {}
    return [
        Gauge(
            "co2gate_emissions_kg",
            "CO2e the run emitted, kg (energy x PUE x intensity).",
            ((one, m.emissions_kg),),
        ),
        Gauge(
            "co2gate_emissions_kg_low",
            "Low end of the run's CO2e ~90% interval, kg.",
            ((one, low),),
        ),
        Gauge(
            "co2gate_emissions_kg_high",
            "High end of the run's CO2e ~90% interval, kg.",
            ((one, high),),
        ),
        Gauge(
            "co2gate_energy_kwh", "Energy the run's devices drew, before PUE, kWh.", tuple(energy)
        ),
        Gauge(
            "co2gate_method_info",
            "How each component's energy was obtained (always 1).",
            tuple(methods),
        ),
        Gauge(
            "co2gate_intensity_g_per_kwh",
            "Grid carbon intensity applied, gCO2e/kWh.",
            ((one, m.intensity_g_per_kwh),),
        ),
        Gauge("co2gate_pue", "Power Usage Effectiveness applied.", ((one, m.pue),)),
        Gauge("co2gate_duration_seconds", "How long the run took, s.", ((one, m.run.duration_s),)),
        Gauge(
            "co2gate_last_run_timestamp_seconds",
            "When the run ended, Unix time.",
            ((one, m.run.ended_at.timestamp()),),
        ),
    ]


def exposition(m: Measurement) -> str:
    """The gauges in Prometheus' text format (0.0.4), each sample labelled with the run's
    label and workload."""
    from co2gate.tokens import mask

    run = {"label": mask(m.run.label), "workload": mask(m.run.workload)}
    out: list[str] = []
    for g in gauges(m):
        out.append(f"# HELP {g.name} {_escape_help(g.help)}")
        out.append(f"# TYPE {g.name} gauge")
        for labels, value in g.samples:
            pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in {**run, **labels}.items())
            out.append(f"{g.name}{{{pairs}}} {float(value)!r}")
    return "\n".join(out) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def write_textfile(m: Measurement, path: Path) -> str:
    """Replace path with the run's gauges, atomically: node_exporter's textfile collector
    never reads half a file (it reads only *.prom, so the temporary file is skipped)."""
    from co2gate.emissions import write_atomic

    try:
        write_atomic(path, exposition(m))
    except OSError as e:
        raise TrackerError(f"could not write {path}: {e.strerror or e}") from e
    return f"wrote {path}"


def push(m: Measurement, url: str) -> str:
    """Push the run's gauges to the Pushgateway at url, replacing the group job="co2gate",
    label=..., workload=... (the run's)."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client import Gauge as Metric
        from prometheus_client.exposition import (
            basic_auth_handler,
            default_handler,
            push_to_gateway,
        )
    except ImportError as e:
        raise missing("prometheus") from e
    from co2gate.tokens import mask

    registry = CollectorRegistry()
    for g in gauges(m):
        names = sorted({k for labels, _ in g.samples for k in labels})
        metric = Metric(g.name, g.help, names, registry=registry)
        for labels, value in g.samples:
            (metric.labels(**labels) if names else metric).set(value)
    key = {"label": mask(m.run.label), "workload": mask(m.run.workload)}
    parts = urlsplit(url if "://" in url else "http://" + url)
    shown = urlunsplit(parts._replace(netloc=_host(parts.hostname) + _port(parts.port)))
    user, password = parts.username, parts.password

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        if user is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    try:
        push_to_gateway(
            shown,
            job=JOB,
            registry=registry,
            grouping_key=key,
            timeout=PUSH_TIMEOUT_S,
            handler=handler,
        )
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise TrackerError(f"could not push to {shown}: {getattr(e, 'reason', None) or e}") from e
    return f"pushed {len(gauges(m))} gauges to {shown} (job {JOB})"


def _host(host: str | None) -> str:
    """The URL's host without its user and password, an IPv6 address in brackets."""
    return f"[{host}]" if host and ":" in host else host or ""


def _port(port: int | None) -> str:
    return f":{port}" if port is not None else ""
