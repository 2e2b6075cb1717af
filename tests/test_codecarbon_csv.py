"""Every emissions.csv codecarbon has written, gated right: its historical layouts (samples
in tests/data/codecarbon), files the installed codecarbon writes in this test run, and
what people and tools do to them (a BOM, CRLF, padded headers, rows cut short)."""

from __future__ import annotations

import csv
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CliRun

from co2gate import emissions
from co2gate.labels import RunLabels
from co2gate.measure.interface import Component, Method
from co2gate.model import Measurement, MeasurementError

DATA = Path(__file__).parent / "data" / "codecarbon"
LABELS = RunLabels("train", "training")


def read(path: Path) -> Measurement:
    return emissions.read_measurement(path, LABELS, None)


def refused(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(MeasurementError) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


# ------------------------------------------------------------------ codecarbon's history

# file: runs, kg, (cpu, gpu, ram) kWh or None (totals only), total kWh, PUE: the README's table
HISTORY = {
    "v0.0-2020.csv": (2, 0.003, None, 0.006, 1.0),
    "v1.2-2021.csv": (3, 0.035, None, 0.07, 1.0),
    "v2.0-2022.csv": (2, 0.0025, (0.0025, 0.005, 0.00125), 0.00875, 1.0),
    "v2.2-2023.csv": (2, 0.0009, (0.0012, 0.0, 0.0006), 0.0018, 1.0),
    # device energy is the file's over its PUE 1.2: cpu (0.003 + 0.0012) / 1.2 = 0.0035, ...
    "v2.3-2023-pue.csv": (2, 0.0108, (0.0035, 0.023, 0.0035), 0.03, 1.2),
    # three rows under run_id None: 10:00 (two flushes, 60.3 s and 119.6 s) and 12:00
    "v2.8-2024-none.csv": (2, 0.008 + 0.002, (0.005, 0.025, 0.0025), 0.0325, 1.0),
    "v3.1-2025-water.csv": (2, 0.002, (0.0011, 0.0066, 0.0011), 0.0088, 1.1),
    "v3.3-2026.csv": (2, 0.0015 + 0.0003, (0.003, 0.004, 0.0015), 0.0085, 1.5),
    "task-v2.3.csv": (3, 0.0001 + 0.003 + 0.0004, (0.0013, 0.007, 0.00065), 0.00895, 1.0),
    "task-v3.3.csv": (2, 0.00002 + 0.0008, (0.00032, 0.0012, 0.00011), 0.00163, 1.0),
}


def test_every_sample_in_the_data_folder_is_in_the_table() -> None:
    assert sorted(p.name for p in DATA.glob("*.csv")) == sorted(HISTORY)


@pytest.mark.parametrize("name", sorted(HISTORY))
def test_each_historical_layout_is_gated_right(name: str) -> None:
    runs, kg, split, total, pue = HISTORY[name]
    m = read(DATA / name)
    assert m.emissions_kg == pytest.approx(kg, rel=1e-12)
    assert m.energy_kwh.total == pytest.approx(total, rel=1e-12)
    assert m.pue == pytest.approx(pue, rel=1e-12)
    # emissions = device energy x PUE x intensity, as in every co2gate file
    assert m.energy_kwh.total * m.pue * m.intensity_g_per_kwh / 1000 == pytest.approx(kg)
    kind = "task(s)" if name.startswith("task") else "run(s)"
    assert m.notes[0].startswith(f"{runs} codecarbon {kind}")
    if split is None:
        assert set(m.methods.items()) == {(c, Method.CODECARBON_TOTAL) for c in Component}
        assert (m.energy_kwh.cpu, m.energy_kwh.gpu, m.energy_kwh.ram) == (0.0, 0.0, 0.0)
        assert any("total energy only" in n for n in m.notes)
        assert any("no run_id column" in n for n in m.notes)
    else:
        assert set(m.methods.items()) == {(c, Method.CODECARBON) for c in Component}
        got = (m.energy_kwh.cpu, m.energy_kwh.gpu, m.energy_kwh.ram)
        assert got == pytest.approx(split, rel=1e-12)
    assert any("include the PUE it was given" in n for n in m.notes) == (pue != 1.0)
    assert Measurement.from_json(json.loads(json.dumps(m.to_json())), "again") == m


def test_runs_sharing_run_id_none_are_told_apart_by_their_start() -> None:
    m = read(DATA / "v2.8-2024-none.csv")
    # 10:01:00 - 60.3 s and 10:02:00 - 119.6 s both start at 10:00:00 (to the second)
    assert m.run.id == "None@2024-11-05T09:59:59,None@2024-11-05T12:00:00"
    assert m.run.duration_s == pytest.approx(119.6 + 30.0)
    assert m.run.started_at.isoformat() == "2024-11-05T09:59:59.700000+00:00"
    assert m.run.ended_at.isoformat() == "2024-11-05T12:00:30+00:00"


def test_every_task_of_a_task_file_counts() -> None:
    m = read(DATA / "task-v2.3.csv")
    run = "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e"
    assert m.run.id == f"{run}:load,{run}:train,{run}:eval"
    assert m.run.duration_s == pytest.approx(5 + 60 + 10)
    assert any("a task file has no pue column" in n for n in m.notes)


def test_a_blank_run_id_is_no_run_id_and_a_run_begun_again_is_a_new_run(tmp_path: Path) -> None:
    header = "timestamp,run_id,duration,emissions,cpu_energy,gpu_energy,ram_energy,pue\n"
    path = tmp_path / "emissions.csv"
    path.write_text(
        header
        + "2026-05-01T10:00:10,,10,0.001,0.001,0,0.001,1\n"
        + "2026-05-01T10:00:20,,20,0.002,0.002,0,0.002,1\n"  # flush of the blank run
        + "2026-05-01T10:00:30,,5,0.0005,0.0005,0,0.0005,1\n"  # 10:00:25: a new blank run
        + "2026-05-01T10:01:00,r,30,0.003,0.003,0,0.003,1\n"
        + "2026-05-01T10:01:05,r,3,0.0004,0.0004,0,0.0004,1\n"  # run r again from 0 s: new
    )
    m = read(path)
    # last rows: 0.002 + 0.0005 + 0.003 + 0.0004 = 0.0059 kg over 20 + 5 + 30 + 3 = 58 s
    assert m.emissions_kg == pytest.approx(0.0059, rel=1e-12)
    assert m.run.duration_s == pytest.approx(58.0)
    assert m.notes[0].startswith("4 codecarbon run(s)")
    ids = m.run.id.split(",")
    assert ids == ["no-run-id@2026-05-01T10:00:00", "no-run-id@2026-05-01T10:00:25", "r"]


# ------------------------------------------------------------- what people do to the file


def sample(name: str = "v3.3-2026.csv") -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: "\ufeff" + t, id="utf-8-bom"),
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
        pytest.param(
            lambda t: "\n".join(
                [", ".join(f" {h} " for h in t.split("\n")[0].split(",")), *t.split("\n")[1:]]
            ),
            id="padded-header",
        ),
        pytest.param(
            lambda t: "\ufeff" + t.replace(",", " , ").replace("\n", "\r\n") + "\r\n\r\n",
            id="bom-crlf-padded-cells-blank-lines",
        ),
    ],
)
def test_what_editors_do_to_a_file_changes_nothing(
    tmp_path: Path, change: Callable[[str], str]
) -> None:
    plain, path = tmp_path / "plain.csv", tmp_path / "edited.csv"
    plain.write_text(sample())
    path.write_text(change(sample()), newline="")
    a, b = read(plain), read(path)
    assert b.emissions_kg == pytest.approx(0.0018) and b.energy_kwh == a.energy_kwh
    assert (b.pue, b.run.id, b.run.duration_s) == (a.pue, a.run.id, a.run.duration_s)


