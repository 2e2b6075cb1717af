"""One GitHub API client and one error type, for every adapter that talks to GitHub: the
ledger branch, the pull request comment, a file at a base commit.

The client waits TIMEOUT_S for an answer and retries a read (GET) once, after
RETRY_BACKOFF_S, on a 5xx answer or a connection failure. A write is never sent twice by
the client: one whose answer was lost may have been applied (the ledger retries on fresh
data itself, and a second comment would be a duplicate). PyGithub is imported only when a
client is made.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from co2gate import tokens
from co2gate.errors import ServiceError

if TYPE_CHECKING:
    from github import Github, GithubException
    from urllib3.util.retry import Retry

DEFAULT_API_URL = "https://api.github.com"
TIMEOUT_S = 15  # seconds to wait for an answer
READ_RETRIES = 1
RETRY_BACKOFF_S = 0.5
PER_PAGE = 100  # the most GitHub lists per page
RETRY_STATUSES = (500, 502, 503, 504)

# OWNER/NAME as GitHub spells them; "." and ".." are no names (they would walk the URL).
_REPOSITORY = re.compile(r"(?!\.\.?/)[A-Za-z0-9_.-]{1,100}/(?!\.\.?$)[A-Za-z0-9_.-]{1,100}")


class GitHubError(ServiceError):
    """A GitHub API call failed or was refused: one line for the log, never the token.

    `.status`: the HTTP status, or None when no answer came (a network failure).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def client(api_url: str, token: str) -> Github:
    """A PyGithub client for api_url (GITHUB_API_URL; GitHub Enterprise Server:
    `https://HOST/api/v3`), authenticated by token when one is given.

    Requests are made lazily (get_repo() sends none) and never throttled by PyGithub.
    """
    from github import Auth, Github

    return Github(
        base_url=(api_url or DEFAULT_API_URL).rstrip("/"),
        auth=Auth.Token(token) if token else None,
        timeout=TIMEOUT_S,
        retry=_read_retry(),
        per_page=PER_PAGE,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )


def message(e: GithubException) -> str:
    """GitHub's own words on one line: the REST message and its `errors` details, or the
    GraphQL errors; "" when GitHub gave none (an HTML error page says nothing useful)."""
    data: Any = e.data
    said = e.message or (
        str(data["message"]) if isinstance(data, dict) and data.get("message") else ""
    )
    errors = data.get("errors") if isinstance(data, dict) else None
    details: list[str] = []
    for error in errors[:5] if isinstance(errors, list) else []:
        detail = _detail(error)
        if detail and detail != said and detail not in details:
            details.append(detail)
    text = said
    if details:
        text = f"{said}: {'; '.join(details)}" if said else "; ".join(details)
    return " ".join(text.split())  # "Invalid request.\n\n..." is one line here


def redact(line: str, token: str) -> str:
    """line as one line, with the token (and every other registered secret) in any of its
    forms shown as *** (tokens.mask: a token pasted with a newline is quoted back by
    requests as 'ghs_...\\n')."""
    tokens.register(token)
    return " ".join(tokens.mask(line).split())


def is_repository(repository: str) -> bool:
    """Whether repository is OWNER/NAME as GitHub spells them (GITHUB_REPOSITORY's form)."""
    return _REPOSITORY.fullmatch(repository) is not None


def _detail(error: Any) -> str:
    """One entry of an `errors` list: its message, else what it names (field and code)."""
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    if error.get("message"):
        return str(error["message"])
    return " ".join(str(error[k]) for k in ("resource", "field", "code") if error.get(k))


@functools.cache
def _read_retry() -> Retry:
    from urllib3.util.retry import Retry

    class _ReadRetry(Retry):
        """urllib3's Retry, pausing before the first retry too (urllib3 2 does not)."""

        def get_backoff_time(self) -> float:
            return RETRY_BACKOFF_S if self.history else 0.0

    # status and read retries only for GET; a connection that was never made (connect) is
    # retried for any method, since nothing was sent.
    return _ReadRetry(
        total=READ_RETRIES,
        connect=READ_RETRIES,
        read=READ_RETRIES,
        status=READ_RETRIES,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,  # the last 5xx answer reaches PyGithub as a GithubException
        respect_retry_after_header=False,  # a 503's Retry-After could hold a job for minutes
    )
