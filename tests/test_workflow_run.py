"""The workflow_run companion: `co2gate check --workflow-run` gates a fork PR's artifact under
the facts of the event and the API, never the artifact's own, against the fake GitHub API."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub
from test_publish_cli import Step

from co2gate.app.companion import adopt, check_artifact, pull_lookup, trusted_ci
from co2gate.errors import InputError
from co2gate.github.api import GitHubError
from co2gate.github.comments import PullHeads
from co2gate.github.context import WorkflowRun, WorkflowRunError, workflow_run
from co2gate.model import Measurement

PY = sys.executable
HEAD = "e" * 40  # the fork PR's head commit, which the measured run checked out
OTHER = "f" * 40
MEASURED_RUN = 4242
FORK = "fork/lab"


@pytest.fixture
def step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub) -> Step:
    monkeypatch.chdir(tmp_path)
    return Step(tmp_path, fake_github)


def payload(
    *,
    head_sha: str = HEAD,
    event: str = "pull_request",
    head_repo: str = FORK,
    repo: str = "octo/lab",
    pulls: tuple[int, ...] = (),
    head_branch: str = "feature",
) -> dict[str, Any]:
    """A workflow_run event: the measured run, as GitHub reports it to the companion."""
    return {
        "action": "completed",
        "workflow_run": {
            "id": MEASURED_RUN,
            "run_attempt": 2,
            "name": "carbon",
            "event": event,
            "status": "completed",
            "conclusion": "success",
            "head_sha": head_sha,
            "head_branch": head_branch,
            "head_repository": {"full_name": head_repo},
            "repository": {"full_name": repo},
            "pull_requests": [{"number": n, "head": {"sha": head_sha}} for n in pulls],
        },
    }


def companion_env(step: Step, event: dict[str, Any] | None = None) -> dict[str, str]:
    """The companion's own step: a workflow_run event in octo/lab, with the write token."""
    env = step.env("workflow_run", job="comment", run_id="9001")
    Path(env["GITHUB_EVENT_PATH"]).write_text(json.dumps(event or payload()))
    return env


def artifact(root: Path, **changes: Any) -> Path:
    """A fork job's emissions.json as downloaded: the fork wrote every byte of it."""
    doc: dict[str, Any] = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "0e1f",
            "label": "train",
            "workload": "training",
            "command": ["python", "train.py"],
            "exit_code": 0,
            "started_at": "2025-03-04T10:00:00.000+00:00",
            "ended_at": "2025-03-04T10:01:00.000+00:00",
            "duration_s": 60.0,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.0001, "gpu": 0.0, "ram": 0.00002, "total": 0.00012},
        "power_w": {"cpu": 6.0, "gpu": 0.0, "ram": 1.2},
        "methods": {"cpu": "tdp-load-estimate", "gpu": "none", "ram": "ram-size-estimate"},
        "pue": 1.0,
        "intensity_g_per_kwh": 400.0,
        "intensity_source": "override",
        "emissions_kg": 0.000048,
        "gpus": [],
        "requests": None,
        "per_request_g": None,
        "notes": [],
        "ci": {
            "provider": "github",
            "repository": "fork/lab",
            "sha": HEAD,
            "ref": "refs/pull/5/merge",
            "event": "pull_request",
            "pr": 5,
            "job": "train",
            "run_id": str(MEASURED_RUN),
            "run_attempt": "2",
        },
    }
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = doc
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = root / "co2gate-report" / "emissions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def ledger_entries(fake: FakeGitHub) -> list[dict[str, Any]]:
    """Every entry on the ledger branch of octo/lab."""
    repo = fake.repos["octo/lab"]
    head = repo.refs.get("refs/heads/co2gate-ledger")
    if head is None:
        return []
    shards = [p for p in repo.trees[repo.commits[head]["tree"]] if p.endswith(".jsonl")]
    return [
        json.loads(line)
        for shard in sorted(shards)
        for line in (fake.file_text("octo/lab", "co2gate-ledger", shard) or "").splitlines()
    ]


def check(co2gate: CliRun, env: dict[str, str], *files: str) -> Any:
    return co2gate(
        "check", "--workflow-run", *(files or ("co2gate-report/emissions.json",)), env=env
    )


# -- end to end ------------------------------------------------------------------------------


