"""The sticky pull request comment, through real PyGithub against the fake GitHub."""

from __future__ import annotations

import re
import time

import pytest
import requests
from fakegithub import FakeGitHub

from co2gate.github.api import GitHubError
from co2gate.github.comments import (
    MAX_BODY,
    Posted,
    fit,
    marker,
    pull_for_commit,
    upsert_comment,
)

REPO = "octo/lab"
PR = 12
LIST = rf"/issues/{PR}/comments$"
EDIT = r"/issues/comments/\d+$"
BOT = "github-actions[bot]"


def upsert(
    fake: FakeGitHub,
    body: str,
    label: str = "train",
    *,
    token: str | None = None,
    author: str | None = None,
) -> Posted:
    """upsert_comment on octo/lab#12 of the fake, with its write token unless told."""
    return upsert_comment(
        REPO,
        PR,
        body,
        label=label,
        token=token or fake.token,
        api_url=fake.api_url,
        author=author,
    )


def ours(fake: FakeGitHub, label: str = "train") -> list[dict[str, object]]:
    return [c for c in fake.comments(REPO, PR) if marker(label) in str(c["body"])]


# -- the marker and the cut ----------------------------------------------------------------


def test_marker_is_a_hidden_html_comment() -> None:
    assert marker("train") == "<!-- co2gate:comment label=train -->"


@pytest.mark.parametrize("label", ["--> <img src=x onerror=alert(1)>", "a--b", "-", "x-->y", ""])
def test_marker_of_hostile_labels_stays_one_closed_comment(label: str) -> None:
    mark = marker(label)
    assert mark.startswith("<!-- ") and mark.endswith(" -->")
    inner = mark[len("<!--") : -len("-->")]
    assert "--" not in inner
    assert ">" not in inner and "<" not in inner
    assert not inner.rstrip().endswith("-")
    assert marker(label) != marker(label + "x")  # labels stay distinct


def test_fit_leaves_a_short_body_alone() -> None:
    body = f"{marker('train')}\n## Carbon\nfine\n"
    assert fit(body) == body


def test_fit_cuts_a_huge_body_keeping_the_marker_and_a_note() -> None:
    mark = marker("train")
    body = f"{mark}\n## Carbon report\n" + "".join(f"| row {i} | {i} kg |\n" for i in range(12_000))
    assert len(body) > 200_000
    cut = fit(body)
    assert len(cut) <= MAX_BODY
    assert cut.startswith(f"{mark}\n## Carbon report\n")
    assert cut.rstrip().endswith("The full report is in the job summary and in the run's artifact.")
    assert "was cut" in cut
    before_note = cut.split("\n\n**This report was cut")[0]
    assert before_note.endswith(" kg |")  # cut at a line end, not inside a row


def test_fit_lifts_a_marker_that_would_be_cut_and_closes_code_fences() -> None:
    mark = marker("train")
    body = "first line\n```\n" + "x = 1\n" * 40_000 + "```\n" + mark + "\n"
    cut = fit(body)
    assert len(cut) <= MAX_BODY
    assert cut.startswith(f"{mark}\nfirst line\n")
    assert len(re.findall(r"^```", cut, re.MULTILINE)) % 2 == 0


def test_fit_cuts_a_body_without_newlines_and_never_inside_an_html_comment() -> None:
    assert len(fit("y" * 200_000)) <= MAX_BODY
    body = "a\n" * 32_000 + "<!-- a long hidden block " + "z" * 10_000 + " -->"
    cut = fit(body)
    assert len(cut) <= MAX_BODY
    assert cut.count("<!--") == cut.count("-->")


# -- upsert -----------------------------------------------------------------------------------


def test_two_upserts_leave_one_comment_edited(fake_github: FakeGitHub) -> None:
    first = upsert(fake_github, "## Carbon\n1 kg")
    second = upsert(fake_github, "## Carbon\n2 kg")
    assert (first.action, second.action) == ("created", "updated")
    assert first.url == second.url
    assert re.fullmatch(rf"https://github\.example/{REPO}/pull/{PR}#issuecomment-\d+", first.url)
    [comment] = fake_github.comments(REPO, PR)
    assert comment["body"] == f"{marker('train')}\n## Carbon\n2 kg"
    assert comment["user"]["login"] == BOT  # type: ignore[index]


