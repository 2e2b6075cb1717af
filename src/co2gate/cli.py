"""The `co2gate` command line: parse options, call one library function, print."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from co2gate import __version__, emissions, estimate, gate, report, starter
from co2gate import budget as budgets
from co2gate.emissions import RunLabels
from co2gate.github import companion, context, publish
from co2gate.github.context import ci_context
from co2gate.gpus import GPUS, UnknownGpu
from co2gate.guard import DEFAULT_GRACE_S, Watch, default_heartbeat_s
from co2gate.intensity import Location, LocationError, validate
from co2gate.ledger.interface import Ledger, LedgerError
from co2gate.runner import CommandError
from co2gate.sci import Embodied
from co2gate.session import Measured, SetupError, measure_command, prepare_out_dir

F = TypeVar("F", bound=Callable[..., Any])
WORKLOAD = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class UsageProblem(click.ClickException):
    """Bad input: one line on stderr, exit 2 (click's convention for usage errors)."""

    exit_code = 2


def _say(line: str) -> None:
    click.echo(f"co2gate: {line}", err=True)


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, in the order they are listed."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def _finite(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """Refuse inf and nan, which click's FloatRange lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


# Options that describe the run being measured.
run_options = _options(
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("co2gate-report"),
        show_default=True,
        help="Directory for emissions.json and emissions.csv.",
    ),
    click.option(
        "--label",
        default=None,
        help="What this step is, to compare runs of the same step. "
        "Default: the CI job's name, else 'local'.",
    ),
    click.option(
        "--workload",
        default="training",
        show_default=True,
        help="Budget category: training, inference or a name of your own "
        "(lower-case letters, digits, - and _).",
    ),
    click.option(
        "--requests",
        type=click.IntRange(min=1),
        default=None,
        help="Functional units the step served (requests, samples): adds per-request figures.",
    ),
)

# Where the energy was drawn, which decides the grid's carbon intensity.
location_options = _options(
    click.option(
        "--country",
        help="ISO 3166-1 alpha-3 code, e.g. USA, FRA, DEU. Location options "
        "override the budget file's location.",
    ),
    click.option(
        "--region",
        help="Sub-national region where codecarbon has data: a US state "
        "('virginia'), a Canadian or Chinese province, a Nordic zone ('SE3').",
    ),
    click.option(
        "--cloud",
        help="Cloud region as provider:region, e.g. gcp:us-central1, "
        "aws:us-east-1, azure:westeurope.",
    ),
    click.option(
        "--intensity",
        type=float,
        help="Grid carbon intensity in gCO2e/kWh; overrides the location.",
    ),
    click.option(
        "--pue",
        type=float,
        default=None,
        help="Data-centre Power Usage Effectiveness (>= 1). Default: the budget file's, else 1.",
    ),
)


budget_file_option = click.option(
    "--budget-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(budgets.DEFAULT_FILE),
    show_default=True,
    help="The budget file (on pull requests it is read at the base commit).",
)
no_record_option = click.option(
    "--no-record", is_flag=True, help="Check against the budget but do not add to the ledger."
)
# Where the budget is and whether to record the run.
gate_options = _options(budget_file_option, no_record_option)


template_dir_option = click.option(
    "--template-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of templates that override co2gate's by name (comment.md.j2, summary.md.j2).",
)
# Where the report goes besides report.md: the PR comment (in GitHub Actions).
comment_options = _options(
    template_dir_option,
    click.option(
        "--comment/--no-comment",
        default=True,
        show_default=True,
        help="In GitHub Actions, upsert the report as a PR comment (pull requests, and pushes "
        "to a PR's branch).",
    ),
    click.option(
        "--comment-author",
        envvar="CO2GATE_COMMENT_AUTHOR",
        default=None,
        help="Login whose comment co2gate edits. Default: the token's user "
        "(github-actions[bot] for GITHUB_TOKEN).",
    ),
)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="co2gate")
def cli() -> None:
    """Measure the energy and CO2e of a CI step and gate it against a carbon budget."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("co2gate: %(message)s"))
    logger = logging.getLogger("co2gate")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


@cli.command(context_settings={"allow_interspersed_args": False})
@run_options
@location_options
@template_dir_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def measure(
    out: Path,
    label: str | None,
    workload: str,
    requests: int | None,
    country: str | None,
    region: str | None,
    cloud: str | None,
    intensity: float | None,
    pue: float | None,
    template_dir: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and measure the energy it draws and the CO2e it emits.

    COMMAND's output, exit code and signals pass through untouched; co2gate's own lines
    follow on stderr, and emissions.json, emissions.csv and report.md are written to --out
    (in GitHub Actions also the job summary and step outputs).

    \b
    Example:
      co2gate measure --country FRA -- python train.py --epochs 3
    """
    location = Location(country, region, cloud, intensity, pue if pue is not None else 1.0)
    options = _publish_options(template_dir, comment=False, author=None)
    measured = _measure(command, location, out, label, workload, requests)
    _publish([publish.Run(measured.doc)], None, out, options)
    sys.exit(measured.exit_code)


