"""co2gate estimate and run --preflight: projections before a run, checked against the budget."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun

from co2gate import budget as budgets
from co2gate import estimate, gpus, units
from co2gate.intensity import Intensity
from co2gate.ledger.file import FileLedger
from co2gate.ledger.interface import entry_key

PY = sys.executable

BUDGET = """version: 1
annual_budget_kg: {annual}
allocations: {{training: 0.7, inference: 0.3}}
limits: {{training: {limit}}}
warn_at: 0.8
on_exceed: {on_exceed}
location: {{intensity: {intensity}, pue: {pue}}}
ledger: {{backend: file, path: ledger}}
"""

WORKED = ("--flops", "5.88e23", "--gpu", "H100", "--gpus", "2048", "--mfu", "0.4")
WORKED_SITE = ("--pue", "1.1", "--intensity", "400")


@pytest.fixture
def in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    return tmp_path


def write_budget(
    root: Path,
    annual: float = 1e6,
    limit: float = 1e6,
    on_exceed: str = "fail",
    intensity: float = 300,
    pue: float = 1.0,
) -> Path:
    path = root / ".github" / "carbon-budget.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        BUDGET.format(annual=annual, limit=limit, on_exceed=on_exceed, intensity=intensity, pue=pue)
    )
    return path


def entry(
    n: int,
    label: str,
    kg: float,
    ended: datetime,
    category: str = "training",
    kwh: float = 1.0,
    duration_s: float = 60.0,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "repository": "local",
        "run_id": f"run-{n}",
        "run_attempt": "1",
        "job": "local",
        "label": label,
        "category": category,
        "emissions_kg": kg,
        "energy_kwh": kwh,
        "duration_s": duration_s,
        "ended_at": ended.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "sha": None,
        "ref": None,
        "event": None,
        "pr": None,
    }
    e["key"] = entry_key(e)
    return e


def recent(minutes_ago: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)


def record(root: Path, *entries: dict[str, Any]) -> None:
    ledger = FileLedger(root / "ledger")
    for e in entries:
        assert ledger.append(e)


def ledger_lines(root: Path) -> list[str]:
    return [line for f in (root / "ledger").rglob("*.jsonl") for line in f.read_text().splitlines()]


def one_line_error(result: Any) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return str(result.stderr)


# ---------------------------------------------------------------------- unit conversions


def test_flop_to_gpu_hours() -> None:
    # 1e15 FLOP at half of a 1 TFLOP/s peak: 1e15 / 0.5e12 = 2000 s = 2000 / 3600 h = 5/9 h.
    assert units.flop_to_gpu_hours(1e15, 1.0, 0.5) == pytest.approx(5 / 9)
    # 3.6e15 FLOP at all of a 1 TFLOP/s peak: 3600 s = exactly 1 GPU-hour.
    assert units.flop_to_gpu_hours(3.6e15, 1.0, 1.0) == pytest.approx(1.0)


def test_watt_hours_to_kwh() -> None:
    assert units.watt_hours_to_kwh(700, 10) == pytest.approx(7.0)  # 7000 Wh
    assert units.watt_hours_to_kwh(72, 0.5) == pytest.approx(0.036)  # 36 Wh


def test_emissions_of_a_projection() -> None:
    # 10 kWh x PUE 1.5 = 15 kWh; x 200 g/kWh = 3000 g = 3 kg.
    assert units.emissions_kg(10, 1.5, 200) == pytest.approx(3.0)


# ---------------------------------------------------------------------- the worked example


def test_the_worked_example_from_the_library() -> None:
    # 70e9 parameters x 1.4e12 tokens x 6 FLOP = 5.88e23 FLOP
    flops = 70e9 * 1.4e12 * 6
    assert flops == pytest.approx(5.88e23)
    site = Intensity(400.0, "configured: 400 gCO2e/kWh")
    p = estimate.from_compute(flops, gpus.lookup("H100"), 0.4, 2048, None, site, 1.1)
    # By hand: 989e12 x 0.4 = 3.956e14 FLOP/s; 5.88e23 / 3.956e14 = 1.48635e9 s = 412,875 h.
    assert round(p.gpu_hours or 0) == 412_875
    assert round(p.wall_hours or 0, 1) == 201.6  # 412,875 / 2048
    assert round(p.energy_kwh or 0) == 289_012  # x 700 W / 1000
    assert round(p.energy_with_pue_kwh or 0) == 317_914  # x 1.1
    assert round(p.emissions_kg / 1000, 1) == 127.2  # x 400 g/kWh / 1e6: tonnes


def test_the_worked_example_from_the_cli(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    result = co2gate("estimate", *WORKED, *WORKED_SITE, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "compute"
    assert round(doc["gpu_hours"]) == 412_875
    assert round(doc["wall_hours"], 1) == 201.6
    assert round(doc["energy_kwh"]) == 289_012
    assert round(doc["energy_with_pue_kwh"]) == 317_914
    assert round(doc["emissions_kg"] / 1000, 1) == 127.2
    assert doc["pue"] == 1.1 and doc["intensity_g_per_kwh"] == 400
    assert doc["intensity_source"] == "configured: 400 gCO2e/kWh"
    assert doc["inputs"] == {
        "flops": 5.88e23,
        "gpu": "H100 SXM",
        "board_power_w": 700.0,
        "peak_tflops": 989.0,
        "precision": "bf16",
        "gpu_source": gpus.lookup("H100").source,
        "gpus": 2048,
        "mfu": 0.4,
        "watts_per_gpu": 700.0,
        "watts_source": "table",
    }
    assert doc["verdict"]["verdict"] == "pass"  # 127 t of a 700 t allocation
    assert doc["verdict"]["run_kg"] == pytest.approx(doc["emissions_kg"])
    text = co2gate("estimate", *WORKED, *WORKED_SITE)
    assert text.returncode == 0, text.stderr
    # 412,875 GPU-hours / 2048 GPUs = 201.599 h = 201 h 36 min; 289,012 kWh = 289 MWh
    for figure in (
        "412,875 GPU-hours",
        "wall time: 201 h 36 min on 2048 GPUs",
        "energy: 289 MWh (289,012 kWh) at the GPUs, 318 MWh (317,914 kWh) with PUE 1.1",
        "emissions: 127 t CO2e (127,165 kg) (89-165 t, the grid intensity's ~90% range alone)",
    ):
        assert figure in text.stdout
    assert "PUE 1.1" in text.stdout and "400 gCO2e/kWh" in text.stdout
    assert "NVIDIA H100 Tensor Core GPU datasheet" in text.stdout
    assert text.stdout.splitlines()[-3].startswith("PASS: training")


def test_the_json_document_has_every_field(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    doc = json.loads(co2gate("estimate", *WORKED, *WORKED_SITE, "--json").stdout)
    assert {
        "mode",
        "inputs",
        "gpu_hours",
        "wall_hours",
        "energy_kwh",
        "energy_with_pue_kwh",
        "pue",
        "intensity_g_per_kwh",
        "intensity_source",
        "emissions_kg",
        "emissions_kg_range",
        "verdict",
    } <= set(doc)
    # x0.7 and x1.3: the grid intensity's width (uncertainty.INTENSITY), the energy as planned
    assert doc["emissions_kg_range"] == pytest.approx(
        [doc["emissions_kg"] * 0.7, doc["emissions_kg"] * 1.3]
    )
    assert set(doc["verdict"]) == set(budgets.Decision.__dataclass_fields__) | {"reasons"}


# ------------------------------------------------------------------------- hardware mode


def test_hardware_mode(co2gate: CliRun, in_repo: Path) -> None:
    # 8 x A100 SXM (400 W) for 10 h: 80 GPU-hours x 400 W = 32 kWh; x PUE 1.2 = 38.4 kWh;
    # x 300 g/kWh = 11,520 g = 11.52 kg.
    write_budget(in_repo, intensity=300, pue=1.2)
    result = co2gate("estimate", "--gpu", "a100", "--gpus", "8", "--hours", "10", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "hardware" and doc["inputs"]["gpu"] == "A100 SXM 80GB"
    assert doc["gpu_hours"] == pytest.approx(80)
    assert doc["wall_hours"] == pytest.approx(10)
    assert doc["energy_kwh"] == pytest.approx(32)
    assert doc["energy_with_pue_kwh"] == pytest.approx(38.4)
    assert doc["pue"] == 1.2 and doc["intensity_g_per_kwh"] == 300  # the budget file's
    assert doc["emissions_kg"] == pytest.approx(11.52)


def test_watts_overrides_the_table_and_serves_a_gpu_not_in_it(
    co2gate: CliRun, in_repo: Path
) -> None:
    # 4 GPUs x 250 W x 2 h = 2 kWh; x 500 g/kWh = 1 kg.
    write_budget(in_repo)
    args = ("--gpus", "4", "--hours", "2", "--watts", "250", "--intensity", "500", "--json")
    with_gpu = json.loads(co2gate("estimate", "--gpu", "h100", *args).stdout)
    without = json.loads(co2gate("estimate", *args).stdout)
    for doc in (with_gpu, without):
        assert doc["energy_kwh"] == pytest.approx(2.0)
        assert doc["emissions_kg"] == pytest.approx(1.0)
        assert doc["inputs"]["watts_source"] == "--watts"
    assert with_gpu["inputs"]["gpu"] == "H100 SXM" and without["inputs"]["gpu"] is None


def test_one_gpu_by_default() -> None:
    site = Intensity(100.0, "x")
    p = estimate.from_hardware(gpus.lookup("T4"), 1, 3, None, site, 1.0)
    # 1 x 70 W x 3 h = 0.21 kWh; x 100 g/kWh = 21 g.
    assert p.energy_kwh == pytest.approx(0.21) and p.emissions_kg == pytest.approx(0.021)


# ---------------------------------------------------------------------------- the GPU table

REQUIRED = {
    "H100 SXM",
    "H100 PCIe",
    "H200",
    "A100 SXM 40GB",
    "A100 SXM 80GB",
    "A100 PCIe 40GB",
    "A100 PCIe 80GB",
    "L4",
    "L40S",
    "A10",
    "T4",
    "V100 SXM",
    "B200",
    "MI300X",
}


def test_the_table_covers_the_common_gpus_each_with_a_source() -> None:
    names = {g.name for g in gpus.GPUS}
    assert names >= REQUIRED
    assert len(names) == len(gpus.GPUS)
    for g in gpus.GPUS:
        assert g.board_power_w > 0 and g.peak_tflops > 0, g.name
        assert "datasheet" in g.source or "data sheet" in g.source, g.name
        assert g.precision == ("fp16" if g.model in ("t4", "v100") else "bf16"), g.name
    for model in {g.model for g in gpus.GPUS}:
        assert sum(g.default for g in gpus.GPUS if g.model == model) == 1, model


@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("h100", "H100 SXM"),
        ("H100", "H100 SXM"),
        ("H100-SXM", "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("nvidia h100 nvl", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
        ("a100", "A100 SXM 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10", "A10"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-32GB", "V100 SXM"),
        ("NVIDIA B200", "B200"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_names_match_loosely(name: str, row: str) -> None:
    assert gpus.lookup(name).name == row


@pytest.mark.parametrize(
    ("name", "hint"),
    [("a10g", "did you mean 'A10'?"), ("l40", "did you mean 'L40S'?"), ("h100sxm", "H100 SXM")],
)
def test_an_unknown_gpu_lists_the_choices_with_a_suggestion(name: str, hint: str) -> None:
    with pytest.raises(gpus.UnknownGpu) as raised:
        gpus.lookup(name)
    message = str(raised.value)
    assert hint in message and "choices: H100 SXM, H100 PCIe" in message and "MI300X" in message
    assert "\n" not in message


def test_unknown_gpu_is_exit_2_one_line(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    err = one_line_error(co2gate("estimate", "--gpu", "rtx 4090", "--hours", "1"))
    assert "'rtx 4090'" in err and "choices:" in err and "L40S" in err


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --hours"),
        (["--hours", "1", "--flops", "1e20", "--gpu", "h100"], "cannot be combined"),
        (["--hours", "1", "--gpu", "h100", "--mfu", "0.4"], "--mfu does not apply"),
        (["--hours", "1", "--gpu", "h100", "--last", "3"], "--last does not apply"),
        (["--flops", "1e20", "--gpu", "h100"], "needs --mfu"),
        (["--flops", "1e20", "--mfu", "0.4"], "needs --gpu"),
        (["--hours", "1"], "--hours needs --gpu"),
        (["--from-history", "x", "--pue", "1.2"], "--pue does not apply"),
        (["--from-history", "x", "--gpu", "h100"], "--gpu does not apply"),
        (["--flops", "1e20", "--gpu", "h100", "--mfu", "1.5"], "--mfu must be"),
        (["--flops", "0", "--gpu", "h100", "--mfu", "0.5"], "--flops must be"),
        (["--hours", "-1", "--gpu", "h100"], "--hours must be"),
        (["--hours", "nan", "--gpu", "h100"], "--hours must be"),
        (["--hours", "1", "--gpu", "h100", "--gpus", "0"], "--gpus must be"),
        (["--hours", "1", "--watts", "0"], "--watts must be"),
        (["--hours", "1", "--gpu", "h100", "--pue", "0.9"], "pue"),
        (["--hours", "1", "--gpu", "h100", "--workload", "eval"], "'eval' has no allocation"),
        (["--from-history", "train", "--last", "0"], "--last must be"),
        (["--from-history", "nobody"], "'nobody': no runs"),
    ],
)
def test_bad_input_is_exit_2_one_line(
    co2gate: CliRun, in_repo: Path, args: list[str], message: str
) -> None:
    write_budget(in_repo)
    record(in_repo, entry(1, "train", 1.0, recent(5)))
    assert message in one_line_error(co2gate("estimate", *args))


def test_no_budget_file_is_exit_2(co2gate: CliRun, in_repo: Path) -> None:
    err = one_line_error(co2gate("estimate", "--gpu", "h100", "--hours", "1"))
    assert ".github/carbon-budget.yml" in err and "not found" in err


def test_help(co2gate: CliRun) -> None:
    result = co2gate("estimate", "--help")
    assert result.returncode == 0
    for flag in ("--gpu", "--gpus", "--hours", "--watts", "--flops", "--mfu", "--from-history"):
        assert flag in result.stdout
    assert "--preflight" in co2gate("run", "--help").stdout


# -------------------------------------------------------------------------- history mode


def test_history_projects_the_median_of_the_most_recent_runs(
    co2gate: CliRun, in_repo: Path
) -> None:
    write_budget(in_repo, annual=1000)
    kgs = [1.0, 2.0, 3.0, 4.0, 10.0]  # oldest first
    record(
        in_repo,
        *[
            entry(n, "train", kg, recent(60 - n), kwh=kg * 2, duration_s=600 * (n + 1))
            for n, kg in enumerate(kgs)
        ],
        entry(10, "eval", 100.0, recent(1)),  # another label: not history, but used
        entry(11, "serve", 50.0, recent(2), category="inference"),  # not training's use
    )
    result = co2gate("estimate", "--from-history", "train", "--last", "3", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "history"
    assert doc["inputs"] == {"label": "train", "last": 3}
    # The 3 most recent runs of 'train': 3, 4 and 10 kg.
    history = doc["history"]
    assert history["runs"] == 3
    assert history["emissions_kg"] == {"median": 4.0, "min": 3.0, "p90": 8.8, "max": 10.0}
    # p90 by hand: rank 0.9 x (3 - 1) = 1.8 of [3, 4, 10]: 4 + 0.8 x (10 - 4) = 8.8.
    assert doc["emissions_kg"] == 4.0
    assert doc["energy_kwh"] == 8.0  # the median of 6, 8, 20 kWh
    assert doc["wall_hours"] == pytest.approx(2400 / 3600)  # median of 1800, 2400, 3000 s
    assert doc["gpu_hours"] is None and doc["pue"] is None
    v = doc["verdict"]
    # training used this year: 1 + 2 + 3 + 4 + 10 + 100 (eval) = 120 kg of 700 kg.
    assert v["used_before_kg"] == pytest.approx(120.0)
    assert v["after_kg"] == pytest.approx(124.0) and v["verdict"] == "pass"


def test_history_defaults_to_the_last_20(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    record(in_repo, *[entry(n, "train", float(n), recent(100 - n)) for n in range(25)])
    doc = json.loads(co2gate("estimate", "--from-history", "train", "--json").stdout)
    assert doc["history"]["runs"] == 20
    assert doc["history"]["emissions_kg"]["min"] == 5.0  # runs 5..24, the most recent 20
    assert doc["emissions_kg"] == pytest.approx(14.5)  # median of 5..24


def test_history_text(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo)
    record(in_repo, entry(1, "train", 0.002, recent(5)), entry(2, "train", 0.004, recent(4)))
    result = co2gate("estimate", "--from-history", "train")
    assert result.returncode == 0, result.stderr
    assert "the last 2 runs of 'train' emitted a median of 3 g CO2e" in result.stdout
    assert "min 2 g, p90 3.8 g, max 4 g" in result.stdout
    assert "PASS: training" in result.stdout


def test_history_reaches_back_before_this_budget_year_but_used_does_not() -> None:
    budget = budgets.parse(
        "version: 1\nannual_budget_kg: 100\nallocations: {training: 1}\n", "test.yml"
    )
    today = date(2025, 3, 1)
    assert estimate.window(budget, today) == (date(2024, 2, 29), date(2026, 1, 1))
    entries = [
        entry(1, "train", 30.0, datetime(2024, 12, 20, tzinfo=timezone.utc)),  # last year
        entry(2, "train", 10.0, datetime(2025, 2, 1, tzinfo=timezone.utc)),
    ]
    projection = estimate.from_history(entries, "train")
    assert projection.emissions_kg == 20.0  # median of 30 and 10
    decision = estimate.check(budget, "training", projection, entries, today)
    assert decision.used_before_kg == 10.0 and decision.after_kg == 30.0


def test_a_single_run_is_its_own_spread() -> None:
    p = estimate.from_history([entry(1, "x", 2.5, recent(1))], "x")
    assert p.history is not None
    assert p.history["emissions_kg"] == {"median": 2.5, "min": 2.5, "p90": 2.5, "max": 2.5}


# --------------------------------------------------------------------- against the budget


def test_a_projection_over_the_allocation_fails_with_exit_1(co2gate: CliRun, in_repo: Path) -> None:
    # The worked example's 127 t against 100 t of training (of an annual 142.857 t).
    write_budget(in_repo, annual=100_000 / 0.7)
    result = co2gate("estimate", *WORKED, *WORKED_SITE, "--json")
    assert result.returncode == 1, result.stderr
    v = json.loads(result.stdout)["verdict"]
    assert v["verdict"] == "fail" and v["allocation_kg"] == pytest.approx(100_000)
    assert any("exceeds" in r and "allocation" in r for r in v["reasons"])
    text = co2gate("estimate", *WORKED, *WORKED_SITE)
    assert text.returncode == 1 and "FAIL: training" in text.stdout


def test_what_remains_is_the_allocation_minus_this_years_use(
    co2gate: CliRun, in_repo: Path
) -> None:
    # 700 kg of training, 600 kg used; 1 x H100 at 700 W for 500 h at 400 g/kWh = 140 kg.
    write_budget(in_repo, annual=1000, intensity=400)
    record(in_repo, entry(1, "old", 600.0, recent(10)))
    result = co2gate("estimate", "--gpu", "h100", "--hours", "500", "--json")
    v = json.loads(result.stdout)["verdict"]
    assert v["used_before_kg"] == 600.0 and v["run_kg"] == pytest.approx(140.0)
    assert v["remaining_kg"] == pytest.approx(-40.0) and result.returncode == 1


def test_the_per_run_limit(co2gate: CliRun, in_repo: Path) -> None:
    # 1 x L4 at 72 W for 10 h = 0.72 kWh x 1000 g/kWh = 0.72 kg, over a 0.5 kg limit.
    write_budget(in_repo, limit=0.5, intensity=1000)
    result = co2gate("estimate", "--gpu", "L4", "--hours", "10", "--json")
    assert result.returncode == 1
    v = json.loads(result.stdout)["verdict"]
    assert v["run_kg"] == pytest.approx(0.72)
    assert any("limit" in r for r in v["reasons"])


def test_warn_is_exit_0(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, annual=100_000 / 0.7, on_exceed="warn")
    result = co2gate("estimate", *WORKED, *WORKED_SITE, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["verdict"]["verdict"] == "warn"


# ------------------------------------------------------------------------ run --preflight

# A one-second run at 400 kg/kWh emits grams: an allocation of 0.7 kg decides it.
PREFLIGHT_BUDGET = {"annual": 1.0, "intensity": 400_000}


def test_preflight_refuses_a_run_that_would_break_the_allocation(
    co2gate: CliRun, in_repo: Path
) -> None:
    write_budget(in_repo, **PREFLIGHT_BUDGET)
    # 0.6 kg used; a run like the last two (0.3 kg) would bring training to 0.9 of 0.7 kg.
    record(in_repo, entry(1, "train", 0.3, recent(9)), entry(2, "train", 0.3, recent(8)))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert result.returncode == 1, result.stderr
    assert not marker.exists()
    assert "preflight: not started" in result.stderr and "300 g" in result.stderr
    assert "exceeds the 700 g training allocation" in result.stderr
    verdict = json.loads((in_repo / "co2gate-report" / "verdict.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["recorded"] is True
    assert verdict["reasons"][0].startswith("preflight: ")
    assert verdict["run_kg"] == pytest.approx(0.3) and verdict["used_before_kg"] == 0.6
    assert not (in_repo / "co2gate-report" / "emissions.json").exists()
    # nothing ran: the refusal is recorded as a zero-kg entry marked refused
    lines = [json.loads(line) for line in ledger_lines(in_repo)]
    refusal = next(e for e in lines if e.get("refused"))
    assert len(lines) == 3 and refusal["emissions_kg"] == 0 and refusal["energy_kwh"] == 0
    assert refusal["label"] == "train" and refusal["category"] == "training"
    assert refusal["projected_kg"] == pytest.approx(0.3)
    assert "the refusal recorded" in result.stderr


def test_preflight_refuses_a_run_over_the_per_run_limit(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, limit=0.1, **PREFLIGHT_BUDGET)
    record(in_repo, entry(1, "train", 0.2, recent(9)))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert result.returncode == 1 and not marker.exists()
    assert "exceeds the 100 g limit" in result.stderr


def test_preflight_lets_a_run_within_budget_start(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, **PREFLIGHT_BUDGET)
    record(in_repo, entry(1, "train", 0.001, recent(9)))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert "preflight: PASS" in result.stderr
    assert len(ledger_lines(in_repo)) == 2  # the run is recorded as usual


def test_preflight_under_on_exceed_warn_starts_the_run(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, on_exceed="warn", **PREFLIGHT_BUDGET)
    record(in_repo, entry(1, "train", 0.5, recent(9)))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert marker.exists() and "preflight: WARN" in result.stderr


def test_preflight_without_history_runs_with_a_note(co2gate: CliRun, in_repo: Path) -> None:
    write_budget(in_repo, **PREFLIGHT_BUDGET)
    record(in_repo, entry(1, "other", 5.0, recent(9)))
    marker = in_repo / "ran"
    result = co2gate(
        "run", "--preflight", "--label", "train", "--", PY, "-c", f"open({str(marker)!r}, 'w')"
    )
    assert marker.exists()
    notes = [line for line in result.stderr.splitlines() if "preflight" in line]
    assert notes == [
        "co2gate: preflight: no runs of 'train' in the ledger to project from; starting anyway"
    ]
    # the run itself then fails the gate: 5 kg of "other" training used the allocation
    assert result.returncode == 1


def test_preflight_library_returns_none_without_history(tmp_path: Path) -> None:
    budget = budgets.parse(
        "version: 1\nannual_budget_kg: 1\nallocations: {training: 1}\n", "test.yml"
    )
    ledger = FileLedger(tmp_path / "ledger")
    assert estimate.preflight(budget, ledger, "training", "train", date.today()) is None
    ledger.append(entry(1, "train", 2.0, recent(1)))
    found = estimate.preflight(budget, ledger, "training", "train", date.today())
    assert found is not None
    projection, decision = found
    assert projection.emissions_kg == 2.0
    assert decision.verdict is budgets.Verdict.FAIL  # 2 kg used + 2 kg more, of 1 kg


def test_every_mode_is_dispatched() -> None:
    given = {
        estimate.Mode.HARDWARE: {"--hours": 1.0, "--gpu": "h100"},
        estimate.Mode.COMPUTE: {"--flops": 1e20, "--gpu": "h100", "--mfu": 0.4},
        estimate.Mode.HISTORY: {"--from-history": "train"},
    }
    for mode in estimate.Mode:
        assert estimate.mode_of(given[mode]) is mode
