"""co2gate run, check and budget: the verdict, its exit code, the ledger, budget integrity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun, late, refusal
from fakegithub import FakeGitHub

PY = sys.executable

BUDGET = """version: 1
annual_budget_kg: {annual}
allocations: {{training: 0.7, inference: 0.3}}
limits: {{training: {limit}}}
warn_at: 0.8
on_exceed: {on_exceed}
location: {{intensity: 400000}}
ledger: {{backend: file, path: ledger}}
"""
# An intensity of 400 kg/kWh makes a one-second run emit grams: budgets in grams decide it.


def write_budget(
    root: Path, annual: float = 1.0, limit: float = 100.0, on_exceed: str = "fail"
) -> Path:
    path = root / ".github" / "carbon-budget.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BUDGET.format(annual=annual, limit=limit, on_exceed=on_exceed))
    return path


def ledger_lines(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for f in (root / "ledger").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]


def verdict(root: Path) -> dict[str, Any]:
    return json.loads((root / "co2gate-report" / "verdict.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    return tmp_path


def test_a_run_within_budget_passes_and_is_recorded(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    result = co2gate("run", "--", PY, "-c", "pass")
    assert result.returncode == 0, result.stderr
    v = verdict(in_repo)
    assert v["verdict"] == "pass" and v["recorded"] is True
    assert v["used_before_kg"] == 0 and v["run_kg"] > 0
    assert v["after_kg"] == pytest.approx(v["run_kg"])
    assert v["allocation_kg"] == pytest.approx(0.7)
    (entry,) = ledger_lines(in_repo)
    assert entry["emissions_kg"] == pytest.approx(v["run_kg"])
    assert "PASS: training" in result.stderr


def test_over_budget_fails_with_exit_1_after_writing_everything(
    co2gate: CliRun, in_repo: Path
) -> None:
    write_budget(in_repo, annual=1e-9)
    result = co2gate("run", "--", PY, "-c", "import time; time.sleep(0.5)")
    assert result.returncode == 1
    assert verdict(in_repo)["verdict"] == "fail"
    assert (in_repo / "co2gate-report" / "emissions.json").exists()
    assert len(ledger_lines(in_repo)) == 1  # a failing run still counts against the year
    assert "FAIL: training" in result.stderr


def test_on_exceed_warn_lets_it_through(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, annual=1e-9, on_exceed="warn")
    result = co2gate("run", "--", PY, "-c", "pass")
    assert result.returncode == 0
    assert verdict(in_repo)["verdict"] == "warn"


def test_per_run_limit(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, limit=1e-9)
    result = co2gate("run", "--", PY, "-c", "pass")
    assert result.returncode == 1
    assert any("limit" in r for r in verdict(in_repo)["reasons"])


def test_the_commands_own_failure_wins_over_the_verdict(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, annual=1e-9)
    result = co2gate("run", "--", PY, "-c", "raise SystemExit(3)")
    assert result.returncode == 3
    assert verdict(in_repo)["verdict"] == "fail"


@pytest.mark.parametrize(
    ("budget", "args", "message"),
    [
        ("version: 1\nannual_budget_kg: -5\nallocations: {training: 1}\n", [], "annual_budget_kg"),
        (
            "version: 1\nannual_budget_kg: 5\nallocations: {training: 0.8, inference: 0.4}\n",
            [],
            "allocations",
        ),
        (
            "version: 1\nannual_budget_kg: 5\nallocations: {training: 1}\n",
            ["--workload", "eval"],
            "eval",
        ),
        (None, [], "not found"),
    ],
)
def test_a_bad_budget_stops_the_command(
    co2gate: CliRun, in_repo: Path, budget: str | None, args: list[str], message: str
) -> None:
    if budget is not None:
        (in_repo / ".github").mkdir()
        (in_repo / ".github" / "carbon-budget.yml").write_text(budget)
    marker = in_repo / "ran"
    result = co2gate("run", *args, "--", *late(marker))
    assert result.returncode == 2
    assert ".github/carbon-budget.yml" in result.stderr and message in result.stderr
    assert len(refusal(result.stderr).strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_check_gates_and_records_a_measurement_once(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    assert co2gate("measure", "--intensity", "400000", "--", PY, "-c", "pass").returncode == 0
    measured = in_repo / "co2gate-report" / "emissions.json"
    first = co2gate("check", "--json", str(measured))
    second = co2gate("check", "--json", str(measured))
    assert first.returncode == 0 and second.returncode == 0
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["verdict"] == two["verdict"] == "pass"
    assert one["used_before_kg"] == two["used_before_kg"] == 0  # the run never counts itself
    assert len(ledger_lines(in_repo)) == 1


def test_check_reads_a_codecarbon_csv(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    csv_path = in_repo / "emissions.csv"
    header = "timestamp,project_name,run_id,duration,emissions,cpu_energy,gpu_energy,ram_energy,pue"
    csv_path.write_text(
        f"{header}\n"
        "2026-05-01T10:00:00,p,run-a,10,0.010,0.01,0.02,0.01,1.0\n"
        "2026-05-01T10:00:10,p,run-a,20,0.020,0.02,0.04,0.02,1.0\n"  # cumulative flush of run-a
        "2026-05-01T11:00:00,p,run-b,5,0.005,0.01,0.0,0.01,1.0\n"
    )
    result = co2gate(
        "check", "--json", "--workload", "inference", "--label", "serve", str(csv_path)
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    # run-a counts once, by its last row (0.020 kg), plus run-b (0.005 kg): 0.025 kg
    assert doc["run_kg"] == pytest.approx(0.025)
    assert doc["category"] == "inference" and doc["allocation_kg"] == pytest.approx(0.3)


def test_check_refuses_what_is_not_a_measurement(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    bogus = in_repo / "x.json"
    bogus.write_text('{"hello": 1}')
    result = co2gate("check", str(bogus))
    assert result.returncode == 2 and "not a co2gate emissions.json" in result.stderr


def test_budget_shows_the_year(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    assert (
        co2gate("run", "--label", "big", "--", PY, "-c", "import time; time.sleep(0.3)").returncode
        == 0
    )
    result = co2gate("budget", "--json")
    assert result.returncode == 0, result.stderr
    standing = json.loads(result.stdout)
    (training,) = [c for c in standing["categories"] if c["category"] == "training"]
    (entry,) = ledger_lines(in_repo)
    assert training["used_kg"] == pytest.approx(entry["emissions_kg"])
    assert training["remaining_kg"] == pytest.approx(0.7 - entry["emissions_kg"])
    assert training["runs"] == 1 and standing["top_runs"][0]["label"] == "big"
    table = co2gate("budget").stdout
    assert "training" in table and "inference" in table and "big" in table


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_pr_cannot_raise_its_own_budget(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, annual=1e-9)  # the base: far too small for any run
    _git(in_repo, "init", "-q")
    _git(in_repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(in_repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    base = _git(in_repo, "rev-parse", "HEAD")
    write_budget(in_repo, annual=1000.0)  # the PR raises it in its head
    event = in_repo / "event.json"
    event.write_text(
        json.dumps(
            {"pull_request": {"number": 5, "base": {"sha": base}, "head": {"sha": "f" * 40}}}
        )
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "1",
        "GITHUB_JOB": "train",
    }
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 1, result.stderr  # judged by the base's budget
    v = verdict(in_repo)
    assert v["allocation_kg"] == pytest.approx(0.7e-9)
    assert any("this PR changes" in n for n in v["notes"])


def _actions_env(
    fake: FakeGitHub, token: str, event: Path, name: str = "pull_request"
) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": name,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_TOKEN": token,
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "train",
        "GITHUB_REF": "refs/pull/5/merge",
    }


def _pr_event(root: Path, base_sha: str) -> Path:
    event = root / "event.json"
    pull = {"number": 5, "base": {"sha": base_sha}, "head": {"sha": "e" * 40}}
    event.write_text(json.dumps({"pull_request": pull}))
    return event


def test_the_base_budget_comes_through_the_api_when_the_clone_lacks_it(
    co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    base = write_budget(in_repo / "base", annual=1e-9).read_text()
    fake_github.put_file("octo/lab", "main", ".github/carbon-budget.yml", base)
    base_sha = fake_github.repos["octo/lab"].refs["refs/heads/main"]
    write_budget(in_repo, annual=1000.0)  # the PR's own, raised; no git clone here at all
    env = _actions_env(fake_github, fake_github.token, _pr_event(in_repo, base_sha))
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 1, result.stderr
    assert verdict(in_repo)["allocation_kg"] == pytest.approx(0.7e-9)
    assert fake_github.count("GET", "contents/.github/carbon-budget.yml") >= 1


def _branch_budget(root: Path) -> None:
    path = write_budget(root)
    path.write_text(path.read_text().replace("ledger: {backend: file, path: ledger}", "ledger: {}"))


def test_runs_are_recorded_on_the_ledger_branch(
    co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    _branch_budget(in_repo)
    event = in_repo / "event.json"
    event.write_text("{}")
    env = _actions_env(fake_github, fake_github.token, event, name="push")
    assert co2gate("run", "--", PY, "-c", "pass", env=env).returncode == 0
    assert (
        co2gate("check", str(in_repo / "co2gate-report" / "emissions.json"), env=env).returncode
        == 0
    )
    ended = json.loads((in_repo / "co2gate-report" / "emissions.json").read_text())["run"][
        "ended_at"
    ]
    shard = fake_github.file_text("octo/lab", "co2gate-ledger", f"{ended[:4]}/{ended[5:7]}.jsonl")
    lines = (shard or "").splitlines()
    assert len(lines) == 1  # run, then check of the same run: recorded once
    assert json.loads(lines[0])["key"] == "octo/lab/77/1/train/train"


def test_a_fork_prs_read_only_token_gates_but_does_not_record(
    co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    _branch_budget(in_repo)
    fake_github.put_file(
        "octo/lab",
        "main",
        ".github/carbon-budget.yml",
        (in_repo / ".github" / "carbon-budget.yml").read_text(),
    )
    base_sha = fake_github.repos["octo/lab"].refs["refs/heads/main"]
    env = _actions_env(fake_github, fake_github.read_token, _pr_event(in_repo, base_sha))
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    v = verdict(in_repo)
    assert v["verdict"] == "pass" and v["recorded"] is False
    assert any("not recorded" in n for n in v["notes"])
    assert fake_github.read_token not in result.stderr