def shorten(line: str, header: str, drop: tuple[str, ...]) -> str:
    """A row as codecarbon #1304 appended it: its empty columns dropped, the rest shifted."""
    names = header.split(",")
    return ",".join(c for n, c in zip(names, line.split(","), strict=True) if n not in drop)


def test_a_row_shorter_than_the_header_is_trusted_up_to_the_columns_it_has(
    tmp_path: Path,
) -> None:
    header, first, second, third = sample().strip("\n").split("\n")
    cut = shorten(second, header, ("region", "longitude", "latitude"))
    assert len(cut.split(",")) == 35  # and its pue, shifted, stands under ram_utilization...
    path = tmp_path / "emissions.csv"
    path.write_text("\n".join([header, first, cut, shorten(third, header, ("region",))]) + "\n")
    m = read(path)
    # the same figures as the whole file: the energies come before the dropped columns
    assert m.emissions_kg == pytest.approx(0.0018)
    # run 1's PUE 1.5 is its first row's; run 2 says none in its only (short) row: 1, so its
    # 0.00225 kWh count as drawn. Device: (0.003 + 0.006 + 0.0015) / 1.5 + 0.00225 = 0.00925
    assert m.energy_kwh.total == pytest.approx(0.007 + 0.00225, rel=1e-12)
    # weighted: (0.0105 + 0.00225) kWh with PUE over 0.00925 kWh drawn
    assert m.pue == pytest.approx(0.01275 / 0.00925, rel=1e-12)
    assert any("2 row(s) are shorter than the header" in n for n in m.notes)
    assert any("1 run(s) have no pue in their last row" in n for n in m.notes)


