"""The regression rule that survives noise: a PR's run against the median of the base branch's
last runs, failing only when the bootstrap's lower bound on the increase passes max_increase."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import CliRun, late, refusal

from co2gate import regression
from co2gate.budget import Budget, BudgetError, Verdict, decide, parse
from co2gate.ledger.interface import entry_key

PY = sys.executable
NOISY_BASE = (10.0, 10.4, 9.7, 10.2, 9.9)  # about 2.5% apart: median 10


def check(head: float, base: tuple[float, ...], **kw: float) -> regression.Check:
    done = regression.check(head, base, max_increase=kw.pop("max_increase", 0.1), seed="train")
    assert done is not None
    return done


# ------------------------------------------------------------------ the bootstrap bound


def test_identical_base_runs_give_a_bound_equal_to_the_plain_ratio() -> None:
    """Every resample of five 10 kg runs has median 10: the bound is 13 / 10 exactly."""
    c = check(13.0, (10.0,) * 5)
    assert c.method is regression.Method.BOOTSTRAP
    assert (c.base, c.ratio, c.low, c.high) == (10.0, 1.3, 1.3, 1.3)
    assert c.failed  # 1.3 > 1.1


def test_the_bound_is_the_lower_quantile_of_the_resampled_ratios() -> None:
    """Base runs 5, 10, 10, 10, 20: a resample's median is 5 only when three of the five draws
    are 5 (P about 0.058), 20 only when three are 20 (the same): below the 10% quantile's
    reach on either side, so both bounds are head / 10, the plain ratio."""
    c = regression.check(
        12.0, (5.0, 10.0, 10.0, 10.0, 20.0), max_increase=0.1, confidence=0.9, seed="x"
    )
    assert c is not None and (c.low, c.ratio, c.high) == (1.2, 1.2, 1.2)
    wide = regression.check(
        12.0, (5.0, 10.0, 10.0, 10.0, 20.0), max_increase=0.1, confidence=0.99, seed="x"
    )
    assert wide is not None and wide.low == pytest.approx(12 / 20) and wide.high == 12 / 5


def test_a_large_increase_over_noisy_runs_fails_and_a_small_one_passes() -> None:
    assert check(15.0, NOISY_BASE).failed  # +50%
    small = check(10.2, NOISY_BASE)  # +2%
    assert not small.failed and small.low < 1.02 < small.high


def test_noise_alone_does_not_fail_where_a_single_comparison_would() -> None:
    """A base branch whose latest run happened to be light: +15% on it, +3% on the median."""
    base = (10.4, 10.6, 10.2, 10.5, 9.0)
    assert check(10.8, base[-1:]).failed  # today's rule against 9.0: +20%
    assert not check(10.8, base).failed


def test_the_same_inputs_give_the_same_bound() -> None:
    base = (10.0, 12.0, 9.0, 11.0, 14.0)
    runs = [regression.check(13.0, base, max_increase=0.1, seed="train") for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    got = subprocess.run(
        [
            PY,
            "-c",
            f"from co2gate import regression as r; print(r.check(13.0, {base!r}, "
            "max_increase=0.1, seed='train').low)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", **__import__("os").environ},
    ).stdout.strip()
    assert float(got) == runs[0].low  # another process, another hash seed: the same figure


def test_only_the_last_runs_count() -> None:
    """runs=3: the two old 100 kg runs are out of the comparison."""
    c = regression.check(11.0, (100, 100, 10, 10, 10), max_increase=0.05, runs=3, seed="t")
    assert c is not None and c.base_runs == (10, 10, 10) and c.failed


# ---------------------------------------------------------------- fewer than three runs


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_base_runs_fall_back_to_the_latest_and_say_so(n: int) -> None:
    base = (50.0, 10.0)[-n:]
    c = check(11.5, base)
    assert c.method is regression.Method.LATEST and c.base == 10.0
    assert c.low == c.high == c.ratio == 1.15 and c.failed
    assert "single comparison" in c.reason() and f"Only {n} base run" in c.reason()


def test_no_base_run_or_a_zero_one_is_no_comparison() -> None:
    assert regression.check(1.0, (), max_increase=0.1) is None
    assert regression.check(1.0, (0.0, 0.0, 0.0), max_increase=0.1) is None
    with pytest.raises(ValueError):
        regression.check(float("nan"), (1.0,), max_increase=0.1)


# -------------------------------------------------------------------- the verdict's reasons


HEAD = "version: 1\nannual_budget_kg: 1000\nallocations: {training: 1}\n"


def budget(**regression_keys: float) -> Budget:
    keys = ", ".join(f"{k}: {v}" for k, v in regression_keys.items())
    return parse(f"{HEAD}regression: {{{keys}}}\n", "b.yml")


def test_the_verdict_states_the_increase_its_interval_and_the_outcome() -> None:
    b = budget(max_increase=0.1)
    failed = decide(b, "training", 0, 15.0, base_runs_kg=NOISY_BASE, is_pull_request=True)
    assert failed.verdict is Verdict.FAIL
    said = failed.reasons[1]
    assert said.startswith("Against the median of the base branch's last 5 runs (10 kg)")
    assert "+50.0%" in said and "at 90% confidence" in said and said.endswith("+10.0%: fails.")
    passed = decide(b, "training", 0, 10.2, base_runs_kg=NOISY_BASE, is_pull_request=True)
    assert passed.verdict is Verdict.PASS
    assert any("+2.0%" in r and r.endswith(": passes.") for r in passed.reasons)
    push = decide(b, "training", 0, 15.0, base_runs_kg=NOISY_BASE)
    assert push.verdict is Verdict.PASS and len(push.reasons) == 2  # no rule off a PR


def test_the_files_runs_and_confidence_decide() -> None:
    """Base 13, 13, 10, 10, 10: median 10, but a resample's median is 13 with P about 0.32."""
    base = (13.0, 13.0, 10.0, 10.0, 10.0)

    def verdict(**keys: float) -> tuple[Verdict, str]:
        d = decide(budget(**keys), "training", 0, 12.0, base_runs_kg=base, is_pull_request=True)
        return d.verdict, d.reasons[1]

    lax = verdict(max_increase=0.1)
    assert lax[0] is Verdict.PASS and "+20.0%, at least -7.7% at 90% confidence" in lax[1]
    one = verdict(max_increase=0.1, runs=1)  # against the latest 10 kg alone: +20%
    assert one[0] is Verdict.FAIL and "single comparison" in one[1]
    sure = verdict(max_increase=0.1, confidence=0.6)  # the 40% quantile: 12 / 10
    assert sure[0] is Verdict.FAIL and "at least +20.0% at 60% confidence" in sure[1]


