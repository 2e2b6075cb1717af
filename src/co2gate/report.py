"""Presentation for people: terminal lines, and the report (PR comment, job summary)
rendered from templates/ with Jinja2 over one context object built from plain data."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

import jinja2
from markupsafe import Markup

from co2gate import __version__, fmt, units
from co2gate.budget import Budget, Gated
from co2gate.errors import InputError
from co2gate.intensity import Intensity
from co2gate.measure.interface import Component, Method
from co2gate.model import CiInfo, Gpu, Measurement, Sci
from co2gate.pareto import Standing
from co2gate.water import Water

if TYPE_CHECKING:
    from co2gate.annual import Annual


def summary_lines(m: Measurement) -> list[str]:
    """The few lines `co2gate measure` prints on stderr after the command's own output."""
    parts = ", ".join(
        f"{c.value} {fmt.energy(m.energy_kwh.of(c))} ({method.value})"
        if method not in (Method.NONE, Method.CODECARBON_TOTAL)
        else f"{c.value} {'none' if method is Method.NONE else 'in the total only'}"
        for c, method in m.methods.items()
    )
    total = fmt.energy(m.energy_kwh.total)
    low, high = m.emissions_bounds
    span = f" ({fmt.mass_range(low, high)}, a ~90% range)" if high > low else ""
    lines = [
        f"{total} in {fmt.duration(m.run.duration_s)}: {parts}",
        f"{fmt.mass(m.emissions_kg)} CO2e{span} = {total} x PUE {m.pue:g}"
        f" x {m.intensity_g_per_kwh:.4g} g/kWh ({m.intensity_source})",
    ]
    g = m.grid
    if g is not None and g.marginal_g_per_kwh is not None and g.marginal_emissions_kg is not None:
        lines.append(
            f"marginal: {fmt.mass(g.marginal_emissions_kg)} CO2e at "
            f"{g.marginal_g_per_kwh:.4g} g/kWh (reported beside the average; not gated or recorded)"
        )
    lines += [f"note: {note}" for note in m.notes]
    return lines


def verdict_lines(decision: Any, notes: Sequence[str]) -> list[str]:
    """The verdict after a gated run: the decision with its numbers, then the reasons."""
    d = decision.to_json()
    share = f" ({fmt.pct(d['share'])} of it)" if d["share"] is not None else ""
    lines = [
        f"{d['verdict'].upper()}: {d['category']} {fmt.mass(d['after_kg'])} of "
        f"{fmt.mass(d['allocation_kg'])}{share} after this run's {fmt.mass(d['run_kg'])}; "
        f"{fmt.left(d['allocation_kg'], d['after_kg'])}; tier {d['tier']}"
    ]
    lines += list(d["reasons"])
    lines += [f"note: {note}" for note in notes]
    return lines


def standing_lines(standing: Mapping[str, Any]) -> list[str]:
    """`co2gate budget` as a terminal table."""
    start, end = (date.fromisoformat(standing[k]) for k in ("year_start", "year_end"))
    lines = [
        f"budget year {fmt.year(start, end)}: "
        f"{fmt.mass(standing['used_kg'])} of {fmt.mass(standing['annual_budget_kg'])} used",
        "",
        f"{'category':<16}{'allocated':>12}{'used':>12}{'remaining':>12}{'share':>8}{'runs':>6}",
    ]
    for c in standing["categories"]:
        lines.append(
            f"{c['category']:<16}{fmt.mass(c['allocation_kg']):>12}{fmt.mass(c['used_kg']):>12}"
            f"{fmt.mass(c['remaining_kg']):>12}{fmt.pct(c['share']):>8}{c['runs']:>6}"
        )
    lines += ["", f"at this year's pace (constant since {fmt.day(start)}):"]
    lines += [f"  {c['category']}: {burndown_sentence(c)}" for c in standing["categories"]]
    used_l, most = standing.get("water_used_l"), standing.get("water_budget_l")
    if used_l is not None:
        of = f" of the {fmt.water(most)} water budget ({fmt.pct(used_l / most)})" if most else ""
        lines += ["", f"water: {fmt.water(used_l)} used this budget year{of}"]
    if standing["top_runs"]:
        lines += ["", "runs that used the most:"]
        lines += [
            f"  {fmt.mass(float(r['emissions_kg'])):>10}  {r['category']:<12} {r['label']}"
            f"  {r['ended_at'][:10]}"
            for r in standing["top_runs"]
        ]
    return lines