def test_a_row_cut_before_a_figure_is_refused_naming_line_and_column(tmp_path: Path) -> None:
    header, first, *_ = sample().split("\n")
    cut = ",".join(first.split(",")[:5])  # timestamp..duration: no emissions
    said = refused(tmp_path / "emissions.csv", f"{header}\n{first}\n{cut}\n")
    assert said.endswith("line 3: no emissions cell: not a codecarbon emissions.csv row")


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ({"cpu_energy": "0,001"}, "line 3: 39 cells under a header of 38"),
        ({"cpu_energy": "1e-3x"}, "line 3: cpu_energy '1e-3x' is not a number from 0 to 1e+09"),
        ({"gpu_energy": "-0.5"}, "line 3: gpu_energy '-0.5' is not a number"),
        ({"emissions": "NaN"}, "line 3: emissions 'NaN' is not a number"),
        ({"duration": "inf"}, "line 3: duration 'inf' is not a number"),
        ({"pue": "0.9"}, "line 3: pue 0.9 is below 1"),
        ({"timestamp": "01/05/2026"}, "line 3: timestamp: '01/05/2026' is not an ISO 8601 date"),
    ],
)
def test_a_corrupt_row_is_refused_naming_its_line_and_column(
    tmp_path: Path, row: dict[str, str], said: str
) -> None:
    header, first, second, *_ = sample().split("\n")
    cells = dict(zip(header.split(","), second.split(","), strict=True)) | row
    text = f"{header}\n{first}\n{','.join(cells.values())}\n"
    assert said in refused(tmp_path / "emissions.csv", text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no rows"),
        ("\ufeff", "no rows"),
        ("timestamp,run_id,duration,emissions,pue\n", "line 1: no cpu_energy or energy_consumed"),
        ("timestamp,duration,energy_consumed\n", "line 1: no emissions column"),
        ("timestamp,duration,emissions,Emissions,energy_consumed\n", "'emissions' appears twice"),
        (b"timestamp,duration\n\xff\xfe\n", "not UTF-8 text"),
    ],
)
def test_what_is_not_a_codecarbon_file_is_refused(
    tmp_path: Path, text: str | bytes, said: str
) -> None:
    assert said in refused(tmp_path / "emissions.csv", text)


def test_a_file_of_many_runs_named_none_reads_in_linear_time(tmp_path: Path) -> None:
    header = "timestamp,run_id,duration,emissions,energy_consumed\n"
    # 1,440 runs, one a minute, each flushed every second for 20 s: 28,800 rows
    rows = "".join(
        f"2026-01-01T{h:02d}:{m:02d}:{s:02d},None,{s},{s / 10_000},{s / 5_000}\n"
        for h in range(24)
        for m in range(60)
        for s in range(1, 21)
    )
    path = tmp_path / "emissions.csv"
    path.write_text(header + rows)
    began = time.perf_counter()
    m = read(path)
    assert time.perf_counter() - began < 20
    # each run by its last row: 1,440 x 0.002 kg = 2.88 kg, 1,440 x 0.004 kWh = 5.76 kWh
    assert m.notes[0].startswith("1440 codecarbon run(s)")
    assert m.emissions_kg == pytest.approx(2.88) and m.energy_kwh.total == pytest.approx(5.76)


