"""co2gate init: the starter budget file it writes and the workflow it prints."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from co2gate import budget as budgets
from co2gate import starter
from co2gate.cli import cli, init

BUDGET_FILE = Path(".github/carbon-budget.yml")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_init_writes_a_budget_file_that_loads_with_the_given_figures(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["init", "--annual-kg", "120.5", "--country", "fra"])
    assert result.exit_code == 0, result.output
    budget = budgets.load(BUDGET_FILE)
    assert budget.annual_budget_kg == 120.5
    assert budget.location.country == "FRA"
    assert budget.ledger.backend is budgets.LedgerBackend.BRANCH
    assert budget.allocations == {"training": 0.7, "inference": 0.3}
    assert f"wrote {BUDGET_FILE}" in result.stderr
    assert "annual_budget_kg" in result.stderr and "location" in result.stderr


def test_the_defaults_are_500_kg_and_no_country(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    budget = budgets.load(BUDGET_FILE)
    assert budget.annual_budget_kg == 500 and budget.location.country is None
    text = BUDGET_FILE.read_text()
    assert text == budgets.STARTER  # the starter as it stands, comments and all


def test_small_and_large_budgets_are_written_without_an_exponent(runner: CliRunner) -> None:
    for annual in ("0.00001", "1e20"):
        result = runner.invoke(cli, ["init", "--force", "--annual-kg", annual])
        assert result.exit_code == 0, result.output
        line = next(x for x in BUDGET_FILE.read_text().splitlines() if x.startswith("annual"))
        assert "e" not in line.split("#")[0].split(":")[1]
        # Plain YAML 1.1 (what other tools read it with) sees a number, not a string.
        assert yaml.safe_load(BUDGET_FILE.read_text())["annual_budget_kg"] == float(annual)


def test_the_comments_stay_in_their_column(runner: CliRunner) -> None:
    runner.invoke(cli, ["init", "--annual-kg", "1234567", "--country", "USA"])
    lines = BUDGET_FILE.read_text().splitlines()
    annual = next(x for x in lines if x.startswith("annual_budget_kg"))
    country = next(x for x in lines if x.startswith("  country"))
    assert annual.index("#") == 30 and country.index("#") == 30


def test_the_starter_shows_every_section_of_the_budget_file() -> None:
    """PRODUCT.md section 3: each key is set, or shown commented out where it is opt-in."""
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


def test_init_refuses_to_overwrite_and_force_does(runner: CliRunner) -> None:
    BUDGET_FILE.parent.mkdir()
    BUDGET_FILE.write_text("mine\n")
    result = runner.invoke(cli, ["init", "--annual-kg", "9"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert str(BUDGET_FILE) in result.stderr and "--force" in result.stderr
    assert result.stdout == ""  # no snippet either
    assert BUDGET_FILE.read_text() == "mine\n"

    forced = runner.invoke(cli, ["init", "--annual-kg", "9", "--force"])
    assert forced.exit_code == 0, forced.output
    assert budgets.load(BUDGET_FILE).annual_budget_kg == 9


def test_a_bad_country_is_exit_2_with_a_suggestion_and_no_file(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["init", "--country", "Frnace"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--country" in result.stderr and "'FRA' (France)" in result.stderr
    assert not BUDGET_FILE.exists() and not BUDGET_FILE.parent.exists()


@pytest.mark.parametrize("annual", ["0", "-5", "inf", "nan"])
def test_a_bad_annual_budget_is_exit_2_and_no_file(runner: CliRunner, annual: str) -> None:
    result = runner.invoke(cli, ["init", "--annual-kg", annual])
    assert result.exit_code == 2
    assert "--annual-kg" in result.stderr and not BUDGET_FILE.exists()


def test_init_writes_where_told_creating_folders(runner: CliRunner) -> None:
    target = Path("config/ci/budget.yml")
    result = runner.invoke(cli, ["init", "--budget-file", str(target)])
    assert result.exit_code == 0, result.output
    assert budgets.load(target).annual_budget_kg == 500
    assert "config/ci/budget.yml" in result.stdout  # the snippet says which file


def test_a_directory_in_the_way_is_exit_2(runner: CliRunner) -> None:
    BUDGET_FILE.mkdir(parents=True)
    result = runner.invoke(cli, ["init", "--force"])
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_the_printed_workflow_is_valid_yaml_with_the_permissions(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    workflow = yaml.safe_load(result.stdout)  # stdout is the snippet alone
    assert isinstance(workflow, dict) and "jobs" in workflow
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    (gate,) = [s for s in steps if s.get("uses") == "co2gate/co2gate@v1"]
    assert gate["with"] == {"run": "python train.py", "workload": "training"}
    # Each permission says why on its own line.
    for permission, why in (("contents: write", "ledger"), ("pull-requests: write", "comment")):
        (line,) = [x for x in result.stdout.splitlines() if permission in x]
        assert "#" in line and why in line.split("#", 1)[1]


def test_the_workflow_passes_the_actions_workflow_schema_where_available() -> None:
    schema_path = _workflow_schema()
    if schema_path is None:
        pytest.skip("check-jsonschema's vendored GitHub workflow schema is not installed")
    import json

    import jsonschema

    schema = json.loads(schema_path.read_text())
    loaded = yaml.safe_load(starter.workflow(BUDGET_FILE))
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads YAML 1.2.
    workflow = {("on" if key is True else key): value for key, value in loaded.items()}
    jsonschema.validate(workflow, schema)


def test_every_init_option_has_help() -> None:
    assert init.help
    options = [p for p in init.params if isinstance(p, click.Option)]
    assert {o.name for o in options} == {"budget_file", "annual_kg", "country", "force"}
    assert all(o.help for o in options)


def _workflow_schema() -> Path | None:
    try:
        import check_jsonschema  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = list(Path(check_jsonschema.__file__).parent.rglob("github-workflows.json"))
    return found[0] if found else None
