"""co2gate's entry point: `measure` and `run` start the command first, then check the rest.

Importing click and co2gate's rooms takes about 0.2 s on a 2-core runner, and a wrapper should
not delay the step it measures. So for `co2gate measure|run [OPTIONS] [--] COMMAND...` this
module, which imports nothing but the standard library and co2gate's token handling, splits
the line into options and COMMAND, reads what the command could change (the budget file) and
what it must never see (the Action's token file, deleted once read), starts COMMAND without
any GitHub token in its environment, and only then hands the line to the CLI (co2gate/cli.py),
which checks every option and the budget file while COMMAND starts. One that is refused stops
COMMAND (SIGTERM to its process group, SIGKILL 2 s later) and exits 2 with the usual line.

Everything that has to happen before COMMAND starts takes the CLI's path, which checks
first, then starts it: the events where the budget file is read at the base commit (pull
requests), a budget file that names a grid provider's key variable (withheld from COMMAND),
--preflight, the carbon-aware options, --help, any option this module does not know, and
CO2GATE_CHECK_FIRST=1. A test holds the tables below to the CLI's options.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing's, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    from co2gate.spawn import Started

# The options of `measure` and of `run`: those that take a value, then the flags.
MEASURE_VALUES = frozenset(
    {
        "--out",
        "--label",
        "--workload",
        "--requests",
        "--units",
        "--unit",
        "--country",
        "--region",
        "--cloud",
        "--intensity",
        "--pue",
        "--budget-file",
        "--template-dir",
        "--metric",
        "--metrics-file",
        "--prometheus-textfile",
        "--prometheus-pushgateway",
    }
)
MEASURE_FLAGS = frozenset({"--mlflow", "--wandb"})
RUN_VALUES = MEASURE_VALUES | {"--comment-author", "--max-kg", "--grace", "--heartbeat"}
RUN_FLAGS = MEASURE_FLAGS | {"--no-record", "--comment", "--no-comment"}
# Options whose work comes before the command (or instead of it): the CLI's path.
CHECK_FIRST = frozenset(
    {
        "-h",
        "--help",
        "--preflight",
        "--start-within",
        "--duration",
        "--pause-above",
        "--deadline",
        "--pause-signal",
        "--pause-grace",
        "--force-hosted",
    }
)
TABLES = {"measure": (MEASURE_VALUES, MEASURE_FLAGS), "run": (RUN_VALUES, RUN_FLAGS)}

DEFAULT_BUDGET_FILE = ".github/carbon-budget.yml"  # budget.DEFAULT_FILE
MAX_BUDGET_BYTES = 1024 * 1024  # budget.MAX_FILE_BYTES
# Events whose budget is read at the base commit, through the API (github/context.py).
BASE_COMMIT_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_target",
        "pull_request_review",
        "pull_request_review_comment",
        "merge_group",
    }
)


class Line:
    """`co2gate measure|run` as this module read it: the command and the budget file."""

    def __init__(self, command: tuple[str, ...], budget_file: str) -> None:
        self.command = command
        self.budget_file = budget_file


def split(argv: list[str]) -> Line | None:
    """argv (after `co2gate`) as a command to start at once, or None for the CLI's path.

    Read as click reads it (options, then COMMAND after `--` or from the first argument that
    is not an option, since these commands take no interspersed arguments); anything this
    cannot read for certain is left to the CLI."""
    if not argv or argv[0] not in TABLES:
        return None
    values, flags = TABLES[argv[0]]
    budget_file = DEFAULT_BUDGET_FILE
    i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            command = argv[i + 1 :]
            break
        if not token.startswith("-") or token == "-":
            command = argv[i:]
            break
        name, eq, value = token.partition("=")
        if name in CHECK_FIRST:
            return None
        if name in values:
            if not eq:
                i += 1
                if i == len(argv):
                    return None
                value = argv[i]
            if name == "--budget-file":
                budget_file = value
        elif name not in flags or eq:
            return None
        i += 1
    else:
        return None
    if not command:
        return None
    return Line(tuple(command), budget_file)


def read_budget(path: str) -> bytes | Literal[False] | None:
    """The budget file's bytes as they are before the command starts; None when there is
    none; False when the CLI's path should read it (anything but a small regular file of
    UTF-8, or one that names a key variable, which must be withheld from the command)."""
    if not path:  # the CLI reads "" as the current directory, and refuses it
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None if not os.path.islink(path) else False
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        data = os.read(fd, MAX_BUDGET_BYTES + 1)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(data) > MAX_BUDGET_BYTES or b"_env" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # refused before the command starts, like any unreadable file
        return False
    return data


def check_first(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for every check before the command starts."""
    if env.get("CO2GATE_CHECK_FIRST", "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_EVENT_NAME") in (
        BASE_COMMIT_EVENTS
    )


def main() -> None:
    started = None if check_first(os.environ) else _start(sys.argv[1:])
    if started is None:
        from co2gate.cli import main as cli_main

        cli_main()
        return
    try:
        from co2gate.cli import main as cli_main  # the rest of co2gate, while the command starts

        cli_main(started)
    finally:  # whatever ends co2gate before its command (a refusal, a broken install) ends it
        if not started.reaped:
            what = started.stop()
            sys.stderr.write(
                f"co2gate: {what}: nothing was measured (co2gate checks its options and budget "
                "file while the command starts; CO2GATE_CHECK_FIRST=1 checks them first)\n"
            )


def _start(argv: list[str]) -> Started | None:
    """Start the command argv names; None when the CLI's path should (it says why it cannot)."""
    line = split(argv)
    if line is None:
        return None
    budget = read_budget(line.budget_file)
    if budget is False:
        return None
    from co2gate import spawn, tokens

    try:
        tokens.github_token(os.environ)  # read (and the file deleted) before the command
    except tokens.TokenFileError:
        return None
    relay = spawn.Relay()
    relay.install()
    try:
        started = spawn.start(line.command, tokens.child_environment(os.environ))
    except OSError:  # not found, not executable: the CLI's path says so, after its checks
        relay.uninstall()
        return None
    relay.attach(started)
    started.take_terminal()
    started.budget_before = (line.budget_file, budget)
    return started
