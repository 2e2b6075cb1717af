"""The `co2gate` command line: parse options, call one library function, print."""

from __future__ import annotations

import gc
import logging
import math
import os
import stat
import sys
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from co2gate import __version__, lines, tokens
from co2gate import budget as budgets
from co2gate.errors import Co2gateError, InputError
from co2gate.estimate import DEFAULT_LAST
from co2gate.gpus import GPUS
from co2gate.guard import DEFAULT_GRACE_S
from co2gate.labels import UNITS
from co2gate.starter import DEFAULT_ANNUAL_KG, DEFAULT_RUN, DEFAULT_WORKFLOW_FILE

if TYPE_CHECKING:
    from co2gate.app import Outcome
    from co2gate.app.measure import MeasureRequest
    from co2gate.spawn import Started
    from co2gate.trackers import Targets

F = TypeVar("F", bound=Callable[..., Any])


class UsageProblem(click.ClickException):
    """Bad input: one line on stderr, exit 2 (click's convention for usage errors)."""

    exit_code = 2

    def format_message(self) -> str:
        return lines.inert(self.message)


class _InertUsage(click.UsageError):
    """click's usage error, its message (which may quote a value) as one inert line."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def format_message(self) -> str:
        return lines.inert(self.message)


def _say(line: str) -> None:
    """One of co2gate's lines on stderr: one line, masked, never a workflow command unless
    co2gate built it as one (lines.WorkflowCommand)."""
    click.echo(lines.line(line), err=True)


def _finish(outcome: Outcome) -> None:
    """Print what the command has to say, then exit with its code."""
    for line in outcome.lines:
        _say(line)
    if outcome.stdout is not None:
        stdout = tokens.mask(outcome.stdout)
        click.echo(stdout, nl=not stdout.endswith("\n"))
    sys.exit(outcome.exit_code)


class _Stderr(logging.Handler):
    """co2gate's log records as its own lines, on whatever stderr is now."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(record.getMessage())


class _Group(click.Group):
    """Every expected failure (a Co2gateError) becomes one line on stderr and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Co2gateError as e:
            raise UsageProblem(str(e)) from e
        except click.UsageError as e:  # an option's value, quoted back: one inert line
            raise _InertUsage(e) from e


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
        help="Directory for emissions.json, emissions.csv and report.md (and, for run, "
        "verdict.json).",
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
    click.option(
        "--units",
        type=click.IntRange(min=1),
        default=None,
        help="Units of work the step did, counted in --unit (instead of --requests): adds "
        "per-unit figures, and a pull request's run is compared with the base branch's per unit.",
    ),
    click.option(
        "--unit",
        type=click.Choice(UNITS),
        default=None,
        help="What --units counts: tokens, samples or steps.",
    ),
)


# The run's quality figures, beside its cost.
metric_options = _options(
    click.option(
        "--metric",
        "metric",
        multiple=True,
        metavar="NAME=VALUE",
        help="A quality figure of the run (val_loss=0.412), repeatable, at most 32: recorded in "
        "emissions.json and the ledger, and the comment shows the run against its label's "
        "history (the front of CO2e against it). NAME: letters, digits and _ . : / -.",
    ),
    click.option(
        "--metrics-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="PATH",
        help="A JSON object of metric name -> number, read after the command exits (so the "
        "command can write it); --metric values win over the file's. One that cannot be read "
        "is a note: the run is still written and gated.",
    ),
)


def _work(
    requests: int | None, units: int | None, unit: str | None
) -> tuple[int | None, str | None]:
    """--requests or --units with its --unit: the run's units of work (SCI's R), one figure."""
    if requests is not None and units is not None:
        raise InputError("--requests and --units both count the run's units of work: give one")
    if (units is None) != (unit is None):
        raise InputError("--units N and --unit tokens|samples|steps go together: give both")
    return (units, unit) if units is not None else (requests, None)


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
        help="Data-centre Power Usage Effectiveness, 1 to 10. Default: the budget file's, else 1.",
    ),
)


def budget_file_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--budget-file",
        type=click.Path(path_type=Path),  # anything but a regular file: one line from load()
        default=Path(budgets.DEFAULT_FILE),
        show_default=True,
        help=help,
    )


AT_BASE = " On pull requests it is read at the base commit."
no_record_option = click.option(
    "--no-record", is_flag=True, help="Check against the budget but do not add to the ledger."
)
# Where the budget is and whether to record the run.
gate_options = _options(budget_file_option("The budget file." + AT_BASE), no_record_option)


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


def _textfile(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """node_exporter's textfile collector reads only *.prom files: another name is a typo."""
    if value is not None and value.suffix != ".prom":
        raise click.BadParameter(f"{value} does not end in .prom, which node_exporter needs")
    return value


