#!/usr/bin/env python3
"""Point the major tag at a release: v1 -> the commit of v1.2.3, force-pushed to the remote.

Usage: move_major_tag.py TAG [REMOTE]  (REMOTE defaults to origin)

Run by .github/workflows/release.yml once the release is published, so that
`uses: co2gate/co2gate@v1` gets it. The major tag is a lightweight tag on the release's
commit (annotated release tags are peeled). It stays where it is when the remote already
has a newer release of the same major version: a patch to an older line (v1.1.5 after
v1.2.0) does not drag v1 back. A TAG that is not vX.Y.Z exits 2 and moves nothing.

With GITHUB_TOKEN set, git authenticates to https remotes with it through an HTTP header
passed in the environment (never written to .git/config, never on a command line), so the
checkout can keep persist-credentials: false. Standard library and git only.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

RELEASE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


def git(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def auth_env() -> dict[str, str]:
    """The environment for git, with the token as an extra HTTP header when there is one."""
    env = dict(os.environ)
    token = env.get("GITHUB_TOKEN", "")
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        print(f"::add-mask::{basic}")
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        count = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
        env[f"GIT_CONFIG_KEY_{count}"] = f"http.{server}/.extraheader"
        env[f"GIT_CONFIG_VALUE_{count}"] = f"AUTHORIZATION: basic {basic}"
        env["GIT_CONFIG_COUNT"] = str(count + 1)
    return env


def remote_tags(remote: str, env: dict[str, str]) -> dict[str, str]:
    """The remote's tags, each mapped to its commit (annotated tags peeled)."""
    tags: dict[str, str] = {}
    for line in git("ls-remote", "--tags", remote, env=env).splitlines():
        sha, ref = line.split("\t", 1)
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):
            tags[name[:-3]] = sha  # the peeled commit wins over the tag object
        else:
            tags.setdefault(name, sha)
    return tags


def move(tag: str, remote: str = "origin") -> str:
    """Move the major tag of tag on remote; returns what was done, in one line."""
    found = RELEASE.fullmatch(tag)
    if found is None:
        raise ValueError(f"{tag!r} is not a release tag vX.Y.Z")
    major = f"v{found[1]}"
    env = auth_env()
    tags = remote_tags(remote, env)
    if tag not in tags:
        raise LookupError(f"{remote} has no tag {tag}")
    release = tags[tag]
    newer = [
        name
        for name in tags
        if (m := RELEASE.fullmatch(name))
        and m[1] == found[1]
        and tuple(map(int, m.groups())) > tuple(map(int, found.groups()))
    ]
    if newer:
        latest = max(newer, key=lambda n: tuple(map(int, n[1:].split("."))))
        return f"{major} stays at {tags.get(major, 'nothing')[:12]}: {latest} is newer than {tag}"
    if tags.get(major) == release:
        return f"{major} already points at {tag} ({release[:12]})"
    # The commit may be missing from a shallow checkout of another ref: fetch the tag.
    git("fetch", "--no-tags", "--quiet", remote, f"+refs/tags/{tag}:refs/tags/{tag}", env=env)
    commit = git("rev-parse", "--verify", f"refs/tags/{tag}^{{commit}}").strip()
    if commit != release:
        raise RuntimeError(f"{tag} is {commit} here but {release} on {remote}")
    git("push", "--force", "--quiet", remote, f"{commit}:refs/tags/{major}", env=env)
    return f"{major} -> {tag} ({commit[:12]})"


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: move_major_tag.py TAG [REMOTE]", file=sys.stderr)
        return 2
    try:
        print(move(*argv))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    except (LookupError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
