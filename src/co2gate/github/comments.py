"""co2gate's sticky pull request comment: one per gated label, found again by a hidden marker.

A typical run is two requests: one page of the pull request's comments, then one write (none
when the body has not changed). Only comments carrying our marker *and* written by the
token's user count as ours; duplicates of ours (two jobs that raced) are marked outdated and
minimised, so later runs leave them alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote

import requests
from github import Github, GithubException, RateLimitExceededException
from github.IssueComment import IssueComment

from co2gate import tokens
from co2gate.github import api
from co2gate.github.api import GitHubError

MAX_BODY = 65_536  # GitHub's limit on a comment body, in characters
ACTIONS_BOT = "github-actions[bot]"  # the author of GITHUB_TOKEN's comments

MAX_MARKER_LABEL = 200  # characters of the encoded label in a marker; a longer one is shortened
_KIND = "co2gate:comment"
_OUTDATED = "co2gate:outdated"
_ANY_MARKER = re.compile(r"<!-- co2gate:comment label=[^\s>]* -->")
_CUT_NOTE = (
    "\n\n**This report was cut to fit GitHub's limit of {limit:,} characters per comment.** "
    "The full report is in the job summary and in the run's artifact.\n"
)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


@dataclass(frozen=True)
class Posted:
    """What upsert_comment did."""

    url: str  # the comment's html_url
    action: str  # "created" | "updated" | "unchanged"
    minimized: int  # duplicates of ours minimised this time


def marker(label: str) -> str:
    """The hidden HTML comment that marks co2gate's comment for one gated label.

    The label is percent-encoded, "-" included, so that no label can close the HTML comment
    or put "--" inside it. An encoded label over MAX_MARKER_LABEL characters is shortened to
    its start and a hash of the whole (":" never occurs in an encoded label), so a
    label of any length leaves the comment room for its report and stays distinct.
    """
    encoded = _encode(label)
    if len(encoded) > MAX_MARKER_LABEL:
        digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        head = ""
        for char in label:
            more = _encode(char)
            if len(head) + len(more) > MAX_MARKER_LABEL - len(digest) - 8:
                break
            head += more
        encoded = f"{head}~sha256:{digest}"
    return f"<!-- {_KIND} label={encoded} -->"


def _encode(label: str) -> str:
    return quote(label, safe="", errors="surrogatepass").replace("-", "%2D")


def fit(body: str, limit: int = MAX_BODY) -> str:
    """body cut to at most `limit` characters, keeping its beginning and its marker, and
    ending with a note that the full report is in the job summary and the artifact."""
    found = _ANY_MARKER.search(body)
    return _fit(body, limit, found[0] if found else None)


def upsert_comment(
    repository: str,
    number: int,
    body: str,
    *,
    label: str,
    token: str,
    api_url: str = "https://api.github.com",
    author: str | None = None,
) -> Posted:
    """Create or edit co2gate's comment for `label` on pull request `number`.

    `author` is the login the token writes as; by default "github-actions[bot]" for `ghs_`
    tokens (GITHUB_TOKEN; a GitHub App's installation token needs its own "<app>[bot]"),
    else the login from GET /user.
    """
    where = f"{_check_repository(repository)}#{number}"
    say = _Say(token, where)
    if number < 1:
        raise GitHubError(say(f"cannot comment on {where}: not a pull request number"))
    mark = marker(label)
    body = tokens.mask(body)
    text = _fit(body if mark in body else f"{mark}\n{body}", MAX_BODY, mark)
    client = api.client(api_url, token)
    if author is None:
        author = _author(client, token, say)
    issue = client.get_repo(repository).get_issue(number)  # lazy: no request

    try:
        ours = [
            c
            for c in issue.get_comments()
            if mark in (c.body or "")
            and c.user is not None
            and c.user.login.casefold() == author.casefold()
        ]
    except (GithubException, requests.RequestException) as e:
        raise say.error(f"cannot read the comments of {where}", e, writing=False) from e
    ours.sort(key=lambda c: (c.created_at, c.id))

    if not ours:
        try:
            created = issue.create_comment(text)
        except (GithubException, requests.RequestException) as e:
            raise say.error(f"cannot comment on {where}", e, writing=True) from e
        return Posted(created.html_url, "created", 0)

    keep, duplicates = ours[0], ours[1:]
    action = "unchanged"
    if _normal(keep.body or "") != _normal(text):
        try:
            keep.edit(text)
        except (GithubException, requests.RequestException) as e:
            raise say.error(f"cannot edit comment {keep.id} on {where}", e, writing=True) from e
        action = "updated"
    for duplicate in duplicates:
        _retire(duplicate, mark, say)
    return Posted(keep.html_url, action, len(duplicates))


def pull_for_commit(
    repository: str, sha: str, *, token: str, api_url: str = "https://api.github.com"
) -> int | None:
    """The number of an open pull request whose head is commit `sha` (push events), or None."""
    what = f"cannot list the pull requests of {_check_repository(repository)} at {sha[:12]}"
    say = _Say(token, repository)
    if not sha:
        return None
    client = api.client(api_url, token)
    try:
        pulls = client.get_repo(repository).get_commit(sha).get_pulls()
        numbers = [p.number for p in pulls if p.state == "open" and p.head.sha == sha]
    except GithubException as e:
        if e.status == 422 and "no commit found" in api.message(e).lower():
            return None  # GitHub does not know the commit
        raise say.error(what, e, writing=False) from e
    except requests.RequestException as e:
        raise say.error(what, e, writing=False) from e
    return min(numbers) if numbers else None


@dataclass(frozen=True)
class PullHeads:
    """A pull request's two ends, as GitHub says they are now."""

    number: int
    state: str  # "open" | "closed"
    head_sha: str
    head_ref: str
    head_repository: str | None  # OWNER/NAME; None when the fork has been deleted
    base_sha: str
    base_ref: str
    base_repository: str


def pull_request_heads(
    repository: str, number: int, *, token: str, api_url: str = "https://api.github.com"
) -> PullHeads:
    """Pull request `number` of `repository` (GET /repos/{o}/{r}/pulls/{n}): one request."""
    where = f"{_check_repository(repository)}#{number}"
    say = _Say(token, where)
    if number < 1:
        raise GitHubError(say(f"cannot read {where}: not a pull request number"))
    client = api.client(api_url, token)
    try:
        pull = client.get_repo(repository).get_pull(number)  # lazy: the request is below
        head, base = pull.head, pull.base
        heads = PullHeads(
            number=pull.number,
            state=pull.state,
            head_sha=head.sha,
            head_ref=head.ref,
            head_repository=head.repo.full_name if head.repo is not None else None,
            base_sha=base.sha,
            base_ref=base.ref,
            base_repository=base.repo.full_name,
        )
    except (GithubException, requests.RequestException) as e:
        raise say.error(f"cannot read the pull request {where}", e, writing=False) from e
    return heads


def _author(client: Github, token: str, say: _Say) -> str:
    """The login the token writes as; GET /user is forbidden to GITHUB_TOKEN (ghs_)."""
    if token.startswith("ghs_"):
        return ACTIONS_BOT
    try:
        return client.get_user().login
    except GithubException as e:
        if e.status in (401, 403):
            return ACTIONS_BOT
        raise say.error("cannot tell whose token this is (GET /user)", e, writing=False) from e
    except requests.RequestException as e:
        raise say.error("cannot tell whose token this is (GET /user)", e, writing=False) from e


def _retire(comment: IssueComment, mark: str, say: _Say) -> None:
    """Minimise a duplicate of ours, then take our marker out of it so no run finds it again.

    In this order, a failure halfway leaves it ours, and the next run finishes the job.
    """
    what = f"cannot minimise the duplicate comment {comment.id} on {say.where}"
    try:
        minimized = comment.minimize("OUTDATED")
    except (GithubException, requests.RequestException) as e:
        raise say.error(what, e, writing=True) from e
    except (KeyError, TypeError):  # PyGithub 2.10 indexes a null result without checking
        minimized = False
    if not minimized:
        raise GitHubError(say(f"{what}: GitHub did not say it was minimised"))
    body = (comment.body or "").replace(mark, mark.replace(_KIND, _OUTDATED))
    try:
        comment.edit(body if len(body) <= MAX_BODY else fit(body))
    except (GithubException, requests.RequestException) as e:
        what = f"cannot mark the duplicate comment {comment.id} on {say.where} outdated"
        raise say.error(what, e, writing=True) from e


def _fit(body: str, limit: int, mark: str | None) -> str:
    if len(body) <= limit:
        return body
    note = _CUT_NOTE.format(limit=limit)
    room = limit - len(note) - len("\n```")  # room to close an open code fence
    if room < limit // 2:
        return body[:limit]  # a limit too small for the note: a hard cut
    kept = _cut(body, room)
    if mark and mark not in kept:
        kept = f"{mark}\n{_cut(body, room - len(mark) - 1)}"
    if len(_FENCE.findall(kept)) % 2:
        kept += "\n```"
    out = kept.rstrip("\n") + note
    return out if len(out) <= limit else out[:limit]  # a marker longer than the room: cut


def _cut(body: str, room: int) -> str:
    """The start of body, at most `room` characters, at a line end when one is near, and
    never inside an HTML comment (an unclosed one would hide the rest)."""
    kept = body[:room]
    end = kept.rfind("\n")
    if end >= room // 2:
        kept = kept[:end]
    opened = kept.rfind("<!--")
    if opened > kept.rfind("-->"):
        kept = kept[:opened]
    return kept


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip()


def _check_repository(repository: str) -> str:
    if not api.is_repository(repository):
        raise GitHubError(f"repository must be OWNER/NAME, not {repository!r}")
    return repository


class _Say:
    """Error lines for one pull request, with the token masked."""

    def __init__(self, token: str, where: str) -> None:
        self.token, self.where = token, where

    def __call__(self, line: str) -> str:
        return api.redact(line, self.token)

    def error(self, what: str, e: Exception, *, writing: bool) -> GitHubError:
        if not isinstance(e, GithubException):
            detail = api.redact(str(e), self.token)[:200]  # masked before it is cut
            return GitHubError(self(f"{what} ({type(e).__name__}: {detail})"))
        status = e.status
        line = f"{what} ({status} {api.message(e) or 'no message'})"
        hint = _hint(e, writing)
        return GitHubError(self(f"{line}: {hint}" if hint else line), status)


def _hint(e: GithubException, writing: bool) -> str:
    message = api.message(e).lower()
    if isinstance(e, RateLimitExceededException) or "rate limit" in message:
        return "rate limited (GITHUB_TOKEN: 1,000 requests per hour per repository)"
    if e.status == 401:
        return "the token is invalid or has expired"
    if e.status == 403 or "not accessible" in message:  # GraphQL's errors come as a 400
        if writing:
            return "the token is read-only (a fork PR?) or lacks pull-requests: write"
        return "the token cannot read this repository's pull requests"
    if e.status == 404:
        return "no such pull request, or the token cannot see the repository"
    if e.status >= 500:
        return "GitHub failed; the next run will try again"
    return ""
