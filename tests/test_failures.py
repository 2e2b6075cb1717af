"""Hostile inputs and failures after the command, through the real entry point: a huge label,
writes that fail once the command has ended (a full disk, a cancelled job), budget files that
are no regular file or too big, GitHub's error messages, links in the report.

Each failure must keep the command's exit code (else 1 when the gate fails, else 2), say what
was lost in one line each, leave no temporary file and write what it still can."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CliRun, late, refusal
from fakegithub import FakeGitHub
from markdown_it import MarkdownIt
from mdcheck import problems
from test_publish_cli import Step

import co2gate as co2gate_package
from co2gate.github.comments import fit, marker

PY = sys.executable
REPORT = "co2gate-report"
# A child process imports co2gate from where this one did (this worktree's src), not from
# wherever the venv's editable install points.
SRC = str(Path(co2gate_package.__file__).resolve().parent.parent)


def actions_env(step: Step, **kwargs: str) -> dict[str, str]:
    return step.env(**kwargs) | {"PYTHONPATH": SRC}


@pytest.fixture
def step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub) -> Step:
    monkeypatch.chdir(tmp_path)
    return Step(tmp_path, fake_github)


def co2gate_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("co2gate:", "::"))]


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


def strays(root: Path) -> list[Path]:
    """Temporary files co2gate's atomic writes could leave behind."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# -- 7. a label of any length ---------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "\U0001f600"])  # 1 and 12 characters each once encoded
def test_a_long_label_passes_and_its_comment_is_found_again(
    co2gate: CliRun, step: Step, char: str
) -> None:
    step.budget()
    label = char * 200  # the longest label emissions.json holds
    first = co2gate("run", "--label", label, "--", PY, "-c", "pass", env=actions_env(step))
    assert first.returncode == 0, first.stderr[-2000:]
    no_traceback(first.stderr)
    (comment,) = step.comments()
    assert len(comment["body"]) <= 65_536
    assert comment["body"].startswith(marker(label)), comment["body"][:400]
    assert len(marker(label)) < 300
    second = co2gate(
        "run", "--label", label, "--", PY, "-c", "pass", env=actions_env(step, run_id="78")
    )
    assert second.returncode == 0, second.stderr[-2000:]
    (edited,) = step.comments()  # found again by its (shortened) marker, not a second one
    assert edited["id"] == comment["id"] and "PR comment updated" in second.stderr
    other = label[:-1] + "y"  # differs only at its end, beyond the marker's readable start
    third = co2gate(
        "run", "--label", other, "--", PY, "-c", "pass", env=actions_env(step, run_id="79")
    )
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(step.comments()) == 2  # its own comment


@pytest.mark.parametrize("char", ["x", "\u20ac"])
def test_a_22000_character_label_is_refused_before_the_command_starts(
    co2gate: CliRun, step: Step, char: str
) -> None:
    step.budget()
    result = co2gate(
        "run", "--label", char * 22_000, "--", PY, "-c", "print('ran')", env=actions_env(step)
    )
    assert result.returncode == 2
    assert result.stdout == ""  # the command never started: nothing measured and lost
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: --label: 22,000 characters") and len(line) < 200
    assert not (step.root / REPORT).exists() and step.comments() == []


def test_a_marker_stays_short_and_fit_never_asserts() -> None:
    huge = marker("\u20ac" * 22_000)
    assert len(huge) < 300 and huge != marker("\u20ac" * 21_999 + "x")
    assert fit(huge + "\n" + "a" * 100_000).startswith(huge)
    assert len(fit(huge + "\n" + "a" * 100_000)) <= 65_536
    long_mark = "<!-- co2gate:comment label=" + "x" * 70_000 + " -->"  # from another tool
    assert len(fit(long_mark + "\nbody")) <= 65_536


# -- 9. budget files: regular files only, at most 1 MiB --------------------------------------

