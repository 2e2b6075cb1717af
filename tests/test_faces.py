"""What a user sees when the environment is broken: one line, the right exit code, no
traceback; measure reads the budget file; errors name the option; codecarbon stays quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import CliRun, late, refusal
from test_report import doc

from co2gate.emissions import write_atomic

PY = sys.executable
BUDGET = "version: 1\nannual_budget_kg: 100\nallocations: {training: 1}\n"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CODECARBON_"))}
    return env | extra


def actions_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text("{}")
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_JOB": "train",
        "GITHUB_RUN_ID": "1",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    return base_env(**(actions | extra))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", ["estimate", "check", "budget"])
def test_a_bad_repository_name_with_the_branch_ledger_is_one_line(
    co2gate: CliRun, tmp_path: Path, command: str
) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + "ledger: {backend: branch}\n")
    measured = tmp_path / "emissions.json"
    measured.write_text(json.dumps(doc(1.0).to_json()))
    env = actions_env(tmp_path, GITHUB_REPOSITORY="bad repo name", GITHUB_TOKEN="t0ken-canary")
    args = {
        "estimate": ["--hours", "1", "--gpu", "H100"],
        "check": ["--out", str(tmp_path / "out"), str(measured)],
        "budget": [],
    }[command]
    result = co2gate(command, "--budget-file", str(budget), *args, env=env, process=True)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "bad repo name" in line and "t0ken-canary" not in line


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
def test_an_unwritable_runner_file_is_a_warning_and_the_pass_stays_a_pass(
    co2gate: CliRun, tmp_path: Path, variable: str
) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + f"ledger: {{backend: file, path: {tmp_path / 'ledger'}}}\n")
    env = actions_env(tmp_path, **{variable: str(tmp_path / "no" / "such" / "file")})
    out = tmp_path / "out"
    result = co2gate(
        "run", "--budget-file", str(budget), "--out", str(out), "--no-comment", "--",
        PY, "-c", "pass", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("::warning")]
    assert len(warnings) == 1 and "could not write" in warnings[0]
    assert "Traceback" not in result.stderr
    assert json.loads((out / "verdict.json").read_text())["verdict"] == "pass"


def test_a_run_that_cannot_be_recorded_exits_2_after_writing_what_it_measured(
    co2gate: CliRun, tmp_path: Path
) -> None:
    blocker = tmp_path / "ledger"
    blocker.write_text("a file where the ledger's directory should be")
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + f"ledger: {{backend: file, path: {blocker}}}\n")
    out = tmp_path / "out"
    result = co2gate(
        "run", "--budget-file", str(budget), "--out", str(out), "--", PY, "-c", "pass",
        env=base_env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "not recorded in the ledger" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "emissions.json").is_file() and (out / "verdict.json").is_file()


def test_the_commands_own_failure_wins_over_the_record(co2gate: CliRun, tmp_path: Path) -> None:
    blocker = tmp_path / "ledger"
    blocker.write_text("")
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + f"ledger: {{backend: file, path: {blocker}}}\n")
    result = co2gate(
        "run", "--budget-file", str(budget), "--out", str(tmp_path / "out"), "--",
        PY, "-c", "raise SystemExit(7)", env=base_env(),
    )  # fmt: skip
    assert result.returncode == 7


def test_measure_uses_the_budget_files_location_and_says_so(
    co2gate: CliRun, tmp_path: Path
) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + "location: {country: FRA, pue: 1.25}\n")
    out = tmp_path / "out"
    result = co2gate(
        "measure", "--budget-file", str(budget), "--out", str(out), "--", PY, "-c", "pass",
        env=base_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "emissions.json").read_text())
    assert doc["pue"] == 1.25 and "FRA" in doc["intensity_source"]
    assert f"location and PUE from {budget}" in doc["notes"]
    # An option still wins over the file.
    result = co2gate(
        "measure", "--budget-file", str(budget), "--out", str(out), "--pue", "1.5",
        "--country", "DEU", "--", PY, "-c", "pass", env=base_env(),
    )  # fmt: skip
    doc = json.loads((out / "emissions.json").read_text())
    assert doc["pue"] == 1.5 and "DEU" in doc["intensity_source"]


def test_measure_without_a_budget_file_behaves_as_before(co2gate: CliRun, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = co2gate(
        "measure", "--budget-file", str(tmp_path / "none.yml"), "--out", str(out), "--",
        PY, "-c", "pass", env=base_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "emissions.json").read_text())
    assert doc["pue"] == 1.0 and "world average" in doc["intensity_source"]


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--country", "XYZ"], "--country: "),
        (["--country", "USA", "--region", "virgina"], "--region: "),
        (["--pue", "0.9"], "--pue: "),
        (["--cloud", "gcp:nowhere-1"], "--cloud: "),
    ],
)
def test_location_errors_name_the_option(
    co2gate: CliRun, tmp_path: Path, args: list[str], start: str
) -> None:
    marker = tmp_path / "ran"
    result = co2gate(
        "measure", "--out", str(tmp_path / "out"), *args, "--", *late(marker), env=base_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert start in one_line(refusal(result.stderr))
    assert not marker.exists()


def test_a_budget_files_bad_location_names_the_file_and_key(
    co2gate: CliRun, tmp_path: Path
) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + "location: {country: XYZ}\n")
    result = co2gate(
        "measure", "--budget-file", str(budget), "--out", str(tmp_path / "o"), "--",
        PY, "-c", "pass", env=base_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{budget}: location.country" in one_line(refusal(result.stderr))


def test_codecarbon_is_silent_with_the_guard_and_heartbeat_on(
    co2gate: CliRun, tmp_path: Path
) -> None:
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + "limits: {training: 10}\nledger: {backend: none}\n")
    args = ["run", "--budget-file", str(budget), "--out", str(tmp_path / "out")]
    sleeper = [PY, "-c", "import time; time.sleep(2.5)"]
    result = co2gate(*args, "--heartbeat", "1", "--", *sleeper, env=base_env())
    assert result.returncode == 0, result.stderr
    strays = [ln for ln in result.stderr.splitlines() if not ln.startswith("co2gate: ")]
    assert strays == []
    assert any("limit 10 kg" in ln for ln in result.stderr.splitlines())  # the heartbeat spoke
    loud = co2gate(*args, "--", *sleeper, env=base_env(CODECARBON_LOG_LEVEL="info"))
    assert "[codecarbon INFO" in loud.stderr  # asked for, it speaks


def test_a_bad_ledger_line_is_skipped_by_every_command(co2gate: CliRun, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    today = datetime.now(timezone.utc)
    shard = ledger / f"{today:%Y/%m}.jsonl"
    shard.parent.mkdir(parents=True)
    stamp = today.isoformat(timespec="milliseconds")
    good = {"key": "local/1/1/local/train", "repository": "local", "run_id": "1",
            "run_attempt": "1", "job": "local", "label": "train", "category": "training",
            "emissions_kg": 2.5, "energy_kwh": 10.0, "duration_s": 60.0, "ended_at": stamp,
            "sha": None, "ref": None, "event": None, "pr": None}  # fmt: skip
    lines = [json.dumps(good)]
    lines.append(json.dumps(good | {"key": "k-null", "emissions_kg": None}))
    lines.append(json.dumps(good | {"key": "k-nan"}).replace("2.5", "NaN"))
    shard.write_text("\n".join(lines) + "\n")
    budget = tmp_path / "budget.yml"
    budget.write_text(BUDGET + f"ledger: {{backend: file, path: {ledger}}}\n")
    standing = co2gate("budget", "--budget-file", str(budget), "--json", env=base_env())
    assert standing.returncode == 0, standing.stderr
    assert json.loads(standing.stdout)["used_kg"] == 2.5  # the two bad lines never summed
    warning = one_line(standing.stderr)
    assert str(shard.relative_to(ledger)) in warning and "line 2" in warning
    out = tmp_path / "out"
    run = co2gate(
        "run", "--budget-file", str(budget), "--out", str(out), "--", PY, "-c", "pass",
        env=base_env(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "line 2" in run.stderr
    checked = co2gate(
        "check", "--budget-file", str(budget), "--out", str(tmp_path / "c"), "--no-record",
        str(out / "emissions.json"), env=base_env(),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(("given", "quiet"), [(None, True), ("info", False)])
def test_codecarbon_is_quieted_once_and_a_users_level_is_kept(
    given: str | None, quiet: bool
) -> None:
    env = base_env() | ({"CODECARBON_LOG_LEVEL": given} if given else {})
    probe = (
        "import os; from co2gate.quiet import quiet_codecarbon as q; "
        "print(q(), q(), os.environ['CODECARBON_LOG_LEVEL'])"
    )
    out = subprocess.run([PY, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(quiet), str(quiet), given or "critical"]


def test_a_failed_atomic_write_leaves_no_stray_file(tmp_path: Path) -> None:
    target = tmp_path / "emissions.json"
    (target / "in-the-way").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(OSError):
        write_atomic(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emissions.json"]