# --------------------------------------------------- files the installed codecarbon writes


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Real codecarbon output: two trackers appended into emissions.csv (the first flushed
    once and at PUE 1.5), a task tracker with three tasks, and a run in "update" mode."""
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    from codecarbon import OfflineEmissionsTracker

    out = tmp_path_factory.mktemp("codecarbon")

    def tracker(**kw: object) -> OfflineEmissionsTracker:
        with warnings.catch_warnings():  # save_to_file: deprecated in 3.3, what users write
            warnings.filterwarnings("ignore", "The save_to_", DeprecationWarning)
            return OfflineEmissionsTracker(
                country_iso_code="FRA",
                save_to_file=True,
                output_dir=str(out),
                log_level="error",
                measure_power_secs=0.2,
                **kw,
            )

    t = tracker(project_name="pue", pue=1.5)
    t.start()
    time.sleep(0.2)
    t.flush()
    time.sleep(0.2)
    assert t.stop() is not None
    t = tracker(project_name="plain")
    t.start()
    time.sleep(0.2)
    assert t.stop() is not None
    t = tracker(project_name="tasks", experiment_name="steps", output_file="tasks.csv")
    for name in ("load", "train", "eval"):
        t.start_task(name)
        time.sleep(0.1)
        t.stop_task(name)
    t.stop()
    t = tracker(project_name="update", output_file="update.csv", on_csv_write="update")
    t.start()
    time.sleep(0.2)
    t.flush()
    assert t.stop() is not None
    yield out


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def last_rows(path: Path) -> dict[str, dict[str, str]]:
    """Each run_id's last row, as a person would sum the file."""
    return {row["run_id"]: row for row in rows_of(path)}


def test_appended_and_flushed_runs_count_each_run_once(written: Path) -> None:
    path = written / "emissions.csv"
    rows = rows_of(path)
    assert [r["project_name"] for r in rows] == ["pue", "pue", "plain"]  # flush + stop, stop
    last = last_rows(path)
    assert len(last) == 2
    m = read(path)
    assert m.emissions_kg == pytest.approx(sum(float(r["emissions"]) for r in last.values()))
    # device energy: each run's energy_consumed over its own PUE
    drawn = sum(float(r["energy_consumed"]) / float(r["pue"]) for r in last.values())
    assert m.energy_kwh.total == pytest.approx(drawn, rel=1e-9)
    with_pue = sum(float(r["energy_consumed"]) for r in last.values())
    assert m.pue == pytest.approx(with_pue / drawn, rel=1e-9) and 1.0 < m.pue < 1.5
    assert m.run.id == ",".join(last) and m.notes[0].startswith("2 codecarbon run(s)")


def test_codecarbons_energy_includes_its_pue(written: Path) -> None:
    """Checked against codecarbon itself: at PUE 1.5 its energy_consumed is 1.5 x what the
    devices drew, and its emissions are energy_consumed (with PUE) x the grid's intensity."""
    rows = rows_of(written / "emissions.csv")
    pue_run, plain_run = rows[1], rows[2]
    assert float(pue_run["pue"]) == 1.5 and float(plain_run["pue"]) == 1.0
    # the same grid (France) prices both: kg per kWh-with-PUE is the same
    price = [float(r["emissions"]) / float(r["energy_consumed"]) for r in (pue_run, plain_run)]
    assert price[0] == pytest.approx(price[1], rel=1e-6)
    # RAM is codecarbon's constant watts: at PUE 1.5 its power column reads 1.5 x
    assert float(pue_run["ram_power"]) == pytest.approx(1.5 * float(plain_run["ram_power"]))


def test_a_file_at_pue_1_5_is_explained_at_pue_1_5(written: Path, tmp_path: Path) -> None:
    rows = rows_of(written / "emissions.csv")
    path = tmp_path / "emissions.csv"
    path.write_text((written / "emissions.csv").read_text().split("\n", 3)[0] + "\n")
    with path.open("a", newline="") as f:  # the PUE run alone: its two rows
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writerows(rows[:2])
    m = read(path)
    assert m.pue == pytest.approx(1.5)
    assert m.energy_kwh.total == pytest.approx(float(rows[1]["energy_consumed"]) / 1.5)
    assert m.intensity_g_per_kwh == pytest.approx(
        float(rows[1]["emissions"]) * 1000 / float(rows[1]["energy_consumed"])
    )
    assert any("include the PUE it was given (1.5)" in n for n in m.notes)