BUDGET = """version: 1
annual_budget_kg: 1.0
allocations: {training: 0.7, inference: 0.3}
location: {intensity: 400000}
ledger: {backend: file, path: ledger}
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    return tmp_path


def local_env() -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": SRC,
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONDONTWRITEBYTECODE": "1",  # no cache written under a test's file size limit
    }


# In a command: wait until co2gate has made the output directory, as it does while the
# command starts (co2gate/launch.py), so that what the command does to it comes after.
AFTER_OUT = f"import os, time\nwhile not os.path.isdir({REPORT!r}): time.sleep(0.01)\n"


def one_error_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 2, result.stderr
    no_traceback(result.stderr)
    (line,) = refusal(result.stderr).splitlines()
    assert line.startswith("Error: ") and all(name in line for name in names), line
    return line


def make_hostile(root: Path, kind: str) -> Path:
    path = root / f"{kind}.yml"
    if kind == "directory":
        path.mkdir()
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_text(BUDGET + "#" * (1024 * 1024) + "\n")
    elif kind == "non-utf8":
        path.write_bytes(b"version: 1\nannual_budget_kg: 1\n# caf\xe9\n")
    elif kind == "name-too-long":
        path = root / ("b" * 300 + ".yml")
    return path


HOSTILE = {
    "directory": "is a directory",
    "dev-zero": "is a device, not a regular file",
    "fifo": "is a FIFO, not a regular file",
    "huge": "bytes; a budget file has at most 1,048,576",
    "non-utf8": "not UTF-8 text (byte 36)",
    "name-too-long": "File name too long",
}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("command", ["budget", "estimate", "check"])
def test_a_budget_file_that_is_no_regular_file_is_one_line_naming_it(
    co2gate: CliRun, repo: Path, kind: str, command: str
) -> None:
    path = make_hostile(repo, kind)
    args = {"budget": [], "estimate": ["--gpu", "h100", "--hours", "1"], "check": ["x.json"]}
    (repo / "x.json").write_text("{}")
    result = co2gate(
        command, "--budget-file", str(path), *args[command], process=True, env=local_env()
    )
    one_error_line(result, path.name[:40], HOSTILE[kind])


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("command", ["run", "measure"])
def test_run_and_measure_refuse_such_a_budget_file_before_the_command_starts(
    co2gate: CliRun, repo: Path, kind: str, command: str
) -> None:
    path = make_hostile(repo, kind)
    result = co2gate(
        command, "--budget-file", str(path), "--", PY, "-c", "print('ran')", env=local_env()
    )
    one_error_line(result, path.name[:40], HOSTILE[kind])
    assert result.stdout == "" and not (repo / REPORT).exists()


def test_init_into_a_directory_is_one_line(co2gate: CliRun, repo: Path) -> None:
    (repo / "dir.yml").mkdir()
    one_error_line(co2gate("init", "--budget-file", "dir.yml"), "dir.yml", "directory")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a" * 256, "has a name longer than 255 bytes"),
        ("x/" * 2100, "is longer than 4095 bytes"),
    ],
)
def test_a_ledger_path_the_file_system_cannot_hold_is_refused_in_one_line(
    co2gate: CliRun, repo: Path, path: str, problem: str
) -> None:
    (repo / ".github" / "carbon-budget.yml").write_text(
        BUDGET.replace("path: ledger", f"path: {path}")
    )
    for args in (["run", "--", *late(repo / "ran")], ["budget"]):
        result = co2gate(*args, env=local_env())
        line = one_error_line(result, "carbon-budget.yml", "ledger.path", problem)
        assert len(line) < 300 and result.stdout == "" and not (repo / "ran").exists()


def base_pr(step: Step, text: str) -> None:
    """The budget file at the pull request's base commit (read through the API: the test's
    directory is no clone), and a small valid one in the checkout."""
    step.fake.put_file("octo/lab", "main", ".github/carbon-budget.yml", text)
    (step.root / ".github").mkdir(exist_ok=True)
    (step.root / ".github" / "carbon-budget.yml").write_text(BUDGET.replace("file", "branch"))


def test_a_base_budget_over_the_contents_apis_1_mb_is_read_through_the_blob_api(
    co2gate: CliRun, step: Step
) -> None:
    text = BUDGET.replace("file", "branch") + "# padding\n" * 104_000  # 1,040,000+ bytes
    assert 1_000_000 < len(text) <= 1024 * 1024
    base_pr(step, text)
    result = co2gate("run", "--", PY, "-c", "print('ran')", env=actions_env(step))
    assert result.returncode == 0, result.stderr[-2000:]
    no_traceback(result.stderr)
    assert result.stdout == "ran\n"
    assert step.fake.count("GET", r"/git/blobs/") == 1


def test_a_base_budget_over_1_mib_is_refused_unread(co2gate: CliRun, step: Step) -> None:
    base_pr(step, BUDGET.replace("file", "branch") + "#" * 2_000_000 + "\n")
    result = co2gate("run", "--", PY, "-c", "print('ran')", env=actions_env(step))
    line = one_error_line(result, ".github/carbon-budget.yml", "bytes at the base commit")
    assert "at most 1,048,576" in line and result.stdout == ""
    assert step.fake.count("GET", r"/git/blobs/") == 0


def test_the_fake_answers_like_github_for_a_file_over_1_mb(fake_github: FakeGitHub) -> None:
    from github import Auth, Github

    fake_github.put_file("octo/lab", "main", "big.txt", "x" * 1_000_001)
    gh = Github(base_url=fake_github.api_url, auth=Auth.Token(fake_github.token), retry=None)
    content = gh.get_repo("octo/lab").get_contents("big.txt", ref="main")
    assert not isinstance(content, list)
    assert (content.encoding, content.content, content.size) == ("none", "", 1_000_001)


# -- 8. failures after the command ------------------------------------------------------------


def started(step: Step, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "co2gate", "run", *args],
        env=actions_env(step),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("cancel", [signal.SIGTERM, signal.SIGINT])
def test_a_job_cancelled_while_the_ledger_is_slow_still_writes_its_verdict_and_report(
    step: Step, cancel: signal.Signals
) -> None:
    step.budget()
    step.fake.inject("POST", r"graphql", status=None, delay_s=20, times=5)  # a slow ledger
    proc = started(step, "--", PY, "-c", "print('trained')")
    wait_for(lambda: step.fake.count("POST", r"graphql") >= 1)  # the command is over
    time.sleep(0.3)
    cancelled_at = time.monotonic()
    proc.send_signal(cancel)
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - cancelled_at < 5  # before the runner's SIGKILL (7.5 s)
    assert stdout == "trained\n"
    no_traceback(stderr)
    assert proc.returncode == 2  # the command passed and the gate decided; the entry is lost
    report = step.root / REPORT
    verdict = json.loads((report / "verdict.json").read_text())
    assert verdict["verdict"] == "pass" and verdict["recorded"] is False
    assert (report / "emissions.json").is_file() and (report / "report.md").is_file()
    assert step.outputs()["verdict"] == "pass"
    assert "co2gate PASS" in step.summary.read_text()
    lines = co2gate_lines(stderr)
    read = [line for line in lines if "cancelled" in line and "ledger not read" in line]
    lost = [line for line in lines if "not recorded in the ledger" in line]
    skipped = [line for line in lines if line.startswith("co2gate: no PR comment")]
    assert len(read) == 1 and len(lost) == 1 and len(skipped) == 1, lines
    assert cancel.name in lost[0] and "cancelled" in skipped[0]
    assert step.comments() == [] and strays(step.root) == []


def limited(limit: int) -> object:
    """A child's file size limit (RLIMIT_FSIZE): a write past it fails with EFBIG, as on a
    full disk (Python ignores SIGXFSZ; its children get the default back)."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def ledger_lines_valid(root: Path) -> list[dict[str, object]]:
    """Every line of every shard, each one a whole JSON document (no torn line)."""
    return [
        json.loads(line)
        for shard in (root / "ledger").rglob("*.jsonl")
        for line in shard.read_text().splitlines()
    ]


