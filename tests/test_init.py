"""co2gate init: the budget file, the workflow and the .gitignore lines it writes (all of
them or none), the options it checks, and the command it writes into the workflow."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import click
import pytest
import yaml
from conftest import CliRun
from hypothesis import given, settings
from hypothesis import strategies as st

from co2gate import budget as budgets
from co2gate import starter
from co2gate.cli import init

BUDGET_FILE = Path(".github/carbon-budget.yml")
WORKFLOW_FILE = Path(".github/workflows/carbon.yml")
GITIGNORE = Path(".gitignore")
SHA = re.compile(r"^[0-9a-f]{40}$")
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh clone: an empty directory, the current one for the test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def workflow_of(text: str) -> dict[str, object]:
    loaded = yaml.safe_load(text)
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads YAML 1.2.
    return {("on" if key is True else key): value for key, value in loaded.items()}


def gate_step(text: str) -> dict[str, object]:
    (job,) = workflow_of(text)["jobs"].values()  # type: ignore[attr-defined]
    (step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("co2gate/")]
    return step  # type: ignore[no-any-return]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# A fresh repository ------------------------------------------------------------------------


def test_a_fresh_repository_gets_the_budget_the_workflow_and_the_gitignore(
    co2gate: CliRun, repo: Path
) -> None:
    result = co2gate("init", "--annual-kg", "120.5", "--country", "fra")
    assert result.returncode == 0, result.stderr
    assert set(snapshot(repo)) == {str(GITIGNORE), str(BUDGET_FILE), str(WORKFLOW_FILE)}
    budget = budgets.load(BUDGET_FILE)
    assert budget.annual_budget_kg == 120.5 and budget.location.country == "FRA"
    assert budget.ledger.backend is budgets.LedgerBackend.BRANCH
    assert budget.allocations == {"training": 0.7, "inference": 0.3}
    assert gate_step(WORKFLOW_FILE.read_text())["with"] == {
        "run": "python train.py",
        "workload": "training",
    }
    assert GITIGNORE.read_text().splitlines()[1:] == ["co2gate-report/", ".co2gate/"]
    assert result.stdout == ""  # nothing to redirect any more
    said = result.stderr
    for wrote in (f"wrote {BUDGET_FILE}", f"wrote {WORKFLOW_FILE}", "to .gitignore"):
        assert wrote in said
    # The next three steps, in order, with the command to try.
    steps = [said.index(f"{n}. ") for n in (1, 2, 3)]
    assert steps == sorted(steps)
    assert "co2gate run -- python train.py" in said
    assert "git add .github/carbon-budget.yml .github/workflows/carbon.yml .gitignore" in said
    assert "pull request" in said.split("3. ", 1)[1]


def test_the_written_budget_is_what_co2gate_budget_reads(co2gate: CliRun) -> None:
    assert co2gate("init", "--annual-kg", "200").returncode == 0
    standing = co2gate("budget", "--json", env={"HOME": os.environ.get("HOME", "/")})
    assert standing.returncode == 0, standing.stderr
    document = json.loads(standing.stdout)
    assert document["annual_budget_kg"] == 200 and document["used_kg"] == 0
    allocations = {c["category"]: c["allocation_kg"] for c in document["categories"]}
    assert allocations == {"training": 140, "inference": 60}


def test_the_defaults_are_500_kg_no_country_and_the_starter_as_it_stands(co2gate: CliRun) -> None:
    result = co2gate("init")
    assert result.returncode == 0, result.stderr
    budget = budgets.load(BUDGET_FILE)
    assert budget.annual_budget_kg == 500 and budget.location.country is None
    assert BUDGET_FILE.read_text() == budgets.STARTER  # comments and all


def test_small_and_large_budgets_are_written_without_an_exponent(co2gate: CliRun) -> None:
    for annual in ("0.00001", "1e20"):
        result = co2gate("init", "--force", "--annual-kg", annual)
        assert result.returncode == 0, result.stderr
        line = next(x for x in BUDGET_FILE.read_text().splitlines() if x.startswith("annual"))
        assert "e" not in line.split("#")[0].split(":")[1]
        # Plain YAML 1.1 (what other tools read it with) sees a number, not a string.
        assert yaml.safe_load(BUDGET_FILE.read_text())["annual_budget_kg"] == float(annual)


def test_the_comments_stay_in_their_column(co2gate: CliRun) -> None:
    co2gate("init", "--annual-kg", "1234567", "--country", "USA", "--region", "virginia")
    lines = BUDGET_FILE.read_text().splitlines()
    for key in ("annual_budget_kg", "  country", "  region"):
        line = next(x for x in lines if x.startswith(key + ":"))
        assert line.index("#") == 30, line


def test_the_starter_shows_every_section_of_the_budget_file() -> None:
    """The README's budget file: each key is set, or shown commented out where it is opt-in."""
    keys = (
        "version", "annual_budget_kg", "year_start", "allocations", "limits", "warn_at",
        "on_exceed", "regression", "max_increase", "inference", "requests_per_year",
        "location", "country", "region", "cloud", "intensity", "pue",
        "ledger", "backend", "branch", "path", "count",
    )  # fmt: skip
    for key in keys:
        assert re.search(rf"^[# ]*{key}:", budgets.STARTER, re.MULTILINE), key
    assert "# regression:" in budgets.STARTER and "# inference:" in budgets.STARTER
    assert set(yaml.safe_load(budgets.STARTER)) >= {"version", "limits", "location", "ledger"}
    commented = sum(1 for line in budgets.STARTER.splitlines() if "#" in line)
    assert commented >= 20