def _pushgateway(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An http(s) URL with a host (the scheme may be left out), checked before the command."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value if "://" in value else "http://" + value)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError as e:
        raise click.BadParameter(f"bad port in the URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("expected http://HOST:PORT (or https://)")
    return value


# Where else the figures go (nothing is sent unless one of these is given).
tracker_options = _options(
    click.option(
        "--mlflow",
        is_flag=True,
        help="Log the figures (metrics co2gate.*) and methods (tags) to the MLflow run "
        "MLFLOW_RUN_ID, in MLFLOW_TRACKING_URI's store; without MLFLOW_RUN_ID, to a new run in "
        "MLFLOW_EXPERIMENT_NAME (or _ID). Needs co2gate[mlflow]. A failure is a warning.",
    ),
    click.option(
        "--wandb",
        is_flag=True,
        help="Log the figures to the W&B run WANDB_RUN_ID (resumed); without it, to a run of "
        "co2gate's own in WANDB_PROJECT and group WANDB_RUN_GROUP (job type co2gate). "
        "WANDB_MODE=offline works. Needs co2gate[wandb]. A failure is a warning.",
    ),
    click.option(
        "--prometheus-textfile",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_textfile,
        metavar="PATH.prom",
        help="Write the figures as gauges labelled with the label and workload to PATH.prom, "
        "atomically, for node_exporter's textfile collector. A failure is a warning.",
    ),
    click.option(
        "--prometheus-pushgateway",
        default=None,
        callback=_pushgateway,
        metavar="URL",
        help="Push the figures as gauges to the Pushgateway at URL (job co2gate, grouped by "
        "label and workload). Needs co2gate[prometheus]. A failure is a warning.",
    ),
)


def _targets(mlflow: bool, wandb: bool, textfile: Path | None, pushgateway: str | None) -> Targets:
    from co2gate.trackers import Targets

    return Targets(mlflow, wandb, textfile, pushgateway)


def _measure_request(options: Mapping[str, Any]) -> MeasureRequest:
    """What `measure` and `run` share, from the options click parsed for them: run_options,
    location_options, the budget file, template_dir, metric_options and tracker_options."""
    from co2gate.app.inputs import LocationOptions
    from co2gate.app.measure import MeasureRequest

    o = options
    requests, unit = _work(o["requests"], o["units"], o["unit"])
    return MeasureRequest(
        o["command"],
        o["out"],
        o["label"],
        o["workload"],
        requests,
        LocationOptions(o["country"], o["region"], o["cloud"], o["intensity"], o["pue"]),
        o["budget_file"],
        o["template_dir"],
        unit,
        o["metric"],
        o["metrics_file"],
        _targets(o["mlflow"], o["wandb"], o["prometheus_textfile"], o["prometheus_pushgateway"]),
    )


def _started(options: Mapping[str, Any]) -> Started | None:
    """The command co2gate/launch.py started before click read the line, if it did; refuses
    (a bug) when the two read the command or the budget file differently."""
    started: Started | None = click.get_current_context().obj
    if started is None:
        return None
    budget_file = started.budget_before[0] if started.budget_before else None
    if (
        started.argv != tuple(options["command"])
        or budget_file is None
        or (Path(budget_file) != options["budget_file"])
    ):
        raise RuntimeError("co2gate's launcher and its CLI read the command line differently")
    return started


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """'90m', '3h', '1d': a duration (timedelta), parsed by grid.schedule."""
    if value is None:
        return None
    from co2gate.grid.schedule import parse_duration

    try:
        return parse_duration(value, f"--{(param.name or 'duration').replace('_', '-')}")
    except InputError as e:
        raise click.BadParameter(str(e), ctx, param) from e


def _deadline(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """--deadline: an ISO 8601 time with its timezone, or a duration from now."""
    if value is None:
        return None
    from datetime import datetime, timezone

    from co2gate.grid.schedule import parse_deadline

    try:
        return parse_deadline(value, datetime.now(timezone.utc))
    except InputError as e:
        raise click.BadParameter(str(e)) from e


def _signal_number(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """--pause-signal: a signal by name (USR1, SIGUSR1, TERM) or number."""
    if value is None:
        return None
    import signal

    text = value.strip().upper()
    try:
        number = (
            int(text)
            if text.isdigit()
            else signal.Signals[text if text.startswith("SIG") else "SIG" + text]
        )
        found = signal.Signals(number)
    except (KeyError, ValueError):
        raise click.BadParameter(f"{value!r} is not a signal (USR1, TERM, INT, ...)") from None
    if found in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT):
        raise click.BadParameter(f"{found.name} cannot be the checkpoint signal")
    return int(found)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout."
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="co2gate")
def cli() -> None:
    """Measure the energy and CO2e of a CI step and gate it against a carbon budget."""
    logger = logging.getLogger("co2gate")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.WARNING)


@cli.command(context_settings={"allow_interspersed_args": False})
@run_options
@location_options
@budget_file_option(
    "The budget file whose location, PUE and embodied figures apply when it exists." + AT_BASE
)
@template_dir_option
@metric_options
@tracker_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def measure(**options: Any) -> None:
    """Run COMMAND and measure the energy it draws and the CO2e it emits.

    COMMAND's output, exit code and signals pass through untouched; co2gate's own lines
    follow on stderr, and emissions.json, emissions.csv and report.md are written to --out
    (in GitHub Actions also the job summary and step outputs). Where the budget file exists
    its location and PUE apply (read at the base commit on pull requests); nothing is gated
    or recorded. COMMAND starts first and the options are checked while it starts: a refusal
    stops it (exit 2); CO2GATE_CHECK_FIRST=1 checks them before it starts.

    \b
    Example:
      co2gate measure --country FRA -- python train.py --epochs 3
    """
    from co2gate.app.measure import measure as measure_only

    _finish(measure_only(_measure_request(options), os.environ, _say, _started(options)))


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
@metric_options
@tracker_options
@click.option(
    "--start-within",
    callback=_duration,
    default=None,
    metavar="DURATION",
    help="Self-hosted runners: wait, up to DURATION (90m, 6h), for the start that the budget "
    "file's intensity provider forecasts as cleanest for a run of --duration, then start "
    "COMMAND. Refused on GitHub-hosted runners unless --force-hosted.",
)
@click.option(
    "--duration",
    callback=_duration,
    default=None,
    metavar="DURATION",
    help="How long COMMAND runs unpaused, for --start-within's window (default: one forecast "
    "interval) and --deadline's latest resume (default: unknown, so only the deadline itself "
    "forces a resume).",
)
@click.option(
    "--pause-above",
    type=click.FloatRange(min=0),
    default=None,
    callback=_finite,
    metavar="G",
    help="Self-hosted runners: SIGSTOP COMMAND's process group while the grid's intensity is "
    "above G gCO2e/kWh, SIGCONT once it falls or --deadline needs the time. With --deadline.",
)
@click.option(
    "--deadline",
    default=None,
    callback=_deadline,
    metavar="TIME",
    help="When COMMAND must be done by: an ISO 8601 time with timezone "
    "(2026-05-03T06:00Z) or a duration from now (72h). Pauses end in time to make it.",
)
@click.option(
    "--pause-signal",
    default=None,
    callback=_signal_number,
    metavar="SIG",
    help="Send SIG (USR1, TERM, ...) to COMMAND's process group before each pause, so it "
    "can checkpoint; SIGSTOP follows after --pause-grace.",
)
@click.option(
    "--pause-grace",
    callback=_duration,
    default=None,
    metavar="DURATION",
    help="From --pause-signal to SIGSTOP (30s, 2m). Default: 0.",
)
@click.option(
    "--force-hosted",
    is_flag=True,
    help="Wait or pause on a GitHub-hosted runner anyway (RUNNER_ENVIRONMENT=github-hosted), "
    "where waiting is billed and a job stops after 6 h.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(**options: Any) -> None:
    """Run COMMAND, measure it, check it against the budget and record it.

    COMMAND starts first: the budget file is read before it starts and checked, with every
    option, while it starts; a refusal stops it (exit 2). CO2GATE_CHECK_FIRST=1 checks
    everything before COMMAND starts, as co2gate does on pull requests. Exit code:
    COMMAND's own when it failed, else 1 when the gate fails, else 2 when the run could not
    be written or recorded, else 0. A COMMAND that the live guard stopped at its cap
    (--max-kg, limits[workload]) fails the gate: 1, not its signal's 143.
    verdict.json and report.md join the emissions files in --out; in GitHub Actions the
    report also goes to the job summary and the PR comment, with step outputs and an
    annotation when the gate warns or fails.

    \b
    Example:
      co2gate run --workload training -- python train.py --epochs 3
    """
    from co2gate.app.run import CarbonOptions, RunRequest
    from co2gate.app.run import run as run_gated

    o = options
    grace = o["pause_grace"]
    carbon = CarbonOptions(
        o["start_within"],
        o["duration"],
        o["pause_above"],
        o["deadline"],
        o["pause_signal"],
        0.0 if grace is None else grace.total_seconds(),
        o["force_hosted"],
    )
    request = RunRequest(
        _measure_request(options),
        o["no_record"],
        o["comment"],
        o["comment_author"],
        o["preflight"],
        o["max_kg"],
        o["grace"],
        o["heartbeat"],
        carbon,
    )
    _finish(run_gated(request, os.environ, _say, _started(options)))


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
    "--units",
    type=click.IntRange(min=1),
    default=None,
    help="Units of work, counted in --unit, for CSV files (instead of --requests).",
)
@click.option(
    "--unit", type=click.Choice(UNITS), default=None, help="What --units counts, for CSV files."
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
    "artifact (a fork's pull request). Its energy, once checked against its own figures and "
    "its hardware, is priced with this checkout's budget file (location, PUE) and gated "
    "under the run, commit and verified pull request that the event and the API give, "
    "never the artifact's own.",
)
@metric_options
@tracker_options
@click.option(
    "--merge",
    is_flag=True,
    help="FILES are the nodes and ranks of ONE run (each measured by co2gate measure): "
    "gate them as one, with one verdict, one ledger entry and a by-node table; each GPU "
    "(by UUID) and each machine's CPU and RAM (by boot id) counted once over overlapping time.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(
    budget_file: Path,
    no_record: bool,
    workload: str | None,
    label: str | None,
    requests: int | None,
    units: int | None,
    unit: str | None,
    out: Path,
    template_dir: Path | None,
    comment: bool,
    comment_author: str | None,
    as_json: bool,
    workflow_run: bool,
    metric: tuple[str, ...],
    metrics_file: Path | None,
    mlflow: bool,
    wandb: bool,
    prometheus_textfile: Path | None,
    prometheus_pushgateway: str | None,
    merge: bool,
    files: tuple[Path, ...],
) -> None:
    """Gate measurements already taken: co2gate emissions.json files, or the emissions.csv
    that your own codecarbon code wrote. Checks, records and reports each; exit 1 if any
    fails the gate.

    With --workflow-run it is the second half of a fork PR's check: see the README's
    workflow_run companion.
    """
    from co2gate.app.check import CheckRequest
    from co2gate.app.check import check as check_files

    requests, unit = _work(requests, units, unit)
    request = CheckRequest(
        files,
        budget_file,
        out,
        workload,
        label,
        requests,
        no_record,
        comment,
        comment_author,
        template_dir,
        as_json,
        workflow_run,
        unit,
        metric,
        metrics_file,
        _targets(mlflow, wandb, prometheus_textfile, prometheus_pushgateway),
        merge,
    )
    _finish(check_files(request, os.environ))


@cli.command(name="budget")
@budget_file_option("The budget file, as it is in this checkout.")
@json_option
def budget_command(budget_file: Path, as_json: bool) -> None:
    """Where the budget stands this year: allocated, used and remaining per category, and
    the runs that used the most."""
    from co2gate.app.standing import BudgetRequest, budget_standing

    _finish(budget_standing(BudgetRequest(budget_file, as_json), os.environ, date.today()))


@cli.command(name="report")
@budget_file_option("The budget file, as it is in this checkout: its year start and ledger.")
@click.option(
    "--year",
    type=click.IntRange(1970, 2099),
    default=None,
    help="The budget year that starts in this year (at the budget file's year_start). "
    "Default: the budget year containing today.",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["md", "csv", "json", "html"]),
    multiple=True,
    help="A file to write, annual-YYYY.FORMAT; repeat for several. Default: md.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("co2gate-report"),
    show_default=True,
    help="Directory for the annual-YYYY.* files.",
)
def report_command(
    budget_file: Path, year: int | None, formats: tuple[str, ...], out: Path
) -> None:
    """The budget year's usage from the ledger, for sustainability reporting: totals by
    category, month and label, measured and estimated shares, SCI, energy, CO2e, water,
    guard stops, preflight refusals, the largest runs and the data sources."""
    from co2gate.app.report_year import Format, ReportRequest, annual_report

    chosen = tuple(Format(f) for f in formats) or (Format.MD,)
    request = ReportRequest(budget_file, year, chosen, out)
    _finish(annual_report(request, os.environ, date.today()))


