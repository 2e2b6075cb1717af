"""A ledger on a data branch of the repository, written through the GitHub API (PyGithub).

Reads take one GraphQL request for up to two years of month shards; an append is one
Contents API PUT with the blob sha just read, so a stale write fails (409/422) instead of
overwriting, and is retried on fresh data. An append with files beside it (the badges) is one
commit through the git data API: the shard and the files in one tree, on the head just read,
and the branch moved to it only as a fast-forward (a compare-and-swap: 422 when another
commit came first, then retried on fresh data). Entries are deduplicated by key on every write,
so a write that GitHub applied but whose answer was lost is never recorded twice.
"""

from __future__ import annotations

import base64
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import requests
from github import (
    Github,
    GithubException,
    InputGitTreeElement,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.ContentFile import ContentFile
from github.Repository import Repository

from co2gate.github import api
from co2gate.ledger.interface import (
    Beside,
    Ledger,
    LedgerError,
    LedgerReadOnly,
    dedupe,
    entry_key,
    holds_key,
    parse_shard,
    shard_of,
    shards_between,
    to_line,
    valid_entry,
)

T = TypeVar("T")

README = """# co2gate ledger

This branch is written by co2gate, the carbon budget gate of this repository's CI.
Each file `YYYY/MM.jsonl` holds one JSON object per line: one gated CI run, its energy
(kWh) and emissions (kg CO2e), keyed by `repository/run_id/run_attempt/job/label`.
Each file `badges/<category>.json` is a shields.io endpoint for that category's year
(used / allocation), written in the same commit as the entry it counts.
The branch shares no history with the code: do not merge it, and do not delete it
unless you mean to reset the year's usage.
"""

NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
MONTHS_PER_QUERY = 24  # a budget year spans at most 13 month shards


@dataclass(frozen=True)
class _Shard:
    sha: str | None  # the blob sha, which the Contents API wants back; None: no such file yet
    text: str


@dataclass
class _Writing:
    """Set once an attempt has sent its write: a failure after it may have been applied."""

    now: bool = False


def _on_its_own_line(text: str) -> str:
    """A shard's text ready for one more line: a torn last line stays alone on its line."""
    return text + "\n" if text and not text.endswith("\n") else text


class BranchLedger(Ledger):
    """JSON Lines shards `YYYY/MM.jsonl` on an orphan branch (default `co2gate-ledger`).

    `api_url` is GITHUB_API_URL (GitHub Enterprise Server: `https://HOST/api/v3`); without a
    `github` client, the one of co2gate.github.api is made (a given one is used as it is).
    """

    name = "branch"

    def __init__(
        self,
        repository: str,
        token: str,
        *,
        branch: str = "co2gate-ledger",
        api_url: str = "https://api.github.com",
        github: Github | None = None,
        retries: int = 8,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not api.is_repository(repository):
            raise LedgerError(
                "the ledger branch's repository (GITHUB_REPOSITORY) must be OWNER/NAME, "
                f"not {repository!r}"
            )
        self.repository, self.branch = repository, branch
        self._owner, _, self._name = repository.partition("/")
        self._token = token
        # The client never sends a write twice (one GitHub applied may have lost its answer):
        # appends are retried here, on fresh data.
        self._github = github or api.client(api_url, token)
        self._retries = max(1, retries)
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._sleep, self._rng = sleep, rng
        self._repo_handle: Repository | None = None
        self._branch_exists: bool | None = None  # None: not known yet
        self._shards: dict[str, _Shard] = {}  # last read or written, to write on without a read
        self._last_commit = ""  # the sha of the last commit _commit made

    def append(self, entry: Mapping[str, Any]) -> bool:
        key, line, path = entry_key(entry), to_line(entry), shard_of(entry)

        def attempt(writing: _Writing) -> bool | None:
            shard = self._shards.pop(path, None)
            if shard is None:
                shard = self._read_shard(path)
            if holds_key(shard.text, key):
                self._shards[path] = shard
                return False
            text = _on_its_own_line(shard.text)
            writing.now = True
            sha = self._put(path, text + line, shard.sha, key)
            self._shards[path] = _Shard(sha, text + line)
            return True

        return self._recording(key, attempt)

    def append_with(self, entry: Mapping[str, Any], beside: Beside) -> bool:
        key, line, path = entry_key(entry), to_line(entry), shard_of(entry)
        year = shards_between(beside.start, beside.end)
        paths = sorted({*year, path})

        def attempt(writing: _Writing) -> bool | None:
            try:
                head = self._repo().get_git_ref(f"heads/{self.branch}")
                parent = head.object.sha
            except UnknownObjectException:  # deleted since we looked: create it again
                self._branch_exists = None
                return None
            shards = self._read_at(parent, paths)
            shard = shards.get(path, _Shard(None, ""))
            if holds_key(shard.text, key):
                return False
            found = [valid_entry(entry)]
            for name in year:
                if name in shards:
                    source = f"{self.repository}@{self.branch}:{name}"
                    found += parse_shard(shards[name].text, source, beside.start, beside.end)
            files = {path: _on_its_own_line(shard.text) + line, **beside.files(dedupe(found))}
            writing.now = True
            self._commit(parent, files, f"co2gate: record {key}")
            head.edit(self._last_commit, force=False)  # a fast-forward: GitHub's compare-and-swap
            self._shards.pop(path, None)  # its blob sha is GitHub's to tell: read it again
            return True

        return self._recording(key, attempt)

    def _recording(self, key: str, attempt: Callable[[_Writing], bool | None]) -> bool:
        """Run one append's attempts on fresh data: attempt() says True (written), False (the
        entry is there already) or None (try again); it sets writing.now before it writes.
        True too when an earlier write of ours may have been applied though its answer was
        lost, so the caller never records it twice."""
        maybe_ours = False
        last: Exception | None = None
        for n in range(self._retries):
            if n:
                self._sleep(self._delay(n))
            writing = _Writing()
            try:
                self._ensure_branch()
                done = attempt(writing)
                if done is not None:
                    return done or maybe_ours
                continue
            except GithubException as e:
                last = e
                if _is_conflict(e):
                    continue
                if _is_transient(e):
                    maybe_ours = maybe_ours or writing.now
                    continue
                if _is_branch_missing(e):  # deleted since we looked: create it again
                    self._branch_exists = None
                    continue
                if writing.now and _is_read_only(e):
                    what = f"recording {key}: the token cannot write"
                    raise LedgerReadOnly(self._say(what, e)) from e
                raise LedgerError(self._say(f"recording {key}", e)) from e
            except NETWORK_ERRORS as e:
                last = e
                maybe_ours = maybe_ours or writing.now
            except (requests.RequestException, RuntimeError) as e:
                raise LedgerError(self._say(f"recording {key}", e)) from e
        raise LedgerError(
            self._say(f"recording {key}: gave up after {self._retries} attempts", last)
        ) from last

    def _read_at(self, commit: str, paths: list[str]) -> dict[str, _Shard]:
        """The shards among paths as they are at `commit`, so a write on it holds them."""
        found: dict[str, _Shard] = {}
        for i in range(0, len(paths), MONTHS_PER_QUERY):
            found |= self._read_many(paths[i : i + MONTHS_PER_QUERY], commit) or {}
        return found

    def _commit(self, parent: str, files: Mapping[str, str], message: str) -> None:
        """A commit on `parent` with files (path: text) changed; its sha in _last_commit."""
        repo = self._repo()
        base = repo.get_git_commit(parent)
        tree = repo.create_git_tree(
            [InputGitTreeElement(p, "100644", "blob", content=t) for p, t in files.items()],
            base_tree=base.tree,
        )
        self._last_commit = repo.create_git_commit(message, tree, [base]).sha

    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        paths = shards_between(start, end)
        found: list[dict[str, Any]] = []
        for i in range(0, len(paths), MONTHS_PER_QUERY):
            chunk = paths[i : i + MONTHS_PER_QUERY]
            shards = self._retrying("reading the ledger", functools.partial(self._read_many, chunk))
            if shards is None:
                return []  # no ledger branch yet
            for path, shard in shards.items():
                source = f"{self.repository}@{self.branch}:{path}"
                found.extend(parse_shard(shard.text, source, start, end))
        return dedupe(found)

    def _repo(self) -> Repository:
        if self._repo_handle is None:
            self._repo_handle = self._github.get_repo(self.repository)  # lazy: no request
        return self._repo_handle

    def _read_many(self, paths: list[str], rev: str | None = None) -> dict[str, _Shard] | None:
        """The shards among paths that exist (at `rev`, a commit sha; default the branch's
        head), in one GraphQL request; None without the branch."""
        variables: dict[str, Any] = {
            "owner": self._owner,
            "name": self._name,
            "ref": f"refs/heads/{self.branch}",
        }
        variables |= {f"e{i}": f"{rev or self.branch}:{path}" for i, path in enumerate(paths)}
        _, data = self._github.requester.graphql_query(_blobs_query(len(paths)), variables)
        repo = (data.get("data") or {}).get("repository")
        if repo is None:
            raise LedgerError(self._say("reading the ledger: repository not found", None))
        self._branch_exists = repo.get("ref") is not None
        if not self._branch_exists:
            return None
        shards: dict[str, _Shard] = {}
        for i, path in enumerate(paths):
            blob = repo.get(f"s{i}") or {}
            if "oid" not in blob:
                continue  # no such shard yet
            text = blob.get("text")
            if (
                not isinstance(text, str)
                or blob.get("isTruncated")
                or len(text.encode("utf-8")) != blob.get("byteSize")
            ):
                # GitHub quirk: GraphQL truncates the text of large blobs: read them whole
                # through the git blob API (up to 100 MB), unless this ledger read that blob
                # already (a blob's sha names its content: the gate's read serves its write).
                known = (s.text for s in self._shards.values() if s.sha == blob["oid"])
                text = next(known, None)
                if text is None:
                    text = self._blob_text(blob["oid"])
            shards[path] = self._shards[path] = _Shard(blob["oid"], text)
        return shards

    def _read_shard(self, path: str) -> _Shard:
        try:
            content = self._repo().get_contents(path, ref=self.branch)
        except UnknownObjectException:
            return _Shard(None, "")
        if isinstance(content, list):
            raise LedgerError(f"{self.repository}@{self.branch}:{path} is a directory, not a shard")
        if content.encoding == "base64":
            return _Shard(content.sha, content.decoded_content.decode("utf-8", errors="replace"))
        # GitHub quirk: files over 1 MB come back with encoding "none" and no content.
        return _Shard(content.sha, self._blob_text(content.sha))

    def _blob_text(self, sha: str) -> str:
        blob = self._repo().get_git_blob(sha)
        if blob.encoding == "base64":
            return base64.b64decode(blob.content).decode("utf-8", errors="replace")
        return blob.content

    def _put(self, path: str, text: str, sha: str | None, key: str) -> str:
        """Create or update the shard; the new blob sha."""
        message = f"co2gate: record {key}"
        if sha is None:
            result = self._repo().create_file(path, message, text, branch=self.branch)
        else:
            result = self._repo().update_file(path, message, text, sha, branch=self.branch)
        content = result["content"]
        assert isinstance(content, ContentFile)
        return content.sha

    def _ensure_branch(self) -> None:
        if self._branch_exists:
            return
        if self._branch_exists is None:
            try:
                self._repo().get_git_ref(f"heads/{self.branch}").object  # noqa: B018 (fetches)
                self._branch_exists = True
                return
            except UnknownObjectException:
                pass
        self._create_branch()
        self._branch_exists = True

    def _create_branch(self) -> None:
        """An orphan branch holding a README: the ledger shares no history with the code."""
        repo = self._repo()
        try:
            blob = repo.create_git_blob(README, "utf-8")
            tree = repo.create_git_tree(
                [InputGitTreeElement("README.md", "100644", "blob", sha=blob.sha)]
            )
            commit = repo.create_git_commit("co2gate: start the ledger", tree, [])
            repo.create_git_ref(f"refs/heads/{self.branch}", commit.sha)
        except GithubException as e:
            if e.status == 422 and "already exists" in api.message(e).lower():
                return  # a job racing this one created it first
            if _is_read_only(e):
                raise LedgerReadOnly(
                    self._say(f"creating the branch {self.branch}: the token cannot write", e)
                ) from e
            raise

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """call(), with 5xx answers and network failures retried; all else as LedgerError."""
        last: Exception | None = None
        for attempt in range(self._retries):
            if attempt:
                self._sleep(self._delay(attempt))
            try:
                return call()
            except GithubException as e:
                if not _is_transient(e):
                    raise LedgerError(self._say(what, e)) from e
                last = e
            except NETWORK_ERRORS as e:
                last = e
            except (requests.RequestException, RuntimeError) as e:
                raise LedgerError(self._say(what, e)) from e
        raise LedgerError(
            self._say(f"{what}: gave up after {self._retries} attempts", last)
        ) from last

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so racing jobs spread out."""
        ceiling = min(self._max_backoff_s, self._backoff_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng())

    def _say(self, what: str, error: Exception | None) -> str:
        """One line for an error, never containing the token."""
        line = f"ledger branch {self.branch} of {self.repository}: {what}"
        if error is not None:
            line += f" ({_describe(error)})"
        return api.redact(line, self._token)


def _blobs_query(count: int) -> str:
    """A GraphQL query for the branch's ref and `count` blobs named by $e0.. expressions."""
    params = "".join(f", $e{i}: String!" for i in range(count))
    blobs = " ".join(
        f"s{i}: object(expression: $e{i}) {{ ... on Blob {{ oid byteSize isTruncated text }} }}"
        for i in range(count)
    )
    return (
        f"query($owner: String!, $name: String!, $ref: String!{params}) {{"
        f" repository(owner: $owner, name: $name) {{"
        f" ref(qualifiedName: $ref) {{ target {{ oid }} }} {blobs} }} }}"
    )


def _describe(e: Exception) -> str:
    if isinstance(e, GithubException):
        return f"HTTP {e.status}: {api.message(e) or 'no message'}"
    return f"{type(e).__name__}: {e}"


def _is_conflict(e: GithubException) -> bool:
    """A write on stale data: 409, or 422 about the sha (also a racing create)."""
    if e.status == 409:
        return True
    message = api.message(e).lower()
    stale = ("sha", "expected", "does not match", "fast forward")  # the last: a ref's update
    return e.status == 422 and any(s in message for s in stale)


def _is_transient(e: GithubException) -> bool:
    return e.status >= 500


def _is_branch_missing(e: GithubException) -> bool:
    """A write to a missing branch ("Branch x not found"), or a read of one."""
    message = api.message(e).lower()
    return e.status in (404, 422) and (
        ("branch" in message and "not found" in message) or "no commit found for the ref" in message
    )


def _is_read_only(e: GithubException) -> bool:
    """403/404 on a write: a read-only token (fork PRs) or one without access."""
    return e.status in (403, 404) and not isinstance(e, RateLimitExceededException)
