"""Secrets and the output choke point: the GitHub token is read once (stripped), kept from the
measured command, and masked in every form in every line and file co2gate writes; every
line co2gate prints is one line that cannot start a workflow command."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub

from co2gate import lines, tokens
from co2gate.github import workflow
from co2gate.guard import _say_on_stderr
from co2gate.report import md

PY = sys.executable
SECRET = "ghs_SECRET123\n"  # pasted with a newline
# The canary for the end-to-end runs, and each form of it written out by hand.
CANARY = "ghs_CANARY_1234567890abcdef\n"
CANARY_FORMS = (
    "ghs_CANARY_1234567890abcdef",  # stripped (and the start of the raw form)
    "ghs_CANARY_1234567890abcdef\\n",  # repr- or JSON-escaped
    "ghs_CANARY_1234567890abcdef\\\\n",  # that, JSON-escaped again
    "ghs\\_CANARY\\_1234567890abcdef",  # Markdown-escaped (report.md)
    "ghs_CANARY_1234567890abcdef%0A",  # URL-encoded, or escaped for a workflow command
    "Z2hzX0NBTkFSWV8xMjM0NTY3ODkwYWJjZGVm",  # base64
    "CANARY_1234567890",  # any long piece of it
)


def _base() -> dict[str, str]:
    """PATH, and PYTHONPATH where the tests run against a source tree: a child co2gate
    must be this one."""
    return {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}


@pytest.fixture(autouse=True)
def _no_secrets_between_tests() -> Iterator[None]:
    tokens._forget()
    yield
    tokens._forget()


# ------------------------------------------------------------------ mask(): each form


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("raw ghs_SECRET123\n end", "raw *** end"),
        ("stripped ghs_SECRET123 end", "stripped *** end"),
        ("repr: 'token ghs_SECRET123\\n'", "repr: 'token ***'"),
        ('json: {"t": "ghs_SECRET123\\n"}', 'json: {"t": "***"}'),
        ('json of repr: "ghs_SECRET123\\\\n"', 'json of repr: "***"'),
        ("url: ?t=ghs_SECRET123%0A&x=1", "url: ?t=***&x=1"),
        ("markdown: ghs\\_SECRET123", "markdown: ***"),
        ("markdown of repr: ghs\\_SECRET123\\\\n", "markdown of repr: ***"),
        ("workflow command: ::error::ghs_SECRET123%0A", "workflow command: ::error::***"),
        ("base64: Z2hzX1NFQ1JFVDEyMw==", "base64: ***=="),
        # base64 of a longer text, the secret at byte offsets 2 and 1 of a 3-byte group:
        ("basic: dTpnaHNfU0VDUkVUMTIz", "basic: dTp***"),  # "u:ghs_SECRET123"
        ("bearer: QmVhcmVyIGdoc19TRUNSRVQxMjM=", "bearer: QmVhcmVyIG***M="),  # "Bearer ghs_..."
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_mask_hides_each_form_computed_by_hand(text: str, masked: str) -> None:
    tokens.register(SECRET)
    assert tokens.mask(text) == masked


@pytest.mark.parametrize(
    "escape",
    [
        repr,
        json.dumps,
        lambda s: json.dumps(repr(s)),
        md,
        lambda s: md(repr(s)),
        workflow.escape_data,
        workflow.escape_property,
        lambda s: workflow.escape_data(repr(s)),
    ],
    ids=["repr", "json", "json-repr", "md", "md-repr", "wf-data", "wf-property", "wf-repr"],
)
def test_mask_hides_the_forms_cos_own_escapers_make(escape: Any) -> None:
    """The escapers report.md and workflow commands really use, not a copy of them."""
    tokens.register(SECRET)
    for secret in (SECRET, SECRET.strip()):
        assert "SECRET123" not in tokens.mask(f"a {escape(secret)} b")


def test_nothing_is_masked_before_a_secret_is_registered_and_tiny_ones_never() -> None:
    assert tokens.mask("ghs_SECRET123") == "ghs_SECRET123"
    tokens.register("  \n")  # whitespace only: nothing to hide
    tokens.register("ab")  # too short to mask without masking ordinary text
    assert tokens.mask("ab cab ghs_SECRET123") == "ab cab ghs_SECRET123"


def test_the_token_is_read_stripped_and_every_token_variable_is_masked() -> None:
    env = {"GITHUB_TOKEN": SECRET, "GH_TOKEN": "ghp_other_token_42"}
    assert tokens.github_token(env) == "ghs_SECRET123"
    assert tokens.mask("a ghp_other_token_42 b ghs_SECRET123\n") == "a *** b ***"


# ------------------------------------------------------------------ the token file


def test_the_token_file_is_read_once_deleted_and_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    env = {tokens.TOKEN_FILE: str(path), "GITHUB_TOKEN": "ghs_the_other_one"}
    assert tokens.github_token(env) == "ghs_SECRET123"
    assert not path.exists()
    assert tokens.github_token(env) == "ghs_SECRET123"  # the same, from memory
    assert tokens.mask("ghs_SECRET123") == "***"


def test_an_unreadable_token_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(tokens.TokenFileError, match=r"CO2GATE_TOKEN_FILE=.*missing"):
        tokens.github_token({tokens.TOKEN_FILE: str(tmp_path / "missing")})


def test_the_child_environment_drops_token_variables_only() -> None:
    env = {name: "x" for name in tokens.CHILD_DROPPED} | {"WANDB_API_KEY": "k", "PATH": "/bin"}
    assert tokens.child_environment(env) == {"WANDB_API_KEY": "k", "PATH": "/bin"}
    assert set(tokens.CHILD_DROPPED) >= {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "CO2GATE_TOKEN_FILE",
    }


# ------------------------------------------------------------------ one inert line


@pytest.mark.parametrize(
    "separator",
    ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
)
def test_every_line_separator_becomes_a_space(separator: str) -> None:
    line = lines.line(f"line 2: key{separator}::error::forged")
    assert line == "co2gate: line 2: key ::error::forged"
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("::error::forged", "co2gate: \\::error::forged"),
        ("  ::warning::forged", "co2gate: \\::warning::forged"),
        ("see ##[error]forged", "co2gate: see ##\\[error]forged"),  # the old form, anywhere
        ("bell\x07 esc\x1b[2K nul\x00 del\x7f", "co2gate: bell\\x07 esc\\x1b[2K nul\\x00 del\\x7f"),
        ("tab\tkept", "co2gate: tab\tkept"),
    ],
)
def test_a_line_from_outside_data_carries_no_workflow_command(text: str, line: str) -> None:
    assert lines.line(text) == line
    assert lines.inert(text).lstrip()[:2] != "::"


def test_cos_own_workflow_commands_pass_escaped_and_masked() -> None:
    tokens.register(SECRET)
    made = workflow.annotation("error", "budget: x\n::error::forged ghs_SECRET123", title="a:b")
    assert isinstance(made, lines.WorkflowCommand)
    assert lines.line(made) == "::error title=a%3Ab::budget: x%0A::error::forged ***"
    assert lines.line(str(made)).startswith("co2gate: \\::error")  # a copy is data again


def test_the_guards_own_lines_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    tokens.register(SECRET)
    _say_on_stderr("heartbeat ghs_SECRET123\n::error::forged")
    # the raw form ends in the newline: masked with it
    assert capsys.readouterr().err == "co2gate: heartbeat ***::error::forged\n"


def test_a_refusal_with_a_forged_command_prints_as_one_line(
    co2gate: CliRun, tmp_path: Path
) -> None:
    """An artifact's field (a label, a key) quoted back in a refusal, through the CLI."""
    data = {"schema": "co2gate/emissions/v1", "run": {"label": "x\n::error::forged"}}
    bad = tmp_path / "emissions.json"
    bad.write_text(json.dumps(data))
    budget = tmp_path / "b.yml"
    budget.write_text("version: 1\nannual_budget_kg: 5\nledger: {backend: none}\n")
    result = co2gate("check", str(bad), "--budget-file", str(budget), "--no-record")
    assert result.returncode == 2
    assert not [x for x in result.stderr.splitlines() if x.lstrip().startswith("::")]
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_click_usage_errors_quote_values_on_one_inert_line(co2gate: CliRun) -> None:
    result = co2gate("check", "--requests", "1\n::error::forged", "x.json", process=True)
    assert result.returncode == 2
    assert not [x for x in result.stderr.splitlines() if x.lstrip().startswith("::")]
    assert "forged" in result.stderr  # still said, as data


