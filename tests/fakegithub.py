"""A stateful fake of the GitHub API endpoints co2gate calls, over real HTTP on 127.0.0.1.

PyGithub talks to it unmodified: `Github(base_url=fake.api_url, auth=Auth.Token(fake.token),
retry=None, seconds_between_requests=None, seconds_between_writes=None)`. It runs in a
background thread of the test process; other processes reach it through its URL.

Git data is modelled for real: blobs (git's own sha), trees (flat path -> blob maps), commits
with parents, refs; a ref update without `force` moves only forward (422 "Update is not a fast
forward" otherwise), GitHub's compare-and-swap. The Contents API checks shas the way GitHub
does: a stale sha is a 409, a missing sha on an existing file a 422, files over 1 MB come back
with encoding "none".

Issue comments are modelled per pull request number (any number is a pull request here):
listing pages like GitHub (`per_page` up to 100, an RFC 5988 `Link` header), create, edit
(author only), and GraphQL `minimizeComment`, which sets the comment's `minimized` flag
(kept out of its REST JSON, as on GitHub). Tokens belong to users: the write token
`fake.token` and `fake.read_token` act as GITHUB_TOKEN (author `github-actions[bot]`,
`GET /user` forbidden); `fake.add_token(token, login)` adds a personal token whose
`GET /user` answers with its login. `fake.add_pull(repo, number, head_sha, head_repo=...)`
registers a pull request (from a fork when head_repo is another name) for
`GET /repos/{o}/{r}/pulls/{number}` and `GET /repos/{o}/{r}/commits/{sha}/pulls`;
`fake.add_comment(...)` and `fake.comments(repo, number)` seed and read comments.

Failure injection: `fake.inject("PUT", r"/contents/", status=409, times=3)` answers the next
three matching requests with a 409 (`apply=True`: handle the request for real first, then
answer with the injected status: a write whose answer was lost; `delay_s`: a slow answer).
Every request is logged as (method, path) in `fake.log`; `fake.statuses` counts the
answers the fake gave itself (injected ones aside) by (method, status).

To serve more endpoints, add a route to ROUTES and a `_h_<name>` method returning
(status, body) or (status, body, headers); per-repository state lives on `FakeRepo`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

# The Contents API returns no content for files over "1 MB" (GitHub does not say whether
# that is 10**6 or 2**20 bytes): the smaller, so files between take the blob API here too.
CONTENTS_LIMIT = 1_000_000
# GraphQL's Blob.text is cut for large blobs (isTruncated). GitHub documents no figure;
# users report the cut at exactly 512,000 bytes (sveltia/sveltia-cms#950).
GRAPHQL_TEXT_LIMIT = 512_000
COMMENT_LIMIT = 65_536  # characters in an issue comment's body
HTML_HOST = "https://github.example"  # html_url of comments: not an API URL, never fetched
ACTIONS_BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}

_REPO = r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
# (method, path regex after the API prefix, handler name): `_h_<name>(request)`.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", _REPO + r"$", "get_repo"),
    ("GET", _REPO + r"/git/refs?/(?P<ref>heads/.+)$", "get_ref"),
    ("POST", _REPO + r"/git/refs$", "create_ref"),
    ("PATCH", _REPO + r"/git/refs/(?P<ref>heads/.+)$", "update_ref"),
    ("POST", _REPO + r"/git/blobs$", "create_blob"),
    ("GET", _REPO + r"/git/blobs/(?P<sha>[^/]+)$", "get_blob"),
    ("POST", _REPO + r"/git/trees$", "create_tree"),
    ("POST", _REPO + r"/git/commits$", "create_commit"),
    ("GET", _REPO + r"/git/commits/(?P<sha>[^/]+)$", "get_commit"),
    ("GET", _REPO + r"/contents/(?P<path>.+)$", "get_contents"),
    ("PUT", _REPO + r"/contents/(?P<path>.+)$", "put_contents"),
    ("GET", _REPO + r"/issues/(?P<number>\d+)/comments$", "list_comments"),
    ("POST", _REPO + r"/issues/(?P<number>\d+)/comments$", "create_comment"),
    ("GET", _REPO + r"/issues/comments/(?P<id>\d+)$", "get_comment"),
    ("PATCH", _REPO + r"/issues/comments/(?P<id>\d+)$", "edit_comment"),
    ("GET", _REPO + r"/commits/(?P<sha>[^/]+)/pulls$", "commit_pulls"),
    ("GET", _REPO + r"/pulls/(?P<number>\d+)$", "get_pull"),
    ("GET", r"^/user$", "get_user"),
]
# What a handler returns: (status, body) or (status, body, extra response headers).
Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def blob_sha(data: bytes) -> str:
    """git's object id for a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Injected:
    """One injected answer for requests matching method and pattern (a regex on the path)."""

    method: str
    pattern: str
    status: int | None = 502  # None: answer normally, after delay_s
    body: Any = None  # None: a message fitting the status; a str is sent as text/html
    delay_s: float = 0.0
    apply: bool = False  # handle the request for real, then answer with status
    times: int = 1


