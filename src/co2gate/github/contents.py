"""A file as it is at another commit: the budget file at a pull request's base."""

from __future__ import annotations

import base64
import binascii
import subprocess
from collections.abc import Mapping
from pathlib import Path

from co2gate.github.api import GitHubError
from co2gate.tokens import github_token

DEFAULT_MAX_BYTES = 1024 * 1024  # what is read of a file at a commit, at most


class NotReadable(GitHubError):
    """The file could not be read at that commit; the message says how to fix it."""


def read_at_commit(
    path: Path, sha: str, env: Mapping[str, str], max_bytes: int = DEFAULT_MAX_BYTES
) -> str | None:
    """The text of path at commit sha, or None if the file does not exist there.

    From the local clone when it has the commit (actions/checkout with fetch-depth 0),
    else through the Contents API with the job's token (the blob API for a file over the
    Contents API's 1 MB). A file over max_bytes is refused before it is read.
    """
    try:
        data = _git_show(path, sha, max_bytes)
    except _NotInClone:
        pass
    else:
        return None if data is None else _text(data, path, sha)
    token, repository = github_token(env), env.get("GITHUB_REPOSITORY", "")
    if not token or not repository:
        raise NotReadable(
            f"{path}: cannot read it at the base commit {sha[:12]}: the clone does not have "
            "that commit and no token was given (use actions/checkout with fetch-depth: 0, "
            "or pass github-token)"
        )
    data = _api_contents(path, sha, repository, token, env.get("GITHUB_API_URL", ""), max_bytes)
    return None if data is None else _text(data, path, sha)


def _text(data: bytes, path: Path, sha: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotReadable(
            f"{path}: is not UTF-8 text at the base commit {sha[:12]} (byte {e.start})"
        ) from e


def _too_big(path: Path, sha: str, size: int, max_bytes: int) -> NotReadable:
    return NotReadable(
        f"{path}: is {size:,} bytes at the base commit {sha[:12]}; at most {max_bytes:,} are read"
    )


class _NotInClone(Exception):
    pass


def _git_show(path: Path, sha: str, max_bytes: int) -> bytes | None:
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
        spec = f"{sha}:{relative.as_posix()}"
        kind = subprocess.run(["git", "cat-file", "-t", spec], capture_output=True, text=True)
        if kind.returncode:
            return None  # no such path at that commit
        if kind.stdout.strip() != "blob":
            raise NotReadable(f"{path}: is not a file at the base commit {sha[:12]}")
        size = subprocess.run(
            ["git", "cat-file", "-s", spec], capture_output=True, text=True, check=True
        )
        if int(size.stdout) > max_bytes:
            raise _too_big(path, sha, int(size.stdout), max_bytes)
        shown = subprocess.run(["git", "cat-file", "blob", spec], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        raise _NotInClone from e
    return shown.stdout


def _api_contents(
    path: Path, sha: str, repository: str, token: str, api_url: str, max_bytes: int
) -> bytes | None:
    import requests
    from github import GithubException

    from co2gate.github import api

    where = f"{path}: cannot read it at the base commit {sha[:12]} through the API"
    if not api.is_repository(repository):
        raise NotReadable(f"{where}: GITHUB_REPOSITORY is {repository!r}, not OWNER/NAME")
    try:
        client = api.client(api_url, token)
        repo = client.get_repo(repository)
        content = repo.get_contents(path.as_posix(), ref=sha)
        if isinstance(content, list):
            raise NotReadable(f"{path}: is a directory at the base commit {sha[:12]}")
        if content.type != "file":
            raise NotReadable(f"{path}: is not a file at the base commit {sha[:12]}")
        if content.size > max_bytes:
            raise _too_big(path, sha, content.size, max_bytes)
        if content.encoding == "base64":
            return content.decoded_content
        # Over the Contents API's 1 MB: no content (encoding "none"); the blob API has it.
        blob = repo.get_git_blob(content.sha)
        if blob.encoding != "base64" or blob.size > max_bytes:
            raise NotReadable(f"{where}: the blob API gave no base64 content")
        return base64.b64decode(blob.content)
    except binascii.Error as e:
        raise NotReadable(f"{where}: the blob's content is not base64") from e
    except GithubException as e:
        if e.status == 404:
            return None
        hint = ": the token needs contents: read" if e.status in (401, 403) else ""
        line = f"{where} (HTTP {e.status}: {api.message(e) or 'no message'}){hint}"
        raise NotReadable(api.redact(line, token), e.status) from e
    except requests.RequestException as e:
        line = f"{where} ({type(e).__name__}: {api.redact(str(e), token)[:200]})"
        raise NotReadable(api.redact(line, token)) from e