def test_cli_lines_are_masked_from_the_environment(co2gate: CliRun, tmp_path: Path) -> None:
    """A token in the environment is masked in co2gate's lines, even one only quoted back."""
    env = _base() | {"GITHUB_TOKEN": CANARY}
    result = co2gate("budget", "--budget-file", str(tmp_path / CANARY), env=env, process=True)
    assert result.returncode == 2
    assert "***" in result.stderr and "CANARY" not in result.stderr


# ------------------------------------------------------------------ end to end


def _no_canary(text: str, where: str) -> None:
    for form in CANARY_FORMS:
        assert form not in text, f"{form!r} in {where}"


def _probe(tmp_path: Path) -> Path:
    """A command that looks for the canary in its environment and its ancestors'."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import json, os, sys
            from pathlib import Path
            def hits(environ, names=("GITHUB_TOKEN", "GH_TOKEN")):
                found = [n for n in names if (n + "=").encode() in environ]
                return found + (["canary"] if b"CANARY_1234567890" in environ else [])
            own = hits(
                b"\\0".join(f"{k}={v}".encode() for k, v in os.environ.items()),
                ("GITHUB_TOKEN", "GH_TOKEN", "CO2GATE_TOKEN_FILE"),
            )
            stop, ancestors, pid = int(sys.argv[1]), {}, os.getppid()
            while pid > 1 and pid != stop:
                found = hits(Path(f"/proc/{pid}/environ").read_bytes())
                if found:
                    ancestors[pid] = found
                stat = Path(f"/proc/{pid}/stat").read_text()
                pid = int(stat.rpartition(")")[2].split()[1])
            doc = {"own": own, "ancestors": ancestors, "tracker": os.environ.get("TRACKER_KEY")}
            Path(sys.argv[2]).write_text(json.dumps(doc))
            """
        )
    )
    return probe