def burndown_sentence(c: Mapping[str, Any]) -> str:
    """A category's forecast (burndown.Burndown.to_json() keys) as one sentence."""
    pace = c["pace_kg_per_day"]
    if not pace:
        return "nothing used yet: no run-out date"
    per_day = f"{fmt.mass(pace)} a day"
    out = c["runs_out_on"]
    if c["used_kg"] >= c["allocation_kg"]:
        return f"{per_day}: the allocation is spent"
    if out is None:
        return f"{per_day}: the allocation lasts for years"
    if c["runs_out_before_year_end"]:
        return f"warning: {per_day}: the allocation runs out on {out}, before the budget year ends"
    return f"{per_day}: the allocation lasts the year (it would run out on {out})"


def _history_sentence(doc: Mapping[str, Any]) -> str:
    """'the last 3 runs of 'train' emitted a median of 2.1 g CO2e (min ..., p90 ..., max ...)'."""
    h, label = doc["history"], doc["inputs"]["label"]
    kg = h["emissions_kg"]
    if h["runs"] == 1:
        return f"the only recorded run of {label!r} emitted {fmt.mass(kg['median'])} CO2e"
    return (
        f"the last {h['runs']} runs of {label!r} emitted a median of {fmt.mass(kg['median'])} "
        f"CO2e (min {fmt.mass(kg['min'])}, p90 {fmt.mass(kg['p90'])}, max {fmt.mass(kg['max'])})"
    )


def _exact(value: float, unit: str) -> str:
    """' (289,012 kWh)': a figure in the thousands written out beside its rounded form."""
    return f" ({fmt.count(value)} {unit})" if value >= 1000 else ""


def estimate_lines(doc: Mapping[str, Any]) -> list[str]:
    """`co2gate estimate` as terminal lines: the inputs, the figures, then the verdict."""
    i = doc["inputs"]
    if doc["mode"] == "history":
        h = doc["history"]
        lines = [
            f"projection from history: {_history_sentence(doc)}; runs ended "
            f"{str(h['first_ended_at'])[:10]} to {str(h['last_ended_at'])[:10]}"
        ]
        if h["energy_kwh"] is not None:
            lines.append(f"  energy per run: median {fmt.energy(h['energy_kwh']['median'])}")
        if doc["wall_hours"] is not None:
            median = fmt.duration(doc["wall_hours"] * units.SECONDS_PER_HOUR)
            lines.append(f"  duration per run: median {median}")
        lines.append(f"  intensity: {doc['intensity_source']}")
    else:
        gpu = i["gpu"] or "GPU"
        each = f"{fmt.power(i['watts_per_gpu'])} each"
        if doc["mode"] == "compute":
            head = (
                f"projection from compute: {i['flops']:.4g} FLOP on {gpu} at "
                f"{i['mfu'] * 100:g}% MFU of its {i['peak_tflops']:g} TFLOP/s "
                f"{i['precision']} peak, {each}"
            )
        else:
            hours = fmt.duration(i["hours"] * units.SECONDS_PER_HOUR)
            head = f"projection from hardware: {i['gpus']} x {gpu} at {each} for {hours}"
        gpu_hours, kwh, pue_kwh = doc["gpu_hours"], doc["energy_kwh"], doc["energy_with_pue_kwh"]
        lines = [
            head,
            f"  GPU time: {fmt.count(gpu_hours)} GPU-hours"
            if gpu_hours >= 100
            else f"  GPU time: {gpu_hours:.3g} GPU-hours",
            f"  wall time: {fmt.duration(doc['wall_hours'] * units.SECONDS_PER_HOUR)} on "
            + ("1 GPU" if i["gpus"] == 1 else f"{i['gpus']} GPUs"),
            f"  energy: {fmt.energy(kwh)}{_exact(kwh, 'kWh')} at the GPUs, "
            f"{fmt.energy(pue_kwh)}{_exact(pue_kwh, 'kWh')} with PUE {doc['pue']:g}",
            f"  intensity: {doc['intensity_g_per_kwh']:.4g} gCO2e/kWh ({doc['intensity_source']})",
        ]
        if i["gpu"]:
            lines.append(f"  {i['gpu']}: {i['gpu_source']}")
        if i["watts_source"] == "--watts":
            lines.append(f"  power: {each}, from --watts")
    kg, bounds = doc["emissions_kg"], doc.get("emissions_kg_range")
    span = ""
    if bounds and bounds[1] > bounds[0]:
        span = f" ({fmt.mass_range(*bounds)}, the grid intensity's ~90% range alone)"
    lines.append(f"  emissions: {fmt.mass(kg)} CO2e{_exact(kg, 'kg')}{span}")
    v = doc["verdict"]
    share = f" ({fmt.pct(v['share'])} of it)" if v["share"] is not None else ""
    lines.append(
        f"{v['verdict'].upper()}: {v['category']} would be at {fmt.mass(v['after_kg'])} of "
        f"{fmt.mass(v['allocation_kg'])}{share} after this run; "
        f"{fmt.left(v['allocation_kg'], v['after_kg'])}; tier {v['tier']}"
    )
    lines += list(v["reasons"])
    return lines