def test_an_unchanged_body_makes_no_write(fake_github: FakeGitHub) -> None:
    upsert(fake_github, "same")
    fake_github.clear_log()
    assert upsert(fake_github, "same").action == "unchanged"
    assert fake_github.count("POST") == fake_github.count("PATCH") == 0
    assert fake_github.count() == 1  # one page of comments


def test_a_typical_upsert_takes_at_most_three_requests(fake_github: FakeGitHub) -> None:
    fake_github.add_comment(REPO, PR, "LGTM")
    upsert(fake_github, "v1")
    fake_github.clear_log()
    assert upsert(fake_github, "v2").action == "updated"
    assert fake_github.log == [
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"),
        ("PATCH", fake_github.log[1][1]),
    ]
    assert fake_github.count() <= 3


def test_ours_is_found_on_page_three_and_edited(fake_github: FakeGitHub) -> None:
    for i in range(250):
        fake_github.add_comment(REPO, PR, f"comment {i}", login=f"user{i % 7}")
    created = upsert(fake_github, "v1")
    fake_github.clear_log()
    updated = upsert(fake_github, "v2")
    assert updated == Posted(created.url, "updated", 0)
    assert fake_github.count("GET", LIST) == 3  # 251 comments, 100 a page
    assert fake_github.count("POST") == 0 and fake_github.count("PATCH", EDIT) == 1
    assert len(fake_github.comments(REPO, PR)) == 251
    assert len(ours(fake_github)) == 1


def test_the_fake_pages_like_github(fake_github: FakeGitHub) -> None:
    for i in range(250):
        fake_github.add_comment(REPO, PR, f"comment {i}")
    url = f"{fake_github.api_url}/repos/{REPO}/issues/{PR}/comments"
    auth = {"Authorization": f"token {fake_github.token}"}
    page1 = requests.get(url, params={"per_page": 100}, headers=auth, timeout=10)
    assert len(page1.json()) == 100
    assert page1.headers["Link"] == (
        f'<{url}?per_page=100&page=2>; rel="next", <{url}?per_page=100&page=3>; rel="last"'
    )
    page3 = requests.get(url, params={"per_page": 100, "page": 3}, headers=auth, timeout=10)
    assert len(page3.json()) == 50
    assert 'rel="next"' not in page3.headers["Link"]
    assert len(requests.get(url, headers=auth, timeout=10).json()) == 30  # default per_page
    assert "minimized" not in page1.json()[0]


def test_another_users_comment_with_our_marker_is_left_alone(fake_github: FakeGitHub) -> None:
    theirs = fake_github.add_comment(REPO, PR, f"{marker('train')}\nquoting the bot", login="eve")
    posted = upsert(fake_github, "ours")
    assert posted.action == "created"
    comments = {c["id"]: c for c in fake_github.comments(REPO, PR)}
    assert comments[theirs["id"]]["body"] == theirs["body"]
    assert not comments[theirs["id"]]["minimized"]
    assert len(comments) == 2
    assert upsert(fake_github, "ours again").action == "updated"
    assert fake_github.comments(REPO, PR)[0]["body"] == theirs["body"]


def test_one_comment_per_label(fake_github: FakeGitHub) -> None:
    assert upsert(fake_github, "a", label="train").action == "created"
    assert upsert(fake_github, "b", label="eval").action == "created"
    assert upsert(fake_github, "a2", label="train").action == "updated"
    assert upsert(fake_github, "b", label="eval").action == "unchanged"
    assert len(fake_github.comments(REPO, PR)) == 2
    assert [c["body"] for c in ours(fake_github, "train")] == [f"{marker('train')}\na2"]
    assert [c["body"] for c in ours(fake_github, "eval")] == [f"{marker('eval')}\nb"]


def test_a_body_that_carries_the_marker_is_posted_as_it_is(fake_github: FakeGitHub) -> None:
    body = f"## Carbon\n{marker('train')}\n1 kg"
    upsert(fake_github, body)
    assert fake_github.comments(REPO, PR)[0]["body"] == body