# ------------------------------------------------------------------ the budget file


def test_defaults() -> None:
    b = budget(max_increase=0.2)
    assert (b.regression_runs, b.regression_confidence) == (5, 0.9)


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ("runs: 0", "regression.runs: must be a whole number from 1 to 100, got 0"),
        ("runs: 101", "regression.runs: must be a whole number from 1 to 100, got 101"),
        ("runs: 2.5", "regression.runs: must be a whole number from 1 to 100, got 2.5"),
        ("runs: true", "regression.runs: must be a whole number from 1 to 100, got true"),
        ("runs: '5'", "regression.runs"),
        ("confidence: 0.5", "regression.confidence: must be a number above 0.5 and below 0.999"),
        ("confidence: 0.999", "regression.confidence: must be a number above 0.5 and below"),
        ("confidence: 1", "regression.confidence"),
        ("confidence: 90", "regression.confidence"),
        ("confidence: high", "regression.confidence"),
        ("alpha: 0.1", "regression"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(keys: str, said: str) -> None:
    text = f"{HEAD}regression: {{max_increase: 0.1, {keys}}}\n"
    with pytest.raises(BudgetError) as e:
        parse(text, "b.yml")
    message = str(e.value)
    assert said in message and "b.yml" in message and "\n" not in message


@pytest.mark.parametrize("keys", ["runs: 1, confidence: 0.501", "runs: 100, confidence: 0.998"])
def test_the_edges_of_the_ranges_are_accepted(keys: str) -> None:
    text = (
        f"version: 1\nannual_budget_kg: 1\nallocations: {{training: 1}}\nregression: {{{keys}}}\n"
    )
    parse(text, "b.yml")


def test_the_schema_knows_the_new_keys() -> None:
    schema = json.loads(
        (Path(regression.__file__).parent / "schemas" / "budget.v1.json").read_text()
    )
    keys = schema["properties"]["regression"]["properties"]
    assert keys["runs"]["maximum"] == 100 and keys["confidence"]["exclusiveMinimum"] == 0.5


# --------------------------------------------------------------- through the real CLI

BUDGET = """version: 1
annual_budget_kg: 1000000
allocations: {training: 0.7, inference: 0.3}
location: {intensity: 400000}
ledger: {backend: file, path: ledger}
regression: {max_increase: 0.1}
"""


def _git(root: Path, *args: str) -> None:
    who = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "-C", str(root), *who, *args], check=True, capture_output=True)