def preflight_reason(doc: Mapping[str, Any]) -> str:
    """The first reason in a refused run's verdict.json: what the projection was."""
    return f"preflight: not started: {_history_sentence(doc)}, projected for this run."


def preflight_line(doc: Mapping[str, Any]) -> str:
    """The line `run --preflight` prints before it starts the command."""
    v = doc["verdict"]
    return (
        f"preflight: {v['verdict'].upper()}: {_history_sentence(doc)}; {v['category']} would "
        f"be at {fmt.mass(v['after_kg'])} of {fmt.mass(v['allocation_kg'])} after it; starting"
    )


# ------------------------------------------------------------------------------ the report

TEMPLATES = Path(__file__).with_name("templates")  # the repository's templates/, in the wheel
TEMPLATE_NAMES = ("comment.md.j2", "summary.md.j2")

# How each method obtains its figure: measured or estimated, and what to expect of it.
ABOUT: Final[dict[Method, str]] = {
    Method.NVML_ENERGY_COUNTER: "the GPU's own energy counter (NVML); the best published "
    "accuracy against an external meter is about 5%, and GPUs are not the whole node",
    Method.NVML_POWER_SAMPLING: "NVML power samples, integrated; on A100/H100 a reading covers "
    "about a quarter of the time, so this can be off by tens of percent",
    Method.NVML_PROCESS_SHARE: "the GPU's NVML energy times the job's share of its SM "
    "utilisation samples (nvmlDeviceGetProcessUtilization), because other processes used "
    "the same GPU; the share is an attribution, not a measurement",
    Method.RAPL: "the CPU's RAPL energy counters (package and DRAM domains)",
    Method.TDP_LOAD_ESTIMATE: "codecarbon's estimate from the CPU's TDP and its load "
    "(RAPL not readable); expect +-30% or worse",
    Method.VM_SHARE_ESTIMATE: "codecarbon's TDP-and-load estimate scaled to this VM's share "
    "of the socket; published models agree only within about +-20-40% on a VM",
    Method.CGROUP_QUOTA_SHARE: "the machine's CPU figure (RAPL or codecarbon's estimate) "
    "times the container's share of the host's CPUs (its cgroup v2 cpu.max quota over the "
    "host's CPUs): the quota caps the job's CPU time, it does not say it was used",
    Method.RAM_SIZE_ESTIMATE: "codecarbon's constant 5 W per DIMM of installed RAM, "
    "whatever the use",
    Method.CODECARBON: "codecarbon's own figure from your emissions.csv, which does not say "
    "whether it measured (RAPL, NVML) or estimated it",
    Method.CODECARBON_TOTAL: "codecarbon's total from your emissions.csv, whose layout has no "
    "cpu, gpu and ram columns: the split between them is unknown",
    Method.USER_CONSTANT: "a figure you configured",
    Method.FAKE: "a test double, not a measurement",
    Method.NONE: "no such device",
    Method.FAILED: "the source failed: the figure is missing (see the notes)",
}
IDLE_GPU_PCT = 5.0  # a GPU whose mean utilisation stays below this idled through the run


