"""Every event GitHub sends, as real payloads (tests/data/webhooks, from octokit): read by the
context reader and by `co2gate run` / `measure` / `check`. On the events whose checkout holds
a pull request's edits the budget file is read at the base commit the payload names; a
payload that cannot name it is refused with one line naming the file and the key."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub

from co2gate.github.context import BASE_COMMIT_EVENTS, EventError, ci_context

PY = sys.executable
WEBHOOKS = Path(__file__).parent / "data" / "webhooks"
BUDGET_FILE = ".github/carbon-budget.yml"
GITHUB_SHA = "c" * 40  # the commit the runner checked out (a merge commit on PRs)

# event name -> the corpus file GitHub sends for it. pull_request_target carries the
# pull_request payload; schedule's payload is not in the corpus (it is only {"schedule": cron}).
EVENTS = {
    "pull_request": "pull_request.opened.json",
    "pull_request_target": "pull_request.synchronize.json",
    "pull_request_review": "pull_request_review.submitted.json",
    "pull_request_review_comment": "pull_request_review_comment.created.json",
    "merge_group": "merge_group.checks_requested.json",
    "push": "push.json",
    "workflow_run": "workflow_run.completed.json",
    "workflow_dispatch": "workflow_dispatch.json",
    "release": "release.published.json",
    "issue_comment": "issue_comment.created.json",
    "repository_dispatch": "repository_dispatch.on-demand-test.json",
    "check_run": "check_run.completed.json",
}
PR_LIKE = [e for e in EVENTS if e in BASE_COMMIT_EVENTS]
OTHERS = [e for e in EVENTS if e not in BASE_COMMIT_EVENTS]

BUDGET = """version: 1
annual_budget_kg: {annual}
allocations: {{training: 0.7, inference: 0.3}}
location: {{intensity: 400000}}
ledger: {{backend: file, path: ledger}}
"""
STRICT, LAX = 1e-9, 1000.0  # kg a year: any run fails the first and passes the second


def payload(event: str) -> dict[str, Any]:
    return json.loads((WEBHOOKS / EVENTS[event]).read_text())  # type: ignore[no-any-return]


def base_of(event: str, doc: dict[str, Any]) -> tuple[str, str]:
    """The base commit and branch a PR-like payload names."""
    if event == "merge_group":
        group = doc["merge_group"]
        return group["base_sha"], group["base_ref"].removeprefix("refs/heads/")
    return doc["pull_request"]["base"]["sha"], doc["pull_request"]["base"]["ref"]


def env_for(event: str, path: Path, fake: FakeGitHub | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_SHA": GITHUB_SHA,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_WORKFLOW": "carbon",
        "GITHUB_JOB": "train",
    }
    if os.environ.get("PYTHONPATH"):  # the tree under test, in a child process too
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if fake is not None:
        env |= {"GITHUB_API_URL": fake.api_url, "GITHUB_TOKEN": fake.token}
    return env


@pytest.fixture
def in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout without git (the base is read through the API) holding a lax budget."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".github").mkdir()
    (tmp_path / BUDGET_FILE).write_text(BUDGET.format(annual=LAX))
    return tmp_path


def strict_base(fake: FakeGitHub) -> str:
    """The fake repository's main branch with a strict budget: its commit sha."""
    fake.put_file("octo/lab", "main", BUDGET_FILE, BUDGET.format(annual=STRICT))
    return fake.repos["octo/lab"].refs["refs/heads/main"]


def event_at(root: Path, event: str, base_sha: str | None = None) -> Path:
    """The corpus payload of `event`, its base commit replaced by `base_sha` (the fake's)."""
    doc = payload(event)
    if base_sha is not None:
        if event == "merge_group":
            doc["merge_group"]["base_sha"] = base_sha
        else:
            doc["pull_request"]["base"]["sha"] = base_sha
    path = root / f"{event}.json"
    path.write_text(json.dumps(doc))
    return path


def no_traceback(result: Any) -> None:
    assert result.returncode in (0, 1, 2), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


# -- the context reader, on every payload of the corpus -----------------------------------


def test_the_corpus_is_small_and_named() -> None:
    files = sorted(p.name for p in WEBHOOKS.glob("*.json"))
    assert set(EVENTS.values()) <= set(files)
    assert sum(p.stat().st_size for p in WEBHOOKS.glob("*.json")) < 200_000
    readme = (WEBHOOKS / "README.md").read_text()
    assert "@octokit/webhooks-examples" in readme and "MIT" in readme