def _base_entries(
    root: Path, kgs: list[float], units: float | None = None, unit: str | None = None
) -> None:
    """The base branch's runs of label `train`, as earlier push runs recorded them."""
    now = datetime.now(timezone.utc)
    for i, kg in enumerate(kgs):
        ended = (now - timedelta(seconds=60 * (len(kgs) - i))).isoformat(timespec="milliseconds")
        entry = {
            "repository": "octo/lab",
            "run_id": str(100 + i),
            "run_attempt": "1",
            "job": "train",
            "label": "train",
            "category": "training",
            "emissions_kg": kg,
            "energy_kwh": 0.0,
            "duration_s": 1.0,
            "ended_at": ended,
            "sha": "a" * 40,
            "ref": "refs/heads/main",
            "event": "push",
            "pr": None,
        }
        if units is not None:
            entry |= {"units": units, "unit": unit}
        entry = {"key": entry_key(entry), **entry}
        shard = root / "ledger" / ended[:4] / f"{ended[5:7]}.jsonl"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with shard.open("a") as f:
            f.write(json.dumps(entry) + "\n")


@pytest.fixture
def pr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """A repository whose base commit has BUDGET, and a pull_request job's environment."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "base")
    base = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    event = tmp_path / "event.json"
    pull = {"number": 5, "base": {"sha": base, "ref": "main"}, "head": {"sha": "e" * 40}}
    event.write_text(json.dumps({"pull_request": pull}))
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "train",
        "GITHUB_REF": "refs/pull/5/merge",
        "GITHUB_BASE_REF": "main",
    }
    return tmp_path, env


def _verdict(root: Path) -> dict[str, object]:
    return json.loads((root / "co2gate-report" / "verdict.json").read_text())  # type: ignore[no-any-return]


def test_a_pr_far_above_five_base_runs_fails_with_the_interval(
    co2gate: CliRun, pr: tuple[Path, dict[str, str]]
) -> None:
    root, env = pr
    _base_entries(root, [1e-12, 1.1e-12, 0.9e-12, 1.05e-12, 0.95e-12])  # far below any run
    result = co2gate("run", "--label", "train", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 1, result.stderr
    reasons = _verdict(root)["reasons"]
    assert isinstance(reasons, list)
    said = [r for r in reasons if "median of the base branch's last 5 runs" in r]
    assert len(said) == 1 and "bootstrap interval" in said[0] and said[0].endswith(": fails.")
    report = (root / "co2gate-report" / "report.md").read_text()
    assert "The median of its last 5 runs is" in report and "exceeded beyond noise" in report


def test_a_pr_below_its_base_runs_passes_and_says_why(
    co2gate: CliRun, pr: tuple[Path, dict[str, str]]
) -> None:
    root, env = pr
    _base_entries(root, [90.0, 100.0, 95.0, 105.0, 98.0])  # far above a one-second run
    result = co2gate("run", "--label", "train", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 0, result.stderr
    reasons = _verdict(root)["reasons"]
    assert isinstance(reasons, list)
    assert any("last 5 runs (98 kg)" in r and r.endswith(": passes.") for r in reasons), reasons


def test_a_pr_with_two_base_runs_is_compared_with_the_latest_and_says_so(
    co2gate: CliRun, pr: tuple[Path, dict[str, str]]
) -> None:
    root, env = pr
    _base_entries(root, [1.0, 1e-12])
    result = co2gate("run", "--label", "train", "--", PY, "-c", "pass", env=env)
    assert result.returncode == 1, result.stderr  # against the latest, 1e-12 kg
    reasons = _verdict(root)["reasons"]
    assert isinstance(reasons, list)
    assert any("Only 2 base runs" in r and "single comparison" in r for r in reasons), reasons


# ------------------------------------------------------------------------ units of work


def test_a_pr_is_compared_per_unit_of_work_where_both_sides_counted_it(
    co2gate: CliRun, pr: tuple[Path, dict[str, str]]
) -> None:
    """The base runs emitted 100 kg each, but over 1e12 tokens: 0.1 µg a token. A one-second
    run over 1 token is far lighter in total and far heavier per token: it fails."""
    root, env = pr
    _base_entries(root, [100.0] * 5, units=1e12, unit="tokens")
    args = ("run", "--label", "train", "--units", "1", "--unit", "tokens", "--", PY, "-c", "pass")
    result = co2gate(*args, env=env)
    assert result.returncode == 1, result.stderr
    reasons = _verdict(root)["reasons"]
    assert isinstance(reasons, list)
    assert any("last 5 runs" in r and "per token" in r and "fails" in r for r in reasons)
    doc = json.loads((root / "co2gate-report" / "emissions.json").read_text())
    assert (doc["requests"], doc["unit"]) == (1, "tokens")
    recorded = [
        json.loads(line)
        for shard in (root / "ledger").rglob("*.jsonl")
        for line in shard.read_text().splitlines()
    ]
    assert [(e["units"], e["unit"]) for e in recorded if e["run_id"] == "77"] == [(1, "tokens")]


def test_without_base_runs_of_the_same_unit_the_totals_are_compared(
    co2gate: CliRun, pr: tuple[Path, dict[str, str]]
) -> None:
    root, env = pr
    _base_entries(root, [100.0] * 5, units=1e12, unit="samples")  # another unit: totals
    args = ("run", "--label", "train", "--units", "1", "--unit", "tokens", "--", PY, "-c", "pass")
    result = co2gate(*args, env=env)
    assert result.returncode == 0, result.stderr
    reasons = _verdict(root)["reasons"]
    assert isinstance(reasons, list)
    assert any("last 5 runs (100 kg)" in r and "per " not in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--requests", "5", "--units", "5", "--unit", "tokens"), "--requests and --units"),
        (("--units", "5"), "--units N and --unit"),
        (("--unit", "steps"), "--units N and --unit"),
    ],
)
@pytest.mark.parametrize("command", ["measure", "run"])
def test_units_are_one_figure_given_one_way(
    co2gate: CliRun, tmp_path: Path, command: str, options: tuple[str, ...], said: str
) -> None:
    marker = tmp_path / "ran"
    args = (command, "--out", str(tmp_path / "out"), *options, "--")
    result = co2gate(*args, *late(marker))
    assert result.returncode == 2 and not marker.exists()  # refused, the command stopped
    lines = refusal(result.stderr).strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr


def test_check_refuses_both_too(co2gate: CliRun, tmp_path: Path) -> None:
    result = co2gate("check", "--requests", "5", "--units", "5", "--unit", "samples", "x.csv")
    assert result.returncode == 2 and "--requests and --units" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_emissions_json_keeps_the_unit_and_old_files_have_none(
    co2gate: CliRun, tmp_path: Path
) -> None:
    from co2gate.model import Measurement, MeasurementError

    out = tmp_path / "out"
    args = ("measure", "--out", str(out), "--units", "64", "--unit", "samples", "--", PY, "-c", "")
    assert co2gate(*args).returncode == 0
    doc = json.loads((out / "emissions.json").read_text())
    m = Measurement.from_json(doc, "new.json")
    assert (m.requests, m.unit) == (64, "samples") and m.to_json() == doc
    doc.pop("unit")  # a file from before --units: its count is of requests
    assert Measurement.from_json(doc, "old.json").unit is None
    doc["unit"] = "bananas"
    with pytest.raises(MeasurementError, match="unit"):
        Measurement.from_json(doc, "bad.json")