def test_a_fork_prs_run_is_commented_and_recorded_under_the_trusted_run(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 5, HEAD, head_repo=FORK, head_ref="feature")
    # The fork's own job: a real measurement, on a pull_request event with a read-only token.
    fork_env = step.env(token=step.fake.read_token, run_id=str(MEASURED_RUN))
    measured = co2gate("run", "--", PY, "-c", "pass", env=fork_env)
    assert measured.returncode == 0, measured.stderr
    assert step.comments() == [] and ledger_entries(step.fake) == []  # read-only: neither

    result = check(co2gate, companion_env(step))
    assert result.returncode == 0, result.stderr
    (comment,) = step.comments(5)
    assert comment["user"]["login"] == "github-actions[bot]"
    assert "co2gate PASS: `train`" in comment["body"]
    assert (
        f"measured in workflow run {MEASURED_RUN} of a pull request from {FORK}"
        in (comment["body"])
    )
    (entry,) = ledger_entries(step.fake)
    assert entry["key"] == f"octo/lab/{MEASURED_RUN}/2/train/train"
    assert (entry["pr"], entry["sha"], entry["event"]) == (5, HEAD, "pull_request")
    assert entry["ref"] == "refs/pull/5/merge"
    doc = json.loads((step.root / "co2gate-report" / "emissions.json").read_text())
    assert entry["emissions_kg"] == pytest.approx(doc["emissions_kg"])  # the job's own figure
    assert step.outputs()["verdict"] == "pass"

    again = check(co2gate, companion_env(step))  # a re-run of the companion
    assert again.returncode == 0, again.stderr
    assert len(ledger_entries(step.fake)) == 1 and len(step.comments(5)) == 1


def test_the_events_pull_request_is_used_when_it_lists_one(co2gate: CliRun, step: Step) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 6, HEAD, head_repo="octo/lab")
    artifact(step.root, ci__pr=None)
    event = payload(head_repo="octo/lab", pulls=(6,))
    result = check(co2gate, companion_env(step, event))
    assert result.returncode == 0, result.stderr
    assert len(step.comments(6)) == 1
    assert ledger_entries(step.fake)[0]["pr"] == 6


def test_an_artifact_claiming_another_pr_gets_no_comment_but_is_recorded(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 5, HEAD, head_repo=FORK)
    step.fake.add_pull("octo/lab", 8, OTHER, head_repo="victim/lab")  # someone else's PR
    artifact(step.root, ci__pr=8)
    result = check(co2gate, companion_env(step))
    assert result.returncode == 0, result.stderr
    assert step.comments(8) == [] and step.comments(5) == []
    assert step.fake.count("POST", r"/comments$") == 0
    assert "no PR comment: PR #8's head is fffffff, not the measured commit eeeeeee" in (
        result.stderr
    )
    (entry,) = ledger_entries(step.fake)
    assert entry["pr"] is None and entry["ref"] is None  # never the fork's branch as ours
    assert entry["key"] == f"octo/lab/{MEASURED_RUN}/2/train/train"
    summary = step.summary.read_text()  # the note is in the job summary too (Markdown-escaped)
    assert "8's head is fffffff, not the measured commit eeeeeee" in summary


def test_the_artifacts_repository_run_and_commit_are_overridden(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 5, HEAD, head_repo=FORK)
    artifact(
        step.root,
        ci__repository="octo/elsewhere",
        ci__run_id="1",
        ci__run_attempt="9",
        ci__sha=OTHER,
        ci__event="push",
        ci__ref="refs/heads/main",
    )
    result = check(co2gate, companion_env(step))
    assert result.returncode == 0, result.stderr
    (entry,) = ledger_entries(step.fake)
    assert entry["key"] == f"octo/lab/{MEASURED_RUN}/2/train/train"
    assert (entry["repository"], entry["run_id"], entry["run_attempt"]) == (
        "octo/lab",
        str(MEASURED_RUN),
        "2",
    )
    assert (entry["sha"], entry["event"], entry["ref"]) == (
        HEAD,
        "pull_request",
        "refs/pull/5/merge",
    )
    assert len(step.comments(5)) == 1


@pytest.mark.parametrize(
    ("changes", "raw", "said"),
    [
        ({"emissions_kg": -1.0}, None, "emissions_kg: -1.0"),
        ({"emissions_kg": float("nan")}, None, "emissions_kg: nan"),
        ({"energy_kwh__total": float("inf")}, None, "energy_kwh.total: inf"),
        ({"run__ended_at": "yesterday"}, None, "run.ended_at"),
        ({"requests": -3}, None, "requests: -3"),
        ({"run__label": "train\n::error::forged"}, None, "run.label"),
        ({}, "not json at all", "not JSON"),
        ({}, '{"schema": "co2gate/emissions/v1", "emissions_kg": NaN', "not JSON"),
    ],
)
def test_a_malformed_artifact_is_exit_2_naming_the_file(
    co2gate: CliRun, step: Step, changes: dict[str, Any], raw: str | None, said: str
) -> None:
    step.budget()
    step.fake.add_pull("octo/lab", 5, HEAD, head_repo=FORK)
    path = artifact(step.root, **changes)
    if raw is not None:
        path.write_text(raw)
    result = check(co2gate, companion_env(step))
    assert result.returncode == 2
    assert "co2gate-report/emissions.json" in result.stderr and said in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert ledger_entries(step.fake) == [] and step.comments() == []