# Never overwrite without --force; check every target before writing any ---------------------


def test_a_second_init_refuses_in_one_line_and_changes_nothing(co2gate: CliRun, repo: Path) -> None:
    assert co2gate("init").returncode == 0
    before = snapshot(repo)
    again = co2gate("init", "--annual-kg", "9", "--run", "make train")
    assert again.returncode == 2
    line = one_line(again.stderr)
    assert str(BUDGET_FILE) in line and "already exists" in line and "--force" in line
    assert again.stdout == ""
    assert snapshot(repo) == before


def test_an_existing_workflow_alone_stops_init_before_the_budget_is_written(
    co2gate: CliRun, repo: Path
) -> None:
    WORKFLOW_FILE.parent.mkdir(parents=True)
    WORKFLOW_FILE.write_text("name: mine\n")
    result = co2gate("init")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(WORKFLOW_FILE) in line and "--force" in line
    assert snapshot(repo) == {str(WORKFLOW_FILE): b"name: mine\n"}  # no budget, no .gitignore


def test_an_existing_budget_alone_stops_init_before_the_workflow_is_written(
    co2gate: CliRun, repo: Path
) -> None:
    BUDGET_FILE.parent.mkdir()
    BUDGET_FILE.write_text("mine\n")
    result = co2gate("init")
    assert result.returncode == 2 and str(BUDGET_FILE) in one_line(result.stderr)
    assert snapshot(repo) == {str(BUDGET_FILE): b"mine\n"}
    assert not WORKFLOW_FILE.parent.exists()


def test_force_overwrites_the_budget_and_the_workflow(co2gate: CliRun) -> None:
    assert co2gate("init").returncode == 0
    forced = co2gate("init", "--force", "--annual-kg", "9", "--run", "make train")
    assert forced.returncode == 0, forced.stderr
    assert budgets.load(BUDGET_FILE).annual_budget_kg == 9
    assert gate_step(WORKFLOW_FILE.read_text())["with"]["run"] == "make train"  # type: ignore[index]
    assert GITIGNORE.read_text().count("co2gate-report/") == 1


@pytest.mark.parametrize("target", [BUDGET_FILE, WORKFLOW_FILE])
def test_a_directory_in_the_way_is_one_line_even_with_force(
    co2gate: CliRun, repo: Path, target: Path
) -> None:
    target.mkdir(parents=True)
    result = co2gate("init", "--force")
    assert result.returncode == 2
    assert str(target) in one_line(result.stderr) and "is a directory" in result.stderr
    assert snapshot(repo) == {}


def test_a_file_where_a_folder_should_be_writes_nothing(co2gate: CliRun, repo: Path) -> None:
    Path(".github").write_text("not a folder\n")
    result = co2gate("init")
    assert result.returncode == 2 and "is a file, not a folder" in one_line(result.stderr)
    assert snapshot(repo) == {".github": b"not a folder\n"}


def test_the_same_file_for_budget_and_workflow_is_refused(co2gate: CliRun, repo: Path) -> None:
    result = co2gate("init", "--workflow-file", str(BUDGET_FILE))
    assert result.returncode == 2 and "twice" in one_line(result.stderr)
    assert snapshot(repo) == {}


