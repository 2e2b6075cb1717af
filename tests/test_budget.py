"""The budget file (parse, schema, one-line errors) and the verdict (README: The verdict)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from co2gate import budget as budget_module
from co2gate.budget import (
    STARTER,
    Budget,
    BudgetError,
    LedgerBackend,
    LedgerConfig,
    OnExceed,
    Tier,
    Verdict,
    allocation_kg,
    budget_year,
    decide,
    load,
    parse,
    tier,
)
from co2gate.intensity import Location

SRC = ".github/carbon-budget.yml"

# A full budget file, every key set (as in the README's example).
EXAMPLE = """\
version: 1
annual_budget_kg: 500          # required, > 0: CO2e per budget year
year_start: "01-01"            # MM-DD, start of the budget (fiscal) year
allocations:                   # shares of the annual budget; sum <= 1
  training: 0.7
  inference: 0.3
limits:                        # optional hard cap for any single run, kg
  training: 25
warn_at: 0.8                   # warn once a category reaches this share of its allocation
on_exceed: fail                # fail | warn
regression:
  max_increase: 0.2            # optional: fail a PR whose run emits >20% more than the
                               # base branch's latest run of the same label
inference:
  requests_per_year: 3.65e8    # optional: projects per-request emissions to a year
location:
  country: USA                 # ISO 3166-1 alpha-3, codecarbon's convention
  region: null                 # sub-national region where codecarbon has data
  cloud: null                  # "azure:eastus", "aws:us-east-1", "gcp:us-central1"
  intensity: null              # gCO2e/kWh, overrides all of the above
  pue: 1.0                     # data-centre Power Usage Effectiveness, >= 1
ledger:
  backend: branch              # branch (GitHub) | file | none
  branch: co2gate-ledger       # for branch
  path: .co2gate/ledger        # for file
  count: [push, pull_request, schedule, workflow_dispatch]   # events whose runs are recorded
"""
MINIMAL = "version: 1\nannual_budget_kg: 500\nallocations:\n  training: 0.7\n  inference: 0.3\n"
SCHEMA = json.loads(resources.files("co2gate").joinpath("schemas/budget.v1.json").read_text())
PROPERTY = settings(max_examples=200, deadline=None, database=None)
RANK = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


def yaml_data(text: str) -> Any:
    """The file's data as parse() reads it (YAML 1.2 numbers: 3.65e8 is a float)."""
    return budget_module._document(text, SRC)


