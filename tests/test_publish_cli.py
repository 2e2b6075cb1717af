"""Where the report goes, end to end: `co2gate run`/`check`/`measure` as a GitHub Actions step
against the fake GitHub API, reading back the runner files the way the runner does."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub
from mdcheck import problems
from test_workflow_files import runner_outputs

PY = sys.executable
BASE_BUDGET = """version: 1
annual_budget_kg: {annual}
allocations: {{training: 0.7, inference: 0.3}}
location: {{intensity: 400000}}
ledger: {{backend: branch}}
"""  # 400 kg/kWh: a short run emits grams, so budgets in grams decide it


@pytest.fixture
def step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub) -> Step:
    monkeypatch.chdir(tmp_path)
    return Step(tmp_path, fake_github)


class Step:
    """One Actions step's environment: event, runner files, token, the fake API."""

    def __init__(self, root: Path, fake: FakeGitHub) -> None:
        self.root, self.fake = root, fake
        self.output = root / "runner" / "output"
        self.summary = root / "runner" / "summary.md"
        self.output.parent.mkdir()

    def budget(self, annual: float = 1.0) -> None:
        """The budget file, on the base branch (the fake's main) and in the checkout."""
        text = BASE_BUDGET.format(annual=annual)
        self.fake.put_file("octo/lab", "main", ".github/carbon-budget.yml", text)
        (self.root / ".github").mkdir(exist_ok=True)
        (self.root / ".github" / "carbon-budget.yml").write_text(text)

    def env(
        self,
        event: str = "pull_request",
        *,
        token: str | None = None,
        head_ref: str = "feature",
        job: str = "train",
        run_id: str = "77",
    ) -> dict[str, str]:
        base_sha = self.fake.repos["octo/lab"].refs["refs/heads/main"]
        payload: dict[str, Any] = {}
        if event == "pull_request":
            pull = {"number": 5, "base": {"sha": base_sha}, "head": {"sha": "e" * 40}}
            payload = {"pull_request": pull}
        path = self.root / "event.json"
        path.write_text(json.dumps(payload))
        self.output.touch()
        self.summary.touch()
        return {
            "PATH": os.environ["PATH"],
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_REPOSITORY": "octo/lab",
            "GITHUB_API_URL": self.fake.api_url,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_TOKEN": token or self.fake.token,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": job,
            "GITHUB_SHA": "d" * 40,
            "GITHUB_REF": "refs/pull/5/merge" if event == "pull_request" else "refs/heads/main",
            "GITHUB_HEAD_REF": head_ref if event == "pull_request" else "",
            "GITHUB_BASE_REF": "main" if event == "pull_request" else "",
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
        }

    def outputs(self) -> dict[str, str]:
        return runner_outputs(self.output.read_text())

    def comments(self, number: int = 5) -> list[dict[str, Any]]:
        return self.fake.comments("octo/lab", number)


def test_a_pr_run_comments_once_and_edits_it_on_the_next_run(co2gate: CliRun, step: Step) -> None:
    step.budget()
    first = co2gate("run", "--", PY, "-c", "print('trained')", env=step.env())
    assert first.returncode == 0, first.stderr
    assert first.stdout == "trained\n"  # the command's output, untouched
    (comment,) = step.comments()
    assert comment["user"]["login"] == "github-actions[bot]"
    assert "co2gate PASS: `train`" in comment["body"]
    assert "PR comment created" in first.stderr

    second = co2gate("run", "--", PY, "-c", "pass", env=step.env(run_id="78"))
    assert second.returncode == 0, second.stderr
    (edited,) = step.comments()
    assert edited["id"] == comment["id"] and edited["body"] != comment["body"]
    assert "PR comment updated" in second.stderr

    out = step.outputs()
    assert out["verdict"] == "pass" and out["comment-url"] == edited["html_url"]
    assert float(out["emissions-kg"]) == pytest.approx(
        json.loads((step.root / "co2gate-report" / "emissions.json").read_text())["emissions_kg"],
        rel=1e-5,
    )
    assert float(out["allocation-kg"]) == pytest.approx(0.7)  # 1 kg x 0.7
    assert float(out["used-kg"]) + float(out["remaining-kg"]) == pytest.approx(0.7)
    assert out["report-dir"] == "co2gate-report"
    report_md = (step.root / "co2gate-report" / "report.md").read_text()
    assert report_md.strip() in edited["body"]  # the comment is report.md, with its marker
    summary = step.summary.read_text()
    assert summary.count("co2gate PASS") == 2  # one per step run, appended
    assert problems(summary) == []


def test_over_budget_fails_after_the_summary_comment_and_outputs(
    co2gate: CliRun, step: Step
) -> None:
    step.budget(annual=1e-9)
    result = co2gate("run", "--", PY, "-c", "pass", env=step.env())
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("::error")]
    assert error.startswith("::error title=co2gate fail%3A train::FAIL: training")
    assert "allocation" in error  # the numbers and the rule that decided it
    assert step.outputs()["verdict"] == "fail"
    assert "co2gate FAIL" in step.summary.read_text()
    assert "co2gate FAIL" in step.comments()[0]["body"]