PROC_TARGET = "/proc/co2gate-init-test/carbon.yml"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_failed_write_undoes_the_files_and_folders_written_before_it(repo: Path) -> None:
    """/proc refuses a new folder even to root: the third file fails after two were written."""
    GITIGNORE.write_text("build/\n")
    planned = [
        starter.Planned(BUDGET_FILE, "version: 1\n"),
        starter.Planned(GITIGNORE, "build/\nco2gate-report/\n", replace=True),
        starter.Planned(Path(PROC_TARGET), "name: x\n"),
    ]
    with pytest.raises(starter.StarterWriteError, match=re.escape(PROC_TARGET)):
        starter.write_all(planned)
    assert snapshot(repo) == {str(GITIGNORE): b"build/\n"}  # restored, the new folder gone
    assert not Path(".github").exists()


# .gitignore -------------------------------------------------------------------------------


def test_gitignore_lines_are_appended_once_after_the_users_own(co2gate: CliRun) -> None:
    GITIGNORE.write_text("# mine\nbuild/\n*.pyc")  # no newline at the end
    assert co2gate("init").returncode == 0
    assert co2gate("init", "--force").returncode == 0
    text = GITIGNORE.read_text()
    assert text.startswith("# mine\nbuild/\n*.pyc\n")
    assert text.count("co2gate-report/") == 1 and text.count(".co2gate/") == 1


def test_patterns_already_there_in_another_spelling_are_not_added(
    co2gate: CliRun, repo: Path
) -> None:
    GITIGNORE.write_text("/co2gate-report\n.co2gate\n")
    result = co2gate("init")
    assert result.returncode == 0, result.stderr
    assert GITIGNORE.read_text() == "/co2gate-report\n.co2gate\n"
    assert ".gitignore" not in result.stderr  # neither "added" nor in the git add line


def test_one_missing_pattern_is_added_alone(co2gate: CliRun) -> None:
    GITIGNORE.write_text("co2gate-report/\n")
    result = co2gate("init")
    assert GITIGNORE.read_text().splitlines() == [
        "co2gate-report/",
        "# co2gate: its reports and local ledger",
        ".co2gate/",
    ]
    assert "added .co2gate/ to .gitignore" in result.stderr


def test_a_gitignore_with_crlf_line_endings_keeps_them(co2gate: CliRun) -> None:
    GITIGNORE.write_bytes(b"build/\r\n")
    assert co2gate("init").returncode == 0
    data = GITIGNORE.read_bytes()
    assert data.startswith(b"build/\r\n") and data.count(b"\r\n") == data.count(b"\n") == 4


def test_a_ledger_of_none_adds_only_the_report_directory() -> None:
    none = budgets.LedgerConfig(backend=budgets.LedgerBackend.NONE)
    assert starter.gitignore_lines(none) == ["co2gate-report/"]
    elsewhere = budgets.LedgerConfig(backend=budgets.LedgerBackend.FILE, path="data/ledger")
    assert starter.gitignore_lines(elsewhere) == ["co2gate-report/", "data/ledger/"]


# Options checked like measure's, each error naming its option -------------------------------


def test_a_bad_country_is_one_line_with_a_suggestion_and_no_file(
    co2gate: CliRun, repo: Path
) -> None:
    result = co2gate("init", "--country", "Frnace")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("Error: --country") and "'FRA' (France)" in line
    assert snapshot(repo) == {}


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--region", "virginia"], "--region"),  # a region needs its country
        (["--country", "FRA", "--region", "virginia"], "--region"),
        (["--country", "USA", "--region", "atlantis"], "--region"),
        (["--cloud", "us-east-1"], "--cloud"),  # not provider:region
        (["--cloud", "ibm:dallas"], "--cloud"),
        (["--cloud", "gcp:mars-central1"], "--cloud"),
        (["--country", "FRA", "--cloud", "gcp:us-central1"], "--country"),
    ],
)
def test_a_bad_location_names_its_option_and_writes_nothing(
    co2gate: CliRun, repo: Path, args: list[str], option: str
) -> None:
    result = co2gate("init", *args)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(f"Error: {option}:")
    assert snapshot(repo) == {}


def test_a_region_and_a_cloud_land_in_the_budget_file(co2gate: CliRun) -> None:
    assert co2gate("init", "--country", "usa", "--region", "New York").returncode == 0
    location = budgets.load(BUDGET_FILE).location
    assert (location.country, location.region, location.cloud) == ("USA", "new york", None)
    assert co2gate("init", "--force", "--cloud", "GCP:us-central1").returncode == 0
    location = budgets.load(BUDGET_FILE).location
    assert (location.country, location.cloud) == (None, "gcp:us-central1")