def schema_errors(text: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [e.message for e in validator.iter_errors(yaml_data(text))]


def refused(text: str) -> str:
    with pytest.raises(BudgetError) as caught:
        parse(text, SRC)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{SRC}: ")
    return message


def test_the_documented_example_parses_to_its_values() -> None:
    b = parse(EXAMPLE, SRC)
    assert b.version == 1
    assert b.annual_budget_kg == 500
    assert b.year_start == (1, 1)
    assert b.allocations == {"training": 0.7, "inference": 0.3}
    assert b.limits == {"training": 25}
    assert b.warn_at == 0.8
    assert b.on_exceed is OnExceed.FAIL
    assert b.regression_max_increase == 0.2
    assert b.inference_requests_per_year == 365_000_000
    assert b.location == Location(country="USA", pue=1.0)
    assert b.ledger == LedgerConfig(
        backend=LedgerBackend.BRANCH,
        branch="co2gate-ledger",
        path=".co2gate/ledger",
        count=("push", "pull_request", "schedule", "workflow_dispatch"),
    )
    assert b.source == SRC


def test_defaults_are_the_documented_ones() -> None:
    b = parse(MINIMAL, SRC)
    assert b == Budget(annual_budget_kg=500, allocations={"training": 0.7, "inference": 0.3})
    assert (b.year_start, b.warn_at, b.on_exceed) == ((1, 1), 0.8, OnExceed.FAIL)
    assert b.limits == {}
    assert b.regression_max_increase is None and b.inference_requests_per_year is None
    assert b.location == Location()
    assert b.ledger == LedgerConfig(LedgerBackend.BRANCH, "co2gate-ledger", ".co2gate/ledger")
    assert b.ledger.count == ("push", "pull_request", "schedule", "workflow_dispatch")


def test_empty_sections_mean_their_defaults() -> None:
    text = MINIMAL + "regression:\n  # max_increase: 0.2\ninference:\nlocation:\nledger:\n"
    assert parse(text, SRC) == parse(MINIMAL, SRC)


def test_the_starter_parses_and_the_schema_accepts_it_and_the_example() -> None:
    starter = parse(STARTER, SRC)
    assert starter.allocations == {"training": 0.7, "inference": 0.3}
    assert schema_errors(STARTER) == []
    assert schema_errors(EXAMPLE) == []
    assert schema_errors(MINIMAL) == []


def test_the_schema_is_strict_at_every_level() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            here = [node] if "properties" in node else []
            return here + [o for v in node.values() for o in objects(v)]
        return [o for v in node for o in objects(v)] if isinstance(node, list) else []

    assert all(o.get("additionalProperties") is False for o in objects(SCHEMA))


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "carbon-budget.yml"
    with pytest.raises(BudgetError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: not found (create one with co2gate init)"


def test_load_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "budget.yml"
    path.write_text(EXAMPLE.replace("500", "-1"), encoding="utf-8")
    with pytest.raises(BudgetError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: annual_budget_kg: must be a number > 0, got -1"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load(path) == parse(EXAMPLE, str(path))
    path.write_bytes(b"version: 1\nannual_budget_kg: \xff\n")
    with pytest.raises(BudgetError, match="not UTF-8"):
        load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nannual_budget_kg: [500\n", "not valid YAML at line 3, column 1: "),
        ("version: 1\n  annual_budget_kg: 500\n", "not valid YAML at line 2, column 19: "),
        ("a: 1\x00\n", "not valid YAML at line 1: character #x0000"),
        ("- version: 1\n- annual_budget_kg: 500\n", "found a list at line 1"),
        ("# nothing yet\n\n", "is empty (create one with co2gate init)"),
        ("", "is empty (create one with co2gate init)"),
        ("500\n", "must be a mapping of keys"),
        (MINIMAL + "annual_budget_kg: 600\n", "not valid YAML at line 6, column 1: duplicate key"),
        ("when: 2024-13-01\n", "not valid YAML at line 1, column 7: month must be in 1..12"),
    ],
    ids=["unclosed", "indent", "nul", "list", "comment-only", "empty", "scalar", "dup", "date"],
)
def test_text_that_is_not_a_yaml_mapping_is_refused_with_its_line(text: str, message: str) -> None:
    assert message in refused(text)


# (id, a line of EXAMPLE, what replaces it, whether the JSON Schema refuses it too, the message)
BAD = [
    ("version 2", "version: 1", "version: 2", True,
     "version: unsupported version 2 (this co2gate reads version 1)"),
    ("version string", "version: 1", 'version: "1"', True,
     "version: must be the number 1, got '1'"),
    ("no version", "version: 1", "", True, "version: missing: the file must start with version: 1"),
    ("unknown key", "annual_budget_kg:", "anual_budget_kg:", True,
     "unknown key 'anual_budget_kg' (did you mean 'annual_budget_kg'?)"),
    ("unknown nested key", "  country:", "  contry:", True,
     "location: unknown key 'contry' (did you mean 'country'?)"),
    ("unknown ledger key", "  backend:", "  backnd:", True,
     "ledger: unknown key 'backnd' (did you mean 'backend'?)"),
    ("section not a mapping", "inference:\n  requests_per_year: 3.65e8", "inference: 3.65e8", True,
     "inference: must be a mapping, got 365000000.0"),
    ("no budget", "annual_budget_kg: 500", "", True, "annual_budget_kg: missing"),
    ("negative budget", "annual_budget_kg: 500", "annual_budget_kg: -500", True,
     "annual_budget_kg: must be a number > 0, got -500"),
    ("zero budget", "annual_budget_kg: 500", "annual_budget_kg: 0", True,
     "annual_budget_kg: must be a number > 0, got 0"),
    ("budget with a unit", "annual_budget_kg: 500", "annual_budget_kg: 500kg", True,
     "annual_budget_kg: must be a number > 0, got '500kg'"),
    ("boolean budget", "annual_budget_kg: 500", "annual_budget_kg: true", True,
     "annual_budget_kg: must be a number > 0, got true"),
    ("infinite budget", "annual_budget_kg: 500", "annual_budget_kg: .inf", False,
     "annual_budget_kg: must be a number > 0, got inf"),
    ("shares over 1", "inference: 0.3", "inference: 0.5", False,
     "allocations: shares sum to 1.2, more than 1"),
    ("share over 1", "training: 0.7", "training: 1.5", True,
     "allocations.training: must be a share between 0 and 1, got 1.5"),
    ("negative share", "inference: 0.3", "inference: -0.1", True,
     "allocations.inference: must be a share between 0 and 1, got -0.1"),
    ("empty allocations", "training: 0.7\n  inference: 0.3", "{}", True,
     "allocations: must give at least one workload's share"),
    ("bad workload name", "training: 0.7", "Training: 0.7", True,
     "allocations: 'Training' is not a workload name"),
    ("limit without allocation", "  training: 25", "  eval: 25", False,
     "limits: workload 'eval' has no allocation; allocations: training, inference"),
    ("negative limit", "  training: 25", "  training: -25", True,
     "limits.training: must be a number > 0, got -25"),
    ("month 13", '"01-01"', '"13-01"', True, "year_start: '13-01' is not a valid MM-DD date"),
    ("not MM-DD", '"01-01"', '"1-1x"', True, "year_start: '1-1x' is not a valid MM-DD date"),
    ("a number", '"01-01"', "101", True,
     "year_start: 101 is not a valid MM-DD date (write it as a quoted string"),
    ("april 31", '"01-01"', '"04-31"', True, "year_start: '04-31' is not a valid MM-DD date"),
    ("leap day", '"01-01"', '"02-29"', True,
     "year_start: '02-29' is not in every year; use '02-28' or '03-01'"),
    ("a date", '"01-01"', "2024-01-01", True,
     "year_start: a date (2024-01-01) is not a valid MM-DD date"),
    ("unknown country", "country: USA", "country: XYZ", False,
     "location.country: unknown country 'XYZ'"),
    ("unknown cloud region", "cloud: null", "cloud: aws:us-east-9", False,
     "location.cloud: unknown AWS region 'us-east-9'"),
    ("cloud elsewhere", "cloud: null", "cloud: gcp:europe-west1", False,
     "location.country: country 'USA' contradicts cloud"),
    ("PUE below 1", "pue: 1.0", "pue: 0.9", True, "location.pue: pue 0.9 is below 1"),
    ("PUE not a number", "pue: 1.0", "pue: high", True,
     "location.pue: must be a number >= 1, got 'high'"),
    ("country a number", "country: USA", "country: 840", True,
     "location.country: must be a non-empty string, got 840"),
    ("on_exceed maybe", "on_exceed: fail", "on_exceed: maybe", True,
     "on_exceed: must be one of fail, warn, got 'maybe'"),
    ("unknown backend", "backend: branch", "backend: git", True,
     "ledger.backend: must be one of branch, file, none, got 'git'"),
    ("unknown event", "schedule,", "pull-request,", True,
     "ledger.count: 'pull-request' is not a GitHub Actions event (did you mean 'pull_request'?)"),
    ("branch with a space", "branch: co2gate-ledger", "branch: co2gate ledger", True,
     "ledger.branch: 'co2gate ledger' is not a branch name"),
    ("warn_at 0", "warn_at: 0.8", "warn_at: 0", True,
     "warn_at: must be a share > 0 and <= 1, got 0"),
    ("warn_at 1.5", "warn_at: 0.8", "warn_at: 1.5", True,
     "warn_at: must be a share > 0 and <= 1, got 1.5"),
    ("regression 0", "max_increase: 0.2", "max_increase: 0", True,
     "regression.max_increase: must be a number > 0, got 0"),
    ("requests negative", "requests_per_year: 3.65e8", "requests_per_year: -1e3", True,
     "inference.requests_per_year: must be a number > 0, got -1000.0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "schema_says_so", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_each_bad_file_is_refused_naming_the_key_and_the_problem(
    old: str, new: str, schema_says_so: bool, message: str
) -> None:
    assert EXAMPLE.count(old) == 1
    text = EXAMPLE.replace(old, new)
    assert refused(text).startswith(f"{SRC}: {message}")
    if schema_says_so:
        assert schema_errors(text), "the JSON Schema accepts what co2gate refuses"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("annual_budget_kg: 500\nallocations: {training: 1}\n", "version: missing"),
        ("version: 1\nannual_budget_kg: 500\n", "allocations: missing"),
        ("version: 1\nallocations: {training: 1}\n", "annual_budget_kg: missing"),
        (MINIMAL + "limits: 25\n", "limits: must be a mapping of workload: kg, got 25"),
        (MINIMAL + "ledger:\n  count: push\n", "ledger.count: must be a list of GitHub event"),
        (MINIMAL + "1: 2\n", "unknown key 1"),
    ],
)
def test_required_keys_and_kinds_of_value(text: str, message: str) -> None:
    assert refused(text).startswith(f"{SRC}: {message}")


def test_only_the_first_problem_is_reported_and_in_file_order() -> None:
    text = EXAMPLE.replace("version: 1", "version: 3").replace("500", "-1")
    assert refused(text).startswith(f"{SRC}: version: ")


def test_numbers_as_yaml_1_2_reads_them() -> None:
    b = parse(MINIMAL.replace("500", "5e2") + "inference:\n  requests_per_year: 1e9\n", SRC)
    assert (b.annual_budget_kg, b.inference_requests_per_year) == (500, 1e9)


def test_year_starts_parse_as_month_and_day() -> None:
    assert parse(MINIMAL + 'year_start: "04-01"\n', SRC).year_start == (4, 1)
    assert parse(MINIMAL + "year_start: 12-31\n", SRC).year_start == (12, 31)
    assert parse(MINIMAL + 'year_start: "02-28"\n', SRC).year_start == (2, 28)


# ---------------------------------------------------------------------- property: no traceback

KEYS = [
    *budget_module._TOP_KEYS,
    *("training", "inference", "max_increase", "requests_per_year"),
    *("country", "region", "cloud", "intensity", "pue", "backend", "branch", "path", "count"),
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["01-01", "02-29", "USA", "aws:us-east-1", "fail", "warn", "file", "push"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | SCALARS, inner, max_size=5)
    ),
    max_leaves=20,
)