def _actions(fake: FakeGitHub, root: Path, event: str, pr: dict[str, Any] | None) -> dict[str, str]:
    path = root / "event.json"
    path.write_text(json.dumps({"pull_request": pr} if pr else {}))
    for name in ("output", "summary.md"):
        (root / name).touch()
    return _base() | {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "train",
        "GITHUB_SHA": "e" * 40,
        "GITHUB_REF": "refs/pull/5/merge" if pr else "refs/heads/main",
        "GITHUB_OUTPUT": str(root / "output"),
        "GITHUB_STEP_SUMMARY": str(root / "summary.md"),
        "TRACKER_KEY": "kept",
    }


BUDGET = """version: 1
annual_budget_kg: 1
allocations: {training: 1}
location: {intensity: 400}
ledger: {backend: branch}
"""


def _everything_written(root: Path, fake: FakeGitHub, stderr: str, stdout: str) -> None:
    """The canary in no file under root, no line, no comment, no ledger shard, in no form."""
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "probe.py"]
    assert {"emissions.json", "verdict.json", "report.md", "summary.md", "output"} <= {
        p.name for p in files
    }
    for path in files:
        _no_canary(path.read_text(errors="replace"), str(path))
    _no_canary(stderr, "stderr")
    _no_canary(stdout, "stdout")
    for comment in fake.comments("octo/lab", 5):
        _no_canary(comment["body"], "a PR comment")
    for path in fake.branch_files("octo/lab", "co2gate-ledger") if _has_ledger(fake) else []:
        _no_canary(fake.file_text("octo/lab", "co2gate-ledger", path) or "", path)