@pytest.mark.parametrize("annual", ["0", "-5", "inf", "nan"])
def test_a_bad_annual_budget_is_one_line_and_no_file(
    co2gate: CliRun, repo: Path, annual: str
) -> None:
    result = co2gate("init", "--annual-kg", annual)
    assert result.returncode == 2 and "--annual-kg" in one_line(result.stderr)
    assert snapshot(repo) == {}


# --run goes into the workflow as literal text ----------------------------------------------

AWKWARD_RUNS = [
    "python train.py --epochs 3",
    "python train.py --name 'it''s' --tag \"a: b\"",
    "echo a: b # not a comment to bash either",
    "- python train.py",
    "[ -f data ] && python train.py {x} *.cfg",
    "&anchor *alias !tag %YAML @x `date` | tee log",
    "echo '$HOME' \"${HOME}\" $((1+2)) \\n \\",
    "  leading and trailing spaces  ",
    "python entraîner.py --étiquette 日本 😀",
    "true: false",
    "null",
    "'",
    '"',
]


@pytest.mark.parametrize("run", AWKWARD_RUNS)
def test_the_run_command_reads_back_exactly(co2gate: CliRun, run: str) -> None:
    result = co2gate("init", "--run", run)
    assert result.returncode == 0, result.stderr
    assert gate_step(WORKFLOW_FILE.read_text())["with"]["run"] == run  # type: ignore[index]


