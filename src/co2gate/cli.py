"""The `co2gate` command line: parse options, call one library function, print."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from co2gate import __version__, emissions, gate, report, starter
from co2gate import budget as budgets
from co2gate.emissions import RunLabels
from co2gate.github import companion, context, publish
from co2gate.github.context import ci_context
from co2gate.intensity import Location, LocationError, validate
from co2gate.ledger.interface import Ledger, LedgerError
from co2gate.runner import CommandError
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
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, measure it, check it against the budget and record it.

    The budget file is read and checked before COMMAND starts. Exit code: COMMAND's own
    when it failed, else 1 when the gate fails, else 0. verdict.json and report.md join the
    emissions files in --out; in GitHub Actions the report also goes to the job summary and
    the PR comment, with step outputs and an annotation when the gate warns or fails.

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
    measured = _measure(command, location, out, label, workload, requests)
    ledger = gate.open_ledger(budget.ledger, env)
    gated = _gate(measured.doc, budget, ledger, notes, out, no_record, ci)
    _publish([publish.Run(measured.doc, gated)], budget, out, options)
    code = measured.exit_code
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
            command, location=location, labels=labels, out_dir=out_dir, env=os.environ
        )
    except (LocationError, SetupError, CommandError) as e:
        raise UsageProblem(str(e)) from e
    for line in report.summary_lines(measured.doc):
        _say(line)
    _say("wrote " + ", ".join(str(p) for p in measured.files))
    return measured


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
