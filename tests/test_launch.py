"""co2gate/launch.py: `measure` and `run` start the command before the CLI checks the line.

The tables and the split are held to the CLI's own options and to click's reading of the
same lines; the behaviour (a refused option stops the command, what must come first comes
first, signals in the moment before the Supervisor, the budget file as it was) runs as real
processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from co2gate import budget as budgets
from co2gate import launch
from co2gate.cli import cli
from co2gate.github import context

PY = sys.executable
BUDGET = "version: 1\nannual_budget_kg: 100\nallocations: {training: 1}\n"


def _options(name: str) -> tuple[set[str], set[str]]:
    """The CLI's options of a command: (those that take one value, flags)."""
    command = cli.commands[name]
    values, flags = set(), set()
    group = cli.make_context("co2gate", [name], resilient_parsing=True)  # -h: the group's
    for param in command.get_params(click.Context(command, parent=group)):
        if not isinstance(param, click.Option):
            continue
        names = {*param.opts, *param.secondary_opts}
        if param.is_flag:
            flags |= names
        else:
            assert param.nargs == 1, param.name
            values |= names
    return values, flags


@pytest.mark.parametrize("name", ["measure", "run"])
def test_the_tables_are_the_clis_options(name: str) -> None:
    values, flags = _options(name)
    table_values, table_flags = launch.TABLES[name]
    first = launch.CHECK_FIRST & (values | flags)
    assert table_values == values - first
    assert table_flags == flags - first
    assert {"-h", "--help"} <= first  # help prints and exits: the CLI's path


def test_the_launchers_constants_are_the_rooms_own() -> None:
    assert launch.DEFAULT_BUDGET_FILE == budgets.DEFAULT_FILE
    assert launch.MAX_BUDGET_BYTES == budgets.MAX_FILE_BYTES
    assert set(context.BASE_COMMIT_EVENTS) == launch.BASE_COMMIT_EVENTS


STARTED_AT_ONCE = [
    ["measure", "--", "python", "train.py"],
    ["measure", "python", "train.py", "--epochs", "3", "--out", "x"],
    ["measure", "--out", "o", "--label=nightly", "--", "python", "--", "y"],
    ["measure", "--label", "--", "--", "cmd"],  # a value that looks like the separator
    ["measure", "--out", "-x", "--", "cmd"],  # a value that looks like an option
    ["measure", "--budget-file", "b.yml", "--", "x"],
    ["measure", "--budget-file=./conf/b.yml", "x"],
    ["measure", "--metric", "a=1", "--metric", "b=2", "--mlflow", "--", "x"],
    ["measure", "-", "x"],
    ["run", "--no-comment", "--max-kg", "1.5", "--no-record", "--", "x"],
    ["run", "--comment", "--heartbeat=0", "--wandb", "x", "y"],
    ["run", "--country", "FRA", "--pue", "1.2", "--comment-author", "bot", "--", "x", "--help"],
]
LEFT_TO_THE_CLI = [
    [],
    ["measure"],
    ["measure", "--"],
    ["measure", "--out"],
    ["measure", "--help"],
    ["measure", "-h", "--", "x"],
    ["measure", "--bogus", "--", "x"],
    ["measure", "-x", "--", "x"],
    ["measure", "--mlflow=yes", "--", "x"],
    ["run", "--preflight", "--", "x"],
    ["run", "--start-within=1h", "--", "x"],
    ["run", "--pause-above", "200", "--deadline", "72h", "--", "x"],
    ["run", "--force-hosted", "--", "x"],
    ["check", "--", "x"],
    ["--version"],
]


@pytest.mark.parametrize("argv", STARTED_AT_ONCE, ids=" ".join)
def test_split_reads_a_line_as_click_does(argv: list[str]) -> None:
    line = launch.split(argv)
    assert line is not None
    command = cli.commands[argv[0]]
    ctx = command.make_context(argv[0], argv[1:])
    assert line.command == ctx.params["command"]
    assert Path(line.budget_file) == ctx.params["budget_file"]