@pytest.mark.parametrize(
    ("run", "why"),
    [
        ("python train.py\nrm -rf /", "line break"),
        ("python train.py\r", "line break"),
        ("python train.py\u2028echo", "line break"),
        ("python\ttrain.py", "control character"),
        ("python train.py \x1b[2J", "control character"),
        ("python train.py --title '${{ github.event.pull_request.title }}'", "${{"),
        ("echo ${{secrets.TOKEN}}", "${{"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_a_run_that_cannot_stay_one_literal_line_is_refused(
    co2gate: CliRun, repo: Path, run: str, why: str
) -> None:
    result = co2gate("init", "--run", run)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("Error: --run:") and why in line
    assert snapshot(repo) == {}


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_any_one_line_of_printable_text_reads_back_or_is_refused(run: str) -> None:
    try:
        text = starter.workflow(PurePosixPath(budgets.DEFAULT_FILE), run)
    except starter.StarterError as e:
        assert "${{" in run or not run.strip() or "contains a" in str(e)
        return
    assert gate_step(text)["with"]["run"] == run  # type: ignore[index]


@pytest.mark.parametrize(
    ("run", "argv"),
    [
        ("python train.py --epochs 3", ["python", "train.py", "--epochs", "3"]),
        ("make train && python eval.py", ["bash", "-eo", "pipefail", "-c", None]),
        ("FOO=1 python train.py", ["bash", "-eo", "pipefail", "-c", None]),
        ("python train.py --name 'a b'", ["bash", "-eo", "pipefail", "-c", None]),
    ],
)
def test_the_local_command_does_what_the_action_does(run: str, argv: list[str | None]) -> None:
    """Step 1's command, as a shell splits it: the command itself when it has no shell
    syntax, else bash -c with it (what the Action runs) as one argument."""
    words = shlex.split(starter.local_command(run))
    assert words[:3] == ["co2gate", "run", "--"]
    assert words[3:] == [run if a is None else a for a in argv]


# The workflow ------------------------------------------------------------------------------


def test_the_workflow_has_pinned_checkout_and_minimal_permissions(co2gate: CliRun) -> None:
    assert co2gate("init").returncode == 0
    text = WORKFLOW_FILE.read_text()
    workflow = workflow_of(text)
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()  # type: ignore[attr-defined]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    checkout, gate = job["steps"]
    action, _, ref = checkout["uses"].partition("@")
    assert action == "actions/checkout" and SHA.match(ref)
    assert checkout["with"] == {"persist-credentials": False}
    assert gate["uses"] == "co2gate/co2gate@v1"
    # Each permission says why on its own line, as README's Permissions table does.
    for permission, why in (("contents: write", "ledger"), ("pull-requests: write", "comment")):
        (line,) = [x for x in text.splitlines() if permission in x]
        assert "#" in line and why in line.split("#", 1)[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.mark.parametrize("run", ["python train.py", AWKWARD_RUNS[5], AWKWARD_RUNS[1]])
def test_the_written_workflow_passes_actionlint_and_zizmor(
    co2gate: CliRun, repo: Path, run: str
) -> None:
    actionlint, zizmor = _tool("actionlint"), _tool("zizmor")
    result = co2gate("init", "--run", run, "--budget-file", "ci/budget.yml")
    assert result.returncode == 0, result.stderr
    # actionlint runs shellcheck on run: scripts when it finds it, as .ci/run does.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    lint = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW_FILE)], capture_output=True, text=True, env=env
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(WORKFLOW_FILE)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_the_workflow_passes_the_actions_workflow_schema_where_available() -> None:
    schema_path = _workflow_schema()
    if schema_path is None:
        pytest.skip("check-jsonschema's vendored GitHub workflow schema is not installed")
    import jsonschema

    schema = json.loads(schema_path.read_text())
    text = starter.workflow(PurePosixPath("ci/budget.yml"), AWKWARD_RUNS[1])
    jsonschema.validate(workflow_of(text), schema)


def test_another_budget_file_is_passed_to_the_action(co2gate: CliRun, repo: Path) -> None:
    target = repo / "config" / "ci budget.yml"  # absolute, inside the repository
    result = co2gate("init", "--budget-file", str(target))
    assert result.returncode == 0, result.stderr
    assert budgets.load(target).annual_budget_kg == 500
    step = gate_step(WORKFLOW_FILE.read_text())
    assert step["with"]["budget-file"] == "config/ci budget.yml"  # type: ignore[index]
    # The default is the Action's default: no input for it.
    assert co2gate("init", "--force").returncode == 0
    assert "budget-file" not in gate_step(WORKFLOW_FILE.read_text())["with"]  # type: ignore[operator]


@pytest.mark.parametrize("budget_file", ["../budget.yml", "/tmp/elsewhere/budget.yml"])
def test_a_budget_file_outside_the_repository_is_refused(
    co2gate: CliRun, repo: Path, budget_file: str
) -> None:
    result = co2gate("init", "--budget-file", budget_file)
    assert result.returncode == 2 and one_line(result.stderr).startswith("Error: --budget-file")
    assert snapshot(repo) == {} and not Path(budget_file).exists()


def test_another_workflow_file_is_written_where_told(co2gate: CliRun) -> None:
    result = co2gate("init", "--workflow-file", ".github/workflows/gate.yml")
    assert result.returncode == 0, result.stderr
    text = Path(".github/workflows/gate.yml").read_text()
    assert text.startswith("# .github/workflows/gate.yml:") and not WORKFLOW_FILE.exists()


# --print, and the old `> .github/workflows/carbon.yml` --------------------------------------


def test_print_puts_the_workflow_on_stdout_and_writes_the_rest(co2gate: CliRun, repo: Path) -> None:
    result = co2gate("init", "--print", "--run", "make train")
    assert result.returncode == 0, result.stderr
    assert gate_step(result.stdout)["with"]["run"] == "make train"  # type: ignore[index]
    assert set(snapshot(repo)) == {str(GITIGNORE), str(BUDGET_FILE)}
    assert "on stdout" in result.stderr


def _init_into(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The README's old usage, `co2gate init > target`, as a shell runs it."""
    with target.open("w") as stdout:
        return subprocess.run(
            [sys.executable, "-m", "co2gate", "init", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )


def test_the_old_redirect_into_the_workflow_is_explained_not_half_done(repo: Path) -> None:
    WORKFLOW_FILE.parent.mkdir(parents=True)
    result = _init_into(WORKFLOW_FILE)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "redirected" in line and "without '> .github/workflows/carbon.yml'" in line
    assert snapshot(repo) == {str(WORKFLOW_FILE): b""}  # only what the shell did

    forced = _init_into(WORKFLOW_FILE, "--force")
    assert forced.returncode == 0, forced.stderr
    assert gate_step(WORKFLOW_FILE.read_text())["uses"] == "co2gate/co2gate@v1"
    assert budgets.load(BUDGET_FILE).annual_budget_kg == 500


def test_print_with_a_redirect_still_works(repo: Path) -> None:
    WORKFLOW_FILE.parent.mkdir(parents=True)
    result = _init_into(WORKFLOW_FILE, "--print")
    assert result.returncode == 0, result.stderr
    assert gate_step(WORKFLOW_FILE.read_text())["with"]["run"] == "python train.py"  # type: ignore[index]


def test_every_init_option_has_help() -> None:
    assert init.help
    options = [p for p in init.params if isinstance(p, click.Option)]
    assert {o.name for o in options} == {
        "budget_file", "workflow_file", "run_command", "annual_kg", "country", "region",
        "cloud", "print_workflow", "force",
    }  # fmt: skip
    assert all(o.help for o in options)


def _workflow_schema() -> Path | None:
    try:
        import check_jsonschema  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = list(Path(check_jsonschema.__file__).parent.rglob("github-workflows.json"))
    return found[0] if found else None
