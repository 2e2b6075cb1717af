"""The `co2gate` command line: parse options, call one library function, print."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from co2gate import __version__, report
from co2gate.emissions import RunLabels
from co2gate.intensity import Location, LocationError, validate
from co2gate.runner import CommandError
from co2gate.session import SetupError, measure_command, prepare_out_dir

F = TypeVar("F", bound=Callable[..., Any])
WORKLOAD = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class UsageProblem(click.ClickException):
    """Bad input: one line on stderr, exit 2 (click's convention for usage errors)."""

    exit_code = 2


def _say(line: str) -> None:
    click.echo(f"co2gate: {line}", err=True)


def run_options(f: F) -> F:
    """Options that describe the run being measured."""
    for decorator in reversed(
        [
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
                help="Functional units the step served (requests, samples): "
                "adds per-request figures.",
            ),
        ]
    ):
        f = decorator(f)
    return f


def location_options(f: F) -> F:
    """Where the energy was drawn, which decides the grid's carbon intensity."""
    for decorator in reversed(
        [
            click.option("--country", help="ISO 3166-1 alpha-3 code, e.g. USA, FRA, DEU."),
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
                default=1.0,
                show_default=True,
                help="Data-centre Power Usage Effectiveness (>= 1).",
            ),
        ]
    ):
        f = decorator(f)
    return f


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
    pue: float,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and measure the energy it draws and the CO2e it emits.

    COMMAND's output, exit code and signals pass through untouched; co2gate's own lines
    follow on stderr, and emissions.json and emissions.csv are written to --out.

    \b
    Example:
      co2gate measure --country FRA -- python train.py --epochs 3
    """
    if not WORKLOAD.match(workload):
        raise UsageProblem(
            f"--workload {workload!r}: use lower-case letters, digits, - and _ "
            "(e.g. training, inference)"
        )
    try:
        location = validate(Location(country, region, cloud, intensity, pue))
        out_dir = prepare_out_dir(out)
        labels = RunLabels(
            label=label or os.environ.get("GITHUB_JOB") or "local",
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
    sys.exit(measured.exit_code)


def main() -> None:
    try:
        cli(prog_name="co2gate")
    finally:
        # Tearing down the objects codecarbon's dependencies (pandas, numpy) created takes
        # about 0.15 s, between the command's exit and co2gate's; everything is written by
        # now, so let the final collections skip them. atexit handlers still run.
        gc.freeze()
