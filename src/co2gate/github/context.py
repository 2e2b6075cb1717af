"""What GitHub Actions tells a step about its run, read from the runner's environment.

`ci_context` describes the step's own run. `workflow_run` describes another run, the one a
`workflow_run` event reports on, for the companion workflow that gates a fork PR's artifact
(app/companion.py): the facts the run which uploaded the artifact cannot forge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from co2gate.errors import InputError

PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
# Events whose checkout holds what a pull request edited and whose payload names the commit
# it merges into: on these the budget file is read at that base commit.
BASE_COMMIT_EVENTS = (
    *PULL_REQUEST_EVENTS,
    "pull_request_review",
    "pull_request_review_comment",
    "merge_group",
)
_SHA = re.compile(r"[0-9a-f]{40}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_BRANCH = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]+")  # what git allows in a branch name
_SHOWN = 60  # characters of a bad value quoted in a message


class EventError(InputError, ValueError):
    """The event payload (GITHUB_EVENT_PATH) lacks what co2gate needs: one line naming the
    file and the key."""


def ci_context(env: Mapping[str, str], *, need_base: bool = True) -> dict[str, Any] | None:
    """The `ci` block of emissions.json, or None outside GitHub Actions.

    On events in BASE_COMMIT_EVENTS the payload must name the base commit when need_base
    (a budget file is read there; raises EventError); without a budget file a payload that
    cannot name it gives no base. On pull requests GITHUB_SHA is the merge commit: the head
    commit, which is what the author pushed, comes from the payload. Other events take
    nothing from the payload, so a malformed one is ignored there.
    """
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    name = env.get("GITHUB_EVENT_NAME", "")
    base = None
    if name in BASE_COMMIT_EVENTS:
        base = _base(name, env.get("GITHUB_EVENT_PATH") or "", need_base)
    return {
        "provider": "github",
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "sha": (base and base.head_sha) or env.get("GITHUB_SHA", ""),
        "ref": env.get("GITHUB_REF", ""),
        "head_ref": env.get("GITHUB_HEAD_REF") or None,
        "base_ref": (base and base.ref) or env.get("GITHUB_BASE_REF") or None,
        "base_sha": base.sha if base else None,
        "event": name,
        "pr": base.number if base else None,
        "workflow": env.get("GITHUB_WORKFLOW", ""),
        "job": env.get("GITHUB_JOB", ""),
        "run_id": env.get("GITHUB_RUN_ID", ""),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT", ""),
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
    }


@dataclass(frozen=True)
class Base:
    """What a pull-request-like event says about the commit it merges into."""

    sha: str | None  # the base commit: the budget is read there; None: not needed, not named
    ref: str | None  # its branch name (main), for the regression check; None: the env's
    head_sha: str | None  # the commit measured; None: GITHUB_SHA
    number: int | None  # the pull request; merge_group has none of its own


def _base(name: str, path: str, need_base: bool = True) -> Base | None:
    """The base of a BASE_COMMIT_EVENTS event. Raises EventError when the payload cannot
    name the base commit and need_base; otherwise such a payload gives no base. A bad head
    sha or PR number is ignored (GITHUB_SHA, no PR)."""
    try:
        payload = read_event(name, path, EventError)
    except EventError:
        if need_base:
            raise
        return None

    def bad(key: str, value: object, why: str) -> None:
        if need_base:
            raise EventError(
                f"{path}: the {name} event's {key} {why} (got {_shown(value)}): "
                "co2gate reads the budget file at the base commit"
            )

    def sha(key: str, value: object) -> str | None:
        if isinstance(value, str) and _SHA.fullmatch(value):
            return value
        bad(key, value, "is not a 40-hex commit sha")
        return None

    def branch(key: str, value: object, prefix: str = "") -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.startswith(prefix):
            short = value.removeprefix(prefix)
            if _BRANCH.fullmatch(short):
                return short
        bad(key, value, f"is not a branch name{f' under {prefix}' if prefix else ''}")
        return None

    if name == "merge_group":
        group = payload.get("merge_group")
        if not isinstance(group, dict):
            bad("merge_group", group, "is not an object")
            return None
        head = group.get("head_sha")
        return Base(
            sha("merge_group.base_sha", group.get("base_sha")),
            branch("merge_group.base_ref", group.get("base_ref"), "refs/heads/"),
            head if isinstance(head, str) and _SHA.fullmatch(head) else None,
            None,
        )
    pull = payload.get("pull_request")
    if not isinstance(pull, dict):
        bad("pull_request", pull, "is not an object")
        return None
    base = pull.get("base")
    if not isinstance(base, dict):
        bad("pull_request.base", base, "is not an object")
        base = {}
    head = _dict(pull.get("head")).get("sha")
    number = pull.get("number")
    return Base(
        sha("pull_request.base.sha", base.get("sha")),
        branch("pull_request.base.ref", base.get("ref")),
        head if isinstance(head, str) and _SHA.fullmatch(head) else None,
        number if is_pr_number(number) else None,
    )


def read_event(name: str, path: str, error: type[InputError]) -> dict[str, Any]:
    """The event payload at `path` (GITHUB_EVENT_PATH), a JSON object; else `error`, one line
    naming the file."""
    if not path:
        raise error(f"GITHUB_EVENT_PATH is not set: co2gate reads the {name} event's payload")
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except OSError as e:
        raise error(f"{path}: cannot read the {name} event: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested past the stack
        what = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise error(f"{path}: the {name} event is not JSON ({what})") from None
    if not isinstance(payload, dict):
        raise error(f"{path}: the {name} event is not a JSON object (a {_json_type(payload)})")
    return payload


def _shown(value: object) -> str:
    text = "nothing" if value is None else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _json_type(value: object) -> str:
    names = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


class WorkflowRunError(InputError, ValueError):
    """Not a workflow_run event, or its payload lacks what co2gate needs: one line."""


@dataclass(frozen=True)
class WorkflowRun:
    """The run a workflow_run event reports on, from the event payload: facts that the run
    which uploaded the artifact cannot forge."""

    repository: str  # this repository (GITHUB_REPOSITORY), where the measured run ran
    run_id: str
    run_attempt: str
    head_sha: str  # the commit measured: a pull request's head, not a merge commit
    event: str  # what triggered the measured run: pull_request, push, ...
    head_branch: str
    head_repository: str  # where head_sha lives: the fork for a fork's pull request
    workflow: str
    pull_numbers: tuple[int, ...] = ()  # the payload's pull_requests: empty for forks
    # When GitHub created the run (its first attempt) and last updated it (a completed run:
    # about when it ended); None where the payload lacks them. Bounds on the measured window.
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_pull_request(self) -> bool:
        return self.event in PULL_REQUEST_EVENTS


def workflow_run(env: Mapping[str, str]) -> WorkflowRun:
    """The measured run that this workflow_run event reports on.

    Raises WorkflowRunError outside a workflow_run event, or when GITHUB_REPOSITORY is not
    the repository the measured run ran in.
    """
    name = env.get("GITHUB_EVENT_NAME") or ""
    if env.get("GITHUB_ACTIONS") != "true" or name != "workflow_run":
        where = f"a {name} event" if name else "not a GitHub Actions workflow_run event"
        raise WorkflowRunError(
            "--workflow-run gates another run's artifact and only works in a workflow "
            f"triggered by on: workflow_run; this is {where}"
        )
    path = env.get("GITHUB_EVENT_PATH") or ""
    if not path:
        raise WorkflowRunError(
            "the workflow_run event payload (GITHUB_EVENT_PATH unset) has no workflow_run object"
        )
    payload = read_event(name, path, WorkflowRunError)
    run = payload.get("workflow_run")
    if not isinstance(run, dict):
        raise WorkflowRunError(
            f"the workflow_run event payload ({path or 'GITHUB_EVENT_PATH unset'}) "
            "has no workflow_run object"
        )

    def text(field: str, value: object, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
            raise WorkflowRunError(
                f"the workflow_run event payload has no usable workflow_run.{field} "
                f"(got {str(value)[:60]!r})"
            )
        return value

    run_id, attempt = run.get("id"), run.get("run_attempt", 1)
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 1:
        raise WorkflowRunError("the workflow_run event payload has no usable workflow_run.id")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise WorkflowRunError("the workflow_run event payload has no usable run_attempt")
    repository = text(
        "repository.full_name", _dict(run.get("repository")).get("full_name"), _REPOSITORY
    )
    ours = env.get("GITHUB_REPOSITORY") or ""
    if repository.casefold() != ours.casefold():
        raise WorkflowRunError(
            f"the workflow run {run_id} ran in {repository}, not in this repository "
            f"({ours or 'GITHUB_REPOSITORY unset'})"
        )
    head_repository = _dict(run.get("head_repository")).get("full_name")
    pulls = run.get("pull_requests")
    numbers = [
        p.get("number") for p in (pulls if isinstance(pulls, list) else []) if isinstance(p, dict)
    ]
    return WorkflowRun(
        repository=ours,
        run_id=str(run_id),
        run_attempt=str(attempt),
        head_sha=text("head_sha", run.get("head_sha"), _SHA),
        event=text("event", run.get("event")),
        head_branch=str(run.get("head_branch") or ""),
        # A deleted fork leaves head_repository null: treat the commit as from elsewhere.
        head_repository=head_repository
        if isinstance(head_repository, str) and _REPOSITORY.fullmatch(head_repository)
        else "an unknown repository",
        workflow=str(run.get("name") or ""),
        pull_numbers=tuple(n for n in numbers if isinstance(n, int) and is_pr_number(n)),
        created_at=_moment(run.get("created_at")),
        updated_at=_moment(run.get("updated_at")),
    )


def is_pr_number(value: object) -> bool:
    """A pull request number as GitHub gives them: a whole number from 1 to 2^31 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _moment(value: object) -> datetime | None:
    """A payload's `2025-03-04T10:00:00Z` as an aware datetime; None if it is not one."""
    if not isinstance(value, str) or not 0 < len(value) <= 40:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value  # for Python 3.10
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
