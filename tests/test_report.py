"""The rendered report: golden comments for each situation, valid Markdown, inert user text.

Golden files live in tests/golden/; after an intended change to the templates, regenerate
them with `CO2GATE_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py` and read the diff.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import pytest
from markdown_it import MarkdownIt
from mdcheck import problems

from co2gate import budget as budgets
from co2gate import intensity, report
from co2gate.app import gate
from co2gate.ledger.interface import Ledger, LedgerReadOnly, make_entry
from co2gate.model import Measurement, MeasurementError
from co2gate.sci import Embodied, sci

GOLDEN = Path(__file__).parent / "golden"
BUDGET = """\
version: 1
annual_budget_kg: 500
allocations: {training: 0.7, inference: 0.3}
limits: {training: 25}
warn_at: 0.8
regression: {max_increase: 0.2}
inference: {requests_per_year: 3.65e8}
location: {country: USA, region: virginia, pue: 1.1}
"""
INTENSITY = 244.8  # USA/virginia in codecarbon 3.3.2 (eGRID 2023)


class MemoryLedger(Ledger):
    """A ledger in a list; `read_only` answers appends the way a fork PR's token does."""

    def __init__(self, entries: list[dict[str, Any]] | None = None, read_only: bool = False):
        self.rows = list(entries or [])
        self.read_only = read_only

    def append(self, entry: Any) -> bool:
        if self.read_only:
            raise LedgerReadOnly("the token may read octo/lab but not write to it")
        self.rows.append(dict(entry))
        return True

    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        return [e for e in self.rows if start.isoformat() <= e["ended_at"][:10] < end.isoformat()]


def ci(event: str = "pull_request", *, pr: int | None = 12, run_id: str = "900") -> dict[str, Any]:
    return {
        "provider": "github",
        "repository": "octo/lab",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "ref": "refs/pull/12/merge" if event == "pull_request" else "refs/heads/main",
        "head_ref": "feature/faster" if event == "pull_request" else None,
        "base_ref": "main" if event == "pull_request" else None,
        "base_sha": "f" * 40 if event == "pull_request" else None,
        "event": event,
        "pr": pr if event == "pull_request" else None,
        "workflow": "train",
        "job": "train",
        "run_id": run_id,
        "run_attempt": "1",
        "server_url": "https://github.com",
    }


def gpu(index: int, kwh: float, util: float, seconds: float = 36_000.0) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": f"GPU-{index}",
        "energy_kwh": kwh,
        "mean_power_w": kwh * 3.6e6 / seconds,
        "mean_utilization_pct": util,
        "method": "nvml-energy-counter",
    }


def doc(
    kg: float,
    *,
    label: str = "train",
    workload: str = "training",
    gpus: list[dict[str, Any]] | None = None,
    ci_block: dict[str, Any] | None = None,
    ended_at: str = "2026-11-20T10:00:00.000+00:00",
    requests: int | None = None,
    notes: list[str] | None = None,
    command: list[str] | None = None,
) -> Measurement:
    """An emissions.json whose figures agree: kg = kWh x PUE 1.1 x 244.8 g/kWh / 1000."""
    total = kg * 1000 / (1.1 * INTENSITY)
    gpus = gpus if gpus is not None else []
    gpu_kwh = sum(g["energy_kwh"] for g in gpus)
    cpu = (total - gpu_kwh) * 0.6
    ram = total - gpu_kwh - cpu
    seconds = 36_000.0
    record = {
        "schema": "co2gate/emissions/v1",
        "run": {
            "id": "3f1e",
            "label": label,
            "workload": workload,
            "command": command or ["python", "train.py", "--epochs", "3"],
            "exit_code": 0,
            "signal": None,
            "started_at": "2026-11-20T00:00:00.000+00:00",
            "ended_at": ended_at,
            "duration_s": seconds,
            "stopped_by_guard": False,
        },
        "energy_kwh": {"cpu": cpu, "gpu": gpu_kwh, "ram": ram, "total": total},
        "power_w": {
            "cpu": cpu * 3.6e6 / seconds,
            "gpu": gpu_kwh * 3.6e6 / seconds,
            "ram": ram * 3.6e6 / seconds,
        },
        "methods": {
            "cpu": "rapl",
            "gpu": "nvml-energy-counter" if gpus else "none",
            "ram": "ram-size-estimate",
        },
        "pue": 1.1,
        "intensity_g_per_kwh": INTENSITY,
        "intensity_source": "codecarbon 3.3.2: USA/virginia (EPA eGRID2023)",
        "emissions_kg": kg,
        "gpus": gpus,
        "requests": requests,
        "per_request_g": kg * 1000 / requests if requests else None,
        "notes": notes or [],
        "ci": ci_block,
    }
    m = Measurement.from_json(record, "a test record")
    return dataclasses.replace(m, sci=sci(m, Embodied()))


