"""A file as it is at another commit: the budget file at a pull request's base."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from co2gate.github.api import GitHubError
from co2gate.tokens import github_token


class NotReadable(GitHubError):
    """The file could not be read at that commit; the message says how to fix it."""


def read_at_commit(path: Path, sha: str, env: Mapping[str, str]) -> str | None:
    """The text of path at commit sha, or None if the file does not exist there.

    From the local clone when it has the commit (actions/checkout with fetch-depth 0),
    else through the Contents API with the job's token.
    """
    try:
        return _git_show(path, sha)
    except _NotInClone:
        pass
    token, repository = github_token(env), env.get("GITHUB_REPOSITORY", "")
    if not token or not repository:
        raise NotReadable(
            f"{path}: cannot read it at the base commit {sha[:12]}: the clone does not have "
            "that commit and no token was given (use actions/checkout with fetch-depth: 0, "
            "or pass github-token)"
        )
    return _api_contents(path, sha, repository, token, env.get("GITHUB_API_URL", ""))


class _NotInClone(Exception):
    pass


def _git_show(path: Path, sha: str) -> str | None:
    """The file at sha from the local clone; None if absent there; _NotInClone if the clone
    does not have the commit (a shallow checkout) or is no clone at all."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        relative = path.resolve().relative_to(Path(top).resolve())
        has = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], capture_output=True)
        if has.returncode:
            raise _NotInClone
        shown = subprocess.run(
            ["git", "show", f"{sha}:{relative.as_posix()}"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        raise _NotInClone from e
    return shown.stdout if shown.returncode == 0 else None


def _api_contents(path: Path, sha: str, repository: str, token: str, api_url: str) -> str | None:
    import requests
    from github import GithubException

    from co2gate.github import api

    where = f"{path}: cannot read it at the base commit {sha[:12]} through the API"
    if not api.is_repository(repository):
        raise NotReadable(f"{where}: GITHUB_REPOSITORY is {repository!r}, not OWNER/NAME")
    try:
        client = api.client(api_url, token)
        content = client.get_repo(repository).get_contents(path.as_posix(), ref=sha)
    except GithubException as e:
        if e.status == 404:
            return None
        hint = ": the token needs contents: read" if e.status in (401, 403) else ""
        line = f"{where} (HTTP {e.status}: {api.message(e) or 'no message'}){hint}"
        raise NotReadable(api.redact(line, token), e.status) from e
    except requests.RequestException as e:
        line = f"{where} ({type(e).__name__}: {api.redact(str(e), token)[:200]})"
        raise NotReadable(api.redact(line, token)) from e
    if isinstance(content, list):
        raise NotReadable(f"{path}: is a directory at the base commit {sha[:12]}")
    try:
        return content.decoded_content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotReadable(f"{path}: is not UTF-8 text at the base commit {sha[:12]}") from e