@dataclass
class FakeRepo:
    """One repository's state."""

    full_name: str
    id: int
    default_branch: str = "main"
    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> {path: blob sha}
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "refs/heads/main" -> commit sha
    # pull request number -> its comments, oldest first; each the REST JSON plus "minimized"
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> head_sha, state


@dataclass
class Request:
    method: str
    path: str  # after the API prefix, unquoted per segment by the route's groups
    query: dict[str, str]
    body: Any
    params: dict[str, str]
    repo: FakeRepo | None = None
    user: dict[str, Any] | None = None  # the token's user: login, id, type, personal


class FakeGitHub:
    """The fake server; a context manager that starts and stops it."""

    def __init__(
        self,
        repos: tuple[str, ...] = ("octo/lab",),
        *,
        prefix: str = "",
        tokens: dict[str, str] | None = None,
        contents_limit: int = CONTENTS_LIMIT,
        graphql_text_limit: int = GRAPHQL_TEXT_LIMIT,
    ) -> None:
        self.prefix = prefix.rstrip("/")  # "/api/v3" serves like GitHub Enterprise Server
        # PyGithub's rule: GraphQL lives beside the REST prefix, without its "/v3".
        self.graphql_path = self.prefix.removesuffix("/v3") + "/graphql"
        self.token = "ghs_fake_write_token_0123456789"
        self.read_token = "ghs_fake_read_token_0123456789"
        self.tokens = tokens or {self.token: "write", self.read_token: "read"}
        # token -> its user; tokens without an entry act as GITHUB_TOKEN (github-actions[bot])
        self.users: dict[str, dict[str, Any]] = {}
        self.contents_limit = contents_limit
        self.graphql_text_limit = graphql_text_limit
        self.lock = threading.RLock()
        self.log: list[tuple[str, str]] = []
        self.statuses: Counter[tuple[str, int]] = Counter()  # (method, status), not injected
        self.injected: list[Injected] = []
        self.repos: dict[str, FakeRepo] = {}
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in repos:
            self.add_repo(name)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Scheme, host and port, exactly as PyGithub must be given them."""
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + self.prefix

    # -- test helpers ----------------------------------------------------------------------

    def add_repo(self, full_name: str, default_branch: str = "main") -> FakeRepo:
        with self.lock:
            repo = FakeRepo(full_name, next(self._ids), default_branch)
            tree = self._store_tree(repo, {"README.md": self._store_blob(repo, b"# code\n")})
            head = self._store_commit(repo, tree, [], "initial commit")
            repo.refs[f"refs/heads/{default_branch}"] = head
            self.repos[full_name] = repo
            return repo

    def inject(
        self,
        method: str,
        pattern: str,
        status: int | None = 502,
        *,
        body: Any = None,
        delay_s: float = 0.0,
        apply: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching method and pattern this way."""
        with self.lock:
            self.injected.append(Injected(method, pattern, status, body, delay_s, apply, times))

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """Logged requests matching method and a regex on the path."""
        with self.lock:
            return sum(
                1
                for m, p in self.log
                if (method is None or m == method) and (pattern is None or re.search(pattern, p))
            )

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def file_text(self, full_name: str, branch: str, path: str) -> str | None:
        """A file's text at a branch's head, or None."""
        with self.lock:
            repo = self.repos[full_name]
            head = repo.refs.get(f"refs/heads/{branch}")
            if head is None:
                return None
            sha = repo.trees[repo.commits[head]["tree"]].get(path)
            return None if sha is None else repo.blobs[sha].decode("utf-8")

    def branch_files(self, full_name: str, branch: str) -> list[str]:
        """The paths at a branch's head; [] when there is no such branch."""
        with self.lock:
            repo = self.repos[full_name]
            head = repo.refs.get(f"refs/heads/{branch}")
            return [] if head is None else sorted(repo.trees[repo.commits[head]["tree"]])

    def put_file(self, full_name: str, branch: str, path: str, text: str) -> None:
        """Commit a file directly, as someone else's push would."""
        with self.lock:
            repo = self.repos[full_name]
            ref = f"refs/heads/{branch}"
            head = repo.refs[ref]
            files = dict(repo.trees[repo.commits[head]["tree"]])
            files[path] = self._store_blob(repo, text.encode("utf-8"))
            tree = self._store_tree(repo, files)
            repo.refs[ref] = self._store_commit(repo, tree, [head], f"put {path}")

    def delete_branch(self, full_name: str, branch: str) -> None:
        with self.lock:
            del self.repos[full_name].refs[f"refs/heads/{branch}"]

    def branch_commits(self, full_name: str, branch: str) -> list[dict[str, Any]]:
        """The commits of a branch, newest first, following first parents."""
        with self.lock:
            repo = self.repos[full_name]
            out, sha = [], repo.refs.get(f"refs/heads/{branch}")
            while sha is not None:
                commit = repo.commits[sha]
                out.append({"sha": sha, **commit})
                sha = commit["parents"][0] if commit["parents"] else None
            return out

    def add_token(self, token: str, login: str, scope: str = "write") -> None:
        """A personal token of the user `login` ("write" or "read"); GET /user answers it."""
        with self.lock:
            self.tokens[token] = scope
            self.users[token] = {
                "login": login,
                "id": 10_000 + next(self._ids),
                "type": "User",
                "personal": True,
            }

    def add_pull(
        self,
        full_name: str,
        number: int,
        head_sha: str,
        state: str = "open",
        *,
        head_repo: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        base_sha: str | None = None,
    ) -> dict[str, Any]:
        """A pull request into full_name whose head is head_sha, for GET .../pulls/{number}
        and GET .../commits/{sha}/pulls.

        head_repo: the repository the head branch is in (a fork's name; it need not be a
        repository of the fake), default full_name; head_ref default "pr-<number>";
        base_ref default the default branch, base_sha default that branch's head when asked.
        """
        with self.lock:
            pull = {
                "number": number,
                "head_sha": head_sha,
                "state": state,
                "head_repo": head_repo or full_name,
                "head_ref": head_ref or f"pr-{number}",
                "base_ref": base_ref,
                "base_sha": base_sha,
            }
            self.repos[full_name].pulls[number] = pull
            return pull

    def add_comment(
        self,
        full_name: str,
        number: int,
        body: str,
        login: str = "someone",
        user_type: str = "User",
    ) -> dict[str, Any]:
        """A comment on pull request `number` by `login`, as if posted by someone else."""
        with self.lock:
            user = {"login": login, "id": 20_000 + next(self._ids), "type": user_type}
            return dict(self._store_comment(self.repos[full_name], number, body, user))

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Copies of the comments on pull request `number`, oldest first, with "minimized"."""
        with self.lock:
            return [dict(c) for c in self.repos[full_name].comments.get(number, [])]

    # -- object store ----------------------------------------------------------------------

    def _store_blob(self, repo: FakeRepo, data: bytes) -> str:
        sha = blob_sha(data)
        repo.blobs[sha] = data
        return sha

    def _store_tree(self, repo: FakeRepo, files: dict[str, str]) -> str:
        sha = hashlib.sha1(b"tree\0" + json.dumps(sorted(files.items())).encode()).hexdigest()
        repo.trees[sha] = dict(files)
        return sha

    def _store_commit(self, repo: FakeRepo, tree: str, parents: list[str], message: str) -> str:
        serial = next(self._ids)
        raw = json.dumps([tree, parents, message, serial]).encode()
        sha = hashlib.sha1(b"commit\0" + raw).hexdigest()
        repo.commits[sha] = {"tree": tree, "parents": list(parents), "message": message}
        return sha

    def _store_comment(
        self, repo: FakeRepo, number: int, body: str, user: dict[str, Any]
    ) -> dict[str, Any]:
        cid = 1_000_000 + next(self._ids)
        base = self._repo_url(repo)
        now = _now()
        comment = {
            "id": cid,
            "node_id": f"IC_kwfake{cid}",
            "url": f"{base}/issues/comments/{cid}",
            "html_url": f"{HTML_HOST}/{repo.full_name}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{base}/issues/{number}",
            "body": body,
            "user": {
                "login": user["login"],
                "id": user["id"],
                "node_id": f"U_{user['id']}",
                "type": user["type"],
                "url": f"{self.api_url}/users/{quote(user['login'])}",
            },
            "author_association": "NONE" if user["type"] == "Bot" else "MEMBER",
            "created_at": now,
            "updated_at": now,
            "minimized": False,
        }
        repo.comments.setdefault(number, []).append(comment)
        return comment

    def _find_comment(self, repo: FakeRepo, cid: int) -> dict[str, Any] | None:
        for comments in repo.comments.values():
            for comment in comments:
                if comment["id"] == cid:
                    return comment
        return None

    def _user_of(self, token: str) -> dict[str, Any]:
        """The token's user; GITHUB_TOKEN-like tokens are github-actions[bot]."""
        return self.users.get(token) or {**ACTIONS_BOT, "personal": False}

    def _resolve(self, repo: FakeRepo, rev: str | None) -> str | None:
        """A commit sha for a branch name, a full ref or a commit sha."""
        if not rev:
            rev = repo.default_branch
        for candidate in (rev, f"refs/heads/{rev}"):
            if candidate in repo.refs:
                return repo.refs[candidate]
        return rev if rev in repo.commits else None

    # -- JSON shapes -----------------------------------------------------------------------

    def _repo_url(self, repo: FakeRepo) -> str:
        return f"{self.api_url}/repos/{repo.full_name}"

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        owner, name = repo.full_name.split("/")
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": name,
            "full_name": repo.full_name,
            "private": False,
            "owner": {"login": owner, "id": 1, "type": "Organization", "url": ""},
            "html_url": f"{self.url}/{repo.full_name}",
            "url": self._repo_url(repo),
            "default_branch": repo.default_branch,
        }

    def _ref_json(self, repo: FakeRepo, ref: str) -> dict[str, Any]:
        sha = repo.refs[ref]
        return {
            "ref": ref,
            "node_id": f"REF_{sha[:12]}",
            "url": f"{self._repo_url(repo)}/git/{ref}",
            "object": {
                "sha": sha,
                "type": "commit",
                "url": f"{self._repo_url(repo)}/git/commits/{sha}",
            },
        }

    def _commit_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        commit = repo.commits[sha]
        base = self._repo_url(repo)
        person = {"name": "github-actions[bot]", "email": "actions@github.com", "date": _now()}
        return {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "url": f"{base}/git/commits/{sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{sha}",
            "author": person,
            "committer": person,
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": f"{base}/git/trees/{commit['tree']}"},
            "parents": [
                {"sha": p, "url": f"{base}/git/commits/{p}", "html_url": ""}
                for p in commit["parents"]
            ],
            "verification": {"verified": False, "reason": "unsigned"},
        }

    def _comment_json(self, comment: dict[str, Any]) -> dict[str, Any]:
        """The REST shape: GitHub's REST API does not say whether a comment is minimised."""
        return {k: v for k, v in comment.items() if k != "minimized"}

    def _named_repo_json(self, full_name: str) -> dict[str, Any]:
        """A repository's JSON by name: the fake's own, or a stand-in (a fork elsewhere)."""
        known = self.repos.get(full_name)
        if known is not None:
            return self._repo_json(known)
        owner, name = full_name.split("/")
        return {
            "id": 900_000 + sum(full_name.encode()),
            "node_id": f"R_fork_{owner}",
            "name": name,
            "full_name": full_name,
            "private": False,
            "fork": True,
            "owner": {"login": owner, "id": 3, "type": "User", "url": ""},
            "html_url": f"{HTML_HOST}/{full_name}",
            "url": f"{self.api_url}/repos/{full_name}",
            "default_branch": "main",
        }

    def _pull_json(self, repo: FakeRepo, pull: dict[str, Any]) -> dict[str, Any]:
        base, number = self._repo_url(repo), pull["number"]
        head_repo = pull.get("head_repo") or repo.full_name
        head_ref = pull.get("head_ref") or f"pr-{number}"
        base_ref = pull.get("base_ref") or repo.default_branch
        return {
            "id": 500_000 + number,
            "node_id": f"PR_{number}",
            "number": number,
            "state": pull["state"],
            "title": f"pull request {number}",
            "url": f"{base}/pulls/{number}",
            "html_url": f"{HTML_HOST}/{repo.full_name}/pull/{number}",
            "issue_url": f"{base}/issues/{number}",
            "user": {"login": "someone", "id": 2, "type": "User", "url": ""},
            "head": {
                "label": f"{head_repo.split('/')[0]}:{head_ref}",
                "ref": head_ref,
                "sha": pull["head_sha"],
                "repo": self._named_repo_json(head_repo),
            },
            "base": {
                "label": f"{repo.full_name.split('/')[0]}:{base_ref}",
                "ref": base_ref,
                "sha": pull.get("base_sha") or repo.refs.get(f"refs/heads/{base_ref}", ""),
                "repo": self._repo_json(repo),
            },
        }

    def _tree_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        base = self._repo_url(repo)
        return {
            "sha": sha,
            "url": f"{base}/git/trees/{sha}",
            "tree": [
                {
                    "path": path,
                    "mode": "100644",
                    "type": "blob",
                    "sha": blob,
                    "size": len(repo.blobs[blob]),
                    "url": f"{base}/git/blobs/{blob}",
                }
                for path, blob in sorted(repo.trees[sha].items())
            ],
            "truncated": False,
        }

    def _file_json(self, repo: FakeRepo, path: str, sha: str, ref: str) -> dict[str, Any]:
        base = self._repo_url(repo)
        data = repo.blobs[sha]
        url = f"{base}/contents/{quote(path)}?ref={quote(ref)}"
        return {
            "type": "file",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(data),
            "url": url,
            "html_url": f"{self.url}/{repo.full_name}/blob/{ref}/{path}",
            "git_url": f"{base}/git/blobs/{sha}",
            "download_url": f"{self.url}/raw/{repo.full_name}/{ref}/{path}",
            "_links": {"self": url, "git": f"{base}/git/blobs/{sha}", "html": ""},
        }

    # -- handlers --------------------------------------------------------------------------

    def _h_get_repo(self, req: Request) -> tuple[int, Any]:
        assert req.repo is not None
        return 200, self._repo_json(req.repo)

    def _h_get_ref(self, req: Request) -> tuple[int, Any]:
        assert req.repo is not None
        ref = "refs/" + req.params["ref"]
        if ref not in req.repo.refs:
            return 404, NOT_FOUND
        return 200, self._ref_json(req.repo, ref)

    def _h_create_ref(self, req: Request) -> tuple[int, Any]:
        repo, body = req.repo, req.body
        assert repo is not None
        ref, sha = body.get("ref", ""), body.get("sha", "")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return 422, {"message": "Reference name must start with 'refs/' and have two slashes"}
        if sha not in repo.commits:
            return 422, {"message": "Object does not exist"}
        if ref in repo.refs:
            return 422, {"message": "Reference already exists"}
        repo.refs[ref] = sha
        return 201, self._ref_json(repo, ref)

    def _h_update_ref(self, req: Request) -> tuple[int, Any]:
        """Move a branch; without force only forward (GitHub's compare-and-swap on refs)."""
        repo, body = req.repo, req.body
        assert repo is not None
        ref, sha = "refs/" + req.params["ref"], body.get("sha", "")
        if ref not in repo.refs:
            return 422, {"message": "Reference does not exist"}
        if sha not in repo.commits:
            return 422, {"message": "Object does not exist"}
        if not body.get("force") and not self._descends(repo, sha, repo.refs[ref]):
            return 422, {"message": "Update is not a fast forward"}
        repo.refs[ref] = sha
        return 200, self._ref_json(repo, ref)

    def _descends(self, repo: FakeRepo, sha: str, ancestor: str) -> bool:
        seen, todo = set(), [sha]
        while todo:
            commit = todo.pop()
            if commit == ancestor:
                return True
            if commit not in seen:
                seen.add(commit)
                todo.extend(repo.commits[commit]["parents"])
        return False

    def _h_create_blob(self, req: Request) -> tuple[int, Any]:
        assert req.repo is not None
        content, encoding = req.body.get("content"), req.body.get("encoding", "utf-8")
        if not isinstance(content, str):
            return 422, {"message": 'Invalid request.\n\n"content" wasn\'t supplied.'}
        data = base64.b64decode(content) if encoding == "base64" else content.encode("utf-8")
        sha = self._store_blob(req.repo, data)
        return 201, {"sha": sha, "url": f"{self._repo_url(req.repo)}/git/blobs/{sha}"}

    def _h_get_blob(self, req: Request) -> tuple[int, Any]:
        repo, sha = req.repo, req.params["sha"]
        assert repo is not None
        if sha not in repo.blobs:
            return 404, NOT_FOUND
        data = repo.blobs[sha]
        return 200, {
            "sha": sha,
            "node_id": f"B_{sha[:12]}",
            "size": len(data),
            "url": f"{self._repo_url(repo)}/git/blobs/{sha}",
            "content": _b64_lines(data),
            "encoding": "base64",
        }

    def _h_create_tree(self, req: Request) -> tuple[int, Any]:
        repo, body = req.repo, req.body
        assert repo is not None
        files: dict[str, str] = {}
        if body.get("base_tree"):
            if body["base_tree"] not in repo.trees:
                return 422, {"message": "Invalid request.\n\nbase_tree is not a valid tree"}
            files = dict(repo.trees[body["base_tree"]])
        for item in body.get("tree", []):
            path = item.get("path", "")
            if item.get("type", "blob") != "blob" or not path:
                return 422, {"message": "fake: only blob entries are supported"}
            if "content" in item:
                files[path] = self._store_blob(repo, item["content"].encode("utf-8"))
            elif item.get("sha") is None:
                files.pop(path, None)
            elif item["sha"] in repo.blobs:
                files[path] = item["sha"]
            else:
                return 422, {"message": f"tree.sha {item['sha']} is not a valid blob"}
        return 201, self._tree_json(repo, self._store_tree(repo, files))

    def _h_create_commit(self, req: Request) -> tuple[int, Any]:
        repo, body = req.repo, req.body
        assert repo is not None
        tree, parents = body.get("tree"), body.get("parents", [])
        if tree not in repo.trees:
            return 422, {"message": "Tree SHA does not exist"}
        if any(p not in repo.commits for p in parents):
            return 422, {"message": "Parent SHA does not exist or is not a commit object"}
        sha = self._store_commit(repo, tree, parents, body.get("message", ""))
        return 201, self._commit_json(repo, sha)

    def _h_get_commit(self, req: Request) -> tuple[int, Any]:
        repo, sha = req.repo, req.params["sha"]
        assert repo is not None
        if sha not in repo.commits:
            return 404, NOT_FOUND
        return 200, self._commit_json(repo, sha)

    def _h_get_contents(self, req: Request) -> tuple[int, Any]:
        repo, path = req.repo, req.params["path"]
        assert repo is not None
        rev = req.query.get("ref") or repo.default_branch
        head = self._resolve(repo, rev)
        if head is None:
            return 404, {"message": f"No commit found for the ref {rev}"}
        sha = repo.trees[repo.commits[head]["tree"]].get(path)
        if sha is None:
            return 404, NOT_FOUND
        out = self._file_json(repo, path, sha, rev)
        data = repo.blobs[sha]
        if len(data) > self.contents_limit:
            out |= {"content": "", "encoding": "none"}  # GitHub: over 1 MB, no content
        else:
            out |= {"content": _b64_lines(data), "encoding": "base64"}
        return 200, out

    def _h_put_contents(self, req: Request) -> tuple[int, Any]:
        repo, path, body = req.repo, req.params["path"], req.body
        assert repo is not None
        if not isinstance(body.get("message"), str) or not isinstance(body.get("content"), str):
            return 422, {"message": 'Invalid request.\n\n"message", "content" are required.'}
        branch = body.get("branch") or repo.default_branch
        ref = f"refs/heads/{branch}"
        if ref not in repo.refs:
            return 404, {"message": f"Branch {branch} not found"}
        head = repo.refs[ref]
        files = dict(repo.trees[repo.commits[head]["tree"]])
        current, given = files.get(path), body.get("sha")
        if current is not None and given is None:
            return 422, {"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'}
        if current is not None and given != current:
            return 409, {"message": f"is at {current} but expected {given}"}
        if current is None and given is not None:
            return 409, {"message": f"{path} does not match {given}"}
        try:
            data = base64.b64decode(body["content"], validate=True)
        except ValueError:
            return 422, {"message": "content is not valid Base64"}
        files[path] = self._store_blob(repo, data)
        tree = self._store_tree(repo, files)
        commit = self._store_commit(repo, tree, [head], body["message"])
        repo.refs[ref] = commit
        return (201 if current is None else 200), {
            "content": self._file_json(repo, path, files[path], branch),
            "commit": self._commit_json(repo, commit),
        }

    def _h_list_comments(self, req: Request) -> Answer:
        repo = req.repo
        assert repo is not None
        try:
            per_page = min(100, max(1, int(req.query.get("per_page", 30))))
            page = max(1, int(req.query.get("page", 1)))
        except ValueError:
            return 422, {"message": "Invalid request.\n\nper_page and page must be integers."}
        comments = repo.comments.get(int(req.params["number"]), [])
        last = max(1, -(-len(comments) // per_page))
        chunk = comments[(page - 1) * per_page : page * per_page]
        url = f"{self.api_url}{req.path}"
        rels = []  # GitHub's order: prev, next, last, first
        if page > 1:
            rels.append(("prev", min(page - 1, last)))
        if page < last:
            rels += [("next", page + 1), ("last", last)]
        if page > 1:
            rels.append(("first", 1))
        headers = {}
        if rels:
            headers["Link"] = ", ".join(
                f'<{url}?per_page={per_page}&page={n}>; rel="{rel}"' for rel, n in rels
            )
        return 200, [self._comment_json(c) for c in chunk], headers

    def _h_create_comment(self, req: Request) -> Answer:
        repo, body = req.repo, req.body
        assert repo is not None and req.user is not None
        problem = _comment_body_problem(body)
        if problem is not None:
            return problem
        comment = self._store_comment(repo, int(req.params["number"]), body["body"], req.user)
        return 201, self._comment_json(comment)

    def _h_get_comment(self, req: Request) -> Answer:
        assert req.repo is not None
        comment = self._find_comment(req.repo, int(req.params["id"]))
        if comment is None:
            return 404, NOT_FOUND
        return 200, self._comment_json(comment)

    def _h_edit_comment(self, req: Request) -> Answer:
        repo, body = req.repo, req.body
        assert repo is not None and req.user is not None
        comment = self._find_comment(repo, int(req.params["id"]))
        if comment is None:
            return 404, NOT_FOUND
        if comment["user"]["login"] != req.user["login"]:
            return 403, {"message": "Resource not accessible by integration"}
        problem = _comment_body_problem(body)
        if problem is not None:
            return problem
        comment["body"], comment["updated_at"] = body["body"], _now()
        return 200, self._comment_json(comment)

    def _h_commit_pulls(self, req: Request) -> Answer:
        repo, sha = req.repo, req.params["sha"]
        assert repo is not None
        pulls = [p for _, p in sorted(repo.pulls.items()) if p["head_sha"] == sha]
        if not pulls and sha not in repo.commits:
            return 422, {"message": f"No commit found for SHA: {sha}"}
        return 200, [self._pull_json(repo, p) for p in pulls]

    def _h_get_pull(self, req: Request) -> Answer:
        repo = req.repo
        assert repo is not None
        pull = repo.pulls.get(int(req.params["number"]))
        if pull is None:
            return 404, NOT_FOUND
        return 200, self._pull_json(repo, pull)

    def _h_get_user(self, req: Request) -> Answer:
        user = req.user
        assert user is not None
        if not user["personal"]:  # GITHUB_TOKEN and app installation tokens
            return 403, {"message": "Resource not accessible by integration"}
        return 200, {
            "login": user["login"],
            "id": user["id"],
            "node_id": f"U_{user['id']}",
            "type": "User",
            "url": f"{self.api_url}/users/{quote(user['login'])}",
        }

    def _graphql(self, body: Any, scope: str = "write") -> tuple[int, Any]:
        """The ledger's query shape: repository { ref(qualifiedName:) A: object(expression:) },
        and the mutation minimizeComment(input: {subjectId, classifier})."""
        query, variables = body.get("query", ""), body.get("variables") or {}
        if re.search(r"\bmutation\b", query) and "minimizeComment" in query:
            return self._minimize(query, variables, scope)
        found = re.search(r"repository\(owner:\s*\$(\w+),\s*name:\s*\$(\w+)\)", query)
        if not found:
            return 200, {"errors": [{"message": "fake: unsupported query"}]}
        full_name = f"{variables.get(found[1])}/{variables.get(found[2])}"
        repo = self.repos.get(full_name)
        if repo is None:
            return 200, {
                "data": {"repository": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository"],
                        "message": "Could not resolve to a Repository with the name "
                        f"'{full_name}'.",
                    }
                ],
            }
        out: dict[str, Any] = {}
        for alias, var in re.findall(r"(?:(\w+):\s*)?ref\(qualifiedName:\s*\$(\w+)\)", query):
            name = variables.get(var, "")
            ref = name if name.startswith("refs/") else f"refs/heads/{name}"
            out[alias or "ref"] = {"target": {"oid": repo.refs[ref]}} if ref in repo.refs else None
        for alias, var in re.findall(r"(\w+):\s*object\(expression:\s*\$(\w+)\)", query):
            rev, _, path = str(variables.get(var, "")).partition(":")
            head = self._resolve(repo, rev)
            sha = repo.trees[repo.commits[head]["tree"]].get(path) if head else None
            if sha is None:
                out[alias] = None
                continue
            data = repo.blobs[sha]
            cut = data[: self.graphql_text_limit]
            out[alias] = {
                "oid": sha,
                "byteSize": len(data),
                "isTruncated": len(cut) < len(data),
                "text": cut.decode("utf-8", errors="ignore"),
            }
        return 200, {"data": {"repository": out}}

    def _minimize(self, query: str, variables: dict[str, Any], scope: str) -> tuple[int, Any]:
        """minimizeComment, its input given as `$input` (PyGithub's form) or inline."""
        given = re.search(r"minimizeComment\(\s*input:\s*\$(\w+)\s*\)", query)
        if given:
            args = variables.get(given[1]) or {}
        else:
            args = {
                key: value
                for key, value in re.findall(r'(subjectId|classifier):\s*"?([\w=-]+)"?', query)
            }
            for key, value in list(args.items()):
                if value.startswith("$"):
                    args[key] = variables.get(value[1:])
        subject, classifier = args.get("subjectId"), args.get("classifier")
        if classifier not in {"SPAM", "ABUSE", "OFF_TOPIC", "OUTDATED", "DUPLICATE", "RESOLVED"}:
            message = f"Argument 'classifier' has an invalid value ({classifier})."
            return 200, {"errors": [{"message": message}]}
        if scope != "write":
            return 200, {
                "data": {"minimizeComment": None},
                "errors": [
                    {
                        "type": "FORBIDDEN",
                        "path": ["minimizeComment"],
                        "message": "Resource not accessible by integration",
                    }
                ],
            }
        for repo in self.repos.values():
            for comments in repo.comments.values():
                for comment in comments:
                    if comment["node_id"] == subject:
                        comment["minimized"] = True
                        comment["minimized_reason"] = classifier
                        return 200, {
                            "data": {"minimizeComment": {"minimizedComment": {"isMinimized": True}}}
                        }
        return 200, {
            "data": {"minimizeComment": None},
            "errors": [
                {
                    "type": "NOT_FOUND",
                    "path": ["minimizeComment"],
                    "message": f"Could not resolve to a node with the global id of '{subject}'",
                }
            ],
        }

    # -- dispatch --------------------------------------------------------------------------

    def _take_injection(self, method: str, path: str) -> Injected | None:
        with self.lock:
            for rule in self.injected:
                if rule.times > 0 and rule.method == method and re.search(rule.pattern, path):
                    rule.times -= 1
                    return rule
        return None

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """One request: (status, body, extra headers) where a str body is sent as text/html."""
        parts = urlsplit(raw_path)
        path = parts.path
        with self.lock:
            self.log.append((method, path))
        rule = self._take_injection(method, path)
        if rule is not None and not rule.apply:
            time.sleep(rule.delay_s)
            if rule.status is not None:
                return rule.status, _injected_body(rule), {}
        status, body, extra = self._dispatch(method, path, parts.query, headers, raw_body)
        with self.lock:
            self.statuses[(method, status)] += 1  # what the fake itself answered
        if rule is not None and rule.apply:
            time.sleep(rule.delay_s)
            if rule.status is not None:
                return rule.status, _injected_body(rule), {}
        return status, body, extra

    def _dispatch(
        self, method: str, path: str, query: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        answer = self._route(method, path, query, headers, raw_body)
        if len(answer) == 3:
            return answer
        status, body = answer
        return status, body, {}

    def _route(
        self, method: str, path: str, query: str, headers: dict[str, str], raw_body: bytes
    ) -> Answer:
        auth = headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        scope = self.tokens.get(token)
        if scope is None:
            return 401, {"message": "Bad credentials"}
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}
        with self.lock:
            if method == "POST" and path == self.graphql_path:
                return self._graphql(body, scope)
            if not path.startswith(self.prefix + "/"):
                return 404, NOT_FOUND
            local = path[len(self.prefix) :]
            for verb, pattern, name in ROUTES:
                found = re.match(pattern, local)
                if verb != method or not found:
                    continue
                params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
                repo = self.repos.get(f"{params.get('owner')}/{params.get('repo')}")
                if repo is None and "owner" in params:
                    return 404, NOT_FOUND
                if method in WRITE_METHODS and scope != "write":
                    return 403, {"message": "Resource not accessible by integration"}
                q = {k: v[0] for k, v in parse_qs(query).items()}
                request = Request(method, local, q, body, params, repo, self._user_of(token))
                result: Answer = getattr(self, f"_h_{name}")(request)
                return result
            return 404, NOT_FOUND


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_fake: FakeGitHub

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.server_fake.handle(self.command, self.path, headers, raw)
        if isinstance(body, str):
            payload, kind = body.encode("utf-8"), "text/html; charset=utf-8"
        else:
            payload, kind = json.dumps(body).encode("utf-8"), "application/json; charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _comment_body_problem(body: Any) -> tuple[int, Any] | None:
    """GitHub's 422 for a missing or too long comment body; None when it is fine."""
    text = body.get("body") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return 422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.'}
    if len(text) > COMMENT_LIMIT:
        return 422, {
            "message": "Validation Failed",
            "errors": [
                {
                    "resource": "IssueComment",
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {COMMENT_LIMIT} characters)",
                }
            ],
        }
    return None


def _injected_body(rule: Injected) -> Any:
    if rule.body is not None:
        return rule.body
    defaults = {
        409: {"message": "is at 0000000000000000000000000000000000000000 but expected ffff"},
        422: {"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'},
        403: {"message": "Resource not accessible by integration"},
        404: NOT_FOUND,
    }
    status = rule.status or 500
    return defaults.get(status, {"message": "Server Error" if status >= 500 else "Error"})


def _b64_lines(data: bytes) -> str:
    """Base64 in 60-character lines, the way GitHub sends file and blob content."""
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 60] for i in range(0, len(text), 60)) + "\n"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


if __name__ == "__main__":  # pragma: no cover
    with FakeGitHub() as fake:
        print(f"api_url={fake.api_url} token={fake.token} repo=octo/lab", flush=True)
        threading.Event().wait()