@pytest.mark.parametrize("argv", LEFT_TO_THE_CLI, ids=" ".join)
def test_split_leaves_what_it_cannot_read_for_certain_to_the_cli(argv: list[str]) -> None:
    assert launch.split(argv) is None


def test_read_budget(tmp_path: Path) -> None:
    plain = tmp_path / "b.yml"
    plain.write_text(BUDGET)
    assert launch.read_budget(str(plain)) == BUDGET.encode()
    assert launch.read_budget(str(tmp_path / "none.yml")) is None
    assert launch.read_budget(str(tmp_path)) is False  # a directory: load() says so
    assert launch.read_budget("") is False  # the current directory, to click
    keyed = tmp_path / "k.yml"
    keyed.write_text(BUDGET + "intensity: {provider: electricitymaps, token_env: EM_KEY}\n")
    assert launch.read_budget(str(keyed)) is False  # EM_KEY must be withheld: check first
    big = tmp_path / "big.yml"
    big.write_bytes(b"#" * (budgets.MAX_FILE_BYTES + 1))
    assert launch.read_budget(str(big)) is False
    dangling = tmp_path / "dangling.yml"
    dangling.symlink_to(tmp_path / "nowhere")
    assert launch.read_budget(str(dangling)) is False


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {"CODECARBON_LOG_LEVEL": "error", "TMPDIR": str(tmp_path)} | more


def _co2gate(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "co2gate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env or _env(tmp_path),
    )