def test_duplicates_of_ours_are_minimised_once(fake_github: FakeGitHub) -> None:
    mark = marker("train")
    old = fake_github.add_comment(REPO, PR, f"{mark}\nold", login=BOT, user_type="Bot")
    dup = fake_github.add_comment(REPO, PR, f"{mark}\nraced", login=BOT, user_type="Bot")
    posted = upsert(fake_github, "new")
    assert posted == Posted(old["html_url"], "updated", 1)
    comments = {c["id"]: c for c in fake_github.comments(REPO, PR)}
    assert comments[old["id"]]["body"] == f"{mark}\nnew" and not comments[old["id"]]["minimized"]
    assert comments[dup["id"]]["minimized"]
    assert comments[dup["id"]]["minimized_reason"] == "OUTDATED"
    assert mark not in str(comments[dup["id"]]["body"])
    assert "co2gate:outdated" in str(comments[dup["id"]]["body"])

    fake_github.clear_log()
    assert upsert(fake_github, "new") == Posted(old["html_url"], "unchanged", 0)
    assert fake_github.count() == 1
    assert fake_github.comments(REPO, PR)[1] == comments[dup["id"]]


@pytest.mark.parametrize(
    "answer",
    [
        {"errors": [{"type": "FORBIDDEN", "message": "Resource not accessible by integration"}]},
        {"data": {"minimizeComment": None}},
    ],
)
def test_a_failed_minimise_leaves_the_duplicate_ours_for_the_next_run(
    fake_github: FakeGitHub, answer: dict[str, object]
) -> None:
    mark = marker("train")
    for _ in range(2):
        fake_github.add_comment(REPO, PR, f"{mark}\nx", login=BOT, user_type="Bot")
    fake_github.inject("POST", r"/graphql$", 200, body=answer)
    with pytest.raises(GitHubError, match="cannot minimise the duplicate comment") as caught:
        upsert(fake_github, "x")
    assert fake_github.token not in str(caught.value)
    assert len(ours(fake_github)) == 2  # still ours: the next run finishes the job
    assert upsert(fake_github, "x").minimized == 1
    assert [c["minimized"] for c in fake_github.comments(REPO, PR)] == [False, True]


def test_duplicates_are_minimised_through_ghes_graphql() -> None:
    with FakeGitHub(prefix="/api/v3") as fake:
        mark = marker("train")
        for _ in range(3):
            fake.add_comment(REPO, PR, f"{mark}\nx", login=BOT, user_type="Bot")
        posted = upsert(fake, "x")
        assert (posted.action, posted.minimized) == ("unchanged", 2)  # the kept one is current
        assert fake.count("POST", r"^/api/graphql$") == 2
        assert [c["minimized"] for c in fake.comments(REPO, PR)] == [False, True, True]


def test_a_personal_token_writes_as_its_user(fake_github: FakeGitHub) -> None:
    fake_github.add_token("ghp_personal_0123456789", "octocat")
    bot = fake_github.add_comment(
        REPO, PR, f"{marker('train')}\nby the bot", login=BOT, user_type="Bot"
    )
    fake_github.clear_log()
    assert upsert(fake_github, "mine", token="ghp_personal_0123456789").action == "created"
    assert fake_github.count("GET", r"^/user$") == 1
    comments = fake_github.comments(REPO, PR)
    assert comments[0]["body"] == bot["body"]  # the bot's comment is not ours
    assert comments[1]["user"]["login"] == "octocat"  # type: ignore[index]
    assert upsert(fake_github, "mine 2", token="ghp_personal_0123456789").action == "updated"


def test_a_given_author_skips_get_user(fake_github: FakeGitHub) -> None:
    fake_github.add_token("ghp_personal_0123456789", "octocat")
    upsert(fake_github, "v1", token="ghp_personal_0123456789", author="octocat")
    assert fake_github.count("GET", r"^/user$") == 0


def test_a_token_forbidden_get_user_falls_back_to_the_actions_bot(
    fake_github: FakeGitHub,
) -> None:
    fake_github.tokens["v1.installation_like"] = "write"  # no user: GET /user is a 403
    assert upsert(fake_github, "v1", token="v1.installation_like").action == "created"
    assert fake_github.count("GET", r"^/user$") == 1
    assert upsert(fake_github, "v2", token="v1.installation_like").action == "updated"
    assert len(fake_github.comments(REPO, PR)) == 1


def test_the_actions_bot_cannot_edit_someone_elses_comment(fake_github: FakeGitHub) -> None:
    theirs = fake_github.add_comment(REPO, PR, "mine")
    answer = requests.patch(
        theirs["url"],
        json={"body": "changed"},
        headers={"Authorization": f"token {fake_github.token}"},
        timeout=10,
    )
    assert answer.status_code == 403