def _has_ledger(fake: FakeGitHub) -> bool:
    return "refs/heads/co2gate-ledger" in fake.repos["octo/lab"].refs


def test_a_known_token_with_a_newline_works_and_leaks_nowhere(
    co2gate: CliRun, tmp_path: Path, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary (pasted with a newline) is a real token of the fake: the base budget is
    read through the API with it, the comment posted, the run recorded; it is also in the
    command line, so every report quotes it. No form of it is anywhere; the command found
    it nowhere in reach."""
    fake_github.add_token(CANARY.strip(), "octocat")
    fake_github.put_file("octo/lab", "main", ".github/carbon-budget.yml", BUDGET)
    base = fake_github.repos["octo/lab"].refs["refs/heads/main"]
    monkeypatch.chdir(tmp_path)  # no clone: the base budget comes through the API
    pr = {"number": 5, "base": {"sha": base}, "head": {"sha": "e" * 40}}
    env = _actions(fake_github, tmp_path, "pull_request", pr)
    token_file = tmp_path / "token"
    token_file.write_text(CANARY)
    env[tokens.TOKEN_FILE] = str(token_file)
    found = tmp_path / "found.txt"
    argv = [PY, str(_probe(tmp_path)), str(os.getpid()), str(found), CANARY]
    result = co2gate("run", "--label", "probe", "--", *argv, env=env)
    assert result.returncode == 0, result.stderr
    # nothing in reach; other variables left alone
    assert json.loads(found.read_text()) == {"own": [], "ancestors": {}, "tracker": "kept"}
    assert not token_file.exists()
    (comment,) = fake_github.comments("octo/lab", 5)
    assert comment["user"]["login"] == "octocat"  # the stripped token was used
    assert fake_github.count("GET", "contents/.github/carbon-budget.yml") >= 1
    assert _has_ledger(fake_github)
    _everything_written(tmp_path, fake_github, result.stderr, result.stdout)


def test_a_rejected_token_with_a_newline_leaks_in_no_error(
    co2gate: CliRun, tmp_path: Path, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake rejects the canary (401): the ledger, the comment lookup and their errors
    quote the request; the canary is in GITHUB_TOKEN, so co2gate itself holds it, but its
    command does not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    env = _actions(fake_github, tmp_path, "push", None) | {"GITHUB_TOKEN": CANARY}
    found = tmp_path / "found.txt"
    argv = [PY, str(_probe(tmp_path)), str(os.getpid()), str(found), CANARY]
    result = co2gate("run", "--", *argv, env=env)
    assert result.returncode == 2, result.stderr  # measured, not recorded
    assert "401" in result.stderr, result.stderr
    probed = json.loads(found.read_text())
    assert probed["own"] == [] and probed["tracker"] == "kept"
    # Started with GITHUB_TOKEN, co2gate's own /proc/<pid>/environ keeps it: why the Action
    # hands the token over in a file instead.
    assert list(probed["ancestors"].values()) == [["GITHUB_TOKEN", "canary"]]
    _everything_written(tmp_path, fake_github, result.stderr, result.stdout)


def test_an_unreadable_token_file_stops_before_the_command(co2gate: CliRun, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    env = _base() | {tokens.TOKEN_FILE: str(tmp_path / "gone")}
    result = co2gate(
        "measure", "--out", str(tmp_path / "out"), "--", PY, "-c",
        f"open({str(marker)!r}, 'w')", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert not marker.exists()
    (line,) = result.stderr.splitlines()
    assert "CO2GATE_TOKEN_FILE" in line and "gone" in line