@cli.command(name="estimate")
@budget_file_option("The budget file, as it is in this checkout: its location, PUE and ledger.")
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
    help=f"History mode: how many of LABEL's most recent runs. Default: {DEFAULT_LAST}.",
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
    from co2gate.app.estimate import EstimateRequest, estimate
    from co2gate.app.inputs import LocationOptions

    where = LocationOptions(country, region, cloud, intensity, pue)
    request = EstimateRequest(
        budget_file,
        workload,
        gpu,
        gpus,
        hours,
        watts,
        flops,
        mfu,
        from_history,
        last,
        where,
        as_json,
    )
    _finish(estimate(request, os.environ, date.today()))


@cli.command(name="when")
@click.option(
    "--duration",
    callback=_duration,
    required=True,
    metavar="DURATION",
    help="How long the run takes: 90m, 3h, 1d.",
)
@click.option(
    "--within",
    callback=_duration,
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How far ahead the run may start.",
)
@budget_file_option("The budget file: its intensity provider, location (PUE) and ledger.")
@click.option(
    "--workload",
    default="training",
    show_default=True,
    help="Budget category the run counts against, for the verdict.",
)
@click.option(
    "--energy-kwh",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=_finite,
    metavar="KWH",
    help="The run's energy before PUE, for the budget verdict at both start times.",
)
@click.option(
    "--from-history",
    metavar="LABEL",
    default=None,
    help="Take the run's energy from the median of the ledger's recent runs of LABEL.",
)
@json_option
def when_command(
    duration: Any,
    within: Any,
    budget_file: Path,
    workload: str,
    energy_kwh: float | None,
    from_history: str | None,
    as_json: bool,
) -> None:
    """The start, within --within, that the forecast of the budget file's intensity provider
    says minimises the run's emissions; what it saves against starting now; and, given the
    run's energy, the budget verdict at both.

    A start must lie within --within from now, and the whole run inside the forecast. Exit 0,
    or 2 with one line when the provider has no forecast or it is too short.

    \b
    Example:
      co2gate when --duration 3h --within 24h --energy-kwh 12 --json
    """
    from co2gate.app.when import WhenRequest, when

    request = WhenRequest(
        duration, within, budget_file, workload, energy_kwh, from_history, as_json
    )
    _finish(when(request, os.environ))


