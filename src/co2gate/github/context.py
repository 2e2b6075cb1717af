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
_SHA = re.compile(r"[0-9a-f]{40}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def ci_context(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The `ci` block of emissions.json, or None outside GitHub Actions.

    On pull_request events GITHUB_SHA is the merge commit: the head commit, which is what
    the author pushed, comes from the event payload.
    """
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    event = _event_payload(env.get("GITHUB_EVENT_PATH"))
    pull = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    head_sha = pull.get("head", {}).get("sha") if pull else None
    base_sha = pull.get("base", {}).get("sha") if pull else None
    number = pull.get("number") if pull else None
    return {
        "provider": "github",
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "sha": head_sha or env.get("GITHUB_SHA", ""),
        "ref": env.get("GITHUB_REF", ""),
        "head_ref": env.get("GITHUB_HEAD_REF") or None,
        "base_ref": env.get("GITHUB_BASE_REF") or None,
        "base_sha": base_sha if isinstance(base_sha, str) else None,
        "event": env.get("GITHUB_EVENT_NAME", ""),
        "pr": number if isinstance(number, int) else None,
        "workflow": env.get("GITHUB_WORKFLOW", ""),
        "job": env.get("GITHUB_JOB", ""),
        "run_id": env.get("GITHUB_RUN_ID", ""),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT", ""),
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
    }


def _event_payload(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


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
    payload = _event_payload(path)
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