@cli.command(context_settings={"allow_interspersed_args": False})
@run_options
@location_options
@gate_options
@comment_options
@click.option(
    "--preflight",
    is_flag=True,
    help="Before starting COMMAND, project it from the ledger's recent runs of its label "
    "(as estimate --from-history) and refuse to start it (exit 1, verdict.json) when the "
    "projection would break its category's allocation or per-run limit.",
)
@click.option(
    "--max-kg",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=_finite,
    metavar="KG",
    help="The live guard: stop COMMAND once its emissions so far reach KG CO2e (SIGTERM to "
    "its process group, SIGKILL after --grace) and fail the gate. The budget file's "
    "limits[workload] is a cap too: the smaller wins.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_S,
    show_default=True,
    callback=_finite,
    metavar="SECONDS",
    help="How long the guard waits after SIGTERM before it sends SIGKILL.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0),
    default=None,
    callback=_finite,
    metavar="SECONDS",
    help="Print the energy and CO2e so far on stderr every SECONDS while COMMAND runs; "
    "0: never. Default: 300 in GitHub Actions, else 0.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    out: Path,
    label: str | None,
    workload: str,
    requests: int | None,
    country: str | None,
    region: str | None,
    cloud: str | None,
    intensity: float | None,
    pue: float | None,
    budget_file: Path,
    no_record: bool,
    template_dir: Path | None,
    comment: bool,
    comment_author: str | None,
    preflight: bool,
    max_kg: float | None,
    grace: float,
    heartbeat: float | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, measure it, check it against the budget and record it.

    The budget file is read and checked before COMMAND starts. Exit code: COMMAND's own
    when it failed, else 1 when the gate fails, else 0. A COMMAND that the live guard stopped
    at its cap (--max-kg, limits[workload]) fails the gate: 1, not its signal's 143.
    verdict.json and report.md join the emissions files in --out; in GitHub Actions the
    report also goes to the job summary and the PR comment, with step outputs and an
    annotation when the gate warns or fails.

    \b
    Example:
      co2gate run --workload training -- python train.py --epochs 3
    """
    env = os.environ
    ci = ci_context(env)
    try:
        budget, notes = gate.load_budget(budget_file, ci, env)
        budgets.allocation_kg(budget, workload)
    except budgets.BudgetError as e:
        raise UsageProblem(str(e)) from e
    location = _override(budget.location, country, region, cloud, intensity, pue)
    options = _publish_options(template_dir, comment, comment_author)
    if preflight:
        _preflight(budget, workload, _label(label), out)
    watch = Watch(
        limit_kg=budgets.run_limit_kg(budget, workload, max_kg),
        grace_s=grace,
        heartbeat_s=heartbeat if heartbeat is not None else default_heartbeat_s(env),
    )
    measured = _measure(command, location, out, label, workload, requests, watch, budget.embodied)
    ledger = gate.open_ledger(budget.ledger, env)
    gated = _gate(measured.doc, budget, ledger, notes, out, no_record, ci)
    _publish([publish.Run(measured.doc, gated)], budget, out, options)
    code = 0 if measured.stopped_by_guard else measured.exit_code  # the gate's, not SIGTERM's
    sys.exit(code if code else (1 if gated.decision.verdict is budgets.Verdict.FAIL else 0))


@cli.command()
@gate_options
@click.option(
    "--workload",
    default=None,
    help="Budget category for codecarbon CSV files (co2gate's emissions.json names its own). "
    "Default: training.",
)
@click.option("--label", default=None, help="Label for codecarbon CSV files. Default: the job's.")
@click.option(
    "--requests", type=click.IntRange(min=1), default=None, help="Requests served, for CSV files."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("co2gate-report"),
    show_default=True,
    help="Directory for verdict.json and report.md.",
)
@comment_options
@json_option
@click.option(
    "--workflow-run",
    is_flag=True,
    help="In a workflow run on: workflow_run, FILES are the measured run's downloaded "
    "artifact (a fork's pull request). Its figures are gated under the run, commit and "
    "verified pull request that the event and the API give, never the artifact's own; the "
    "budget file is this checkout's.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def check(
    budget_file: Path,
    no_record: bool,
    workload: str | None,
    label: str | None,
    requests: int | None,
    out: Path,
    template_dir: Path | None,
    comment: bool,
    comment_author: str | None,
    as_json: bool,
    workflow_run: bool,
    files: tuple[Path, ...],
) -> None:
    """Gate measurements already taken: co2gate emissions.json files, or the emissions.csv
    that your own codecarbon code wrote. Checks, records and reports each; exit 1 if any
    fails the gate.

    With --workflow-run it is the second half of a fork PR's check: see the README's
    workflow_run companion.
    """
    env = os.environ
    ci = None if workflow_run else ci_context(env)
    labels = RunLabels(
        label=_label(label),
        workload=workload or "training",
        requests=requests,
    )
    try:
        measured = context.workflow_run(env) if workflow_run else None
        if measured is None:
            budget, notes = gate.load_budget(budget_file, ci, env)
        else:  # this checkout is the default branch: the fork cannot have changed it
            budget, notes = budgets.load(budget_file), []
        docs = [emissions.read_measurement(path, labels, ci) for path in files]
        if measured is not None:
            for path, doc in zip(files, docs, strict=True):
                companion.check_artifact(doc, path)
        for doc in docs:
            budgets.allocation_kg(budget, doc["run"]["workload"])
        out_dir = prepare_out_dir(out)
    except (budgets.BudgetError, SetupError, ValueError) as e:
        raise UsageProblem(str(e)) from e
    options = _publish_options(template_dir, comment, comment_author)
    ledger = gate.open_ledger(budget.ledger, env)
    gating = [(doc, notes, ci) for doc in docs]
    if measured is not None:
        adopted = companion.adopt(measured, docs, env)
        gating = [(a.doc, [*notes, *a.notes], a.doc["ci"]) for a in adopted]
        docs = [a.doc for a in adopted]
    results = [
        _gate(doc, budget, ledger, doc_notes, out_dir, no_record, doc_ci, quiet=as_json)
        for doc, doc_notes, doc_ci in gating
    ]
    runs = [publish.Run(doc, gated) for doc, gated in zip(docs, results, strict=True)]
    _publish(runs, budget, out_dir, options)
    if as_json:
        click.echo(json.dumps(gate.verdict_document(results), indent=2))
    failed = any(r.decision.verdict is budgets.Verdict.FAIL for r in results)
    sys.exit(1 if failed else 0)


@cli.command(name="budget")
@budget_file_option
@json_option
def budget_command(budget_file: Path, as_json: bool) -> None:
    """Where the budget stands this year: allocated, used and remaining per category, and
    the runs that used the most."""
    env = os.environ
    try:
        budget = budgets.load(budget_file)
    except budgets.BudgetError as e:
        raise UsageProblem(str(e)) from e
    ledger, where = gate.open_ledger(budget.ledger, env)
    try:
        standing = gate.standing(budget, ledger, date.today())
    except LedgerError as e:
        raise UsageProblem(f"{where}: {e}") from e
    if as_json:
        click.echo(json.dumps(standing, indent=2))
        return
    for line in report.standing_lines(standing):
        click.echo(line)


@cli.command(name="estimate")
@budget_file_option
@click.option(
    "--workload",
    default="training",
    show_default=True,
    help="Budget category the run would count against.",
)
@click.option(
    "--gpu",
    default=None,
    help="GPU model, matched loosely ('h100', 'A100-SXM4-40GB', 'NVIDIA H100 80GB HBM3'): "
    "its board power and peak TFLOP/s come from co2gate's table. Choices: "
    + ", ".join(g.name for g in GPUS)
    + ".",
)
@click.option(
    "--gpus",
    type=int,
    default=None,
    help="How many GPUs the run uses. Default: 1.",
)
@click.option(
    "--hours",
    type=float,
    default=None,
    help="Hardware mode: the run's wall-clock hours on --gpus GPUs.",
)
@click.option(
    "--watts",
    type=float,
    default=None,
    help="Power of one GPU in W, instead of the table's board power (or for a GPU not in it).",
)
@click.option(
    "--flops",
    type=float,
    default=None,
    help="Compute mode: the run's total floating-point operations, e.g. 5.88e23 "
    "(6 x parameters x tokens for a transformer's training).",
)
@click.option(
    "--mfu",
    type=float,
    default=None,
    help="Compute mode: model FLOPs utilisation, the fraction of --gpu's dense peak the run "
    "achieves (0.4 for 40%).",
)
@click.option(
    "--from-history",
    "from_history",
    metavar="LABEL",
    default=None,
    help="History mode: project the median of the ledger's recent runs of LABEL.",
)
@click.option(
    "--last",
    type=int,
    default=None,
    help=f"History mode: how many of LABEL's most recent runs. Default: {estimate.DEFAULT_LAST}.",
)
@location_options
@json_option
def estimate_command(
    budget_file: Path,
    workload: str,
    gpu: str | None,
    gpus: int | None,
    hours: float | None,
    watts: float | None,
    flops: float | None,
    mfu: float | None,
    from_history: str | None,
    last: int | None,
    country: str | None,
    region: str | None,
    cloud: str | None,
    intensity: float | None,
    pue: float | None,
    as_json: bool,
) -> None:
    """Project a run's energy and CO2e before it starts, and check it against what remains
    of its category's allocation this budget year and its per-run limit.

    Give exactly one of: --hours (hardware: --gpu x --gpus x hours), --flops (compute:
    --flops at --mfu of --gpu's peak, on --gpus) or --from-history LABEL (the ledger's
    recent runs of LABEL). PUE and intensity come from the budget file's location unless
    the location options say otherwise. Exit 0 pass or warn, 1 when the projection fails
    the gate, 2 bad input.

    \b
    Example:
      co2gate estimate --flops 5.88e23 --gpu H100 --gpus 2048 --mfu 0.4
    """
    given: dict[str, object] = {
        "--gpu": gpu,
        "--gpus": gpus,
        "--hours": hours,
        "--watts": watts,
        "--flops": flops,
        "--mfu": mfu,
        "--from-history": from_history,
        "--last": last,
        "--country": country,
        "--region": region,
        "--cloud": cloud,
        "--intensity": intensity,
        "--pue": pue,
    }
    try:
        mode = estimate.mode_of(given)
        budget = budgets.load(budget_file)
        budgets.allocation_kg(budget, workload)
        ledger, where = gate.open_ledger(budget.ledger, os.environ)
        location = _override(budget.location, country, region, cloud, intensity, pue)
        projection, decision = estimate.estimate(
            mode,
            budget,
            ledger,
            workload,
            date.today(),
            location=location,
            gpu=gpu,
            gpus=gpus,
            hours=hours,
            watts=watts,
            flops=flops,
            mfu=mfu,
            label=from_history,
            last=last,
        )
    except LedgerError as e:
        raise UsageProblem(f"{where}: {e}") from e
    except (budgets.BudgetError, estimate.EstimateError, UnknownGpu, LocationError) as e:
        raise UsageProblem(str(e)) from e
    doc = projection.to_json(decision)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in report.estimate_lines(doc):
            click.echo(line)
    sys.exit(1 if decision.verdict is budgets.Verdict.FAIL else 0)


@cli.command()
@click.option(
    "--budget-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(budgets.DEFAULT_FILE),
    show_default=True,
    help="Where to write the starter budget file; its folders are created.",
)
@click.option(
    "--annual-kg",
    type=float,
    default=starter.DEFAULT_ANNUAL_KG,
    show_default=True,
    help="The CO2e budget for a year, in kg (annual_budget_kg).",
)
@click.option(
    "--country",
    default=None,
    help="Where the CI runners draw their power: an ISO 3166-1 alpha-3 code, e.g. USA, FRA. "
    "Default: none (codecarbon's world average) until you set location in the file.",
)
@click.option("--force", is_flag=True, help="Overwrite the budget file if it exists.")
def init(budget_file: Path, annual_kg: float, country: str | None, force: bool) -> None:
    """Write a commented starter budget file and print a workflow that uses it.

    The workflow goes to stdout, so it can be redirected into a file:

    \b
    Example:
      co2gate init --annual-kg 200 --country FRA > .github/workflows/carbon.yml
    """
    try:
        text = starter.budget_text(annual_kg, country)
        path = starter.write_budget(budget_file, text, force=force)
    except starter.StarterError as e:
        raise UsageProblem(str(e)) from e
    _say(starter.next_steps(path))
    click.echo(starter.workflow(path), nl=False)


def _measure(
    command: tuple[str, ...],
    location: Location,
    out: Path,
    label: str | None,
    workload: str,
    requests: int | None,
    watch: Watch | None = None,
    embodied: Embodied | None = None,
) -> Measured:
    """Validate, run and measure; print the summary. Exits 2 on bad input, before running."""
    if not WORKLOAD.match(workload):
        raise UsageProblem(
            f"--workload {workload!r}: use lower-case letters, digits, - and _ "
            "(e.g. training, inference)"
        )
    try:
        location = validate(location)
        out_dir = prepare_out_dir(out)
        labels = RunLabels(
            label=_label(label),
            workload=workload,
            requests=requests,
        )
        measured = measure_command(
            command,
            location=location,
            labels=labels,
            out_dir=out_dir,
            env=os.environ,
            watch=watch,
            say=_say,
            embodied=embodied,
        )
    except (LocationError, SetupError, CommandError) as e:
        raise UsageProblem(str(e)) from e
    for line in report.summary_lines(measured.doc):
        _say(line)
    _say("wrote " + ", ".join(str(p) for p in measured.files))
    return measured


def _preflight(budget: budgets.Budget, category: str, label: str, out: Path) -> None:
    """run --preflight: exit 1 before COMMAND starts when its label's history fails the gate.

    No history, or a ledger that cannot be read, is a note: the command runs.
    """
    ledger, where = gate.open_ledger(budget.ledger, os.environ)
    try:
        found = estimate.preflight(budget, ledger, category, label, date.today())
    except LedgerError as e:
        _say(f"preflight: {where}: {e}; starting the command without a projection")
        return
    if found is None:
        _say(f"preflight: no runs of {label!r} in the ledger to project from; starting anyway")
        return
    projection, decision = found
    doc = projection.to_json(decision)
    if decision.verdict is not budgets.Verdict.FAIL:
        _say(report.preflight_line(doc))
        return
    refused = dataclasses.replace(
        decision, reasons=(report.preflight_reason(doc), *decision.reasons)
    )
    try:
        path = gate.write_verdict(prepare_out_dir(out), gate.Gated(refused, recorded=False))
    except SetupError as e:
        raise UsageProblem(str(e)) from e
    _say(" ".join(refused.reasons))
    _say(f"wrote {path}")
    sys.exit(1)


def _gate(
    doc: dict[str, Any],
    budget: budgets.Budget,
    ledger: tuple[Ledger, str],
    notes: list[str],
    out_dir: Path,
    no_record: bool,
    ci: dict[str, Any] | None,
    quiet: bool = False,
) -> gate.Gated:
    opened, where = ledger
    record = gate.should_record(budget, ci, no_record)
    gated = gate.gate(doc, budget, opened, record=record, notes=notes)
    path = gate.write_verdict(out_dir, gated)
    if not quiet:
        for line in report.verdict_lines(gated.decision, gated.notes):
            _say(line)
        _say(f"{where}: {'recorded' if gated.recorded else 'not recorded'}; wrote {path}")
    return gated


def _publish_options(
    template_dir: Path | None, comment: bool, author: str | None
) -> publish.Options:
    """The report's options, its templates compiled now: a broken one stops the run first."""
    try:
        report.check_templates(template_dir)
    except report.TemplateProblem as e:
        raise UsageProblem(str(e)) from e
    return publish.Options(template_dir=template_dir, comment=comment, author=author)


def _publish(
    runs: list[publish.Run],
    budget: budgets.Budget | None,
    out_dir: Path,
    options: publish.Options,
) -> None:
    """report.md, and in GitHub Actions the summary, comment, outputs and annotations.

    Runs after every file of the measurement is written: a failure here costs the report,
    never the measurement or the verdict.
    """
    try:
        done = publish.publish(runs, budget, out_dir=out_dir, env=os.environ, options=options)
    except report.TemplateProblem as e:
        _say(f"no report: {e}")
        return
    for line in done.lines:
        click.echo(line if line.startswith("::") else f"co2gate: {line}", err=True)
    _say(f"wrote {done.report}")


def _label(label: str | None) -> str:
    """The label given, else the CI job's name, else 'local'."""
    return label or os.environ.get("GITHUB_JOB") or "local"


def _override(
    base: Location,
    country: str | None,
    region: str | None,
    cloud: str | None,
    intensity: float | None,
    pue: float | None,
) -> Location:
    """The budget file's location, with whatever the options say instead."""
    if country or region or cloud:
        base = Location(country, region, cloud, base.intensity_g_per_kwh, base.pue)
    return Location(
        base.country,
        base.region,
        base.cloud,
        intensity if intensity is not None else base.intensity_g_per_kwh,
        pue if pue is not None else base.pue,
    )


def main() -> None:
    try:
        cli(prog_name="co2gate")
    finally:
        # Tearing down the objects codecarbon's dependencies (pandas, numpy) created takes
        # about 0.15 s, between the command's exit and co2gate's; everything is written by
        # now, so let the final collections skip them. atexit handlers still run.
        gc.freeze()