@pytest.mark.parametrize(("code", "expected"), [(3, 3), (0, 2)])
@pytest.mark.parametrize("limit", [200, 1500])
def test_a_full_disk_after_the_command_keeps_its_exit_code_and_leaves_no_stray(
    repo: Path, code: int, expected: int, limit: int
) -> None:
    result = subprocess.run(
        [PY, "-m", "co2gate", "run", "--", PY, "-c", f"print('ran'); raise SystemExit({code})"],
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited(limit),  # type: ignore[arg-type]
    )
    assert result.stdout == "ran\n"
    no_traceback(result.stderr)
    assert result.returncode == expected, result.stderr
    assert strays(repo) == []
    lines = co2gate_lines(result.stderr)
    lost = [line for line in lines if "File too large" in line or "disk full" in line]
    assert any("emissions.json" in line for line in lost), lines
    for path in (repo / REPORT).iterdir():  # what was written is whole
        if path.suffix == ".json":
            json.loads(path.read_text())
    entries = ledger_lines_valid(repo)
    recorded = any("ledger: recorded" in line for line in lines)
    assert len(entries) == (1 if recorded else 0)
    if not recorded:
        assert any("not recorded in the ledger" in line for line in lines)


@pytest.mark.parametrize(("code", "expected"), [(4, 4), (0, 2)])
def test_an_out_dir_the_command_took_away_keeps_the_exit_code_and_the_ledger_entry(
    co2gate: CliRun, repo: Path, code: int, expected: int
) -> None:
    gone = AFTER_OUT + (
        f"import shutil; shutil.rmtree('{REPORT}'); open('{REPORT}', 'w').close(); exit({code})"
    )
    result = co2gate("run", "--", PY, "-c", gone, env=local_env())
    no_traceback(result.stderr)
    assert result.returncode == expected, result.stderr
    lines = co2gate_lines(result.stderr)
    for name in ("emissions.json", "verdict.json", "report.md"):
        (line,) = [x for x in lines if "could not write" in x and name in x]
        assert "Not a directory" in line
    assert len(ledger_lines_valid(repo)) == 1  # the measurement is still recorded
    assert strays(repo) == []