def context(
    m: Measurement,
    gated: Gated | None = None,
    budget: Budget | None = None,
    *,
    elsewhere: Sequence[Intensity] = (),
) -> dict[str, Any]:
    """The one object every template receives; README "Templates" documents its keys.

    Plain data only: numbers stay numbers (templates format them with the kg, kwh, w and
    pct filters) and text from the run or the event is escaped on output. `m` was checked
    when it was read (Measurement.from_json), even when it came from an artifact.
    """
    parts = [_part(m, c) for c in Component]
    energy = m.energy_kwh.total
    return {
        "version": __version__,
        "run": {
            "label": m.run.label,
            "workload": m.run.workload,
            "command": shlex.join(m.run.command),
            "exit_code": m.run.exit_code,
            "signal": m.run.signal,
            "duration_s": m.run.duration_s,
            "started_at": m.run.started_at.isoformat(timespec="milliseconds"),
            "stopped_by_guard": m.run.stopped_by_guard,
        },
        "energy": parts,
        "energy_kwh": energy,
        "estimated": [p["component"] for p in parts if not p["measured"]],
        "emissions_kg": m.emissions_kg,
        # [low, high] of the ~90% interval; equal bounds: a file without a range
        "emissions_kg_range": list(m.emissions_bounds),
        "energy_kwh_range": list(m.energy_bounds.total),
        "pue": m.pue,
        "intensity_g_per_kwh": m.intensity_g_per_kwh,
        "intensity_source": m.intensity_source,
        "grid": _grid(m),
        "car": {
            "km": units.car_km(m.emissions_kg),
            "kg_per_km": units.CAR_KG_PER_MILE / units.KM_PER_MILE,
            "source": "US EPA: a typical passenger car emits about 400 g CO2 per mile",
        },
        "gpus": [_gpu(g) for g in m.gpus],
        # a merged run's machines (check --merge); [] otherwise
        "nodes": [
            {
                "host": n.host,
                "ranks": _ranks(n.ranks),
                "files": n.files,
                "gpus": n.gpus,
                "energy_kwh": n.energy_kwh,
                "emissions_kg": n.emissions_kg,
            }
            for n in m.nodes
        ],
        "elsewhere": [
            {
                "where": i.source.split(": ", 1)[-1],
                "intensity_g_per_kwh": i.g_per_kwh,
                "emissions_kg": energy * m.pue * i.g_per_kwh / 1000.0,
                "saving": 1.0 - i.g_per_kwh / m.intensity_g_per_kwh,
            }
            for i in elsewhere
            if i.g_per_kwh < m.intensity_g_per_kwh
        ],
        "requests": _per_request(m.requests, m.emissions_kg, energy, budget, gated),
        "sci": _sci(m.sci),
        "water": _water(m.water),
        "verdict": _verdict(gated, budget) if gated and budget else None,
        "notes": [*m.notes, *(gated.notes if gated else ())],
        "ci": _ci(m.ci),
    }


def _grid(m: Measurement) -> dict[str, Any] | None:
    """How a live provider priced the run: the method, and the marginal figure beside the
    average where the provider has one; None when codecarbon's data or a figure priced it."""
    g = m.grid
    if g is None:
        return None
    return {
        "method": g.method,
        "intervals": len(g.intervals),
        "energy": g.energy,
        "marginal_g_per_kwh": g.marginal_g_per_kwh,
        "marginal_emissions_kg": g.marginal_emissions_kg,
    }


def _part(m: Measurement, component: Component) -> dict[str, Any]:
    method = m.methods.of(component)
    return {
        "component": component.value.upper(),
        "kwh": m.energy_kwh.of(component),
        "power_w": m.power_w.of(component),
        "method": method.value,
        "measured": method.is_measured or method is Method.NONE,
        "about": ABOUT[method],
    }


def _water(block: Water | None) -> dict[str, Any] | None:
    """The run's litres, their parts and factors; None: no water factors were given."""
    return None if block is None else {"water_l": block.water_l} | block.to_json()


def _sci(block: Sci | None) -> dict[str, Any] | None:
    if block is None:
        return None
    return {
        "operational_kg": block.operational_kg,
        "embodied_kg": block.embodied_kg,
        "unit": block.functional_unit,
        "units": block.units,
        "kg_per_unit": block.kg_per_unit,
        "source": block.embodied.source,
        "gpus": block.embodied.gpus,
        "server_share": block.embodied.server_share,
    }


def _ranks(ranks: Sequence[int]) -> str:
    """0-7, 9, 12-13: ranks in runs; "" when none is known."""
    spans: list[list[int]] = []
    for r in sorted(ranks):
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _gpu(gpu: Gpu) -> dict[str, Any]:
    util = gpu.mean_utilization_pct
    return {
        "index": gpu.index,
        "name": gpu.name,
        "energy_kwh": gpu.energy_kwh,
        "mean_power_w": gpu.mean_power_w,
        "mean_utilization_pct": util,
        "idle": util is not None and util < IDLE_GPU_PCT,
    }


