"""co2gate report: the annual report from the ledger (annual.py, app/report_year.py), its four
files, its agreement with `co2gate budget --json`, preflight refusals and guard stops in the
ledger, and the HTML as a real headless Chromium renders and prints it."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun
from fakegithub import FakeGitHub
from test_report import doc

from co2gate import annual, report
from co2gate.app.gate import base_runs_kg
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import entry_key, make_entry, refusal_entry
from co2gate.model import Measurement

PY = sys.executable
BUDGET = """version: 1
annual_budget_kg: 100
allocations: {training: 0.7, inference: 0.3}
ledger: {backend: file, path: ledger}
"""


@pytest.fixture
def in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "carbon-budget.yml").write_text(BUDGET)
    return tmp_path


def entry(n: int, label: str, kg: float, ended: str, category: str = "training", **extra: Any):
    e: dict[str, Any] = {
        "repository": "octo/lab",
        "run_id": f"run-{n}",
        "run_attempt": "1",
        "job": "train",
        "label": label,
        "category": category,
        "emissions_kg": kg,
        "energy_kwh": kg * 4,
        "duration_s": 60.0,
        "ended_at": ended,
        "sha": None,
        "ref": "refs/heads/main",
        "event": "push",
        "pr": None,
    } | extra
    e["key"] = entry_key(e)
    return e


def record(root: Path, *entries: dict[str, Any]) -> None:
    ledger = FileLedger(root / "ledger")
    for e in entries:
        assert ledger.append(e)


def at(month: int, day: int = 10, year: int = 2026) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T12:00:00.000+00:00"


# Six entries of 2026 whose figures are worked out by hand below, and one of 2025.
SMALL = [
    # 1.5 kg, 6 kWh: cpu 1 (rapl), gpu 4 (nvml), ram 1 (estimate); PUE 1.2; 3 L of water
    entry(1, "train", 1.5, at(1),
          kwh_by_method={"rapl": 1, "nvml-energy-counter": 4, "ram-size-estimate": 1},
          pue=1.2, intensity_source="codecarbon 3.3.2: USA/virginia (eGRID 2023)",
          water_l=3.0, embodied_kg=0.5),
    # 0.5 kg, 2 kWh, stopped by the guard; no methods, PUE or water (an older line)
    entry(2, "train", 0.5, at(2), stopped_by_guard=True),
    # 2 kg, 8 kWh of inference, all GPU: measured; PUE 1.0; 1 L; 1000 requests
    entry(3, "serve", 2.0, at(2, 20), "inference",
          kwh_by_method={"nvml-energy-counter": 8.0}, pue=1.0, water_l=1.0,
          intensity_source="codecarbon 3.3.2: USA/virginia (eGRID 2023)", units=1000,
          unit="requests", embodied_kg=0.1),
    # refused by preflight: 0 kg, projected 5 kg
    entry(4, "train", 0.0, at(3), refused=True, projected_kg=5.0),
    # 0.25 kg, 1 kWh of a category with no allocation, CPU estimated
    entry(5, "lint", 0.25, at(12, 31), "ci",
          kwh_by_method={"tdp-load-estimate": 0.5, "ram-size-estimate": 0.5, "none": 0},
          intensity_source="configured: 400 g"),
    # outside the year
    entry(6, "train", 100.0, at(12, 31, 2025)),
]  # fmt: skip


def year_2026(entries: list[dict[str, Any]] | None = None) -> annual.Annual:
    return annual.summarise(
        entries if entries is not None else [e for e in SMALL if e["ended_at"] >= "2026"],
        date(2026, 1, 1),
        date(2027, 1, 1),
        allocations_kg={"training": 70.0, "inference": 30.0},
        annual_budget_kg=100.0,
    )


# ------------------------------------------------------------------ hand-computed totals


def test_totals_by_category_month_and_label_are_the_hand_computed_ones() -> None:
    a = year_2026()
    assert a.total_kg == 1.5 + 0.5 + 2.0 + 0.0 + 0.25
    assert a.total.energy_kwh == pytest.approx(6 + 2 + 8 + 0 + 1)
    assert (a.total.runs, a.total.refused, a.total.stopped_by_guard) == (4, 1, 1)
    assert a.category_kg == {"training": 2.0, "inference": 2.0, "ci": 0.25}
    assert a.by_category["training"].runs == 2 and a.by_category["training"].refused == 1
    assert list(a.by_month) == [f"2026-{m:02d}" for m in range(1, 13)]  # every month, in order
    kg = {m: g.emissions_kg for m, g in a.by_month.items() if g.emissions_kg or g.refused}
    assert kg == {"2026-01": 1.5, "2026-02": 2.5, "2026-03": 0.0, "2026-12": 0.25}
    assert {n: g.emissions_kg for n, g in a.by_label.items()} == {
        "serve": 2.0,
        "train": 2.0,
        "lint": 0.25,
    }
    assert list(a.by_label) == ["serve", "train", "lint"]  # largest first, then by name


def test_measured_and_estimated_shares_by_method() -> None:
    a = year_2026()
    # measured: rapl 1 + nvml 4 + nvml 8 = 13; estimated: ram 1 + tdp 0.5 + ram 0.5 = 2;
    # unknown: the 2 kWh of the entry without methods. Of 17 kWh.
    assert a.by_method == pytest.approx(
        {"nvml-energy-counter": 12, "unknown": 2, "ram-size-estimate": 1.5, "rapl": 1,
         "tdp-load-estimate": 0.5}
    )  # fmt: skip
    assert a.share("measured") == pytest.approx(13 / 17)
    assert a.share("estimated") == pytest.approx(2 / 17)
    assert a.share("unknown") == pytest.approx(2 / 17)


def test_pue_water_and_sci() -> None:
    a = year_2026()
    # PUE recorded for 6 + 8 kWh: (6 x 1.2 + 8 x 1.0) / 14; the other 3 kWh at 1.
    assert a.total.pue == pytest.approx((7.2 + 8) / 14)
    assert a.total.facility_energy_kwh == pytest.approx(7.2 + 8 + 3)
    assert a.total.pue_coverage == pytest.approx(14 / 17)
    assert a.total.water == 4.0 and a.total.water_runs == 2
    assert a.by_label["lint"].water is None  # not measured, not zero
    sci = a.sci()
    assert sci["units"] == 4 and sci["embodied_kg"] == pytest.approx(0.6)
    assert sci["kg_per_unit"] == pytest.approx((4.25 + 0.6) / 4)
    assert sci["per_unit"] == [
        {
            "functional_unit": "requests",
            "units": 1000.0,
            "operational_kg": 2.0,
            "embodied_kg": 0.1,
            "kg_per_unit": pytest.approx(2.1 / 1000),
        }
    ]


def test_refusals_guard_stops_largest_runs_and_sources() -> None:
    a = year_2026()
    doc = a.to_json()
    assert doc["refusals"] == {"count": 1, "projected_kg": 5.0, "by_label": {"train": 1}}
    assert doc["guard_stops"] == {"count": 1, "by_label": {"train": 1}}
    largest = [(r.label, r.emissions_kg, r.stopped_by_guard) for r in a.largest]
    assert largest == [("serve", 2.0, False), ("train", 1.5, False), ("train", 0.5, True),
                       ("lint", 0.25, False)]  # fmt: skip
    assert a.intensity_sources == {
        "codecarbon 3.3.2: USA/virginia (eGRID 2023)": (2, 3.5),
        "configured: 400 g": (1, 0.25),
    }
    assert a.codecarbon_versions == {"3.3.2": 2}  # named by the intensity's source


def test_an_empty_year_has_zeros_and_no_shares() -> None:
    a = year_2026([])
    assert a.total_kg == 0.0 and a.total.runs == 0
    assert a.share("measured") is None and a.sci()["kg_per_unit"] is None
    assert set(a.by_category) == {"training", "inference"}  # allocated: shown, at zero
    json.dumps(a.to_json(), allow_nan=False)
    for form in ("md", "html"):
        assert "0 kg" in report.annual_text(a, "file ledger", form)


@pytest.mark.parametrize(
    "extra",
    [
        {"water_l": -1.0},
        {"water_l": "5"},
        {"water_l": True},
        {"water_l": 1e300},
        {"pue": 0.5},
        {"pue": "1.2"},
        {"kwh_by_method": {"made-up": 1.0, "rapl": None}},
        {"kwh_by_method": {"rapl": -1, "nvml-energy-counter": 2}},
        {"kwh_by_method": {"rapl": True}},
        {"kwh_by_method": ["rapl", 1]},
        {"kwh_by_method": {f"m{n}": 1 for n in range(100)}},
        {"kwh_by_method": {"rapl": 0}},
        {"intensity_source": {"a": 1}},
        {"intensity_source": "x" * 5000},
        {"embodied_kg": float("nan"), "units": -5, "unit": "requests"},
        {"refused": "yes", "stopped_by_guard": 1, "projected_kg": "lots"},
    ],
)
def test_a_hand_edited_figure_beside_the_ledgers_own_is_not_known_never_summed(
    extra: dict[str, Any],
) -> None:
    a = year_2026([entry(1, "x", 1.0, at(5), **extra)])
    assert a.total_kg == 1.0 and a.total.energy_kwh == 4.0 and a.total.runs == 1
    assert a.total.water is None and a.total.pue is None
    assert a.total.refused == 0 and a.total.stopped_by_guard == 0
    assert a.refusals_projected_kg == 0.0 and a.embodied_kg == 0.0 and a.per_unit == {}
    assert a.intensity_sources == {} and a.codecarbon_versions == {}
    assert a.total.measured_kwh + a.total.estimated_kwh <= 2.0 + 1e-12  # no made-up method
    json.dumps(a.to_json(), allow_nan=False)


def test_a_made_up_method_counts_as_unknown() -> None:
    odd = {"made-up": 1, "nvml-energy-counter": 3.0, "none": 0}
    a = year_2026([entry(1, "x", 1.0, at(5), kwh_by_method=odd)])
    assert a.by_method == {"nvml-energy-counter": 3.0, "unknown": 1.0}


# ----------------------------------------------------------- the ledger: refusals, the guard


def guard_stopped(m: Measurement) -> Measurement:
    from dataclasses import replace

    return replace(m, run=replace(m.run, stopped_by_guard=True))


def test_a_ledger_entry_carries_its_provenance_and_the_guards_stop() -> None:
    m = doc(2.0)
    e = make_entry(guard_stopped(m), "training")
    assert e["stopped_by_guard"] is True
    assert e["kwh_by_method"][m.methods.cpu.value] == m.energy_kwh.cpu  # before PUE
    assert sum(e["kwh_by_method"].values()) == pytest.approx(m.energy_kwh.total)
    assert e["pue"] == m.pue and e["intensity_source"] == m.intensity_source
    assert "stopped_by_guard" not in make_entry(m, "training")  # only when it was


def test_a_guard_stopped_runs_entry_is_counted_by_the_report(
    co2gate: CliRun, in_repo: Path
) -> None:
    record(
        in_repo,
        make_entry(guard_stopped(doc(0.5)), "training"),
        make_entry(doc(1.0, label="eval", ended_at=at(11, 21)), "training"),
    )
    result = co2gate("report", "--year", "2026", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads((in_repo / "co2gate-report" / "annual-2026.json").read_text())
    assert found["guard_stops"]["count"] == 1 and found["totals"]["stopped_by_guard"] == 1
    assert found["totals"]["runs"] == 2 and found["methods"]["unknown_share"] == 0.0
    assert found["totals"]["pue"] == pytest.approx(1.1)


def test_a_refusal_entry_is_zero_kg_and_marked() -> None:
    ci = {"repository": "octo/lab", "run_id": "9", "run_attempt": "2", "job": "t", "pr": 4}
    e = refusal_entry(ci, "train", "training", datetime(2026, 3, 1, tzinfo=timezone.utc), 5.0)
    assert e["key"] == "octo/lab/9/2/t/train" and e["refused"] is True and e["pr"] == 4
    assert (e["emissions_kg"], e["energy_kwh"], e["projected_kg"]) == (0.0, 0.0, 5.0)
    local = refusal_entry(None, "train", "training", datetime.now(timezone.utc), float("inf"))
    assert local["repository"] == "local" and local["projected_kg"] is None


def test_a_refused_run_is_no_base_run_for_the_regression_rule() -> None:
    runs = [entry(1, "train", 2.0, at(1)), entry(2, "train", 0.0, at(2), refused=True)]
    assert base_runs_kg(runs, "train", "main") == [2.0]


def test_a_refusal_moves_no_projection_from_history() -> None:
    from co2gate import estimate

    runs = [entry(1, "train", 2.0, at(1)), entry(2, "train", 4.0, at(2))]
    refused = entry(3, "train", 0.0, at(3), refused=True, projected_kg=3.0)
    before = estimate.from_history(runs, "train")
    after = estimate.from_history([*runs, refused], "train")
    assert after.emissions_kg == before.emissions_kg == 3.0 and after.history == before.history


def preflight_refused(co2gate: CliRun, in_repo: Path, *extra: str) -> Any:
    budget = BUDGET.replace("annual_budget_kg: 100", "annual_budget_kg: 1")
    (in_repo / ".github" / "carbon-budget.yml").write_text(budget + "limits: {training: 0.1}\n")
    now = datetime.now(timezone.utc)
    record(in_repo, entry(1, "train", 0.2, (now - timedelta(minutes=5)).isoformat()))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", *extra, "--",
        PY, "-c", f"open({str(marker)!r}, 'w')",
    )  # fmt: skip
    assert result.returncode == 1 and not marker.exists(), result.stderr
    return result


def test_a_preflight_refusal_is_recorded_counted_and_changes_no_budget_total(
    co2gate: CliRun, in_repo: Path
) -> None:
    preflight_refused(co2gate, in_repo)
    standing = json.loads(co2gate("budget", "--json").stdout)
    assert standing["used_kg"] == 0.2  # the zero-kg refusal adds nothing
    training = next(c for c in standing["categories"] if c["category"] == "training")
    assert training["runs"] == 1  # and is no run
    result = co2gate("report", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads(next((in_repo / "co2gate-report").glob("annual-*.json")).read_text())
    assert found["refusals"]["count"] == 1 and found["totals"]["runs"] == 1
    assert found["refusals"]["projected_kg"] == pytest.approx(0.2)
    assert found["totals"]["location_based_scope2_kg"] == standing["used_kg"]


def test_no_record_leaves_a_refusal_out_of_the_ledger(co2gate: CliRun, in_repo: Path) -> None:
    result = preflight_refused(co2gate, in_repo, "--no-record")
    lines = [ln for f in (in_repo / "ledger").rglob("*.jsonl") for ln in f.read_text().split()]
    assert len(lines) == 1 and "refusal recorded" not in result.stderr


# ------------------------------------------------------------ equal to `co2gate budget --json`


def this_year_entries() -> list[dict[str, Any]]:
    """Entries spread over the budget year containing today (calendar), with float sums that
    do not add up exactly in every order, a refusal, and lines outside the year."""
    today = date.today()
    first = date(today.year, 1, 1)
    out = []
    for n in range(60):
        day = first + timedelta(days=(n * 37) % max((today - first).days + 1, 1))
        cat = ("training", "inference", "ci")[n % 3]
        kg = 0.1 * (n + 1) + 1e-9 * n
        out.append(entry(n, f"job-{n % 7}", kg, f"{day.isoformat()}T08:30:00.000+00:00", cat))
    out.append(entry(90, "train", 0.0, f"{today.isoformat()}T00:00:00.000+00:00", refused=True))
    out.append(entry(91, "old", 50.0, f"{today.year - 1}-12-31T23:59:59.999+00:00"))
    out.append(entry(92, "next", 50.0, f"{today.year + 1}-01-01T00:00:00.000+00:00"))
    return out


def test_the_reports_totals_equal_budget_json_for_the_same_year(
    co2gate: CliRun, in_repo: Path
) -> None:
    record(in_repo, *this_year_entries())
    standing = json.loads(co2gate("budget", "--json").stdout)
    result = co2gate("report", "--format", "json", "--format", "csv")
    assert result.returncode == 0, result.stderr
    year = date.fromisoformat(standing["year_start"]).year
    found = json.loads((in_repo / "co2gate-report" / f"annual-{year}.json").read_text())
    assert found["year_start"] == standing["year_start"]
    assert found["totals"]["location_based_scope2_kg"] == standing["used_kg"]  # exactly
    mine = {c["category"]: c for c in found["by_category"]}
    for c in standing["categories"]:
        assert mine[c["category"]]["location_based_scope2_kg"] == c["used_kg"]
        assert mine[c["category"]]["runs"] == c["runs"]
        assert mine[c["category"]]["allocation_kg"] == c["allocation_kg"]
    rows = list(
        csv.DictReader(io.StringIO((in_repo / "co2gate-report" / f"annual-{year}.csv").read_text()))
    )
    assert float(rows[0]["location_based_scope2_kg"]) == standing["used_kg"]


def test_the_budget_years_start_is_honoured(co2gate: CliRun, in_repo: Path) -> None:
    path = in_repo / ".github" / "carbon-budget.yml"
    path.write_text(BUDGET + 'year_start: "04-01"\n')
    record(
        in_repo,
        entry(1, "a", 1.0, "2026-03-31T23:59:59.999+00:00"),  # the year before
        entry(2, "a", 2.0, "2026-04-01T00:00:00.000+00:00"),
        entry(3, "a", 4.0, "2027-03-31T23:00:00.000+00:00"),
        entry(4, "a", 8.0, "2027-04-01T00:00:00.000+00:00"),  # the year after
    )
    result = co2gate("report", "--year", "2026", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads((in_repo / "co2gate-report" / "annual-2026.json").read_text())
    assert (found["year_start"], found["year_end"]) == ("2026-04-01", "2027-04-01")
    assert found["totals"]["location_based_scope2_kg"] == 6.0
    assert found["by_month"][0]["month"] == "2026-04"
    assert found["by_month"][-1]["month"] == "2027-03" and len(found["by_month"]) == 12


def test_bad_ledger_lines_are_skipped_with_a_warning(co2gate: CliRun, in_repo: Path) -> None:
    record(in_repo, entry(1, "a", 1.0, at(5)), entry(2, "a", 2.0, at(5, 11)))
    shard = in_repo / "ledger" / "2026" / "05.jsonl"
    bad = [
        '{"torn": ',
        json.dumps(entry(3, "a", -4.0, at(5, 12))),
        json.dumps(entry(4, "a", float("nan"), at(5, 12))),
        json.dumps(entry(5, "a", 1e30, at(5, 12))),
        "[1, 2]",
    ]
    shard.write_text(shard.read_text() + "\n".join(bad) + "\n")
    result = co2gate("report", "--year", "2026", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "skipped 5 invalid ledger line(s)" in result.stderr
    found = json.loads((in_repo / "co2gate-report" / "annual-2026.json").read_text())
    assert found["totals"]["location_based_scope2_kg"] == 3.0 and found["totals"]["runs"] == 2


def test_a_hand_written_offset_counts_on_its_utc_day(co2gate: CliRun, in_repo: Path) -> None:
    shard = in_repo / "ledger" / "2026" / "12.jsonl"
    shard.parent.mkdir(parents=True)
    late = entry(1, "a", 1.0, "2027-01-01T01:00:00+02:00")  # 2026-12-31 23:00 UTC
    early = entry(2, "a", 2.0, "2026-12-31T23:30:00-05:00")  # 2027-01-01 04:30 UTC
    shard.write_text(json.dumps(late) + "\n" + json.dumps(early) + "\n")
    result = co2gate("report", "--year", "2026", "--format", "json")
    assert result.returncode == 0, result.stderr
    found = json.loads((in_repo / "co2gate-report" / "annual-2026.json").read_text())
    assert found["totals"]["location_based_scope2_kg"] == 1.0
    assert found["by_month"][-1]["location_based_scope2_kg"] == 1.0


def test_the_branch_ledger_is_read_through_the_api(
    co2gate: CliRun, in_repo: Path, fake_github: FakeGitHub
) -> None:
    from co2gate.ledger.branch import BranchLedger

    ledger = BranchLedger("octo/lab", fake_github.token, api_url=fake_github.api_url)
    for e in SMALL[:3]:
        assert ledger.append(e)  # through PyGithub: the branch and its shards
    (in_repo / ".github" / "carbon-budget.yml").write_text(
        BUDGET.replace("file, path: ledger", "branch")
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "octo/lab",
        "GITHUB_API_URL": fake_github.api_url,
        "GITHUB_TOKEN": fake_github.token,
    }
    result = co2gate("report", "--year", "2026", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    found = json.loads((in_repo / "co2gate-report" / "annual-2026.json").read_text())
    assert found["totals"]["location_based_scope2_kg"] == 4.0
    assert found["totals"]["water_l"] == 4.0 and found["totals"]["stopped_by_guard"] == 1


# ------------------------------------------------------------------------ the command line


def test_the_default_is_markdown_in_co2gate_report(co2gate: CliRun, in_repo: Path) -> None:
    result = co2gate("report", "--year", "2026")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (in_repo / "co2gate-report").iterdir()) == ["annual-2026.md"]
    assert "2026-01-01 to 2026-12-31: 0 kg CO2e" in result.stdout


def test_every_format_at_once_into_out(co2gate: CliRun, in_repo: Path) -> None:
    record(in_repo, *SMALL)
    args = [a for f in ("md", "csv", "json", "html", "md") for a in ("--format", f)]
    result = co2gate("report", "--year", "2026", "--out", "yearly", *args)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (in_repo / "yearly").iterdir())
    assert names == [f"annual-2026.{x}" for x in ("csv", "html", "json", "md")]
    assert result.stderr.count("wrote ") == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--year", "1900"], "--year"),
        (["--year", "twenty"], "--year"),
        (["--format", "pdf"], "--format"),
        (["--budget-file", "missing.yml"], "missing.yml"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    co2gate: CliRun, in_repo: Path, args: list[str], needle: str
) -> None:
    result = co2gate("report", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert needle in result.stderr


def test_an_unwritable_out_is_one_line_and_exit_2(co2gate: CliRun, in_repo: Path) -> None:
    (in_repo / "blocker").write_text("a file")
    result = co2gate("report", "--out", str(in_repo / "blocker" / "x"), process=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--out" in result.stderr


def test_every_format_is_rendered() -> None:
    from co2gate.app.report_year import Format, render

    a = year_2026()
    for form in Format:
        assert render(a, form, "file ledger").strip()


# ------------------------------------------------------------------------- CSV and JSON


HOSTILE = [
    '=HYPERLINK("https://evil.example","x")',
    "+1+2",
    "-cmd",
    "@SUM(A1)",
    "<script>alert(1)</script> | `x` [a](https://evil.example) @someone",
]


def hostile_year() -> annual.Annual:
    return year_2026(
        [entry(n, label, 0.5 + n, at(n + 1), category=label) for n, label in enumerate(HOSTILE)]
        + [e for e in SMALL if e["ended_at"] >= "2026"]
    )


def test_the_csv_is_tidy_its_total_row_first_and_each_scope_adds_up() -> None:
    a = year_2026()
    rows = list(csv.DictReader(io.StringIO(annual.to_csv(a))))
    assert tuple(rows[0]) == annual.CSV_COLUMNS
    assert rows[0]["scope"] == "total" and float(rows[0]["location_based_scope2_kg"]) == 4.25
    scopes = {r["scope"] for r in rows}
    assert scopes == {"total", "month", "category", "label", "cell"}
    for scope in ("month", "category", "label", "cell"):
        part = [r for r in rows if r["scope"] == scope]
        assert sum(float(r["location_based_scope2_kg"]) for r in part) == pytest.approx(4.25)
        assert sum(int(r["runs"]) for r in part) == 4
        assert sum(float(r["energy_kwh"]) for r in part) == pytest.approx(17.0)
    assert sum(1 for r in rows if r["scope"] == "month") == 12
    lint = next(r for r in rows if r["scope"] == "label" and r["label"] == "lint")
    assert lint["water_l"] == "" and lint["water_runs"] == "0"  # not measured: empty


def test_a_label_a_spreadsheet_would_run_is_quoted_as_text() -> None:
    rows = list(csv.reader(io.StringIO(annual.to_csv(hostile_year()))))
    cells = [c for row in rows[1:] for c in row[1:4]]
    for text in HOSTILE[:4]:
        assert "'" + text in cells and text not in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@") and not c[:4].isdigit()]


def test_the_json_document_carries_the_sustainability_figures() -> None:
    found = json.loads(json.dumps(year_2026().to_json(), allow_nan=False))
    assert found["schema"] == "co2gate/annual/v1" and found["year"] == 2026
    totals = found["totals"]
    for key in (
        "location_based_scope2_kg",
        "energy_kwh",
        "facility_energy_kwh",
        "pue",
        "pue_coverage",
        "water_l",
        "runs",
        "refused",
        "stopped_by_guard",
    ):
        assert key in totals, key
    assert totals["energy_by_kind_kwh"] == pytest.approx(
        {"measured": 13.0, "estimated": 2.0, "unknown": 2.0}
    )
    assert set(found["methods"]) == {
        "measured_share",
        "estimated_share",
        "unknown_share",
        "by_method",
    }
    assert {"method", "kind", "energy_kwh", "share"} == set(found["methods"]["by_method"][0])
    assert found["sci"]["functional_unit"] == "run"
    assert found["sources"]["intensity"][0]["source"].endswith("(eGRID 2023)")
    assert found["sources"]["codecarbon"] == [{"version": "3.3.2", "runs": 2}]
    assert {"label", "emissions_kg", "ended_at", "stopped_by_guard"} <= set(
        found["largest_runs"][0]
    )
    assert next(m["month"] for m in found["by_month"]) == "2026-01"


def test_the_json_follows_its_shipped_schema() -> None:
    import jsonschema

    schema = json.loads((Path(annual.__file__).parent / "schemas" / "annual.v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for a in (year_2026(), year_2026([]), hostile_year()):
        found = json.loads(json.dumps(a.to_json(), allow_nan=False))
        jsonschema.validate(found, schema, format_checker=jsonschema.FormatChecker())
    broken = year_2026().to_json() | {"totals": {"runs": -1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


# ----------------------------------------------------------------------- Markdown and HTML


def test_the_markdown_makes_labels_inert() -> None:
    text = report.annual_text(hostile_year(), "file ledger", "md")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "](https://" not in text and "@\u200bsomeone" in text
    row = next(line for line in text.splitlines() if "alert(1)" in line and "CO2e" not in line)
    assert row.count(" | ") - row.count("\\|") >= 1 and "\\|" in row  # the label's | escaped
    assert "| water | 4 L (2 of 9 runs) |" in text
    assert "| 2026-05 | 1 | 4.5 kg |" in text and "not measured" in text
    december = next(line for line in text.splitlines() if line.startswith("| 2026-12 |"))
    assert december.endswith("| 16.8 kg (16.8% of the budget) |")  # the year's burn


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def test_the_html_is_self_contained_no_script_no_url_printable() -> None:
    html = report.annual_text(hostile_year(), "file ledger", "html")
    tags = parsed(html)
    names = {t for t, _ in tags.tags}
    assert "script" not in names and "<script" not in html.lower()
    assert not names & {"link", "img", "iframe", "object", "embed", "a", "base", "form"}
    for tag, attrs in tags.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert "http:" not in (value or "") and "https:" not in (value or ""), (tag, name)
            assert "url(" not in (value or "")
    style = html[html.index("<style>") : html.index("</style>")]
    assert "url(" not in style and "@import" not in style and "@media print" in style
    assert "https://evil.example" in "".join(tags.text)  # the label, as text
    rects = [a for t, a in tags.tags if t == "rect"]
    assert len(rects) >= 12 + 3 and any(float(a["width"] or 0) > 100 for a in rects)
    assert {"svg"} <= names and html.count("<svg") == 2


def test_many_labels_and_categories_keep_the_html_small() -> None:
    many = [entry(n, f"label-{n}", 1.0, at(1 + n % 12), category=f"cat-{n}") for n in range(3000)]
    html = report.annual_text(year_2026(many), "file ledger", "html")
    assert "2,981 other labels" in html and "other categories" in html
    assert len(html) < 60_000


# ----------------------------------------------------------------- a real headless browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (apt-get install chromium); CI installs it",
)


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "CI=true: Chromium must be installed (.ci/run installs it)"
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    flags = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}",
    )  # fmt: skip
    return subprocess.run(
        [CHROMIUM, *flags, *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp)},
    )


def png_pixels(data: bytes) -> tuple[int, int, list[bytearray]]:
    """Width, height and RGB(A) rows of an 8-bit PNG (what Chromium's screenshot writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        pos += 12 + size
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        rows.append(line)
        prev = line
    return width, channels, rows


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("annual")
    page = tmp / "annual-2026.html"
    page.write_text(report.annual_text(hostile_year(), "file ledger", "html"), encoding="utf-8")
    return page


@needs_chromium
def test_chromium_renders_the_totals_and_the_labels_as_text(rendered: Path, tmp_path: Path) -> None:
    result = chromium(rendered, tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    total = re.search(r'id="total-kg">([^<]*)<', dom)
    assert total and total.group(1) == "16.8 kg"  # 4.25 kg + 0.5 + 1.5 + 2.5 + 3.5 + 4.5
    assert re.search(r'id="refused">1<', dom) and re.search(r'id="stopped">1<', dom)
    assert re.search(r'id="total-water">4 L<', dom)
    assert "<script" not in dom.lower()  # the hostile label stayed text after parsing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    widths = [float(w) for w in re.findall(r'<rect class="bar"[^>]* width="([\d.]+)"', dom)]
    assert len(widths) == 12 + 8 and max(widths) == 420.0 and sum(w > 0 for w in widths) >= 10


@needs_chromium
def test_chromium_draws_the_bars(rendered: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    result = chromium(rendered, tmp_path, "--window-size=760,900", f"--screenshot={shot}")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    width, channels, rows = png_pixels(shot.read_bytes())
    green = [  # the bars' fill, #2f7d4f, give or take antialiasing
        sum(
            1
            for x in range(0, width * channels, channels)
            if abs(row[x] - 0x2F) < 8 and abs(row[x + 1] - 0x7D) < 8 and abs(row[x + 2] - 0x4F) < 8
        )
        for row in rows
    ]
    drawn = [y for y, n in enumerate(green) if n >= 20]
    assert len(drawn) >= 3 * 16, "fewer than three bars' rows are drawn"
    bands = 1 + sum(1 for a, b in itertools.pairwise(drawn) if b > a + 1)
    assert bands >= 3 and max(green) > 300  # separate bars; the largest is wide


@needs_chromium
def test_chromium_prints_the_report_to_pdf_pages(rendered: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "annual.pdf"
    result = chromium(rendered, tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert result.returncode == 0 and pdf.is_file(), result.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page(?![a-z])", data))
    assert 1 <= pages <= 10