def test_a_task_file_counts_every_task(written: Path) -> None:
    task_files = sorted(written.glob("emissions_steps_*.csv"))
    assert len(task_files) == 1  # codecarbon writes tasks beside its emissions file
    rows = rows_of(task_files[0])
    assert [r["task_name"] for r in rows] == ["load", "train", "eval"]
    assert "pue" not in rows[0]
    m = read(task_files[0])
    assert m.emissions_kg == pytest.approx(sum(float(r["emissions"]) for r in rows), rel=1e-12)
    kwh = sum(float(r["energy_consumed"]) for r in rows)
    assert m.energy_kwh.total == pytest.approx(kwh, rel=1e-9)
    assert m.notes[0].startswith("3 codecarbon task(s) of run ")


def test_the_update_mode_file_holds_one_row_per_run(written: Path) -> None:
    path = written / "update.csv"
    rows = rows_of(path)
    assert len(rows) == 1  # flush() then stop(): the run's row replaced
    m = read(path)
    assert m.emissions_kg == pytest.approx(float(rows[0]["emissions"]))
    assert m.run.id == rows[0]["run_id"]


def test_check_gates_a_pue_file_and_the_report_says_its_pue(
    co2gate: CliRun, written: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    budget = tmp_path / ".github" / "carbon-budget.yml"
    budget.parent.mkdir()
    budget.write_text(
        "version: 1\nannual_budget_kg: 1\nallocations: {training: 1.0}\nledger: {backend: none}\n"
    )
    result = co2gate("check", "--json", str(written / "emissions.csv"))
    assert result.returncode == 0, result.stderr
    last = last_rows(written / "emissions.csv")
    kg = sum(float(r["emissions"]) for r in last.values())
    assert json.loads(result.stdout)["run_kg"] == pytest.approx(kg)
    report = (tmp_path / "co2gate-report" / "report.md").read_text()
    assert "losses are not counted" not in report
    assert "include the PUE it was given (1, 1.5)" in report


def test_check_refuses_a_corrupt_row_in_one_line(co2gate: CliRun, tmp_path: Path) -> None:
    header, first, second, *_ = sample().split("\n")
    path = tmp_path / "emissions.csv"
    path.write_text(f"{header}\n{first}\n{second.replace(',0.003,', ',zero,', 1)}\n")
    budget = tmp_path / "budget.yml"
    budget.write_text(
        "version: 1\nannual_budget_kg: 1\nallocations: {training: 1.0}\nledger: {backend: none}\n"
    )
    result = co2gate("check", "--no-record", "--budget-file", str(budget), str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "line 3: cpu_energy 'zero' is not a number" in result.stderr


def test_a_totals_only_file_reports_its_parts_as_unknown(co2gate: CliRun, tmp_path: Path) -> None:
    """codecarbon 1.x wrote no per-component columns: the report's rows and co2gate's lines
    say the split is unknown rather than 0 kWh of CPU, GPU and RAM."""
    from co2gate import report

    path = DATA / "v1.2-2021.csv"
    m = read(path)
    assert {method.value for _, method in m.methods.items()} == {"codecarbon-total"}
    (line, *_) = report.summary_lines(m)
    assert line.endswith(": cpu in the total only, gpu in the total only, ram in the total only")
    budget = tmp_path / "budget.yml"
    budget.write_text(
        "version: 1\nannual_budget_kg: 1\nallocations: {training: 1.0}\nledger: {backend: none}\n"
    )
    out = tmp_path / "out"
    result = co2gate(
        "check", "--no-record", "--out", str(out), "--budget-file", str(budget), str(path)
    )
    assert result.returncode == 0, result.stderr
    rows = [r for r in (out / "report.md").read_text().splitlines() if r.startswith("| CPU ")]
    assert rows and all(r.startswith("| CPU | - | - |") for r in rows), rows
