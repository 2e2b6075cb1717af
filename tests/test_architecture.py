"""The house: arrows only point down, and nothing heavy is imported before the command starts."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "co2gate"
ABOVE = ("co2gate.app", "co2gate.report", "co2gate.cli")
HEAVY = ("github", "jinja2", "codecarbon", "pandas", "requests", "pynvml")
HEAVY += ("mlflow", "wandb", "prometheus_client")  # the trackers' packages, only once sending


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def below_the_application() -> list[Path]:
    rooms = [SRC / "measure", SRC / "ledger", SRC / "github", SRC / "trackers", SRC / "grid"]
    files = [p for room in rooms for p in sorted(room.glob("*.py"))]
    singles = ("budget", "intensity", "units", "errors", "runner", "guard", "emissions", "sci")
    singles += ("regression",)  # the bootstrap behind regression.max_increase
    singles += ("codecarbon_csv",)  # beside emissions: the reader of codecarbon's files
    singles += ("uncertainty",)
    singles += ("metrics", "pareto")  # quality figures and the front of CO2e against them
    singles += ("nodes", "merge")  # a rank's identity; many nodes' files as one run
    singles += ("annual",)  # the annual report's sums, from ledger entries
    return files + [SRC / f"{name}.py" for name in singles]


@pytest.mark.parametrize("path", below_the_application(), ids=module_name)
def test_rooms_below_the_application_import_nothing_above_them(path: Path) -> None:
    up = sorted(m for m in imports(path) if m.startswith(ABOVE))
    assert up == [], f"{module_name(path)} imports {up}"


def test_the_report_reads_records_and_never_the_use_cases() -> None:
    up = sorted(
        m for m in imports(SRC / "report.py") if m.startswith(("co2gate.app", "co2gate.cli"))
    )
    assert up == []


def test_the_application_never_imports_the_command_line() -> None:
    for path in sorted((SRC / "app").glob("*.py")):
        assert not [m for m in imports(path) if m.startswith("co2gate.cli")], path


def test_the_check_sees_an_arrow_that_points_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from co2gate.app.run import run\n")
    assert "co2gate.app.run" in imports(bad)


# Run in a fresh interpreter: record the modules loaded when the command is spawned.
PROBE = """
import json, sys
from co2gate import runner
spawn, record = runner._spawn, sys.argv[1]
def recording(argv):
    with open(record, "w") as f:
        json.dump(sorted(sys.modules), f)
    return spawn(argv)
runner._spawn = recording
sys.argv = ["co2gate", *sys.argv[2:]]
from co2gate.cli import main
main()
"""


def loaded_at_spawn(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    record = tmp_path / "modules.json"
    command = [sys.executable, "-c", PROBE, str(record), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(record.read_text()))
    return modules | {m.split(".")[0] for m in modules}


def test_measure_spawns_the_command_before_any_heavy_import(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    args = ["measure", "--budget-file", str(tmp_path / "none.yml"), "--out", out]
    loaded = loaded_at_spawn(tmp_path, *args, "--", sys.executable, "-c", "")
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    # The record, the report and the ledger's use cases come after the command too.
    later = {"co2gate.model", "co2gate.emissions", "co2gate.report", "co2gate.app.gate"}
    later |= {"yaml"}  # no budget file here: nothing to parse
    later |= {"random", "statistics"}  # the regression rule's bootstrap, after the command
    assert loaded.isdisjoint(later), sorted(loaded & later)
    assert "co2gate" in loaded  # the probe saw the spawn


def test_run_with_a_guard_and_heartbeat_spawns_before_any_heavy_import(tmp_path: Path) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(
        "version: 1\nannual_budget_kg: 100\nallocations: {training: 1}\n"
        "limits: {training: 10}\nledger: {backend: file, path: " + str(tmp_path / "l") + "}\n"
    )
    args = ["run", "--budget-file", str(budget), "--out", str(tmp_path / "out")]
    args += ["--heartbeat", "1", "--", sys.executable, "-c", ""]
    loaded = loaded_at_spawn(tmp_path, *args)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert (tmp_path / "out" / "verdict.json").is_file()


# Run in a fresh interpreter: record every module loaded by the time co2gate exits.
AT_EXIT = """
import atexit, json, sys
record = sys.argv[1]
def recording():
    with open(record, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(recording)
sys.argv = ["co2gate", *sys.argv[2:]]
from co2gate.cli import main
main()
"""


def test_a_measured_run_never_imports_pandas(tmp_path: Path) -> None:
    # codecarbon reads its TDP table and grid tables through pandas; co2gate reads the same
    # files without it (pandas and numpy: about 0.5 s of CPU, as much as the rest of co2gate).
    record = tmp_path / "modules.json"
    args = ["measure", "--budget-file", str(tmp_path / "none.yml"), "--out", str(tmp_path / "o")]
    command = [sys.executable, "-c", AT_EXIT, str(record), *args, "--", sys.executable, "-c", ""]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = {m.split(".")[0] for m in json.loads(record.read_text())}
    assert "codecarbon" in loaded  # it did measure
    assert (tmp_path / "o" / "report.md").is_file()
    assert loaded.isdisjoint({"pandas", "numpy"}), sorted(loaded & {"pandas", "numpy"})
