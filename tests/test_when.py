"""co2gate when and the arithmetic under it (grid.schedule), against hand-computed figures;
run --start-within with the file provider and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from co2gate.app.when import forecast
from co2gate.errors import InputError
from co2gate.grid import schedule
from co2gate.grid.signal import ForecastUnavailable, Interval, ProviderError, Series

UTC = timezone.utc
T0 = datetime(2026, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def hourly(*g: float, start: datetime = T0) -> Series:
    return Series(
        tuple(Interval(start + i * H, start + (i + 1) * H, x) for i, x in enumerate(g)), "t", True
    )


# ------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400),
        ("90min", 5400),
        ("3h", 10800),
        ("1.5h", 5400),
        ("1d", 86400),
        ("45s", 45),
        (" 2H ", 7200),
    ],
)
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert schedule.parse_duration(text, "--duration").total_seconds() == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3", "is not a duration"),
        ("h", "is not a duration"),
        ("-1h", "is not a duration"),
        ("1e3h", "is not a duration"),
        ("0h", "longer than zero"),
        ("15d", "longer than 14 days"),
        ("1h30m", "is not a duration"),
    ],
)
def test_bad_durations_are_refused_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(InputError, match=f"--within: .*{message}"):
        schedule.parse_duration(text, "--within")


def test_a_deadline_is_a_time_with_its_zone_or_a_duration_from_now() -> None:
    assert schedule.parse_deadline("72h", T0) == T0 + 72 * H
    assert schedule.parse_deadline("2026-05-03T06:00Z", T0) == T0 + 54 * H
    for text, message in [
        ("2026-05-03T06:00", "no timezone"),
        ("2026-04-30T06:00Z", "has passed"),
        ("2026-06-30T06:00Z", "more than 14 days"),
        ("soon", "is not a duration"),
    ]:
        with pytest.raises(InputError, match=message):
            schedule.parse_deadline(text, T0)


# ------------------------------------------------------------------------------ best start


def test_the_mean_intensity_weighs_partial_intervals_and_refuses_gaps() -> None:
    series = hourly(300, 100, 200)
    # [0:30, 2:30): half of 300, all of 100, half of 200 -> (150 + 100 + 100) / 2 = 175
    assert schedule.mean_intensity(series, T0 + 30 * M, T0 + 150 * M) == pytest.approx(175.0)
    assert schedule.mean_intensity(series, T0 + 2 * H, T0 + 4 * H) is None  # past its end
    gap = Series((Interval(T0, T0 + H, 100.0), Interval(T0 + 2 * H, T0 + 3 * H, 100.0)), "t")
    assert schedule.mean_intensity(gap, T0, T0 + 3 * H) is None


def test_the_best_start_by_hand() -> None:
    # Now is 0:30, a 2 h run may start until 3:30. Starts at the corners: 0:30 -> 175,
    # 1:00 -> 150, 1:30 -> 137.5, 2:00 -> (200 + 50) / 2 = 125, 2:30 -> 175, 3:00 -> 225.
    choice = schedule.best_start(hourly(300, 100, 200, 50, 400), 2 * H, T0 + 30 * M, 3 * H)
    assert choice.start == T0 + 2 * H
    assert choice.end == T0 + 4 * H
    assert choice.g_per_kwh == pytest.approx(125.0)
    assert choice.now_g_per_kwh == pytest.approx(175.0)
    assert choice.saving == pytest.approx(1 - 125 / 175)


def test_ties_go_to_the_earliest_and_a_run_from_now_may_straddle_an_edge() -> None:
    # Hourly 100, 500, 100: within 2 h of 0:00 a 30 min run is as good anywhere inside the
    # first or the third hour; the earliest of equals wins.
    choice = schedule.best_start(hourly(100, 500, 100), 30 * M, T0, 2 * H)
    assert choice.start == T0
    assert choice.saving == pytest.approx(0.0)
    # Now at 0:45: running from now crosses into the 500 hour (0:45-1:15 -> 300); the best
    # is to wait for 2:00.
    later = schedule.best_start(hourly(100, 500, 100), 30 * M, T0 + 45 * M, 2 * H)
    assert later.start == T0 + 2 * H
    assert later.now_g_per_kwh == pytest.approx(300.0)
    assert later.saving == pytest.approx(1 - 100 / 300)


def test_a_start_ending_on_an_edge_is_found() -> None:
    # 30-minute intervals 400, 400, 100, 400; a 45 min run starting within 1 h of 0:00: the
    # minimum puts as much of it as possible on the 100: 0:45-1:30 -> (15x400 + 30x100)/45 = 200,
    # or 1:00-1:45 -> (30x100 + 15x400)/45 = 200: equal, the earliest (0:45, where the run's
    # end meets the 100's end) wins.
    step = 30 * M
    series = Series(
        tuple(
            Interval(T0 + i * step, T0 + (i + 1) * step, g)
            for i, g in enumerate([400, 400, 100, 400])
        ),
        "t",
        True,
    )
    choice = schedule.best_start(series, 45 * M, T0, H)
    assert choice.start == T0 + 45 * M
    assert choice.g_per_kwh == pytest.approx(200.0)


def test_a_forecast_too_short_or_empty_is_refused_with_what_it_covers() -> None:
    with pytest.raises(
        schedule.ScheduleError, match="does not cover a 3 h run starting within 24 h"
    ):
        schedule.best_start(hourly(100, 100), 3 * H, T0, 24 * H)
    with pytest.raises(schedule.ScheduleError, match="is empty"):
        schedule.best_start(Series((), "t", True), H, T0, H)


def test_now_outside_the_forecast_gives_a_start_but_no_saving() -> None:
    choice = schedule.best_start(hourly(100, 50, start=T0 + H), H, T0, 2 * H)
    assert choice.start == T0 + 2 * H
    assert choice.now_g_per_kwh is None
    assert choice.saving is None


# ------------------------------------------------------------------------------ pause plan


def test_the_pause_plan_by_hand() -> None:
    # 2 h of work from 0:00, deadline 4:00, pause above 150, hourly 300, 100, 200, 50, 400:
    # pause 0-1 (300, slack 2 h), run 1-2 (100), pause 2-3 (200, slack 1 h), run 3-4 (50).
    plan = schedule.pause_plan(hourly(300, 100, 200, 50, 400), 2 * H, T0, T0 + 4 * H, 150.0)
    assert [(s.start, s.end, s.running, s.g_per_kwh) for s in plan.segments] == [
        (T0, T0 + H, False, 300),
        (T0 + H, T0 + 2 * H, True, 100),
        (T0 + 2 * H, T0 + 3 * H, False, 200),
        (T0 + 3 * H, T0 + 4 * H, True, 50),
    ]
    assert plan.finish == T0 + 4 * H
    assert plan.g_per_kwh == pytest.approx(75.0)
    assert plan.unpaused_g_per_kwh == pytest.approx(200.0)  # 0-2 h: (300 + 100) / 2
    assert plan.saving == pytest.approx(0.625)


def test_the_deadline_forces_the_latest_resume() -> None:
    # Always above the threshold: 2 h of work by a 3 h deadline pauses 1 h, then runs.
    plan = schedule.pause_plan(hourly(300, 300, 300, 300), 2 * H, T0, T0 + 3 * H, 150.0)
    assert [(s.start, s.end, s.running) for s in plan.segments] == [
        (T0, T0 + H, False),
        (T0 + H, T0 + 3 * H, True),
    ]
    # A slack that ends inside an interval resumes there, not at its edge.
    plan = schedule.pause_plan(hourly(300, 300, 300), 2 * H, T0, T0 + 150 * M, 150.0)
    assert plan.pauses[0].end == T0 + 30 * M
    assert plan.finish == T0 + 150 * M


def test_no_pause_without_a_reason() -> None:
    plan = schedule.pause_plan(hourly(100, 120), 2 * H, T0, T0 + 5 * H, 150.0)
    assert plan.pauses == ()
    assert plan.saving == pytest.approx(0.0)
    # Where the series has no figure the command runs: an unknown intensity never pauses.
    plan = schedule.pause_plan(hourly(300, start=T0 + 5 * H), H, T0, T0 + 10 * H, 150.0)
    assert plan.pauses == ()
    assert plan.g_per_kwh is None


def test_a_deadline_nearer_than_the_work_is_refused() -> None:
    with pytest.raises(schedule.ScheduleError, match="leaves 2 h, less than the 3 h of work"):
        schedule.pause_plan(hourly(100, 100, 100), 3 * H, T0, T0 + 2 * H, 150.0)


# ------------------------------------------------------------------------------ co2gate when


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith(("GITHUB_", "RUNNER_"))]:
        monkeypatch.delenv(name)
    (tmp_path / "b.yml").write_text(
        "version: 1\nannual_budget_kg: 10\nallocations:\n  training: 1\n"
        "ledger:\n  backend: none\nintensity:\n  provider: file\n  path: grid.csv\n"
    )
    return tmp_path


def grid(path: Path, start: datetime, step: timedelta, values: list[float]) -> None:
    rows = "".join(f"{(start + i * step).isoformat()},{g}\n" for i, g in enumerate(values))
    path.write_text("timestamp,g_per_kwh\n" + rows)


def this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_when_prints_the_best_start_the_saving_and_the_verdict_at_both(
    co2gate: Any, repo: Path
) -> None:
    hour = this_hour()
    grid(repo / "grid.csv", hour, H, [400, 400, 400, 100, 100, 100, 400, 400])
    result = co2gate(
        "when",
        "--budget-file",
        "b.yml",
        "--duration",
        "2h",
        "--within",
        "5h",
        "--energy-kwh",
        "21",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["best"]["start"] == (hour + 3 * H).isoformat(timespec="minutes")
    assert doc["best"]["g_per_kwh"] == pytest.approx(100.0)
    assert doc["start_now"]["g_per_kwh"] == pytest.approx(400.0)
    assert doc["saving"]["fraction"] == pytest.approx(0.75)
    # 21 kWh x 100 g = 2.1 kg passes the 10 kg allocation; at 400 g, 8.4 kg warns (>= 80%);
    # clear of the 8 kg line, where a time-weighted mean's last bit would decide.
    assert doc["best"]["emissions_kg"] == pytest.approx(2.1)
    assert doc["best"]["verdict"]["verdict"] == "pass"
    assert doc["start_now"]["emissions_kg"] == pytest.approx(8.4)
    assert doc["start_now"]["verdict"]["verdict"] == "warn"
    assert doc["saving"]["emissions_kg"] == pytest.approx(6.3)
    text = co2gate(
        "when", "--budget-file", "b.yml", "--duration", "2h", "--within", "5h", "--energy-kwh", "40"
    )
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"best start: {(hour + 3 * H).strftime('%Y-%m-%d %H:%M')} UTC (in ")
    assert "starting now: 400 gCO2e/kWh (75.0% less)" in lines[1]
    assert lines[2].startswith("at the best start: pass, 4 kg CO2e")
    assert lines[3].startswith("starting now: fail, 16 kg CO2e")


def test_when_without_a_provider_or_a_forecast_says_why_in_one_line(
    co2gate: Any, repo: Path
) -> None:
    (repo / "none.yml").write_text(
        "version: 1\nannual_budget_kg: 10\nallocations:\n  training: 1\n"
    )
    result = co2gate("when", "--budget-file", "none.yml", "--duration", "1h")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "no grid signal to plan on: set intensity.provider" in line
    grid(repo / "grid.csv", this_hour(), H, [100, 100])
    short = co2gate("when", "--budget-file", "b.yml", "--duration", "6h", "--within", "1h")
    assert short.returncode == 2
    (line,) = short.stderr.strip().splitlines()
    assert "does not cover a 6 h run starting within 1 h" in line
    bad = co2gate("when", "--budget-file", "b.yml", "--duration", "3 hours")
    assert bad.returncode == 2
    assert "'3 hours' is not a duration" in bad.stderr


class PaidOnly:
    """A provider whose key's plan has no forecasts (Electricity Maps' free tier)."""

    name = "paid-only"

    def history(self, start: datetime, end: datetime) -> Series:
        return Series((), self.name)

    def forecast(self, start: datetime, end: datetime) -> Series:
        raise ForecastUnavailable("forecasts are a paid feature of this plan")

    def latest(self) -> Interval:
        raise ProviderError("no latest figure either")


def test_no_forecast_passes_the_providers_own_reason_on() -> None:
    with pytest.raises(
        ForecastUnavailable, match="forecast from paid-only: forecasts are a paid feature"
    ):
        forecast(PaidOnly(), T0, T0 + H)
    assert issubclass(ForecastUnavailable, ProviderError)


# ------------------------------------------------------------------------------ run --start-within


def seconds_grid(path: Path, rows: list[tuple[float, float]]) -> datetime:
    """Rows (seconds from now, g) at one-second resolution; the base time."""
    base = datetime.now(UTC).replace(microsecond=0)
    text = "".join(f"{(base + timedelta(seconds=s)).isoformat()},{g}\n" for s, g in rows)
    path.write_text("timestamp,g_per_kwh\n" + text)
    return base


def run_argv(marker: Path, *options: str) -> list[str]:
    probe = f"import time; open({str(marker)!r}, 'w').write(str(time.time()))"
    return [
        "run",
        "--budget-file",
        "b.yml",
        "--out",
        "out",
        "--no-comment",
        *options,
        "--",
        sys.executable,
        "-c",
        probe,
    ]


def quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
    return {**env, "CODECARBON_LOG_LEVEL": "error"}


def test_start_within_waits_for_the_forecast_low_then_runs(co2gate: Any, repo: Path) -> None:
    base = seconds_grid(repo / "grid.csv", [(-60, 400), (3, 50), (5, 400), (600, 400)])
    result = co2gate(
        *run_argv(repo / "ran", "--start-within", "1m", "--duration", "2s"), env=quiet_env()
    )
    assert result.returncode == 0, result.stderr
    started = float((repo / "ran").read_text())
    assert started >= base.timestamp() + 3 - 0.05  # not before the low
    assert "waiting " in result.stderr and "forecast 50 gCO2e/kWh" in result.stderr


def test_a_cancelled_wait_starts_nothing(repo: Path) -> None:
    seconds_grid(repo / "grid.csv", [(-60, 400), (300, 50), (600, 50)])
    env = {**quiet_env(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    argv = [
        sys.executable,
        "-m",
        "co2gate",
        *run_argv(repo / "ran", "--start-within", "10m", "--duration", "1m"),
    ]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "waiting ..." once it waits
    assert "waiting" in first
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM while waiting to start: the command was not started" in err
    assert not (repo / "ran").exists()


def test_pause_above_holds_the_start_while_the_grid_is_dirty(co2gate: Any, repo: Path) -> None:
    base = seconds_grid(repo / "grid.csv", [(-60, 400), (2, 50), (600, 50)])
    t = time.time()
    result = co2gate(
        *run_argv(repo / "ran", "--pause-above", "100", "--deadline", "1h"), env=quiet_env()
    )
    assert result.returncode == 0, result.stderr
    assert float((repo / "ran").read_text()) >= base.timestamp() + 2 - 0.05
    assert "waiting to start: 400 gCO2e/kWh is above 100" in result.stderr
    assert time.time() - t < 60
    assert "not paused" in result.stderr


def test_when_takes_the_energy_from_the_ledgers_history_of_a_label(
    co2gate: Any, repo: Path
) -> None:
    from co2gate.ledger.file import FileLedger
    from co2gate.ledger.interface import entry_key

    (repo / "b.yml").write_text(
        "version: 1\nannual_budget_kg: 10\nallocations:\n  training: 1\n"
        "ledger:\n  backend: file\n  path: ledger\nintensity:\n  provider: file\n  path: grid.csv\n"
    )
    ended = datetime.now(UTC) - H
    ledger = FileLedger(repo / "ledger")
    for n, (label, kg, kwh) in enumerate(
        [("train", 1, 2), ("train", 1, 4), ("train", 1, 10), ("eval", 6, 1)]
    ):
        e: dict[str, Any] = {
            "repository": "local", "run_id": f"run-{n}", "run_attempt": "1", "job": "local",
            "label": label, "category": "training", "emissions_kg": kg, "energy_kwh": kwh,
            "duration_s": 60.0, "ended_at": (ended + n * M).isoformat(timespec="milliseconds"),
            "sha": None, "ref": None, "event": None, "pr": None,
        }  # fmt: skip
        e["key"] = entry_key(e)
        assert ledger.append(e)
    grid(repo / "grid.csv", this_hour(), H, [400, 400, 100, 100, 400])
    result = co2gate(
        "when",
        "--budget-file",
        "b.yml",
        "--duration",
        "1h",
        "--within",
        "3h",
        "--from-history",
        "train",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    # The median of train's 2, 4 and 10 kWh: 4 kWh. 9 kg used so far of 10 kg.
    assert doc["energy_kwh"] == pytest.approx(4.0)
    assert doc["energy_source"] == "median of 3 recorded runs of 'train'"
    assert doc["best"]["emissions_kg"] == pytest.approx(0.4)  # 4 kWh x 100 g
    assert doc["best"]["verdict"]["verdict"] == "warn"  # 9.4 of 10 kg
    assert doc["start_now"]["emissions_kg"] == pytest.approx(1.6)  # 4 kWh x 400 g
    assert doc["start_now"]["verdict"]["verdict"] == "fail"  # 10.6 of 10 kg
    both = co2gate(
        "when",
        "--budget-file",
        "b.yml",
        "--duration",
        "1h",
        "--from-history",
        "train",
        "--energy-kwh",
        "1",
    )
    assert both.returncode == 2
    assert "give one" in both.stderr