@cli.command()
@click.option(
    "--budget-file",
    type=click.Path(path_type=Path),  # a directory: one line from init
    default=Path(budgets.DEFAULT_FILE),
    show_default=True,
    help="Where to write the starter budget file; its folders are created.",
)
@click.option(
    "--workflow-file",
    type=click.Path(path_type=Path),
    default=Path(DEFAULT_WORKFLOW_FILE),
    show_default=True,
    help="Where to write the workflow that runs --run under the co2gate Action.",
)
@click.option(
    "--run",
    "run_command",
    default=DEFAULT_RUN,
    show_default=True,
    metavar="CMD",
    help="The command the workflow runs and gates (by bash, in the repository's root): "
    "one line, no ${{ }} expressions.",
)
@click.option(
    "--annual-kg",
    type=float,
    default=DEFAULT_ANNUAL_KG,
    show_default=True,
    help="The CO2e budget for a year, in kg (annual_budget_kg).",
)
@click.option(
    "--country",
    default=None,
    help="Where the CI runners draw their power: an ISO 3166-1 alpha-3 code, e.g. USA, FRA. "
    "Default: none (codecarbon's world average) until you set location in the file.",
)
@click.option(
    "--region",
    default=None,
    help="With --country: a US state ('virginia'), a Canadian or Chinese province, a Nordic "
    "zone ('SE3').",
)
@click.option(
    "--cloud",
    default=None,
    help="The runners' cloud region as provider:region, e.g. gcp:us-central1, aws:us-east-1.",
)
@click.option(
    "--print",
    "print_workflow",
    is_flag=True,
    help="Print the workflow on stdout instead of writing --workflow-file.",
)
@click.option(
    "--force", is_flag=True, help="Overwrite the budget file and the workflow if they exist."
)
def init(
    budget_file: Path,
    workflow_file: Path,
    run_command: str,
    annual_kg: float,
    country: str | None,
    region: str | None,
    cloud: str | None,
    print_workflow: bool,
    force: bool,
) -> None:
    """Write a starter budget file, a workflow that gates --run against it, and .gitignore
    lines for co2gate's local files; nothing when any of them would be overwritten.

    \b
    Example:
      co2gate init --annual-kg 200 --country FRA --run "python train.py --epochs 3"
    """
    from co2gate.app.init import InitRequest
    from co2gate.app.init import init as write_starter

    request = InitRequest(
        budget_file=budget_file,
        annual_kg=annual_kg,
        country=country,
        region=region,
        cloud=cloud,
        run=run_command,
        workflow_file=workflow_file,
        print_workflow=print_workflow,
        force=force,
        stdout_file=_stdout_file(),
    )
    _finish(write_starter(request))


def _stdout_file() -> tuple[int, int] | None:
    """(device, inode) of stdout when the shell redirected it into a regular file."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # CliRunner's stdout has no descriptor
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def main(started: Started | None = None) -> None:
    """The command line; `started`: the command co2gate/launch.py has started already."""
    tokens.watch(os.environ)  # a token in the environment is masked in every line
    try:
        cli(prog_name="co2gate", obj=started)
    except Exception as e:  # a bug: one line, the traceback only on request
        if os.environ.get("CO2GATE_DEBUG"):
            import traceback

            click.echo(tokens.mask(traceback.format_exc()), err=True, nl=False)
        what = f"internal error: {type(e).__name__}: {e} (CO2GATE_DEBUG=1 shows where)"
        click.echo(lines.line(what), err=True)
        sys.exit(2)
    finally:
        # Tearing down the objects the libraries created (codecarbon's, Jinja2's) takes time
        # between the command's exit and co2gate's (0.15 s when pandas was among them);
        # everything is written by now, so let the final collections skip them. atexit
        # handlers still run.
        gc.freeze()