def _per_request(
    requests: int | None,
    emissions_kg: float,
    energy_kwh: float,
    budget: Budget | None,
    gated: Gated | None,
) -> dict[str, Any] | None:
    """Per-request figures, and their projection to a year where the budget file has one."""
    if not requests:
        return None
    per_year = budget.inference_requests_per_year if budget else None
    projected = emissions_kg / requests * per_year if per_year else None
    allocation = None
    if gated and gated.decision.category == "inference":
        allocation = gated.decision.allocation_kg
    return {
        "count": requests,
        "g": emissions_kg * 1000.0 / requests,
        "wh": energy_kwh * 1000.0 / requests,
        "per_year": per_year,
        "projected_kg": projected,
        "allocation_kg": allocation,
    }


def _verdict(gated: Gated, budget: Budget) -> dict[str, Any]:
    d = gated.decision
    base: dict[str, Any] | None = None
    if gated.base_run_kg is not None:
        most = budget.regression_max_increase
        base = {
            "run_kg": gated.base_run_kg,
            "change": d.run_kg / gated.base_run_kg - 1 if gated.base_run_kg > 0 else None,
            "max_increase": most,
            "cap_kg": gated.base_run_kg * (1 + most) if most is not None else None,
            "noise": None,
            # why an exceeded rule passes (regression.allow_if_better); None: it did not
            "allowed": gated.regression.allowed if gated.regression else None,
        }
        check = gated.regression
        if check is not None and check.method.value == "bootstrap":
            base["noise"] = {  # the median of the last runs, the bootstrap's bounds on the change
                "runs": len(check.base_runs),
                "median_kg": check.base,
                "change": check.ratio - 1,
                "low": check.low - 1,
                "high": check.high - 1,
                "confidence": check.confidence,
                "failed": check.failed,
                "allowed": check.allowed if check.exceeded else None,
                "per": check.per_unit or "",
            }
    burn = None
    if gated.burn:
        kgs = [kg for _, kg in gated.burn]
        top = max(d.allocation_kg, *kgs) * 1.1 or 1.0
        unit, scale = ("kg", 1.0) if top >= 1 else ("g", 1e3) if top >= 1e-3 else ("mg", 1e6)
        burn = {  # in `unit`, so that the chart's axis reads well
            "unit": unit,
            "months": [_MONTHS[int(month[5:7]) - 1] for month, _ in gated.burn],
            "used": [kg * scale for kg in kgs],
            "allocation": d.allocation_kg * scale,
            "warn": d.allocation_kg * d.warn_at * scale,
            "top": top * scale,
        }
    start, end = gated.year or (None, None)
    return d.to_json() | {
        "year_start": start.isoformat() if start else "",
        "year_end": (end - timedelta(days=1)).isoformat() if end else "",  # inclusive
        "year": fmt.year(start, end) if start and end else "",
        "warn_kg": d.warn_at * d.allocation_kg,
        "recorded": gated.recorded,
        "on_exceed": budget.on_exceed.value,
        "limit_kg": budget.limits.get(d.category),
        "base": base,
        "usage": [
            {
                "category": u.category,
                "allocation_kg": u.allocation_kg,
                "used_before_kg": u.used_before_kg,
                "run_kg": u.run_kg,
                "remaining_kg": u.allocation_kg - u.used_before_kg - u.run_kg,
                "share": (u.used_before_kg + u.run_kg) / u.allocation_kg
                if u.allocation_kg > 0
                else None,
                "bar": usage_bar(u.used_before_kg, u.run_kg, u.allocation_kg, d.warn_at),
                "this": u.category == d.category,
            }
            for u in gated.categories
        ],
        "burn": burn,
        "quality": _quality(gated.quality),
        "burndown": None
        if gated.burndown is None
        else gated.burndown.to_json()
        | {"used_kg": gated.burndown.used_kg, "spent": d.after_kg >= d.allocation_kg},
        "water": gated.water.to_json() if gated.water else None,
    }


MAX_FRONT = 8  # rows of the front the comment lists


def _quality(standing: Standing | None) -> dict[str, Any] | None:
    """The run against its label's history on (CO2e, metric): the front, lightest first."""
    if standing is None:
        return None
    by = standing.dominated_by
    return {
        "metric": standing.metric,
        "better": standing.better.value,
        "assumed": standing.assumed,
        "history": standing.history,
        "on_front": standing.on_front,
        "sentence": standing.sentence(),
        "run": {"kg": standing.run.kg, "value": standing.run.value},
        "dominated_by": {"name": by.name, "when": by.when, "kg": by.kg, "value": by.value}
        if by
        else None,
        "front": [
            {
                "name": p.name,
                "when": p.when,
                "kg": p.kg,
                "value": p.value,
                "this": p is standing.run,
            }
            for p in standing.front[:MAX_FRONT]
        ],
        "front_size": len(standing.front),
    }


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _ci(ci: CiInfo | None) -> dict[str, Any] | None:
    if ci is None:
        return None
    run_url = None
    if ci.server_url and ci.repository and ci.run_id and is_http_url(ci.server_url):
        run_url = f"{ci.server_url}/{ci.repository}/actions/runs/{ci.run_id}"
    sha = ci.sha or ""
    return {
        "repository": ci.repository or "",
        "event": ci.event or "",
        "ref": ci.ref or "",
        "head_ref": ci.head_ref or "",
        "base_ref": ci.base_ref or "",
        "sha": sha,
        "short_sha": sha[:7],
        "pr": ci.pr,
        "job": ci.job or "",
        "run_url": run_url,
    }