def test_workflow_run_under_a_push_event_is_exit_2(co2gate: CliRun, step: Step) -> None:
    step.budget()
    artifact(step.root)
    result = co2gate(
        "check", "--workflow-run", "co2gate-report/emissions.json", env=step.env("push")
    )
    assert result.returncode == 2
    assert "workflow_run" in result.stderr and "push" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert step.fake.log == []


def test_an_event_from_another_repository_is_exit_2(co2gate: CliRun, step: Step) -> None:
    step.budget()
    artifact(step.root)
    result = check(co2gate, companion_env(step, payload(repo="octo/elsewhere")))
    assert result.returncode == 2
    assert "octo/elsewhere" in result.stderr and "Traceback" not in result.stderr


def test_the_budget_file_is_the_checkouts_own(co2gate: CliRun, step: Step) -> None:
    """The companion's checkout is the default branch: no reading at a PR's base commit."""
    step.budget(annual=1e-9)  # over budget
    step.fake.add_pull("octo/lab", 5, HEAD, head_repo=FORK, base_sha="0" * 40)
    artifact(step.root)
    step.fake.clear_log()
    result = check(co2gate, companion_env(step))
    assert result.returncode == 1
    assert step.fake.count("GET", r"carbon-budget") == 0
    assert "co2gate FAIL" in step.comments(5)[0]["body"]


# -- the trust decisions, one by one -----------------------------------------------------------


def run_of(**changes: Any) -> WorkflowRun:
    fields: dict[str, Any] = {
        "repository": "octo/lab",
        "run_id": "4242",
        "run_attempt": "2",
        "head_sha": HEAD,
        "event": "pull_request",
        "head_branch": "main",
        "head_repository": FORK,
        "workflow": "carbon",
        "pull_numbers": (),
    }
    return WorkflowRun(**(fields | changes))


def heads(number: int, **changes: Any) -> PullHeads:
    fields: dict[str, Any] = {
        "number": number,
        "state": "open",
        "head_sha": HEAD,
        "head_ref": "main",
        "head_repository": FORK,
        "base_sha": "b" * 40,
        "base_ref": "main",
        "base_repository": "octo/lab",
    }
    return PullHeads(**(fields | changes))


def lookup_of(*pulls: PullHeads) -> Any:
    known = {p.number: p for p in pulls}
    asked: list[int] = []

    def lookup(number: int) -> PullHeads:
        asked.append(number)
        if number not in known:
            raise GitHubError("cannot read the pull request (404 Not Found)", 404)
        return known[number]

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


def test_a_verified_pr_gives_its_refs_for_the_regression_comparison() -> None:
    trusted = trusted_ci(run_of(), {"pr": 5, "job": "train"}, {}, lookup=lookup_of(heads(5)))
    ci = trusted.ci
    assert (ci["pr"], ci["ref"], ci["base_ref"], ci["base_sha"]) == (
        5,
        "refs/pull/5/merge",
        "main",
        "b" * 40,
    )
    assert ci["job"] == "train" and ci["head_ref"] == "main"
    assert trusted.notes == (
        f"measured in workflow run 4242 of a pull request from {FORK}: "
        "the energy is the PR job's own",
    )


@pytest.mark.parametrize(
    ("pull", "why"),
    [
        (heads(5, head_sha=OTHER), "head is fffffff"),
        (heads(5, head_repository="someone/lab"), "comes from someone/lab"),
        (heads(5, head_repository=None), "a deleted repository"),
        (heads(5, base_repository="octo/other"), "into octo/other"),
    ],
)
def test_an_unverifiable_pr_is_no_pr_and_a_note_says_why(pull: PullHeads, why: str) -> None:
    trusted = trusted_ci(run_of(head_branch="main"), {"pr": 5}, {}, lookup=lookup_of(pull))
    assert trusted.ci["pr"] is None and trusted.ci["base_ref"] is None
    assert trusted.ci["ref"] is None  # a fork's "main" must not pass for the base branch's
    (note,) = [n for n in trusted.notes if n.startswith("no PR comment")]
    assert why in note


def test_no_pr_at_all_and_an_api_error_say_so() -> None:
    assert "names no pull request" in trusted_ci(run_of(), {}, {}, lookup=lookup_of()).notes[1]
    failed = trusted_ci(run_of(), {"pr": 3}, {}, lookup=lookup_of())
    assert "PR #3 could not be verified (cannot read the pull request (404" in failed.notes[1]
    assert trusted_ci(run_of(), {"pr": True}, {}, lookup=lookup_of()).ci["pr"] is None