def test_a_short_write_to_the_ledger_leaves_no_torn_line(repo: Path) -> None:
    """A shard already near the limit: the entry cannot be written whole, and is taken back."""
    first = subprocess.run(
        [PY, "-m", "co2gate", "run", "--", PY, "-c", ""],
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    (shard,) = (repo / "ledger").rglob("*.jsonl")
    size = shard.stat().st_size
    second = subprocess.run(
        [PY, "-m", "co2gate", "run", "--out", "second", "--", PY, "-c", ""],
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited(size + 100),  # type: ignore[arg-type]
    )
    no_traceback(second.stderr)
    assert second.returncode == 2
    assert shard.stat().st_size == size and len(ledger_lines_valid(repo)) == 1
    (line,) = [x for x in co2gate_lines(second.stderr) if "not recorded in the ledger" in x]
    assert "disk full" in line


# -- 10. GitHub's errors, one line each -------------------------------------------------------

MULTI_LINE_422 = {
    "message": "Validation Failed",
    "errors": [
        {
            "resource": "Contents",
            "field": "content",
            "code": "invalid",
            "message": "content\nis not\nvalid",
        },
        "and a second\r\nline",
    ],
    "documentation_url": "https://docs.github.com/rest",
}


def test_a_multi_line_422_from_the_ledger_is_one_line(co2gate: CliRun, step: Step) -> None:
    step.budget()
    # The entry and its badges are one commit: its tree is where the write is refused.
    step.fake.inject("POST", r"/git/trees$", status=422, body=MULTI_LINE_422, times=10)
    result = co2gate("run", "--no-comment", "--", PY, "-c", "pass", env=actions_env(step))
    no_traceback(result.stderr)
    assert result.returncode == 2  # passed, but not recorded
    assert all(line.startswith(("co2gate:", "::")) for line in result.stderr.splitlines())
    (line,) = [x for x in result.stderr.splitlines() if "not recorded in the ledger" in x]
    assert "422" in line and "content is not valid" in line and "and a second line" in line
    assert step.outputs()["verdict"] == "pass"


def test_a_multi_line_graphql_error_reading_the_ledger_is_one_line(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    body = {"errors": [{"message": "Something\n\nwent wrong", "type": "INTERNAL"}]}
    step.fake.inject("POST", r"graphql", status=400, body=body, times=10)
    result = co2gate("budget", env=actions_env(step), process=True)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and "Something went wrong" in line, line


# -- 11. links in the report, unreadable artifacts ----------------------------------------------

CI = {
    "provider": "github",
    "repository": "octo/lab",
    "sha": "d" * 40,
    "ref": "refs/heads/main",
    "event": "push",
    "run_id": "77",
    "run_attempt": "1",
    "job": "train",
}


@pytest.fixture
def measured(co2gate: CliRun, repo: Path) -> Path:
    """A real emissions.json, from `co2gate measure` outside CI."""
    result = co2gate("measure", "--out", "m", "--", PY, "-c", "", env=local_env())
    assert result.returncode == 0, result.stderr
    return repo / "m" / "emissions.json"


def forged(path: Path, **changes: object) -> Path:
    doc = json.loads(path.read_text())
    doc.update(changes)
    out = path.with_name("forged.json")
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(
    "server_url",
    ["javascript:alert(1)//", "JavaScript:alert(1)//", "data:text/html,x//", " https://x.example"],
)
def test_a_run_link_is_made_only_of_an_http_url(
    co2gate: CliRun, measured: Path, server_url: str
) -> None:
    artifact = forged(measured, ci=CI | {"server_url": server_url})
    result = co2gate("check", "--no-record", str(artifact), env=local_env())
    assert result.returncode == 0, result.stderr
    report_md = (measured.parent.parent / REPORT / "report.md").read_text()
    assert "workflow run" not in report_md and "](" + server_url.strip()[:4] not in report_md
    assert problems(report_md) == []


def test_an_https_server_url_still_links_the_run(co2gate: CliRun, measured: Path) -> None:
    artifact = forged(measured, ci=CI | {"server_url": "https://github.example"})
    result = co2gate("check", "--no-record", str(artifact), env=local_env())
    assert result.returncode == 0, result.stderr
    report_md = (measured.parent.parent / REPORT / "report.md").read_text()
    assert "[workflow run](https://github.example/octo/lab/actions/runs/77)" in report_md


AUTOLINKED = re.compile(r"(?i)\b(?:https?|ftp|mailto|xmpp):|\bwww\.|\w@\w")


def test_bare_urls_in_an_artifacts_notes_are_text_not_links(
    co2gate: CliRun, measured: Path
) -> None:
    note = "see https://evil.example/login, HTTP://x.example, www.evil.example, a@b.example"
    artifact = forged(measured, notes=[note])
    result = co2gate("check", "--no-record", str(artifact), env=local_env())
    assert result.returncode == 0, result.stderr
    report_md = (measured.parent.parent / REPORT / "report.md").read_text()
    (shown,) = [line for line in report_md.splitlines() if "evil" in line]
    assert AUTOLINKED.search(shown) is None, shown  # what GitHub's autolinker looks for
    assert shown.replace("\u200b", "").replace("\\", "").endswith(note)  # reads the same
    assert problems(report_md) == []
    html = MarkdownIt("commonmark").render(report_md)
    assert "evil.example/login" in html and 'href="https://evil' not in html


@pytest.mark.parametrize("kind", ["directory", "fifo", "non-utf8"])
def test_an_artifact_that_cannot_be_read_is_one_line_naming_it(
    co2gate: CliRun, repo: Path, kind: str
) -> None:
    path = repo / "emissions.json"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b'{"schema": "co2gate/emissions/v1", "x": "caf\xe9"}')
    result = co2gate("check", "--no-record", str(path), env=local_env(), process=True)
    line = one_error_line(result, str(path))
    assert {"directory": "Is a directory", "fifo": "not a regular file", "non-utf8": "UTF-8"}[
        kind
    ] in line


def without_root_overrides() -> None:
    """The child as root is, less the capabilities that let it write past permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from its bounding set before exec)."""
    if os.geteuid() != 0:
        return  # permissions already apply
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_out_dir_made_read_only_during_the_command_is_lines_not_a_traceback(
    repo: Path,
) -> None:
    lock = AFTER_OUT + f"os.chmod('{REPORT}', 0o500); print('ran'); exit(5)"
    result = subprocess.run(
        [PY, "-m", "co2gate", "run", "--", PY, "-c", lock],
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=without_root_overrides,
    )
    assert result.stdout == "ran\n"
    no_traceback(result.stderr)
    assert result.returncode == 5, result.stderr  # the command's own code
    lines = co2gate_lines(result.stderr)
    for name in ("emissions.json", "verdict.json", "report.md"):
        (line,) = [x for x in lines if "could not write" in x and name in x]
        assert "Permission denied" in line
    assert len(ledger_lines_valid(repo)) == 1 and strays(repo) == []


def test_a_check_cancelled_while_the_ledger_is_slow_still_writes_its_verdict(
    co2gate: CliRun, step: Step
) -> None:
    step.budget()
    measured = co2gate("measure", "--out", "m", "--", PY, "-c", "", env=actions_env(step))
    assert measured.returncode == 0, measured.stderr
    step.fake.inject("POST", r"graphql", status=None, delay_s=20, times=5)
    proc = subprocess.Popen(
        [PY, "-m", "co2gate", "check", "m/emissions.json"],
        env=actions_env(step),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: step.fake.count("POST", r"graphql") >= 1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    no_traceback(stderr)
    assert proc.returncode == 2
    assert json.loads((step.root / REPORT / "verdict.json").read_text())["recorded"] is False
    assert step.outputs()["verdict"] == "pass" and step.comments() == []
    assert any("not recorded in the ledger" in line for line in co2gate_lines(stderr))