BAR_CELLS = 20


def usage_bar(used_before_kg: float, run_kg: float, allocation_kg: float, warn_at: float) -> str:
    """A category's year as 20 cells: used before (█), this run (▓), left (░), warn line (┊).

    A run that takes the category past its allocation fills the bar and ends it with ▶.
    """
    if allocation_kg <= 0:
        return "▶" if used_before_kg + run_kg > 0 else "░" * BAR_CELLS
    before = min(BAR_CELLS, round(used_before_kg / allocation_kg * BAR_CELLS))
    after = min(BAR_CELLS, round((used_before_kg + run_kg) / allocation_kg * BAR_CELLS))
    if run_kg > 0 and after == before and before < BAR_CELLS:
        after += 1  # a run too small for a cell still shows
    cells = ["█"] * before + ["▓"] * (after - before) + ["░"] * (BAR_CELLS - after)
    warn = min(BAR_CELLS - 1, int(warn_at * BAR_CELLS))
    if cells[warn] == "░":
        cells[warn] = "┊"
    bar = "".join(cells)
    return bar + "▶" if used_before_kg + run_kg > allocation_kg else bar


class TemplateProblem(InputError):
    """A template that cannot be loaded or rendered: one line naming it."""


class Compiled(jinja2.FileSystemBytecodeCache):
    """co2gate's templates compiled, kept beside them as Python keeps a module's .pyc files
    (compiling comment.md.j2 costs about 0.14 s of CPU on a 2-core runner; loading it, a few
    ms). Read when present: Jinja2 checks each against its template's source and Python's
    version, and compiles again when either differs. Written when `write` (by default unless
    PYTHONDONTWRITEBYTECODE is set) and the directory is writable; never an error."""

    def __init__(self, write: bool | None = None) -> None:
        super().__init__(str(TEMPLATES / "__pycache__"))
        self.write = not sys.dont_write_bytecode if write is None else write

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):  # unreadable: compiled from the source instead
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if not self.write:
            return
        with contextlib.suppress(OSError):
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)


def compile_templates() -> None:
    """Compile co2gate's own templates into their cache, as an install compiles its modules
    (action/install.sh, benchmarks/overhead.py)."""
    env = _environment(None, Compiled(write=True))
    for name in TEMPLATE_NAMES:
        env.get_template(name)


@functools.cache  # one environment per directory: compiled templates are reused
def environment(template_dir: Path | None = None) -> jinja2.Environment:
    """Templates from `template_dir` first (any of ours overridden by name), then ours,
    which alone are compiled into the cache beside them (Compiled)."""
    return _environment(template_dir, None if template_dir else Compiled())


def _environment(
    template_dir: Path | None, cache: jinja2.BytecodeCache | None
) -> jinja2.Environment:
    dirs = [str(template_dir)] if template_dir else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*dirs, str(TEMPLATES)]),
        bytecode_cache=cache,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        kg=lambda kg: Markup(fmt.mass(kg)),
        kg_range=lambda bounds: Markup(fmt.mass_range(bounds[0], bounds[1])),
        kwh=lambda kwh: Markup(fmt.energy(kwh)),
        w=lambda w: Markup(fmt.power(w)),
        pct=lambda fraction, digits=1: Markup(fmt.pct(fraction, digits)),
        left=lambda allocation_kg, used_kg: Markup(fmt.left(allocation_kg, used_kg)),
        code=code,
        num=num,
        km=lambda km: Markup(fmt.distance(km)),
        litres=lambda litres: Markup(fmt.water(litres)),
        count=lambda n: Markup(fmt.count(n)),
        counted=lambda n, noun: Markup(fmt.counted(n, noun)),
        duration=lambda seconds: Markup(fmt.duration(seconds)),
        mermaid=mermaid,
        url=url,
    )
    return env