def test_a_fork_prs_read_only_token_still_gates_and_writes_the_summary(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    result = co2gate("run", "--", PY, "-c", "pass", env=step.env(token=step.fake.read_token))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("::notice")]
    assert len(notices) == 1 and "workflow_run" in notices[0]
    assert step.comments() == []
    assert "co2gate PASS" in step.summary.read_text()
    assert step.outputs()["verdict"] == "pass" and step.outputs()["comment-url"] == ""
    assert step.fake.read_token not in result.stderr + result.stdout


def test_a_push_comments_on_the_pr_of_its_commit(co2gate: CliRun, step: Step) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 9, head_sha="d" * 40)
    result = co2gate("run", "--", PY, "-c", "pass", env=step.env("push"))
    assert result.returncode == 0, result.stderr
    assert len(step.comments(9)) == 1


def test_a_push_without_a_pr_writes_the_summary_only(co2gate: CliRun, step: Step) -> None:
    step.budget()
    result = co2gate("run", "--", PY, "-c", "pass", env=step.env("push"))
    assert result.returncode == 0, result.stderr
    assert step.fake.count("POST", r"/comments$") == 0
    assert "co2gate PASS" in step.summary.read_text()


def test_an_api_error_warns_and_the_gate_still_decides(co2gate: CliRun, step: Step) -> None:
    step.budget()
    step.fake.inject("GET", r"/issues/5/comments", status=502, times=10)
    result = co2gate("run", "--", PY, "-c", "pass", env=step.env())
    assert result.returncode == 0, result.stderr
    assert any(
        line.startswith("::warning title=co2gate::no PR comment")
        for line in (result.stderr.splitlines())
    )
    assert "co2gate PASS" in step.summary.read_text()
    assert step.outputs()["verdict"] == "pass"


def test_no_comment_makes_no_comment_request(co2gate: CliRun, step: Step) -> None:
    step.budget()
    result = co2gate("run", "--no-comment", "--", PY, "-c", "pass", env=step.env())
    assert result.returncode == 0, result.stderr
    assert step.fake.count(None, r"/comments") == 0
    assert step.outputs()["verdict"] == "pass"


def test_check_comments_for_each_label(co2gate: CliRun, step: Step) -> None:
    step.budget()
    env = step.env()
    for label in ("train", "eval"):
        result = co2gate("measure", "--label", label, "--out", label, "--", PY, "-c", "", env=env)
        assert result.returncode == 0, result.stderr
    result = co2gate("check", "train/emissions.json", "eval/emissions.json", env=env)
    assert result.returncode == 0, result.stderr
    bodies = sorted(c["body"].split("\n")[1] for c in step.comments())
    assert len(bodies) == 2 and "`eval`" in bodies[0] and "`train`" in bodies[1]
    report = (step.root / "co2gate-report" / "report.md").read_text()
    assert "`train`" in report and "`eval`" in report


def test_measure_sets_outputs_and_the_summary_but_no_verdict(co2gate: CliRun, step: Step) -> None:
    result = co2gate("measure", "--", PY, "-c", "pass", env=step.env())
    assert result.returncode == 0, result.stderr
    out = step.outputs()
    assert "verdict" not in out and float(out["energy-kwh"]) > 0
    assert out["report-dir"] == "co2gate-report"
    assert "measured" in step.summary.read_text()
    assert step.comments() == []


def test_outside_actions_only_report_md_is_written(co2gate: CliRun, step: Step) -> None:
    (step.root / ".github").mkdir()
    (step.root / ".github" / "carbon-budget.yml").write_text(
        BASE_BUDGET.format(annual=1.0).replace("branch", "file")
    )
    env = {"PATH": os.environ["PATH"]}
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    assert (step.root / "co2gate-report" / "report.md").read_text().startswith("### ✅")
    assert step.fake.log == []


def test_a_hostile_branch_name_and_label_stay_text(co2gate: CliRun, step: Step) -> None:
    step.budget()
    hostile = "</details><img src=x onerror=alert(1)>"
    env = step.env(head_ref=hostile, job=f"job{hostile}")
    result = co2gate("run", "--label", f"x|{hostile}", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    for text in (step.summary.read_text(), step.comments()[0]["body"]):
        assert problems(text) == []


def test_a_broken_template_stops_the_run_before_the_command(
    co2gate: CliRun, step: Step, tmp_path: Path
) -> None:
    step.budget()
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "comment.md.j2").write_text("{% for %}\n")
    marker = tmp_path / "ran"
    result = co2gate(
        "run",
        "--template-dir",
        str(templates),
        "--",
        PY,
        "-c",
        f"open('{marker}', 'w')",
        env=step.env(),
    )
    assert result.returncode == 2
    assert "comment.md.j2:1" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
