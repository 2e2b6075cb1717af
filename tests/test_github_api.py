"""The one GitHub client and error type (co2gate.github.api), through real PyGithub against
the fake GitHub, and the adapters that use it: the budget file at a base commit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fakegithub import FakeGitHub
from github import GithubException

from co2gate.errors import ServiceError
from co2gate.github import api
from co2gate.github.api import GitHubError
from co2gate.github.comments import upsert_comment
from co2gate.github.contents import NotReadable, read_at_commit
from co2gate.ledger import LedgerError
from co2gate.ledger.branch import BranchLedger

REPO = "octo/lab"


def test_one_error_type_for_every_adapter() -> None:
    assert issubclass(GitHubError, ServiceError)
    assert issubclass(NotReadable, GitHubError)
    error = GitHubError("cannot read the pull request (404 Not Found)", 404)
    assert (str(error), error.status) == ("cannot read the pull request (404 Not Found)", 404)
    assert GitHubError("network").status is None


VALIDATION_FAILED = {
    "message": "Validation Failed",
    "errors": [
        {
            "resource": "IssueComment",
            "field": "body",
            "code": "custom",
            "message": "body is too long (maximum is 65536 characters)",
        },
        {"resource": "Issue", "field": "title", "code": "missing_field"},
        "labels\nare invalid",
    ],
}
GRAPHQL_FORBIDDEN = {
    "errors": [{"type": "FORBIDDEN", "message": "Resource not accessible by integration"}]
}


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'},
            'Invalid request. "sha" wasn\'t supplied.',
        ),
        (
            VALIDATION_FAILED,
            "Validation Failed: body is too long (maximum is 65536 characters); "
            "Issue title missing_field; labels are invalid",
        ),
        (GRAPHQL_FORBIDDEN, "Resource not accessible by integration"),
        ("<html>\n<body>502 Bad Gateway</body>\n</html>", ""),
        (None, ""),
    ],
)
def test_message_is_one_line_of_githubs_own_words(data: Any, line: str) -> None:
    assert api.message(GithubException(422, data)) == line


def test_redact_gives_one_line_without_the_token() -> None:
    line = api.redact("failed\n  for ghs_secret (ghs_secret)", "ghs_secret")
    assert line == "failed for *** (***)"
    assert api.redact("no token\nhere", "") == "no token here"


def test_a_422_with_an_errors_list_is_one_line(fake_github: FakeGitHub) -> None:
    body = {
        "message": "Validation Failed",
        "errors": [{"resource": "IssueComment", "field": "body", "code": "too_long"}],
    }
    fake_github.inject("POST", r"/issues/12/comments$", 422, body=body)
    with pytest.raises(GitHubError) as caught:
        upsert_comment(
            REPO, 12, "x", label="t", token=fake_github.token, api_url=fake_github.api_url
        )
    assert str(caught.value) == (
        "cannot comment on octo/lab#12 (422 Validation Failed: IssueComment body too_long)"
    )
    assert caught.value.status == 422


def test_the_client_retries_a_read_once_and_never_a_write(fake_github: FakeGitHub) -> None:
    repo = api.client(fake_github.api_url, fake_github.token).get_repo(REPO)
    fake_github.inject("GET", r"/contents/README\.md$", 502)
    started = time.monotonic()
    assert repo.get_contents("README.md").decoded_content == b"# code\n"  # type: ignore[union-attr]
    assert time.monotonic() - started >= api.RETRY_BACKOFF_S  # a pause before the retry
    assert fake_github.count("GET", r"/contents/README\.md$") == 2

    fake_github.inject("GET", r"/contents/README\.md$", 503, times=2)
    with pytest.raises(GithubException) as lasting:
        repo.get_contents("README.md")
    assert lasting.value.status == 503

    fake_github.inject("PUT", r"/contents/", 502)
    with pytest.raises(GithubException) as write:
        repo.create_file("new.txt", "add", "text", branch="main")
    assert write.value.status == 502
    assert fake_github.count("PUT") == 1


def test_the_client_gives_up_on_a_dead_server_quickly() -> None:
    with FakeGitHub() as fake:
        api_url, token = fake.api_url, fake.token
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # requests' ConnectionError, as PyGithub lets it
        api.client(api_url, token).get_repo(REPO).get_contents("README.md")
    assert "ConnectionError" in type(caught.value).__name__
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "name",
    ["bad repo name", "octo/bad name", "octo/lab/x", "octo/", "/lab", "", "octo/..", "../lab",
     "octo/lab?x=1", "octo/lab#1", "octo\\lab"],
)  # fmt: skip
def test_a_bad_repository_name_is_one_line_before_any_request(
    fake_github: FakeGitHub, name: str
) -> None:
    assert not api.is_repository(name)
    with pytest.raises(LedgerError) as caught:
        BranchLedger(name, fake_github.token, api_url=fake_github.api_url)
    assert str(caught.value) == (
        f"the ledger branch's repository (GITHUB_REPOSITORY) must be OWNER/NAME, not {name!r}"
    )
    with pytest.raises(GitHubError, match="OWNER/NAME"):
        upsert_comment(name, 12, "x", label="t", token=fake_github.token)
    assert fake_github.count() == 0


@pytest.mark.parametrize("name", ["octo/lab", "Octo-Org/my_repo.js", "a/b", "octo/.github"])
def test_good_repository_names(name: str) -> None:
    assert api.is_repository(name)


# -- the budget file at a base commit, through the Contents API ---------------------------


def base_env(fake: FakeGitHub, **changes: str) -> dict[str, str]:
    env = {
        "GITHUB_TOKEN": fake.token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": fake.api_url,
    }
    return env | changes


def test_read_at_commit_through_the_api(fake_github: FakeGitHub) -> None:
    fake_github.put_file(REPO, "main", "budget.yml", "annual_kg: 5\n")
    sha = fake_github.repos[REPO].refs["refs/heads/main"]  # not in this clone
    assert read_at_commit(Path("budget.yml"), sha, base_env(fake_github)) == "annual_kg: 5\n"
    assert read_at_commit(Path("missing.yml"), sha, base_env(fake_github)) is None


def test_read_at_commit_errors_are_one_line_without_the_token(fake_github: FakeGitHub) -> None:
    sha = fake_github.repos[REPO].refs["refs/heads/main"]
    fake_github.inject("GET", r"/contents/", 403)
    with pytest.raises(NotReadable) as forbidden:
        read_at_commit(Path("budget.yml"), sha, base_env(fake_github))
    assert forbidden.value.status == 403
    assert str(forbidden.value) == (
        f"budget.yml: cannot read it at the base commit {sha[:12]} through the API "
        "(HTTP 403: Resource not accessible by integration): the token needs contents: read"
    )
    fake_github.inject("GET", r"/contents/", 502, times=2, body={"message": fake_github.token})
    with pytest.raises(NotReadable) as failed:
        read_at_commit(Path("budget.yml"), sha, base_env(fake_github))
    assert failed.value.status == 502 and fake_github.token not in str(failed.value)
    assert "(HTTP 502: ***)" in str(failed.value)
    with pytest.raises(NotReadable, match="GITHUB_REPOSITORY is 'bad repo name', not OWNER/NAME"):
        read_at_commit(Path("b.yml"), sha, base_env(fake_github, GITHUB_REPOSITORY="bad repo name"))


def test_read_at_commit_on_a_dead_server_is_one_line() -> None:
    with FakeGitHub() as fake:
        env = base_env(fake)
    with pytest.raises(NotReadable) as caught:
        read_at_commit(Path("budget.yml"), "f" * 40, env)
    assert "through the API (ConnectionError: " in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.status is None