def check_templates(template_dir: Path | None) -> None:
    """Compile every template now, so a broken override stops a run before it starts."""
    env = environment(template_dir)
    for name in TEMPLATE_NAMES:
        try:
            env.get_template(name)
        except jinja2.TemplateError as e:
            raise TemplateProblem(_template_error(name, e, template_dir)) from e


def render(name: str, ctx: Mapping[str, Any], template_dir: Path | None = None) -> str:
    try:
        return environment(template_dir).get_template(name).render(ctx)
    except jinja2.TemplateError as e:
        raise TemplateProblem(_template_error(name, e, template_dir)) from e


def _template_error(name: str, e: jinja2.TemplateError, template_dir: Path | None) -> str:
    where = f"{template_dir}/{name}" if template_dir and (template_dir / name).is_file() else name
    line = getattr(e, "lineno", None)
    return f"template {where}{f':{line}' if line else ''}: {e.message or type(e).__name__}"


# ------------------------------------------------------------------------------ escaping

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
# What GitHub turns into a link by itself (GFM's extended autolinks: a scheme and its colon,
# a www. prefix); an e-mail address is already broken by md()'s "@".
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|xmpp)(?=:)|(www)(?=\.)")


def md(text: object) -> str:
    """Text made inert in Markdown and HTML: punctuation that could start markup is
    backslash-escaped, <, > and & become entities, line breaks spaces, an @ cannot
    mention anyone and a URL (https:, www.) shows as text that GitHub does not autolink."""
    s = " ".join(str(text).splitlines())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _AUTOLINK.sub(lambda m: m[0] + "\u200b", s)  # a URL shows as text, never a link
    return _MD_SPECIAL.sub(r"\\\1", s).replace("@", "@\u200b")


def code(text: object, cell: bool = True) -> Markup:
    """Text as an inline code span: shown verbatim, never markup. `cell`: inside a table,
    where GitHub splits rows at every | first, so it must be escaped even in code."""
    s = " ".join(str(text).splitlines())
    s = s.replace("|", "\\|") if cell else s
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return Markup(f"{fence}{pad}{s}{pad}{fence}")


def _finalize(value: object) -> object:
    """Every {{ expression }}: our own formatted text passes, anything else is escaped."""
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return md(value)


def num(value: float) -> Markup:
    """A number as Mermaid and JSON read it: plain decimal, 4 significant figures."""
    return Markup(f"{float(f'{value:.4g}'):f}".rstrip("0").rstrip("."))


def mermaid(text: object) -> Markup:
    """Text for a quoted Mermaid label: letters, digits, spaces and . _ : - only."""
    return Markup(re.sub(r"[^A-Za-z0-9 ._:-]", "", str(text)))


def url(text: object) -> Markup:
    """A URL for a Markdown link target: anything that could end or break it percent-encoded.
    Only an http(s) URL with a host is a target; anything else (javascript:, data:) is ""."""
    if not is_http_url(str(text)):
        return Markup("")
    return Markup(quote(str(text), safe=":/?#=&%~.-_+@"))


def is_http_url(text: str) -> bool:
    """Whether text is an http or https URL with a host: the only links a report makes."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    web = parts.scheme.lower() in ("http", "https")
    return web and bool(parts.hostname) and text == text.strip()


# ------------------------------------------------------------------------------ the annual report

ANNUAL_TEMPLATES: Final = {"md": "report.md.j2", "html": "report.html.j2"}
CHART_ROWS: Final = 12  # bars in a chart; the rest are summed into one "other" bar
TABLE_ROWS: Final = 20  # labels listed in the report; the rest are one "other" row
_BAR_H, _ROW_H, _NAME_W, _BAR_W = 18, 26, 150, 420  # the charts' geometry, in px


@functools.cache
def html_environment() -> jinja2.Environment:
    """The annual report's HTML: autoescaped; the same figure filters as the Markdown."""
    base = environment()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        finalize=lambda value: "" if value is None else value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=True,
    )
    env.filters.update(base.filters)
    return env


def _top(rows: list[dict[str, Any]], limit: int, what: str) -> list[dict[str, Any]]:
    """The first `limit` rows, and the rest summed into one ("other N labels")."""
    if len(rows) <= limit:
        return rows
    rest = rows[limit - 1 :]
    other: dict[str, Any] = {"name": f"{len(rest):,} other {what}", "other": True}
    other |= {"allocation_kg": None, "share": None, "water_l": None, "pue": None}
    for key in ("kg", "kwh", "runs", "refused", "stopped"):
        other[key] = sum(r[key] for r in rest)
    return [*rows[: limit - 1], other]