@pytest.mark.parametrize("event", PR_LIKE)
def test_a_pr_like_event_names_its_base_commit_and_head(event: str, tmp_path: Path) -> None:
    doc = payload(event)
    block = ci_context(env_for(event, event_at(tmp_path, event)))
    assert block is not None
    base_sha, base_ref = base_of(event, doc)
    assert (block["base_sha"], block["base_ref"], block["event"]) == (base_sha, base_ref, event)
    if event == "merge_group":
        assert block["sha"] == doc["merge_group"]["head_sha"]
        assert block["pr"] is None  # a merge group may batch several pull requests
    else:
        assert block["sha"] == doc["pull_request"]["head"]["sha"]  # not GITHUB_SHA's merge
        assert block["pr"] == doc["pull_request"]["number"]


@pytest.mark.parametrize("event", OTHERS)
def test_other_events_take_nothing_from_the_payload(event: str, tmp_path: Path) -> None:
    block = ci_context(env_for(event, event_at(tmp_path, event)))
    assert block is not None
    assert (block["base_sha"], block["pr"], block["sha"]) == (None, None, GITHUB_SHA)
    assert block["event"] == event


# -- the verdict follows the base, never the pull request's own edit ----------------------


@pytest.mark.parametrize("event", PR_LIKE)
def test_the_prs_own_budget_edit_does_not_judge_it(
    event: str, co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    base_sha = strict_base(fake_github)  # the checkout's budget is the lax one
    env = env_for(event, event_at(in_repo, event, base_sha), fake_github)
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    no_traceback(result)
    assert result.returncode == 1, result.stderr  # the base's strict budget judged it
    verdict = json.loads((in_repo / "co2gate-report" / "verdict.json").read_text())
    assert verdict["verdict"] == "fail"
    assert verdict["allocation_kg"] == pytest.approx(0.7 * STRICT)
    who = "this merge group" if event == "merge_group" else "this PR"
    assert f"{who} changes {BUDGET_FILE}; the base commit's budget applies" in verdict["notes"]
    assert fake_github.count("GET", "contents/.github/carbon-budget.yml") >= 1
    doc = json.loads((in_repo / "co2gate-report" / "emissions.json").read_text())
    assert doc["ci"]["base_sha"] == base_sha and doc["ci"]["event"] == event


@pytest.mark.parametrize("event", ["pull_request_review_comment", "merge_group"])
def test_a_base_without_a_budget_file_leaves_the_checkouts(
    event: str, co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    """The first budget file comes in a pull request: it judges that pull request, and the
    report says so."""
    base_sha = fake_github.repos["octo/lab"].refs["refs/heads/main"]  # no budget file there
    env = env_for(event, event_at(in_repo, event, base_sha), fake_github)
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    verdict = json.loads((in_repo / "co2gate-report" / "verdict.json").read_text())
    assert verdict["allocation_kg"] == pytest.approx(0.7 * LAX)
    assert any(n.startswith(f"the base commit has no {BUDGET_FILE}") for n in verdict["notes"])


@pytest.mark.parametrize("event", PR_LIKE)
def test_check_reads_the_budget_at_the_base_too(
    event: str, co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    local = env_for("push", event_at(in_repo, "push"))
    assert co2gate("measure", "--", PY, "-c", "pass", env=local).returncode == 0
    base_sha = strict_base(fake_github)
    env = env_for(event, event_at(in_repo, event, base_sha), fake_github)
    result = co2gate(
        "check", "--no-record", "--json", str(in_repo / "co2gate-report" / "emissions.json"),
        env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["allocation_kg"] == pytest.approx(0.7 * STRICT)


@pytest.mark.parametrize("event", OTHERS)
def test_other_events_run_under_the_checkouts_budget(
    event: str, co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    strict_base(fake_github)  # never read: these events' checkout is no PR's edit
    env = env_for(event, event_at(in_repo, event), fake_github)
    result = co2gate("run", "--", PY, "-c", "pass", env=env)
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert fake_github.count("GET", "contents/") == 0


@pytest.mark.parametrize("event", list(EVENTS))
def test_measure_takes_every_payload(event: str, co2gate: CliRun, tmp_path: Path) -> None:
    env = env_for(event, event_at(tmp_path, event))
    result = co2gate("measure", "--out", str(tmp_path / "out"), "--", PY, "-c", "pass", env=env)
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    ci = json.loads((tmp_path / "out" / "emissions.json").read_text())["ci"]
    assert ci["event"] == event
    assert ci["base_sha"] == (base_of(event, payload(event))[0] if event in PR_LIKE else None)


# -- malformed payloads -------------------------------------------------------------------


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
BROKEN_BASES = [
    ("pull_request.base.sha", None),
    ("pull_request.base.sha", 12345),
    ("pull_request.base.sha", ["f" * 40]),
    ("pull_request.base.sha", "f95f852"),  # abbreviated
    ("pull_request.base.sha", "F" * 40),  # GitHub's shas are lower case
    ("pull_request.base.sha", "g" * 40),
    ("pull_request.base.sha", "f" * 40 + "\n::error::forged"),
    ("pull_request.base.sha", _DELETE),
    ("pull_request.base", "main"),
    ("pull_request.base", _DELETE),
    ("pull_request", None),
    ("pull_request", ["not", "an", "object"]),
    ("pull_request", _DELETE),
    ("pull_request.base.ref", 7),
    ("pull_request.base.ref", "main\n::error::forged"),
    ("pull_request.base.ref", ""),
]
BROKEN_GROUPS = [
    ("merge_group.base_sha", None),
    ("merge_group.base_sha", 1),
    ("merge_group.base_sha", "380387f"),
    ("merge_group.base_sha", _DELETE),
    ("merge_group.base_ref", "main"),  # GitHub sends refs/heads/main
    ("merge_group.base_ref", {"ref": "refs/heads/main"}),
    ("merge_group", "refs/heads/main"),
    ("merge_group", _DELETE),
]


@pytest.mark.parametrize(
    ("event", "key", "value"),
    [
        *[(e, k, v) for e in PR_LIKE if e != "merge_group" for k, v in BROKEN_BASES],
        *[("merge_group", k, v) for k, v in BROKEN_GROUPS],
    ],
)
def test_a_payload_without_a_usable_base_is_refused(
    event: str, key: str, value: Any, tmp_path: Path
) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(_set(payload(event), key, value)))
    with pytest.raises(EventError) as caught:
        ci_context(env_for(event, path))
    said = str(caught.value)
    assert "\n" not in said and said.startswith(f"{path}: the {event} event's {key} ")


NOT_OBJECTS = [
    ("not json", b"{'pull_request': 1}"),
    ("truncated", b'{"pull_request": {"base": {"sha": "'),
    ("empty", b""),
    ("a list", b"[]"),
    ("a string", b'"pull_request"'),
    ("null", b"null"),
    ("not utf-8", b'{"pull_request": "\xff\xfe"}'),
    ("nested past the stack", b"[" * 100_000 + b"]" * 100_000),
]


@pytest.mark.parametrize(("what", "data"), NOT_OBJECTS, ids=[w for w, _ in NOT_OBJECTS])
@pytest.mark.parametrize("event", ["pull_request", "merge_group"])
def test_an_event_file_that_is_no_json_object_is_refused_on_pr_like_events(
    event: str, what: str, data: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(data)
    with pytest.raises(EventError, match=f"^{path}: the {event} event is not ") as caught:
        ci_context(env_for(event, path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("what", "data"), NOT_OBJECTS, ids=[w for w, _ in NOT_OBJECTS])
def test_other_events_ignore_a_broken_event_file(what: str, data: bytes, tmp_path: Path) -> None:
    """Safe to ignore: push, schedule, workflow_dispatch and the rest take nothing from it."""
    path = tmp_path / "event.json"
    path.write_bytes(data)
    block = ci_context(env_for("push", path))
    assert block is not None and block["base_sha"] is None and block["sha"] == GITHUB_SHA


def test_an_unreadable_or_missing_event_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EventError, match="GITHUB_EVENT_PATH is not set"):
        ci_context(env_for("pull_request", tmp_path) | {"GITHUB_EVENT_PATH": ""})
    gone = tmp_path / "gone.json"
    with pytest.raises(EventError, match=f"^{gone}: cannot read the merge_group event: "):
        ci_context(env_for("merge_group", gone))
    with pytest.raises(EventError, match=f"^{tmp_path}: cannot read the pull_request event"):
        ci_context(env_for("pull_request", tmp_path))  # a directory


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pull_request.number", "2"),
        ("pull_request.number", 0),
        ("pull_request.number", True),
        ("pull_request.number", 2**40),
        ("pull_request.head.sha", "HEAD"),
        ("pull_request.head", None),
    ],
)
def test_a_bad_pr_number_or_head_is_ignored(key: str, value: Any, tmp_path: Path) -> None:
    """Safe to ignore: no PR number means no comment, no head sha means GITHUB_SHA."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(_set(payload("pull_request_review"), key, value)))
    block = ci_context(env_for("pull_request_review", path))
    assert block is not None
    assert block["base_sha"] == base_of("pull_request", payload("pull_request"))[0]
    if key == "pull_request.number":
        assert block["pr"] is None
    else:
        assert block["sha"] == GITHUB_SHA


@pytest.mark.parametrize(
    ("event", "key", "value"),
    [
        ("pull_request", "pull_request.base.sha", "HEAD"),
        ("pull_request_review", "pull_request.base", None),
        ("merge_group", "merge_group.base_sha", 5),
    ],
)
@pytest.mark.parametrize("command", ["run", "measure"])
def test_run_and_measure_refuse_a_broken_base_before_the_command_starts(
    command: str, event: str, key: str, value: Any, co2gate: CliRun, in_repo: Path
) -> None:
    path = in_repo / "event.json"
    path.write_text(json.dumps(_set(payload(event), key, value)))
    marker = in_repo / "started"
    result = co2gate(
        command, "--", PY, "-c", f"open({str(marker)!r}, 'w')", env=env_for(event, path)
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and key in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()  # nothing measured and lost


def test_check_refuses_a_broken_base_in_one_line(co2gate: CliRun, in_repo: Path) -> None:
    path = in_repo / "event.json"
    path.write_text("{not json")
    result = co2gate("check", "--no-record", "nothing.json", env=env_for("merge_group", path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"{path}: the merge_group event is not JSON" in (
        result.stderr
    )


def test_the_command_cannot_rewrite_the_event_it_is_judged_by(
    co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    """The event is read once, before the command: a command that rewrites the event file
    (to drop its PR number, or to break it) changes neither the record nor the exit code."""
    base_sha = strict_base(fake_github)
    path = event_at(in_repo, "pull_request", base_sha)
    rewrite = f"open({str(path)!r}, 'w').write('[broken')"
    env = env_for("pull_request", path, fake_github)
    result = co2gate("run", "--", PY, "-c", rewrite, env=env)
    assert result.returncode == 1, result.stderr
    doc = json.loads((in_repo / "co2gate-report" / "emissions.json").read_text())
    assert doc["ci"]["pr"] == 2 and doc["ci"]["base_sha"] == base_sha


@pytest.mark.parametrize("event", ["pull_request_review", "merge_group"])
def test_the_regression_rule_compares_with_the_base_branch_named_by_the_payload(
    event: str, co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    """The base branch comes from the payload (merge_group: refs/heads/main; a review:
    pull_request.base.ref), where GITHUB_BASE_REF is empty on these events."""
    budget = BUDGET.format(annual=LAX) + "regression: {max_increase: 0.2}\n"
    (in_repo / BUDGET_FILE).write_text(budget)
    fake_github.put_file("octo/lab", "main", BUDGET_FILE, budget)
    base_sha = fake_github.repos["octo/lab"].refs["refs/heads/main"]
    doc = payload(event)
    if event == "merge_group":
        branch = doc["merge_group"]["base_ref"].removeprefix("refs/heads/")
    else:
        branch = doc["pull_request"]["base"]["ref"]
    on_base = env_for("push", event_at(in_repo, "push")) | {"GITHUB_REF": f"refs/heads/{branch}"}
    assert co2gate("run", "--", PY, "-c", "pass", env=on_base).returncode == 0  # recorded
    env = env_for(event, event_at(in_repo, event, base_sha), fake_github) | {"GITHUB_RUN_ID": "78"}
    result = co2gate("run", "--", PY, "-c", "import time; time.sleep(2)", env=env)
    assert result.returncode == 1, result.stderr
    verdict = json.loads((in_repo / "co2gate-report" / "verdict.json").read_text())
    assert any("regression.max_increase" in r for r in verdict["reasons"]), verdict


def test_measure_without_a_budget_file_needs_no_base(co2gate: CliRun, in_repo: Path) -> None:
    """No budget file, nothing to read at the base: a payload without one (an act user's
    hand-written event) is measured, with no base in its record and the PR it names."""
    (in_repo / BUDGET_FILE).unlink()
    path = in_repo / "event.json"
    path.write_text(json.dumps({"pull_request": {"number": 12}}))
    out = in_repo / "out"
    result = co2gate(
        "measure", "--out", str(out), "--", PY, "-c", "pass", env=env_for("pull_request", path)
    )
    assert result.returncode == 0, result.stderr
    ci = json.loads((out / "emissions.json").read_text())["ci"]
    assert ci["base_sha"] is None and ci["pr"] == 12 and ci["event"] == "pull_request"
