"""Quality beside cost: --metric and --metrics-file, the front of CO2e against a metric, and
regression.allow_if_better, through the pure modules and the real CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun, late, refusal

from co2gate import metrics, pareto, regression
from co2gate.budget import BudgetError, parse
from co2gate.ledger.interface import entry_key
from co2gate.metrics import MetricsError
from co2gate.model import Measurement, MeasurementError
from co2gate.pareto import Better, Point

PY = sys.executable

# ------------------------------------------------------------------ parsing and bounds


def test_options_are_parsed_sorted_and_a_later_name_wins() -> None:
    got = metrics.parse_options(["val_loss=0.5", "acc=0.9", "val_loss= 0.41 ", "eval/bleu=-3e2"])
    assert got == {"acc": 0.9, "eval/bleu": -300.0, "val_loss": 0.41}
    assert list(got) == ["acc", "eval/bleu", "val_loss"]


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("val_loss", "give NAME=VALUE"),
        ("=1", "not a metric name"),
        ("bad name=1", "not a metric name"),
        ("-x=1", "not a metric name"),
        ("a" * 65 + "=1", "not a metric name"),
        ("loss\n::error::x=1", "not a metric name"),
        ("lösś=1", "not a metric name"),
        ("loss=abc", "is not a number"),
        ("loss=", "is not a number"),
        ("loss=nan", "not a finite number"),
        ("loss=inf", "not a finite number"),
        ("loss=-inf", "not a finite number"),
        ("loss=1e16", "not a finite number"),
    ],
)
def test_bad_options_are_refused_naming_the_option(option: str, said: str) -> None:
    with pytest.raises(MetricsError, match="--metric") as e:
        metrics.parse_options([option])
    assert said in str(e.value) and "\n" not in str(e.value)


def test_at_most_32_metrics() -> None:
    assert len(metrics.parse_options([f"m{i}=1" for i in range(32)])) == 32
    with pytest.raises(MetricsError, match="33 metrics; at most 32"):
        metrics.parse_options([f"m{i}=1" for i in range(33)])


def test_the_edges_of_names_and_values_are_accepted() -> None:
    name = "A" + "z" * 63
    got = metrics.parse_options([f"{name}=1e15", "_:.-/=-1e15", "0=0"])
    assert got == {name: 1e15, "_:.-/": -1e15, "0": 0.0}


def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "m.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_metrics_file_is_an_object_of_numbers(tmp_path: Path) -> None:
    path = _file(tmp_path, '{"val_loss": 0.25, "acc": 1}')
    assert metrics.read_file(path) == {"acc": 1.0, "val_loss": 0.25}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[1, 2]", "not a JSON object of name -> number"),
        ("{", "not a JSON object ("),
        ('{"loss": NaN}', "not a JSON object ("),
        ('{"loss": Infinity}', "not a JSON object ("),
        ('{"loss": 1e999}', "not a finite number"),
        ('{"loss": "0.3"}', "str is not a number"),
        ('{"loss": true}', "bool is not a number"),
        ('{"loss": null}', "NoneType is not a number"),
        ('{"a b": 1}', "not a metric name"),
        (b"\xff\xfe{}", "not a JSON object ("),
        ("[" * 60_000, "not a JSON object ("),
    ],
)
def test_bad_metrics_files_are_refused_naming_the_file(
    tmp_path: Path, text: str, said: str
) -> None:
    with pytest.raises(MetricsError) as e:
        metrics.read_file(_file(tmp_path, text))
    assert str(e.value).startswith("--metrics-file ") and said in str(e.value)


def test_a_huge_a_missing_or_special_metrics_file_is_refused_unread(tmp_path: Path) -> None:
    big = _file(tmp_path, '{"a": 1' + " " * metrics.MAX_FILE_BYTES + "}")
    with pytest.raises(MetricsError, match="more than 65,536 bytes"):
        metrics.read_file(big)
    with pytest.raises(MetricsError, match="cannot be read"):
        metrics.read_file(tmp_path / "absent.json")
    with pytest.raises(MetricsError, match="not a regular file"):
        metrics.read_file(tmp_path)
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with pytest.raises(MetricsError, match="not a regular file"):
        metrics.read_file(fifo)  # never waits for a writer


def test_options_win_over_the_file_and_the_total_is_bounded(tmp_path: Path) -> None:
    path = _file(tmp_path, '{"val_loss": 0.3, "acc": 0.8}')
    wanted = metrics.Wanted.of(["val_loss=0.5"], path)
    assert wanted.collect() == ({"acc": 0.8, "val_loss": 0.5}, None)
    many = _file(tmp_path, json.dumps({f"f{i}": i for i in range(30)}))
    got, problem = metrics.Wanted.of(["a=1", "b=2", "c=3"], many).collect()
    assert got == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert problem is not None and "33 metrics; at most 32" in problem


def test_a_file_that_cannot_be_used_keeps_the_options_and_says_so(tmp_path: Path) -> None:
    got, problem = metrics.Wanted.of(["acc=0.9"], tmp_path / "absent.json").collect()
    assert got == {"acc": 0.9}
    assert problem is not None and problem.endswith("the run is recorded with its --metric values")


# ------------------------------------------------------------------ emissions.json


def _doc(**extra: Any) -> dict[str, Any]:
    return {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "r1",
            "label": "train",
            "workload": "training",
            "command": ["python"],
            "exit_code": 0,
            "started_at": "2026-03-01T10:00:00+00:00",
            "ended_at": "2026-03-01T10:01:00+00:00",
            "duration_s": 60.0,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": 0.001, "gpu": 0.0, "ram": 0.0, "total": 0.001},
        "power_w": {"cpu": 60.0, "gpu": 0.0, "ram": 0.0},
        "methods": {"cpu": "rapl", "gpu": "none", "ram": "none"},
        "pue": 1.0,
        "intensity_g_per_kwh": 400.0,
        "intensity_source": "test",
        "emissions_kg": 0.0004,
    } | extra


def test_metrics_round_trip_and_an_older_file_has_none() -> None:
    m = Measurement.from_json(_doc(metrics={"val_loss": 0.4, "acc": 1}), "e.json")
    assert dict(m.metrics) == {"acc": 1.0, "val_loss": 0.4}
    assert m.to_json()["metrics"] == {"acc": 1.0, "val_loss": 0.4}
    old = Measurement.from_json(_doc(), "old.json")
    assert dict(old.metrics) == {} and "metrics" not in old.to_json()


@pytest.mark.parametrize(
    ("block", "said"),
    [
        ([1], "is not an object"),
        ({"a b": 1}, "is not a metric name"),
        ({"loss": "1"}, "is not a number"),
        ({"loss": True}, "is not a number"),
        ({"loss": 10**400}, "is not a finite number"),
        ({f"m{i}": 1 for i in range(33)}, "more than 32"),
    ],
)
def test_a_hostile_metrics_block_is_refused(block: object, said: str) -> None:
    with pytest.raises(MeasurementError, match=r"e\.json: metrics") as e:
        Measurement.from_json(_doc(metrics=block), "e.json")
    assert said in str(e.value)


def test_the_schema_describes_metrics() -> None:
    schema = json.loads(
        (Path(metrics.__file__).parent / "schemas" / "emissions.v1.json").read_text()
    )
    block = schema["properties"]["metrics"]
    assert block["maxProperties"] == metrics.MAX_METRICS
    assert block["propertyNames"]["pattern"] == f"^{metrics.NAME.pattern}$"


# ------------------------------------------------------------------ the front, by hand


def P(kg: float, value: float, name: str = "") -> Point:
    return Point(kg, value, name or f"{kg}/{value}")


def test_the_front_of_a_hand_drawn_cloud_lower_is_better() -> None:
    # (kg, loss): a (1, 0.9), b (2, 0.5), c (3, 0.6) dominated by b, d (4, 0.2),
    # e (2, 0.7) dominated by b, f (5, 0.2) dominated by d.
    a, b, c, d, e, f = P(1, 0.9), P(2, 0.5), P(3, 0.6), P(4, 0.2), P(2, 0.7), P(5, 0.2)
    assert pareto.front([c, f, a, e, d, b], Better.LOWER) == [a, b, d]


def test_the_front_of_the_same_cloud_higher_is_better() -> None:
    # accuracy: a (1, 0.9) beats every heavier run; nothing else survives.
    a, b, c, d = P(1, 0.9), P(2, 0.5), P(3, 0.95), P(4, 0.2)
    assert pareto.front([d, c, b, a], Better.HIGHER) == [a, c]


def test_equal_points_stay_on_the_front_and_do_not_dominate_each_other() -> None:
    a, b = P(1, 0.5, "a"), P(1, 0.5, "b")
    assert not pareto.dominates(a, b, Better.LOWER)
    assert pareto.front([a, b], Better.LOWER) == [a, b]
    # same kg, better loss: dominates; same loss, less kg: dominates
    assert pareto.dominates(P(1, 0.4), P(1, 0.5), Better.LOWER)
    assert pareto.dominates(P(0.5, 0.5), P(1, 0.5), Better.LOWER)


def test_a_run_on_the_front_and_a_dominated_one_name_the_lightest_dominator() -> None:
    history = [P(1, 0.9, "aaa"), P(2, 0.5, "bbb"), P(3, 0.4, "ccc")]
    on = pareto.place(P(1.5, 0.6, "this run"), history, "val_loss", Better.LOWER)
    assert on.on_front and on.sentence() == "on the front"
    assert [p.name for p in on.front] == ["aaa", "this run", "bbb", "ccc"]
    off = pareto.place(P(3.5, 0.55, "this run"), history, "val_loss", Better.LOWER)
    assert not off.on_front and off.dominated_by == history[1]  # bbb and ccc both dominate
    assert off.sentence() == "dominated by run bbb"
    assert [p.name for p in off.front] == ["aaa", "bbb", "ccc"]
    first = pareto.place(P(1, 1), [], "val_loss", Better.LOWER)
    assert first.on_front and first.sentence() == "the first run with this metric"


def test_the_metric_is_the_configured_one_else_the_only_one() -> None:
    assert pareto.choose("val_loss", {"acc": 1.0}) == "val_loss"
    assert pareto.choose(None, {"acc": 1.0}) == "acc"
    assert pareto.choose(None, {"acc": 1.0, "loss": 2.0}) is None
    assert pareto.choose(None, {}) is None


def test_ledger_entries_without_a_usable_figure_are_skipped() -> None:
    entries: list[dict[str, Any]] = [
        {"label": "t", "emissions_kg": 1.0, "metrics": {"m": 0.5}, "sha": "abcdef0123",
         "ended_at": "2026-01-02T00:00:00"},
        {"label": "t", "emissions_kg": 1.0, "metrics": {"m": "0.5"}, "ended_at": "2026-01-01"},
        {"label": "t", "emissions_kg": 1.0, "metrics": {"m": True}, "ended_at": "2026-01-01"},
        {"label": "t", "emissions_kg": 1.0, "metrics": {"m": math.nan}, "ended_at": "2026-01-01"},
        {"label": "t", "emissions_kg": -1.0, "metrics": {"m": 0.5}, "ended_at": "2026-01-01"},
        {"label": "t", "emissions_kg": 1.0, "metrics": [0.5], "ended_at": "2026-01-01"},
        {"label": "u", "emissions_kg": 1.0, "metrics": {"m": 0.5}, "ended_at": "2026-01-01"},
        {"label": "t", "emissions_kg": 2.0, "metrics": {"m": 1}, "run_id": "42",
         "ended_at": "2026-01-01T00:00:00"},
    ]  # fmt: skip
    got = pareto.points(entries, "t", "m")
    assert got == [Point(2.0, 1.0, "42", "2026-01-01"), Point(1.0, 0.5, "abcdef0", "2026-01-02")]


def test_improved_compares_with_the_median() -> None:
    assert pareto.improved(0.3, [0.5, 0.4, 0.35], Better.LOWER) == 0.4
    assert pareto.improved(0.4, [0.5, 0.4, 0.35], Better.LOWER) is None  # equal: not better
    assert pareto.improved(0.9, [0.8, 0.85], Better.HIGHER) == 0.825
    assert pareto.improved(0.9, [], Better.HIGHER) is None


def test_an_allowed_check_passes_and_says_why() -> None:
    check = regression.check(2.0, [1.0, 1.0, 1.0], max_increase=0.1, seed="t")
    assert check is not None and check.failed and check.exceeded
    import dataclasses

    allowed = dataclasses.replace(check, allowed="the metric improved")
    assert allowed.exceeded and not allowed.failed
    assert allowed.reason().endswith("exceeded, but the metric improved: passes.")


# ------------------------------------------------------------------ the budget file

BUDGET = """version: 1
annual_budget_kg: 1000000
allocations: {training: 1.0}
location: {intensity: 400000}
ledger: {backend: file, path: ledger}
"""


def test_allow_if_better_is_read() -> None:
    b = parse(
        BUDGET + "regression: {max_increase: 0.1, allow_if_better: {metric: val_loss, "
        "better: lower}}\n",
        "b.yml",
    )
    assert b.regression_allow_if_better == ("val_loss", Better.LOWER)
    assert parse(BUDGET, "b.yml").regression_allow_if_better is None


@pytest.mark.parametrize(
    ("block", "key", "said"),
    [
        ("{metric: val_loss}", "regression.allow_if_better.better", "missing"),
        ("{better: lower}", "regression.allow_if_better.metric", "missing"),
        ("{metric: val_loss, better: smaller}", "regression.allow_if_better.better", "lower"),
        ("{metric: 'a b', better: lower}", "regression.allow_if_better.metric", "metric name"),
        ("{metric: 3, better: lower}", "regression.allow_if_better.metric", "metric name"),
        ("{metric: m, better: lower, by: 2}", "regression.allow_if_better", "unknown key"),
        ("[val_loss]", "regression.allow_if_better", "must be a mapping"),
    ],
)
def test_a_bad_allow_if_better_is_refused_naming_the_key(block: str, key: str, said: str) -> None:
    with pytest.raises(BudgetError) as e:
        parse(BUDGET + f"regression: {{max_increase: 0.1, allow_if_better: {block}}}\n", "b.yml")
    assert key in str(e.value) and said in str(e.value)


# ------------------------------------------------------------------ through the real CLI


def _git(root: Path, *args: str) -> None:
    who = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "-C", str(root), *who, *args], check=True, capture_output=True)


def _entries(root: Path, runs: list[tuple[float, dict[str, float]]], ref: str) -> None:
    """Earlier runs of label `train` on `ref`, as push runs recorded them."""
    now = datetime.now(timezone.utc)
    for i, (kg, quality) in enumerate(runs):
        ended = (now - timedelta(seconds=60 * (len(runs) - i))).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
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
            "sha": f"{i:x}" * 40,
            "ref": ref,
            "event": "push",
            "pr": None,
        }
        if quality:
            entry["metrics"] = quality
        entry = {"key": entry_key(entry), **entry}
        shard = root / "ledger" / ended[:4] / f"{ended[5:7]}.jsonl"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with shard.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def _pr(root: Path, budget: str) -> dict[str, str]:
    """A repository whose base commit has `budget`, and a pull_request job's environment."""
    (root / ".github").mkdir()
    (root / ".github" / "carbon-budget.yml").write_text(budget)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "base")
    base = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    event = root / "event.json"
    pull = {"number": 5, "base": {"sha": base, "ref": "main"}, "head": {"sha": "e" * 40}}
    event.write_text(json.dumps({"pull_request": pull}))
    return {
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


ALLOW = (
    BUDGET + "regression: {max_increase: 0.1, allow_if_better: {metric: val_loss, better: lower}}\n"
)
HEAVY_BASE = [
    (1e-12, {"val_loss": 0.5}),
    (1.1e-12, {"val_loss": 0.4}),
    (0.9e-12, {"val_loss": 0.45}),
]


def _out(root: Path, name: str) -> Any:
    text = (root / "co2gate-report" / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def test_a_regression_passes_when_the_metric_improved_on_the_base_median(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _pr(tmp_path, ALLOW)
    _entries(tmp_path, HEAVY_BASE, "refs/heads/main")  # far below any real run
    result = co2gate(
        "run", "--label", "train", "--metric", "val_loss=0.3", "--", PY, "-c", "pass", env=env
    )
    assert result.returncode == 0, result.stderr
    verdict = _out(tmp_path, "verdict.json")
    said = [r for r in verdict["reasons"] if "allow_if_better" in r]
    assert len(said) == 1 and "val_loss 0.3 is lower (better) than the median 0.45" in said[0]
    assert said[0].endswith(": passes.") and "exceeded, but" in said[0]
    report = _out(tmp_path, "report.md")
    assert "exceeded beyond noise, but" in report and "❌" not in report
    assert "**on the front**" in report  # lightest loss of all: nothing dominates it
    entry = json.loads(next((tmp_path / "ledger").rglob("*.jsonl")).read_text().splitlines()[-1])
    assert entry["metrics"] == {"val_loss": 0.3}


def test_a_regression_still_fails_when_the_metric_is_worse_or_missing(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _pr(tmp_path, ALLOW)
    _entries(tmp_path, HEAVY_BASE, "refs/heads/main")
    worse = co2gate(
        "run", "--label", "train", "--metric", "val_loss=0.45", "--no-record", "--",
        PY, "-c", "pass", env=env,
    )  # fmt: skip
    assert worse.returncode == 1, worse.stderr
    notes = _out(tmp_path, "verdict.json")["notes"]
    assert any("val_loss 0.45 is not lower than the median 0.45" in n for n in notes), notes
    report = _out(tmp_path, "report.md")
    assert "**dominated by run " in report  # every base run is lighter with a better loss
    missing = co2gate("run", "--label", "train", "--no-record", "--", PY, "-c", "pass", env=env)
    assert missing.returncode == 1, missing.stderr
    notes = _out(tmp_path, "verdict.json")["notes"]
    assert any("this run has no 'val_loss' metric" in n for n in notes), notes


def test_the_metrics_file_is_read_after_the_command_that_writes_it(
    co2gate: CliRun, tmp_path: Path
) -> None:
    out, path = tmp_path / "out", tmp_path / "metrics.json"
    write = f"import json; json.dump({{'val_loss': 0.25}}, open({str(path)!r}, 'w'))"
    result = co2gate(
        "measure", "--out", str(out), "--metrics-file", str(path), "--metric", "acc=0.9",
        "--", PY, "-c", write, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "emissions.json").read_text())
    assert doc["metrics"] == {"acc": 0.9, "val_loss": 0.25}


def test_a_missing_metrics_file_is_one_note_and_the_run_is_still_written_and_gated(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    result = co2gate(
        "run", "--label", "train", "--metrics-file", "never.json", "--", PY, "-c",
        "import sys; sys.exit(3)", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 3, result.stderr  # the command's own code
    said = [line for line in result.stderr.splitlines() if "never.json" in line]
    assert len(said) == 1 and "the run is recorded with no metrics" in said[0]
    doc = _out(tmp_path, "emissions.json")
    assert "metrics" not in doc and _out(tmp_path, "verdict.json")["recorded"] is True


@pytest.mark.parametrize("command", ["measure", "run"])
def test_bad_metric_syntax_stops_the_command(co2gate: CliRun, tmp_path: Path, command: str) -> None:
    marker = tmp_path / "ran"
    result = co2gate(
        command, "--out", str(tmp_path / "o"), "--budget-file", str(tmp_path / "none.yml"),
        "--metric", "val loss=1", "--", *late(marker), env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert not marker.exists() and "--metric" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(refusal(result.stderr).strip().splitlines()) == 1


def _emissions(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "e.json"
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    doc = _doc(**extra)
    doc["run"] |= {"started_at": now, "ended_at": now}
    path.write_text(json.dumps(doc))
    return path


def test_check_takes_metrics_too_and_refuses_a_bad_file(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yml").write_text(BUDGET)
    path = _emissions(tmp_path, metrics={"acc": 0.5})
    (tmp_path / "m.json").write_text('{"val_loss": 0.2}')
    env = {"PATH": "/usr/bin:/bin"}
    ok = co2gate(
        "check", "--budget-file", "b.yml", "--metric", "acc=0.7", "--metrics-file", "m.json",
        str(path), env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    entry = json.loads(next((tmp_path / "ledger").rglob("*.jsonl")).read_text().splitlines()[-1])
    assert entry["metrics"] == {"acc": 0.7, "val_loss": 0.2}
    (tmp_path / "bad.json").write_text("[]")
    bad = co2gate(
        "check", "--budget-file", "b.yml", "--metrics-file", "bad.json", str(path), env=env
    )
    assert bad.returncode == 2 and "--metrics-file 'bad.json'" in bad.stderr


def test_a_hostile_name_from_the_ledger_is_escaped_in_the_comment(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yml").write_text(BUDGET)
    now = datetime.now(timezone.utc)
    hostile = "|<b>@me`[x]"  # a run id: the report shows its first 12 characters
    entry: dict[str, Any] = {
        "repository": "octo/lab", "run_id": hostile, "run_attempt": "1", "job": "train",
        "label": "local", "category": "training", "emissions_kg": 1e-12, "energy_kwh": 0.0,
        "duration_s": 1.0, "ended_at": (now - timedelta(minutes=1)).isoformat(),
        "sha": None, "ref": None, "event": None, "pr": None,
        "metrics": {"eval/loss:v2": 0.1, "x": "<b>"},
    }  # fmt: skip
    entry = {"key": entry_key(entry), **entry}
    shard = tmp_path / "ledger" / f"{now:%Y}" / f"{now:%m}.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text(json.dumps(entry) + "\n")
    path = _emissions(tmp_path, metrics={"eval/loss:v2": 0.5})
    path.write_text(path.read_text().replace('"train"', '"local"'))
    result = co2gate("check", "--budget-file", "b.yml", str(path), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    report = _out(tmp_path, "report.md")
    assert "eval/loss:v2" in report
    sentence = next(line for line in report.splitlines() if "dominated by run" in line)
    assert "\\|&lt;b&gt;@\u200bme\\`\\[x\\]" in sentence  # inert Markdown and HTML
    row = next(line for line in report.splitlines() if line.startswith("| `"))
    assert row.startswith("| ``\\|<b>@me`[x]`` ")  # verbatim in code, its | escaped
    assert row.count("|") - row.count("\\|") == 4  # still three cells


# ------------------------------------------------------------------ the range in every face


def test_the_summary_line_shows_the_range_as_the_comment_does() -> None:
    from co2gate import fmt, report

    m = Measurement.from_json(_doc(emissions_kg_range=[0.0002, 0.0008]), "e.json")
    line = report.summary_lines(m)[1]
    assert line.startswith(f"400 mg CO2e ({fmt.mass_range(0.0002, 0.0008)}, a ~90% range) = ")
    assert "(200-800 mg, a ~90% range)" in line
    page = report.render("comment.md.j2", report.context(m))
    assert "(200-800 mg, a ~90% range" in page  # the same words in the comment's headline
    exact = Measurement.from_json(_doc(), "old.json")  # no range: none shown
    assert "range" not in report.summary_lines(exact)[1]


def test_verdict_json_holds_the_runs_range(
    co2gate: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yml").write_text(BUDGET)
    ranged = _emissions(tmp_path, emissions_kg_range=[0.0003, 0.0006])
    env = {"PATH": "/usr/bin:/bin"}
    result = co2gate("check", "--budget-file", "b.yml", "--no-record", str(ranged), env=env)
    assert result.returncode == 0, result.stderr
    assert _out(tmp_path, "verdict.json")["emissions_kg_range"] == [0.0003, 0.0006]
    plain = _emissions(tmp_path)
    doc = json.loads(
        co2gate(
            "check", "--budget-file", "b.yml", "--no-record", "--json", str(plain), env=env
        ).stdout
    )
    assert doc["emissions_kg_range"] == [0.0004, 0.0004]  # no width known: [x, x]