def history(*runs: tuple[str, float, str, str]) -> list[dict[str, Any]]:
    """Ledger entries for (ended_at day, kg, label, ref) of earlier training runs."""
    entries = []
    for n, (day, kg, label, ref) in enumerate(runs):
        block = ci("push", run_id=str(100 + n)) | {"ref": ref}
        run = doc(kg, label=label, ci_block=block, ended_at=f"{day}T08:00:00+00:00")
        entries.append(make_entry(run, "training"))
    return entries


YEAR = history(
    ("2026-02-10", 40.0, "train", "refs/heads/main"),
    ("2026-05-03", 60.0, "train", "refs/heads/main"),
    ("2026-08-21", 95.0, "nightly", "refs/heads/main"),
    ("2026-11-02", 4.5, "train", "refs/heads/main"),
)  # 199.5 kg of training before the run; main's latest `train` run: 4.5 kg


def render(d: dict[str, Any], ledger: Ledger, *, name: str = "comment.md.j2") -> str:
    budget = budgets.parse(BUDGET, ".github/carbon-budget.yml")
    gated = gate.gate(d, budget, ledger, record=True)
    ctx = report.context(d, gated, budget, elsewhere=intensity.low_carbon())
    return report.render(name, ctx)


GPUS_4 = [gpu(0, 2.70, 93.0), gpu(1, 2.69, 91.5), gpu(2, 2.68, 90.2), gpu(3, 0.77, 2.0)]
SCENARIOS = {
    # 5 kg on a PR: 204.5 of 350 kg, under the 280 kg warn line; +11% on main's 4.5 kg.
    "pass": lambda: render(doc(5.0, gpus=[gpu(0, 6.3, 91.0)], ci_block=ci()), MemoryLedger(YEAR)),
    # 22 kg pushed to main: 221.5 kg... plus 60 kg more earlier this month crosses 280 kg.
    "warn": lambda: render(
        doc(22.0, ci_block=ci("push")),
        MemoryLedger(YEAR + history(("2026-11-10", 60.0, "nightly", "refs/heads/main"))),
    ),
    # 30 kg: over the 25 kg limit for one run and +567% on main's 4.5 kg.
    "fail": lambda: render(
        doc(30.0, gpus=[gpu(i, 12.0, 97.0) for i in range(8)], ci_block=ci()), MemoryLedger(YEAR)
    ),
    "no-gpu": lambda: render(doc(0.004, ci_block=None), MemoryLedger(YEAR)),
    "several-gpus": lambda: render(doc(3.0, gpus=GPUS_4, ci_block=ci()), MemoryLedger(YEAR)),
    "first-run": lambda: render(doc(5.0, gpus=[gpu(0, 2.1, 91.0)], ci_block=ci()), MemoryLedger()),
    "fork-pr": lambda: render(
        doc(5.0, gpus=[gpu(0, 2.1, 91.0)], ci_block=ci()), MemoryLedger(YEAR, read_only=True)
    ),
    # 22 kg with a range of 18-30 kg: only the high end crosses the 25 kg limit (gate_on: estimate).
    "range": lambda: render(
        dataclasses.replace(
            doc(22.0, gpus=[gpu(0, 6.3, 91.0)], ci_block=ci("push")),
            emissions_kg_range=(18.0, 30.0),
        ),
        MemoryLedger(YEAR),
    ),
    "inference": lambda: render(
        doc(0.02, label="serve", workload="inference", requests=10_000, ci_block=ci("push")),
        MemoryLedger(YEAR),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_comment(name: str) -> None:
    text = SCENARIOS[name]()
    path = GOLDEN / f"comment-{name}.md"
    if os.environ.get("CO2GATE_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs: regenerate and review"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.md")), ids=lambda p: p.name)
def test_golden_files_are_valid_markdown(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert problems(text) == []
    assert text.count("<details>") == text.count("</details>") >= 2
    assert len(text) < 65_536


def test_every_golden_scenario_has_a_chart_but_local_runs_too() -> None:
    for name in SCENARIOS:
        text = (GOLDEN / f"comment-{name}.md").read_text(encoding="utf-8")
        assert "```mermaid\nxychart-beta\n" in text, name


def test_verdict_line_carries_the_deciding_numbers() -> None:
    passed = (GOLDEN / "comment-pass.md").read_text(encoding="utf-8")
    # 199.5 kg before + 5 kg = 204.5 kg of 0.7 x 500 = 350 kg: 58.4%, 145.5 kg left.
    headline = (
        "**training: 204 kg of 350 kg (58.4%) after this run's 5 kg; 146 kg left; tier low.**"
    )
    assert headline in passed
    assert "### ✅ co2gate PASS: `train`" in passed
    failed = (GOLDEN / "comment-fail.md").read_text(encoding="utf-8")
    assert failed.startswith("### ❌ co2gate FAIL")
    assert "The run's 30 kg exceeds the 25 kg limit for one training run." in failed
    # main's latest train run: 4.5 kg; 30 / 4.5 - 1 = +566.7%. Its last 3 (40, 60, 4.5 kg):
    # median 40 kg, 30 / 40 - 1 = -25%; resampled medians span 4.5..60 kg: -50% to +566.7%.
    assert "(+566.7%)" in failed
    assert "The median of its last 3 runs is 40 kg: this run is -25.0%" in failed
    assert "(bootstrap interval -50.0% to +566.7%)" in failed
    assert "not exceeded beyond noise" in failed
    warned = (GOLDEN / "comment-warn.md").read_text(encoding="utf-8")
    # 199.5 + 60 + 22 = 281.5 kg >= 0.8 x 350 = 280 kg.
    assert warned.startswith("### ⚠️ co2gate WARN") and "282 kg of 350 kg (80.4%)" in warned


def test_several_gpus_flags_the_idle_one() -> None:
    text = (GOLDEN / "comment-several-gpus.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if "`NVIDIA H100 80GB HBM3`" in line]
    assert len(rows) == 4
    assert [("idle" in row) for row in rows] == [False, False, False, True]
    assert "1 of 4 GPUs idled through the run" in text


def test_first_run_and_fork_pr_say_so() -> None:
    first = (GOLDEN / "comment-first-run.md").read_text(encoding="utf-8")
    assert "the ledger has no `train` run on `main` yet" in first
    fork = (GOLDEN / "comment-fork-pr.md").read_text(encoding="utf-8")
    assert "not recorded in the ledger" in fork and "not recorded</sub>" in fork


def test_inference_per_request_and_projection_by_hand() -> None:
    text = (GOLDEN / "comment-inference.md").read_text(encoding="utf-8")
    # 0.02 kg / 10,000 requests = 2 mg per request, 2 g per 1,000;
    # a year of 3.65e8 requests: 2e-6 kg x 3.65e8 = 730 kg, over the 150 kg allocation.
    assert "**Per request** (10,000 served): 2 mg CO2e" in text
    assert "per 1,000: 2 g" in text
    assert "that is 730 kg, more than the 150 kg inference allocation" in text


def test_sci_line_by_hand() -> None:
    text = (GOLDEN / "comment-inference.md").read_text(encoding="utf-8")
    # 0.02 kg + a whole server for 10 h: 2,500 x 36,000 / 189,345,600 = 0.475324 kg embodied;
    # (0.02 + 0.475324) / 10,000 requests = 4.95324e-5 kg = 49.5 mg per request.
    assert "**SCI** (ISO/IEC 21031): 49.5 mg CO2e per request = (20 g operational + 475 g" in text


def test_usage_bar() -> None:
    # 100 of 200 kg used before (10 cells), a 50 kg run (5 cells), the 80% line at cell 16.
    assert report.usage_bar(100, 50, 200, 0.8) == "█" * 10 + "▓" * 5 + "░" + "┊" + "░" * 3
    assert report.usage_bar(0, 0.001, 200, 0.8) == "▓" + "░" * 15 + "┊" + "░" * 3
    assert report.usage_bar(190, 50, 200, 0.8) == "█" * 19 + "▓" + "▶"


def test_the_car_equivalence_by_hand() -> None:
    from co2gate.units import car_km

    # EPA: 400 g per mile = 0.4 kg / 1.609344 km = 0.248548 kg/km; 10 kg -> 40.2336 km.
    assert car_km(10.0) == pytest.approx(40.2336, rel=1e-6)


def test_checker_catches_what_it_should() -> None:
    assert problems("| a | b |\n| --- | --- |\n| 1 | 2 | 3 |\n")  # a row too wide
    assert problems("<details><summary>x</summary>\n\ntext\n")  # never closed
    assert problems("text <img src=x onerror=alert(1)> more\n")  # raw HTML
    assert problems("```mermaid\nxychart-beta\n    x-axis [a, b]\n    bar [1]\n```\n")
    assert problems("```mermaid\ngraph TD\n```\n")


HOSTILE = "</details><img src=x onerror=alert(1)>"


def test_hostile_text_comes_out_inert() -> None:
    block = ci() | {"head_ref": HOSTILE, "base_ref": "main|<b>x</b>", "repository": "octo/lab"}
    d = doc(
        5.0,
        label=f"train {HOSTILE} | `x` ``y``",
        ci_block=block,
        notes=["[click](javascript:alert(1)) @octocat **bold** <!-- x -->"],
        command=["sh", "-c", f"echo '{HOSTILE}' | tee ``x`` && echo $((1|2))"],
    )
    budget = budgets.parse(BUDGET, ".github/carbon-budget.yml")
    gated = gate.gate(d, budget, MemoryLedger(YEAR), record=True)
    ctx = report.context(d, gated, budget, elsewhere=intensity.low_carbon())
    for name in report.TEMPLATE_NAMES:
        text = report.render(name, ctx)
        assert problems(text) == [], name
        html = MarkdownIt("commonmark").enable("table").render(text)
        assert (
            "<img" not in html
            and "<b>" not in html
            and "javascript:" not in html.split("<code>")[0]
        )
        assert 'href="javascript' not in html
        assert "@octocat" not in html  # no mention: @ is followed by a zero-width space
        assert "&lt;/details&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # shown as text
    summary = report.render("summary.md.j2", ctx)
    assert "echo $((1|2))" in summary  # the command verbatim in a code span


@pytest.mark.parametrize(
    ("junk", "field"),
    [
        ({"gpus": [{"index": "0 | x", "mean_utilization_pct": "lots"}]}, "gpus[0]"),
        ({"power_w": None}, "power_w"),
        ({"methods": {"cpu": "<b>made-up</b>", "gpu": "none", "ram": "none"}}, "methods.cpu"),
    ],
)
def test_an_untrusted_files_junk_never_reaches_the_report(junk: dict[str, Any], field: str) -> None:
    """A workflow_run companion reads an artifact a fork produced: junk is refused when the
    file is read, so the report only ever renders checked, typed figures."""
    good = doc(1.0, ci_block=ci()).to_json()
    with pytest.raises(MeasurementError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Measurement.from_json(good | junk, "art/emissions.json")


def test_template_dir_overrides_by_name(tmp_path: Path) -> None:
    (tmp_path / "comment.md.j2").write_text("custom {{ run.label|code }} {{ emissions_kg|kg }}\n")
    ctx = report.context(doc(2.0))
    assert report.render("comment.md.j2", ctx, tmp_path) == "custom `train` 2 kg\n"
    # summary.md.j2 includes comment.md.j2: it picks up the override too
    assert report.render("summary.md.j2", ctx, tmp_path).startswith("custom `train` 2 kg\n")


def test_a_broken_template_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "summary.md.j2").write_text("{% if %}\n")
    with pytest.raises(report.TemplateProblem, match=r"summary\.md\.j2:1: "):
        report.check_templates(tmp_path)
    (tmp_path / "summary.md.j2").write_text("{{ no_such_key }}\n")
    report.check_templates(tmp_path)  # compiles; fails only when rendered
    with pytest.raises(report.TemplateProblem, match="no_such_key"):
        report.render("summary.md.j2", report.context(doc(1.0)), tmp_path)


def test_templates_ship_inside_the_package() -> None:
    from importlib.resources import files

    shipped = files("co2gate") / "templates"
    assert {"comment.md.j2", "summary.md.j2"} <= {p.name for p in shipped.iterdir()}


# ------------------------------------------------------------------ compiled templates


@pytest.fixture
def templates_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """co2gate's templates in a directory of the test's own, with no environment cached."""
    copy = tmp_path / "templates"
    shutil.copytree(report.TEMPLATES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(report, "TEMPLATES", copy)
    report.environment.cache_clear()
    yield copy
    report.environment.cache_clear()


def _never_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("compiled from source")

    monkeypatch.setattr(jinja2.Environment, "compile", refuse)


def test_compiled_templates_render_as_their_source(
    templates_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report.compile_templates()
    assert len(list((templates_copy / "__pycache__").glob("*.cache"))) == len(report.TEMPLATE_NAMES)
    _never_compile(monkeypatch)  # from here, only the cache can give a template
    for name in sorted(SCENARIOS):
        assert SCENARIOS[name]() == (GOLDEN / f"comment-{name}.md").read_text(encoding="utf-8")


def test_a_template_that_changed_is_compiled_again(
    templates_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report.compile_templates()
    summary = templates_copy / "summary.md.j2"
    summary.write_text(summary.read_text() + "changed\n")
    with monkeypatch.context() as patched:
        _never_compile(patched)
        with pytest.raises(AssertionError, match="compiled from source"):
            report.environment().get_template("summary.md.j2")
    report.environment.cache_clear()
    report.environment().get_template("summary.md.j2")  # compiled from its new source


def test_the_cache_is_written_only_where_it_may_be(
    templates_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE=1
    report.environment().get_template("comment.md.j2")
    assert not (templates_copy / "__pycache__").exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    blocked = report.Compiled()
    (templates_copy / "blocker").write_text("")
    blocked.directory = str(templates_copy / "blocker" / "cache")  # cannot be made: no error
    report._environment(None, blocked).get_template("comment.md.j2")
    report.environment.cache_clear()
    report.environment().get_template("comment.md.j2")
    assert list((templates_copy / "__pycache__").glob("*.cache"))