def test_the_events_own_pull_requests_come_before_the_artifacts_claim() -> None:
    lookup = lookup_of(heads(5), heads(6))
    trusted = trusted_ci(run_of(pull_numbers=(6,)), {"pr": 5}, {}, lookup=lookup)
    assert trusted.ci["pr"] == 6 and lookup.asked == [6]
    assert not [n for n in trusted.notes if n.startswith("no PR comment")]


def test_a_push_run_keeps_its_branch_and_is_not_a_pr() -> None:
    run = run_of(event="push", head_repository="octo/lab", head_branch="main")
    lookup = lookup_of(heads(5))
    trusted = trusted_ci(run, {"pr": 5}, {}, lookup=lookup)
    assert (trusted.ci["ref"], trusted.ci["pr"], trusted.ci["event"]) == (
        "refs/heads/main",
        None,
        "push",
    )
    assert lookup.asked == []  # publish finds a push's PR by its (trusted) commit


def test_adopt_keeps_the_figures_and_each_files_job(tmp_path: Path) -> None:
    path = artifact(tmp_path)
    doc = json.loads(path.read_text())
    other = doc | {"ci": {**doc["ci"], "job": "eval", "run_id": "1"}}
    read = [Measurement.from_json(d, str(path)) for d in (doc, other)]
    adopted = [a.measurement for a in adopt(run_of(), read, {}, lookup=lookup_of(heads(5)))]
    assert [m.ci.job for m in adopted if m.ci] == ["train", "eval"]
    assert all(m.emissions_kg == doc["emissions_kg"] for m in adopted)
    assert all(m.ci is not None and m.ci.run_id == "4242" and m.ci.pr == 5 for m in adopted)


def test_pull_lookup_asks_github_once_per_number(fake_github: FakeGitHub) -> None:
    fake_github.add_pull("octo/lab", 5, HEAD, head_repo=FORK, head_ref="feature")
    env = {"GITHUB_TOKEN": fake_github.token, "GITHUB_API_URL": fake_github.api_url}
    lookup = pull_lookup("octo/lab", env)
    first, second = lookup(5), lookup(5)
    assert first == second == PullHeads(
        5, "open", HEAD, "feature", FORK, fake_github.repos["octo/lab"].refs["refs/heads/main"],
        "main", "octo/lab",
    )  # fmt: skip
    with pytest.raises(GitHubError, match="404"):
        lookup(6)
    with pytest.raises(GitHubError, match="404"):
        lookup(6)
    assert fake_github.count("GET", r"/pulls/5$") == 1
    assert fake_github.count("GET", r"/pulls/6$") == 1


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"}, "this is a push event"),
        ({}, "not a GitHub Actions workflow_run event"),
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_run"},
            "has no workflow_run object",
        ),
    ],
)
def test_workflow_run_refuses_other_events(env: dict[str, str], said: str) -> None:
    with pytest.raises(WorkflowRunError, match=said):
        workflow_run(env)


def test_workflow_run_reads_the_payload(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload(pulls=(4,))))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "octo/lab",
    }
    run = workflow_run(env)
    assert run == WorkflowRun(
        "octo/lab", "4242", "2", HEAD, "pull_request", "feature", FORK, "carbon", (4,)
    )
    bad = payload()
    bad["workflow_run"]["head_sha"] = "HEAD"
    event.write_text(json.dumps(bad))
    with pytest.raises(WorkflowRunError, match="head_sha"):
        workflow_run(env)


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"emissions_kg": 10**400}, "emissions_kg: an integer of about 401 digits"),
        ({"emissions_kg": True}, "emissions_kg: True is not a number"),
        ({"energy_kwh": {"cpu": 0.1}}, "energy_kwh.gpu: missing"),
        ({"energy_kwh": {"cpu": 0, "gpu": -0.1, "ram": 0, "total": 0.1}}, "energy_kwh.gpu"),
        ({"run__workload": "Training!"}, "run.workload: 'Training!' is not a workload name"),
        ({"ci": {"job": "x" * 300}}, "ci.job"),
        ({"ci": ["x"]}, "ci: a list of 1 item is not an object"),
    ],
)
def test_an_artifacts_unusable_values_are_refused_by_field(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    doc = json.loads(artifact(tmp_path, **changes).read_text())
    with pytest.raises(InputError, match=re.escape(said)) as caught:
        check_artifact(Measurement.from_json(doc, "art/emissions.json"), Path("art/emissions.json"))
    assert str(caught.value).startswith("art/emissions.json: ")
    assert "\n" not in str(caught.value)


def test_check_artifact_accepts_a_real_one(tmp_path: Path) -> None:
    path = artifact(tmp_path)
    check_artifact(Measurement.from_json(json.loads(path.read_text()), str(path)), path)