def _chart(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A horizontal bar chart of rows' kg: each bar's geometry, in px, for inline SVG."""
    most = max((r["kg"] for r in rows), default=0.0)
    bars = []
    for i, r in enumerate(rows):
        width = r["kg"] / most * _BAR_W if most > 0 else 0.0
        bars.append(
            {
                "name": r["name"],
                "kg": r["kg"],
                "y": i * _ROW_H + 4,
                "text_y": i * _ROW_H + 4 + _BAR_H - 4,
                "width": round(max(width, 1.0) if r["kg"] > 0 else 0.0, 1),
            }
        )
    return {
        "bars": bars,
        "height": len(rows) * _ROW_H + 8,
        "width": _NAME_W + _BAR_W + 90,
        "name_w": _NAME_W,
        "bar_x": _NAME_W + 6,
        "bar_h": _BAR_H,
    }


def _group(name: str, g: Any, kg: float | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "other": False,
        "kg": g.emissions_kg if kg is None else kg,
        "kwh": g.energy_kwh,
        "runs": g.runs,
        "refused": g.refused,
        "stopped": g.stopped_by_guard,
        "water_l": g.water,
        "pue": g.pue,
    }


def annual_context(a: Annual, ledger: str) -> dict[str, Any]:
    """What report.md.j2 and report.html.j2 read: one budget year, from annual.summarise."""
    from co2gate.annual import ESTIMATED, MEASURED, UNKNOWN, kind_of

    months, burned = [], 0.0
    for month, g in a.by_month.items():  # the year's burn: cumulative kg, against the budget
        burned += g.emissions_kg
        share = burned / a.annual_budget_kg if a.annual_budget_kg else None
        months.append(_group(month, g) | {"cumulative_kg": burned, "cumulative_share": share})
    categories = [
        _group(name, g, a.category_kg[name])
        | {
            "allocation_kg": a.allocations_kg.get(name),
            "share": a.category_kg[name] / a.allocations_kg[name]
            if a.allocations_kg.get(name)
            else None,
        }
        for name, g in a.by_category.items()
    ]
    labels = [_group(name, g) for name, g in a.by_label.items()]
    total = a.total
    return {
        "year": a.label,
        "first_day": fmt.day(a.start),
        "last_day": fmt.day(a.end - timedelta(days=1)),
        "span": fmt.year(a.start, a.end),
        "annual_budget_kg": a.annual_budget_kg,
        "total": _group("all", total, a.total_kg)
        | {
            "facility_kwh": total.facility_energy_kwh,
            "pue_coverage": total.pue_coverage,
            "water_runs": total.water_runs,
        },
        "shares": {
            "measured": a.share(MEASURED),
            "estimated": a.share(ESTIMATED),
            "unknown": a.share(UNKNOWN),
        },
        "methods": [
            {
                "method": name,
                "kind": kind_of(name),
                "kwh": kwh,
                "share": kwh / total.energy_kwh if total.energy_kwh else None,
            }
            for name, kwh in a.by_method.items()
        ],
        "sci": a.sci(),
        "months": months,
        "categories": _top(categories, TABLE_ROWS, "categories"),
        "labels": _top(labels, TABLE_ROWS, "labels"),
        "label_count": len(labels),
        "month_chart": _chart(months),
        "category_chart": _chart(_top(categories, CHART_ROWS, "categories")),
        "refusals": {"count": total.refused, "projected_kg": a.refusals_projected_kg},
        "refused_labels": [r for r in labels if r["refused"]][:TABLE_ROWS],
        "stopped_labels": [r for r in labels if r["stopped"]][:TABLE_ROWS],
        "largest": [dict(r.__dict__) for r in a.largest],
        "sources": [
            {"source": s, "runs": n, "kg": kg} for s, (n, kg) in a.intensity_sources.items()
        ][:TABLE_ROWS],
        "codecarbon": [{"version": v, "runs": n} for v, n in a.codecarbon_versions.items()][
            :TABLE_ROWS
        ],
        "ledger": ledger,
        "version": __version__,
    }


def annual_text(a: Annual, ledger: str, form: str) -> str:
    """The annual report as Markdown (`md`) or one self-contained HTML page (`html`)."""
    name = ANNUAL_TEMPLATES[form]
    env = html_environment() if form == "html" else environment()
    try:
        return env.get_template(name).render(annual_context(a, ledger))
    except jinja2.TemplateError as e:
        raise TemplateProblem(_template_error(name, e, None)) from e