def parses_or_refuses(text: str) -> None:
    try:
        assert isinstance(parse(text, SRC), Budget)
    except BudgetError as e:
        assert str(e).startswith(f"{SRC}: ")
        assert "\n" not in str(e)


@PROPERTY
@given(st.dictionaries(st.sampled_from(KEYS) | SCALARS, VALUES, max_size=8) | VALUES)
def test_any_yaml_document_parses_or_is_refused_in_one_line(doc: Any) -> None:
    parses_or_refuses(yaml.safe_dump(doc))


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@ ,?\n\t0.1e9")), max_size=60))
def test_any_text_parses_or_is_refused_in_one_line(text: str) -> None:
    parses_or_refuses(text)


def _places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a nested document."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    found = []
    for key, value in items:
        found.append((node, key))
        if isinstance(value, (dict, list)):
            found += _places(value)
    return found


@PROPERTY
@given(st.data())
def test_mutations_of_the_example_parse_or_are_refused_in_one_line(data: st.DataObject) -> None:
    doc = copy.deepcopy(yaml_data(EXAMPLE))
    for _ in range(data.draw(st.integers(1, 3))):
        container, key = data.draw(st.sampled_from(_places(doc)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = data.draw(VALUES)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[data.draw(st.sampled_from(KEYS) | SCALARS)] = data.draw(VALUES)
        else:
            container.append(data.draw(VALUES))
    parses_or_refuses(yaml.safe_dump(doc))


# ------------------------------------------------------------------------------- the verdict


def budget(**changes: Any) -> Budget:
    fields: dict[str, Any] = {
        "annual_budget_kg": 500.0,
        "allocations": {"training": 0.7, "inference": 0.3},
        **changes,
    }
    return Budget(**fields)


def test_the_worked_example_from_the_budget_literature() -> None:
    # 500 kg a year, 70% for training, 200 kg used so far, a 50 kg run.
    d = decide(budget(), "training", used_before_kg=200, run_kg=50)
    allocation = 500 * 0.7  # 350 kg
    assert d.verdict is Verdict.PASS
    assert d.allocation_kg == pytest.approx(350)
    assert d.allocation_kg - d.used_before_kg == pytest.approx(150)  # left before the run
    assert d.used_before_kg / d.allocation_kg == pytest.approx(0.5714, abs=1e-4)  # 200 / 350
    assert d.after_kg == 250
    assert d.remaining_kg == pytest.approx(100)  # 350 - 250
    assert d.share == pytest.approx(250 / allocation)
    assert d.share == pytest.approx(0.7143, abs=1e-4)
    assert d.warn_at == 0.8
    assert d.tier is Tier.MEDIUM
    assert d.reasons == (
        "training had used 200 kg of its 350 kg allocation (57.1%, 150 kg left); "
        "this run's 50 kg brings it to 250 kg (71.4%, 100 kg left).",
        "That is below the 80.0% warning level (280 kg).",
    )


def test_verdict_json_has_exactly_the_documented_fields() -> None:
    doc = decide(budget(), "training", 200, 50).to_json()
    assert list(doc) == [
        *("verdict", "category", "allocation_kg", "used_before_kg", "run_kg", "after_kg"),
        *("remaining_kg", "share", "warn_at", "tier", "reasons"),
    ]
    assert (doc["verdict"], doc["tier"], doc["category"]) == ("pass", "medium", "training")
    assert isinstance(doc["reasons"], list)
    assert json.loads(json.dumps(doc)) == doc


def test_warn_at_the_warning_level_and_fail_past_the_allocation() -> None:
    # 350 kg allocation, warned at 0.8 x 350 = 280 kg
    assert decide(budget(), "training", 230, 49.9).verdict is Verdict.PASS
    assert decide(budget(), "training", 230, 50).verdict is Verdict.WARN
    assert decide(budget(), "training", 300, 50).verdict is Verdict.WARN  # exactly 350: not over
    over = decide(budget(), "training", 330, 30)
    assert over.verdict is Verdict.FAIL
    assert over.remaining_kg == pytest.approx(-10)  # the true figure, negative
    assert over.share == pytest.approx(360 / 350)
    # 360 / 350 = 102.86%; 350 - 360 = -10 kg: 10 kg over
    assert "brings it to 360 kg (102.9%, 10 kg over)" in over.reasons[0]
    assert "That exceeds the 350 kg training allocation." in over.reasons


def test_a_run_over_its_limit_fails_even_within_the_allocation() -> None:
    b = budget(limits={"training": 25.0})
    assert decide(b, "training", 0, 25).verdict is Verdict.PASS  # at the limit is not over it
    d = decide(b, "training", 0, 25.5)
    assert d.verdict is Verdict.FAIL
    assert "The run's 25.5 kg exceeds the 25 kg limit for one training run." in d.reasons
    assert decide(b, "inference", 0, 30).verdict is Verdict.PASS  # no limit for inference


def test_regression_fails_only_a_pull_request_with_a_base() -> None:
    b = budget(regression_max_increase=0.2)  # base 10 kg: at most 10 x 1.2 = 12 kg
    assert decide(b, "training", 0, 12.1, base_run_kg=10, is_pull_request=True).verdict is (
        Verdict.FAIL
    )
    assert decide(b, "training", 0, 11.9, base_run_kg=10, is_pull_request=True).verdict is (
        Verdict.PASS
    )
    assert decide(b, "training", 0, 12.1, base_run_kg=10).verdict is Verdict.PASS  # a push
    assert decide(b, "training", 0, 12.1, is_pull_request=True).verdict is Verdict.PASS
    assert decide(budget(), "training", 0, 99, base_run_kg=10, is_pull_request=True).verdict is (
        Verdict.PASS
    )
    d = decide(b, "training", 0, 12.1, base_run_kg=10, is_pull_request=True)
    assert d.reasons[1] == (
        "The run's 12.1 kg is +21.0% on the base branch's latest run (10 kg); "
        "regression.max_increase allows +20.0% (up to 12 kg): fails. Only 1 base run in the "
        "ledger, fewer than the 3 a noise-aware comparison needs, so this is a single comparison."
    )


def test_inference_projection_to_a_year() -> None:
    b = budget(inference_requests_per_year=3.65e8)
    # 2 mg = 2e-6 kg per request x 3.65e8 requests = 730 kg > 0.3 x 500 = 150 kg
    d = decide(b, "inference", 0, 0.01, per_request_kg=2e-6)
    assert d.verdict is Verdict.FAIL
    assert d.reasons[1] == (
        "At 2 mg per request, 365,000,000 requests a year would emit 730 kg, "
        "more than the 150 kg inference allocation."
    )
    # 0.0004 g x 3.65e8 = 146 kg <= 150 kg
    assert decide(b, "inference", 0, 0.01, per_request_kg=4e-7).verdict is Verdict.PASS
    assert decide(b, "training", 0, 0.01, per_request_kg=2e-6).verdict is Verdict.PASS
    assert decide(budget(), "inference", 0, 0.01, per_request_kg=2e-6).verdict is Verdict.PASS


def test_on_exceed_warn_lets_a_failure_through_and_says_so() -> None:
    b = budget(on_exceed=OnExceed.WARN, limits={"training": 25.0})
    d = decide(b, "training", 340, 30)
    assert d.verdict is Verdict.WARN
    assert "That exceeds the 350 kg training allocation." in d.reasons
    assert "The run's 30 kg exceeds the 25 kg limit for one training run." in d.reasons
    assert d.reasons[-1] == "on_exceed: warn let it through: the check warns instead of failing."


def test_a_category_without_an_allocation_is_a_budget_error() -> None:
    message = (
        f"{SRC}: allocations: workload 'eval' has no allocation; allocations: training, inference"
    )
    with pytest.raises(BudgetError) as caught:
        allocation_kg(budget(), "eval")
    assert str(caught.value) == message
    with pytest.raises(BudgetError) as caught:
        decide(budget(), "eval", 0, 1)
    assert str(caught.value) == message
    assert allocation_kg(budget(), "inference") == pytest.approx(150)


def test_a_zero_share_fails_any_emission() -> None:
    d = decide(budget(allocations={"training": 0.0}), "training", 0, 0.5)
    assert (d.verdict, d.share, d.remaining_kg) == (Verdict.FAIL, None, -0.5)
    assert "brings it to 500 g (500 g over)" in d.reasons[0]


def test_tiny_runs_are_told_in_milligrams() -> None:
    d = decide(budget(), "training", 0, 0.0000851)  # 0.0000851 kg = 85.1 mg
    assert "this run's 85.1 mg brings it to 85.1 mg" in d.reasons[0]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_decide_refuses_impossible_figures(bad: float) -> None:
    with pytest.raises(ValueError, match="run_kg"):
        decide(budget(), "training", 0, bad)


@pytest.mark.parametrize(
    ("run_kg", "expected"),
    [
        (0, Tier.LOW),
        (9.999, Tier.LOW),
        (10, Tier.MEDIUM),
        (99.999, Tier.MEDIUM),
        (100, Tier.HIGH),
        (999.999, Tier.HIGH),
        (1000, Tier.CRITICAL),
        (1e6, Tier.CRITICAL),
    ],
)
def test_tiers_at_their_boundaries(run_kg: float, expected: Tier) -> None:
    assert tier(run_kg) is expected


def test_every_verdict_and_tier_is_a_lower_case_string() -> None:
    assert [v.value for v in Verdict] == ["pass", "warn", "fail"]
    assert [t.value for t in Tier] == ["low", "medium", "high", "critical"]
    assert all(v == v.value for v in [*Verdict, *Tier, *OnExceed, *LedgerBackend])


@pytest.mark.parametrize(
    ("year_start", "when", "start", "end"),
    [
        ((1, 1), date(2026, 1, 1), date(2026, 1, 1), date(2027, 1, 1)),
        ((1, 1), date(2026, 12, 31), date(2026, 1, 1), date(2027, 1, 1)),
        ((1, 1), date(2024, 2, 29), date(2024, 1, 1), date(2025, 1, 1)),
        ((4, 1), date(2026, 3, 31), date(2025, 4, 1), date(2026, 4, 1)),
        ((4, 1), date(2026, 4, 1), date(2026, 4, 1), date(2027, 4, 1)),
        ((4, 1), date(2026, 1, 15), date(2025, 4, 1), date(2026, 4, 1)),
        ((4, 1), date(2026, 12, 31), date(2026, 4, 1), date(2027, 4, 1)),
        ((2, 28), date(2024, 2, 29), date(2024, 2, 28), date(2025, 2, 28)),
        ((2, 28), date(2024, 2, 27), date(2023, 2, 28), date(2024, 2, 28)),
    ],
)
def test_budget_year(year_start: tuple[int, int], when: date, start: date, end: date) -> None:
    assert budget_year(budget(year_start=year_start), when) == (start, end)


# ----------------------------------------------------------------- property: verdict rules

KG = st.floats(min_value=0, max_value=2000, allow_nan=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Budget, dict[str, Any]]:
    """A budget with random rules, and decide()'s keyword arguments for one run."""
    b = budget(
        annual_budget_kg=draw(st.floats(min_value=1, max_value=5000)),
        allocations={"training": draw(st.floats(0, 1)), "inference": 0.0},
        limits=draw(st.sampled_from([{}, {"training": 25.0}])),
        warn_at=draw(st.floats(min_value=0.01, max_value=1)),
        regression_max_increase=draw(st.none() | st.floats(min_value=0.01, max_value=1)),
    )
    allocation = allocation_kg(b, "training")
    run = draw(KG | st.sampled_from([0.0, allocation, 25.0]))
    used = draw(KG | st.sampled_from([max(allocation - run, 0), b.warn_at * allocation]))
    kwargs = {
        "used_before_kg": used,
        "run_kg": run,
        "base_run_kg": draw(st.none() | KG),
        "is_pull_request": draw(st.booleans()),
    }
    return b, kwargs


@PROPERTY
@given(scenarios(), KG)
def test_more_usage_never_improves_the_verdict(
    scenario: tuple[Budget, dict[str, Any]], more_kg: float
) -> None:
    b, kwargs = scenario[0], dict(scenario[1])
    before = decide(b, "training", **kwargs).verdict
    kwargs["used_before_kg"] += more_kg
    assert RANK[decide(b, "training", **kwargs).verdict] >= RANK[before]


@PROPERTY
@given(scenarios(), st.sampled_from(OnExceed))
def test_never_pass_past_the_allocation_or_the_warning_level(
    scenario: tuple[Budget, dict[str, Any]], on_exceed: OnExceed
) -> None:
    b = dataclasses.replace(scenario[0], on_exceed=on_exceed)
    kwargs = scenario[1]
    d = decide(b, "training", **kwargs)
    after = kwargs["used_before_kg"] + kwargs["run_kg"]
    allocation = allocation_kg(b, "training")
    if after > allocation:
        assert d.verdict is (Verdict.FAIL if on_exceed is OnExceed.FAIL else Verdict.WARN)
    if after >= b.warn_at * allocation:
        assert d.verdict is not Verdict.PASS
    assert d.after_kg == after
    assert d.remaining_kg == allocation - after
