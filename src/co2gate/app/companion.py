"""The workflow_run companion: gate a measured run's artifact under facts this repository trusts.

A fork's pull request runs with a read-only token, so its job can neither comment nor record.
A second workflow, `on: workflow_run`, runs in this repository with a write token, downloads
that job's emissions.json and runs `co2gate check --workflow-run`. The artifact is the fork's
data: its figures are taken as the measured job's own (they are all there is), after checks
that they are numbers a gate can use; where the run is recorded and commented (repository,
run, commit, pull request) comes from the event and the API, never from the artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from co2gate.budget import CATEGORY
from co2gate.errors import InputError
from co2gate.github.context import WorkflowRun, is_pr_number
from co2gate.model import CiInfo, Measurement
from co2gate.tokens import github_token

if TYPE_CHECKING:
    from co2gate.github.comments import PullHeads

_MAX_CANDIDATES = 3  # pull requests checked per run: each is one API request


@dataclass(frozen=True)
class Adopted:
    """An artifact's measurement with the trusted `ci` block, and the notes for its report."""

    measurement: Measurement
    notes: tuple[str, ...]


def check_artifact(m: Measurement, path: Path) -> None:
    """Refuse an artifact whose workload cannot name a budget category.

    Its numbers, names and dates were checked when it was read (Measurement.from_json),
    since the run that wrote it may be hostile. Raises InputError: one line naming the file.
    """
    if not CATEGORY.fullmatch(m.run.workload):
        shown = repr(m.run.workload)[:40]
        raise InputError(f"{path}: run.workload: {shown} is not a workload name")


def adopt(
    run: WorkflowRun,
    measurements: Sequence[Measurement],
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> list[Adopted]:
    """Each artifact's measurement with its `ci` block replaced by the trusted one.

    Pull requests are looked up once however many files name them.
    """
    lookup = lookup or pull_lookup(run.repository, env)
    adopted = []
    for m in measurements:
        claimed = m.ci.to_json() if m.ci is not None else None
        trusted = trusted_ci(run, claimed, env, lookup=lookup)
        ci = CiInfo.from_context(trusted.ci)
        adopted.append(Adopted(dataclasses.replace(m, ci=ci), trusted.notes))
    return adopted


@dataclass(frozen=True)
class Trusted:
    """The `ci` block to gate an artifact under, and notes for its report."""

    ci: dict[str, Any]
    notes: tuple[str, ...] = ()


# Pull request number -> its heads; raises api.GitHubError when GitHub cannot say.
PullLookup = Callable[[int], "PullHeads"]


def trusted_ci(
    run: WorkflowRun,
    claimed: Mapping[str, Any] | None,
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> Trusted:
    """The `ci` block of the measured run: the event's facts, and a verified pull request.

    `claimed` is the artifact's own `ci` block. Only its job name is taken (a name in the
    ledger key, as the measured job wrote it); its pull request number is a candidate,
    after the event's own, and is believed only if GitHub says that pull request's head is
    the measured commit, in the measured run's head repository, and its base is this
    repository. Unverified, the run has no pull request (no comment) and a note says why.
    """
    claimed = claimed or {}
    lookup = lookup or pull_lookup(run.repository, env)
    problems: list[str] = []
    pull: PullHeads | None = None
    if run.is_pull_request:
        wanted = list(dict.fromkeys([*run.pull_numbers, claimed.get("pr")]))
        candidates = [n for n in wanted if isinstance(n, int) and is_pr_number(n)]
        candidates = candidates[:_MAX_CANDIDATES]
        for number in candidates:
            pull, problem = _verify(run, number, lookup)
            if pull is not None:
                break
            problems.append(problem)
        if not candidates:
            problems.append("the measured run names no pull request")
    notes = [] if pull is not None else [f"no PR comment: {p}" for p in problems]
    if pull is not None:
        ref: str | None = f"refs/pull/{pull.number}/merge"
    elif not run.is_pull_request and run.head_repository == run.repository and run.head_branch:
        ref = f"refs/heads/{run.head_branch}"
    else:
        ref = None  # never a fork's branch name as if it were one of ours
    job = claimed.get("job")
    source = "a pull request" if run.is_pull_request else f"a {run.event} event"
    notes.insert(
        0,
        f"measured in workflow run {run.run_id} of {source} from {run.head_repository}: "
        f"the figures are the {'PR' if run.is_pull_request else 'measured'} job's own",
    )
    ci = {
        "provider": "github",
        "repository": run.repository,
        "sha": run.head_sha,
        "ref": ref,
        "head_ref": pull.head_ref if pull else None,
        "base_ref": pull.base_ref if pull else None,
        "base_sha": pull.base_sha if pull else None,
        "event": run.event,
        "pr": pull.number if pull else None,
        "workflow": run.workflow,
        "job": job if isinstance(job, str) else "",
        "run_id": run.run_id,
        "run_attempt": run.run_attempt,
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
        "head_repository": run.head_repository,
    }
    return Trusted(ci, tuple(notes))


def pull_lookup(repository: str, env: Mapping[str, str]) -> PullLookup:
    """GET /repos/{repository}/pulls/{n} with the job's token, each number asked once."""
    from co2gate.github.api import GitHubError
    from co2gate.github.comments import pull_request_heads

    token = github_token(env)
    api_url = env.get("GITHUB_API_URL", "https://api.github.com")
    seen: dict[int, PullHeads | GitHubError] = {}

    def lookup(number: int) -> PullHeads:
        if number not in seen:
            if not token:
                seen[number] = GitHubError("no GITHUB_TOKEN to ask GitHub with")
            else:
                try:
                    seen[number] = pull_request_heads(
                        repository, number, token=token, api_url=api_url
                    )
                except GitHubError as e:
                    seen[number] = e
        found = seen[number]
        if isinstance(found, Exception):
            raise found
        return found

    return lookup


def _verify(run: WorkflowRun, number: int, lookup: PullLookup) -> tuple[PullHeads | None, str]:
    """The pull request if it is the measured run's, else None and why not."""
    from co2gate.github.api import GitHubError

    try:
        pull = lookup(number)
    except GitHubError as e:
        return None, f"PR #{number} could not be verified ({e})"
    if (pull.base_repository or "").casefold() != run.repository.casefold():
        return None, f"PR #{number} is a pull request into {pull.base_repository}, not this one"
    if pull.head_sha != run.head_sha:
        return None, (
            f"PR #{number}'s head is {pull.head_sha[:7]}, not the measured commit "
            f"{run.head_sha[:7]}: the artifact is not from that pull request"
        )
    if (pull.head_repository or "").casefold() != run.head_repository.casefold():
        return None, (
            f"PR #{number} comes from {pull.head_repository or 'a deleted repository'}, "
            f"not from {run.head_repository}, where the measured run's commit is"
        )
    return pull, ""