def _marks(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A command that marks its start, sleeps 30 s, then marks its end."""
    first, last = tmp_path / "first", tmp_path / "last"
    code = f"import time; open({str(first)!r}, 'w'); time.sleep(30); open({str(last)!r}, 'w')"
    return first, last, [PY, "-c", code]


def test_a_refused_option_stops_the_started_command(tmp_path: Path) -> None:
    _, last, command = _marks(tmp_path)
    t0 = time.monotonic()
    result = _co2gate(tmp_path, "measure", "--country", "XYZ", "--", *command)
    assert time.monotonic() - t0 < 20  # stopped, not waited for
    assert result.returncode == 2
    refused, stopped = result.stderr.splitlines()
    assert "--country" in refused and "XYZ" in refused
    assert stopped.startswith("co2gate: stopped the command") or "had ended" in stopped
    assert "nothing was measured" in stopped and "CO2GATE_CHECK_FIRST=1" in stopped
    assert not last.exists()
    assert not (tmp_path / "co2gate-report" / "emissions.json").exists()


def test_a_command_that_ignores_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{grandchild.pid}}'); time.sleep(60)"
    )
    result = _co2gate(tmp_path, "run", "--max-kg", "-1", "--", PY, "-c", code)
    assert result.returncode == 2, result.stderr
    assert "--max-kg" in result.stderr
    if pids.exists():  # it got that far: neither it nor what it started is left running
        for pid in map(int, pids.read_text().split()):
            assert not _running(pid)


def _running(pid: int) -> bool:
    """Whether pid is a live process (a zombie waiting for init to reap it is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize(
    "why",
    ["CO2GATE_CHECK_FIRST", "pull_request", "token_env", "--preflight"],
)
def test_what_must_come_first_is_checked_before_the_command_starts(
    tmp_path: Path, why: str
) -> None:
    first, _, command = _marks(tmp_path)
    budget = tmp_path / ".github" / "carbon-budget.yml"
    budget.parent.mkdir()
    budget.write_text(BUDGET)
    env = _env(tmp_path)
    args = ["run", "--country", "XYZ", "--no-comment"]
    if why == "CO2GATE_CHECK_FIRST":
        env["CO2GATE_CHECK_FIRST"] = "1"
    elif why == "pull_request":
        env |= {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request"}
    elif why == "token_env":
        budget.write_text(
            BUDGET + "intensity: {provider: electricitymaps, zone: FR, token_env: K}\n"
        )
    else:
        args.append("--preflight")
    result = _co2gate(tmp_path, *args, "--", *command, env=env)
    assert result.returncode == 2, result.stderr
    assert not first.exists()  # refused before it started
    assert "stopped the command" not in result.stderr


def test_the_command_is_judged_by_the_budget_file_as_it_was_before_it_started(
    tmp_path: Path,
) -> None:
    budget = tmp_path / ".github" / "carbon-budget.yml"
    budget.parent.mkdir()
    budget.write_text(BUDGET + f"ledger: {{backend: file, path: {tmp_path / 'ledger'}}}\n")
    rewrite = f"open({str(budget)!r}, 'w').write('annual_budget_kg: [')"  # not a budget
    result = _co2gate(tmp_path, "run", "--no-comment", "--", PY, "-c", rewrite)
    assert result.returncode == 0, result.stderr
    verdict = json.loads((tmp_path / "co2gate-report" / "verdict.json").read_text())
    assert verdict["verdict"] == "pass"


def test_a_signal_before_the_supervisor_watches_reaches_the_command(tmp_path: Path) -> None:
    first, last, command = _marks(tmp_path)
    proc = subprocess.Popen(
        [PY, "-m", "co2gate", "measure", "--", *command],
        cwd=tmp_path,
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)  # most likely while the CLI is still being imported
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert not last.exists()
    measured = json.loads((tmp_path / "co2gate-report" / "emissions.json").read_text())
    assert measured["run"]["forwarded_signals"] == ["SIGTERM"]
    assert measured["run"]["exit_code"] == 128 + signal.SIGTERM


def test_a_command_that_cannot_start_gets_the_clis_one_line(tmp_path: Path) -> None:
    result = _co2gate(tmp_path, "measure", "--", "no-such-command-co2gate")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "no-such-command-co2gate" in line and "not found" in line


# Run in a fresh interpreter: the modules loaded when launch.py starts the command.
PROBE = """
import sys
from co2gate import spawn
start, record = spawn.start, sys.argv[1]
def recording(argv, env):
    with open(record, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
    return start(argv, env)
spawn.start = recording
sys.argv = ["co2gate", *sys.argv[2:]]
from co2gate.launch import main
main()
"""


def test_the_command_starts_before_click_and_co2gates_rooms_are_imported(tmp_path: Path) -> None:
    record = tmp_path / "modules"
    args = ["measure", "--out", str(tmp_path / "out"), "--", PY, "-c", ""]
    result = subprocess.run(
        [PY, "-c", PROBE, str(record), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(record.read_text().split())
    co2gates = {m for m in loaded if m.startswith("co2gate")}
    assert co2gates == {
        "co2gate",
        "co2gate.errors",
        "co2gate.launch",
        "co2gate.spawn",
        "co2gate.tokens",
    }
    later = {"click", "typing", "dataclasses", "json", "re", "pathlib", "subprocess", "yaml"}
    assert loaded.isdisjoint(later), sorted(loaded & later)


def test_a_co2gate_that_cannot_load_its_cli_stops_the_command_it_started(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "click").mkdir(parents=True)
    (broken / "click" / "__init__.py").write_text("raise ImportError('click is broken')\n")
    marker = tmp_path / "late"
    src = str(Path(launch.__file__).parents[1])
    env = _env(tmp_path, PYTHONPATH=f"{broken}{os.pathsep}{src}")
    code = f"import time; time.sleep(5); open({str(marker)!r}, 'w')"
    result = _co2gate(tmp_path, "measure", "--", PY, "-c", code, env=env)
    assert result.returncode != 0
    assert "click is broken" in result.stderr
    assert "co2gate: stopped the command" in result.stderr  # then Python's traceback
    assert not marker.exists()