def test_a_read_only_token_gets_a_403_without_the_token(fake_github: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        upsert(fake_github, "x", token=fake_github.read_token)
    assert caught.value.status == 403
    message = str(caught.value)
    assert fake_github.read_token not in message
    assert message.startswith(f"cannot comment on {REPO}#{PR} (403 Resource not accessible")
    assert "read-only" in message and "\n" not in message


def test_a_bad_token_is_a_401_without_the_token(fake_github: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        upsert(fake_github, "x", token="ghp_wrong_secret_42")
    assert caught.value.status == 401
    assert "ghp_wrong_secret_42" not in str(caught.value)


def test_a_502_on_the_write_is_an_error_and_not_retried(fake_github: FakeGitHub) -> None:
    fake_github.inject("POST", LIST, 502)
    with pytest.raises(GitHubError) as caught:
        upsert(fake_github, "x")
    assert caught.value.status == 502
    assert str(caught.value).startswith(f"cannot comment on {REPO}#{PR} (502 ")
    assert fake_github.count("POST") == 1


def test_a_lasting_502_on_the_read_is_an_error(fake_github: FakeGitHub) -> None:
    fake_github.inject("GET", LIST, 502, times=10)
    with pytest.raises(GitHubError) as caught:
        upsert(fake_github, "x")
    assert caught.value.status == 502
    assert "cannot read the comments" in str(caught.value)
    assert fake_github.count("POST") == 0


def test_one_502_on_the_read_is_retried(fake_github: FakeGitHub) -> None:
    fake_github.inject("GET", LIST, 502)
    assert upsert(fake_github, "x").action == "created"
    assert fake_github.count("GET", LIST) == 2


def test_a_network_failure_is_an_error() -> None:
    with FakeGitHub() as fake:
        api_url, token = fake.api_url, fake.token
    started = time.monotonic()
    with pytest.raises(GitHubError) as caught:
        upsert_comment(REPO, PR, "x", label="t", token=token, api_url=api_url)
    assert caught.value.status is None
    assert "ConnectionError" in str(caught.value) and token not in str(caught.value)
    assert time.monotonic() - started < 10


def test_a_bad_repository_is_an_error(fake_github: FakeGitHub) -> None:
    with pytest.raises(GitHubError, match="OWNER/NAME"):
        upsert_comment("lab", PR, "x", label="t", token=fake_github.token)


def test_a_huge_body_is_posted_cut(fake_github: FakeGitHub) -> None:
    body = "## Carbon\n" + "| a | b |\n" * 30_000
    assert upsert(fake_github, body).action == "created"
    [comment] = fake_github.comments(REPO, PR)
    posted = str(comment["body"])
    assert len(posted) <= MAX_BODY
    assert posted.startswith(f"{marker('train')}\n## Carbon\n")
    assert "job summary" in posted
    assert upsert(fake_github, body).action == "unchanged"


def test_the_fake_refuses_a_body_over_the_limit(fake_github: FakeGitHub) -> None:
    answer = requests.post(
        f"{fake_github.api_url}/repos/{REPO}/issues/{PR}/comments",
        json={"body": "x" * (MAX_BODY + 1)},
        headers={"Authorization": f"token {fake_github.token}"},
        timeout=10,
    )
    assert answer.status_code == 422


# -- pull_for_commit --------------------------------------------------------------------------


def test_pull_for_commit_finds_the_open_pull_request(fake_github: FakeGitHub) -> None:
    sha, other = "a" * 40, "b" * 40
    fake_github.add_pull(REPO, 3, sha, state="closed")
    fake_github.add_pull(REPO, 8, sha)
    fake_github.add_pull(REPO, 9, other)
    found = pull_for_commit(REPO, sha, token=fake_github.token, api_url=fake_github.api_url)
    assert found == 8
    head = fake_github.branch_commits(REPO, "main")[0]["sha"]  # a commit in no pull request
    assert pull_for_commit(REPO, head, token=fake_github.token, api_url=fake_github.api_url) is None
    unknown = "c" * 40
    assert (
        pull_for_commit(REPO, unknown, token=fake_github.token, api_url=fake_github.api_url) is None
    )


def test_pull_for_commit_errors_are_comment_errors(fake_github: FakeGitHub) -> None:
    fake_github.inject("GET", r"/pulls$", 403)
    with pytest.raises(GitHubError) as caught:
        pull_for_commit(REPO, "a" * 40, token=fake_github.token, api_url=fake_github.api_url)
    assert caught.value.status == 403
    assert fake_github.token not in str(caught.value)
