"""The live guard: it stops a run at its cap, on measured figures, and records the partial run."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import CliRun, late

from co2gate import budget as budgets
from co2gate import guard
from co2gate.app import gate
from co2gate.app.measure import measure_command
from co2gate.emissions import RunLabels
from co2gate.guard import Guard, GuardStop, Watch, default_heartbeat_s
from co2gate.intensity import Intensity, Location
from co2gate.ledger.none import NoneLedger
from co2gate.measure.codecarbon import CodecarbonMeter
from co2gate.measure.fake import FakeGpu, FakeMeter, FakeNvml
from co2gate.measure.interface import Component, Meter
from co2gate.measure.nvml import NvmlMeter
from co2gate.runner import MeterOutcome, energy_so_far, run_measured

PY = sys.executable
BURN_W = 3600.0  # 3600 W for 1 s = 3600 J = 0.001 kWh
INTENSITY = 1000.0  # g/kWh: at PUE 1, 0.001 kWh a second is 1 g = 0.001 kg a second
KG_PER_S = 0.001
CAP_KG = 0.0005  # crossed 0.5 s after the fake source opens its window
CROSSING_S = CAP_KG / KG_PER_S
INTERVAL_S = 0.1
SLACK_S = 1.0  # a loaded test machine: Python's start, the signal's delivery, the reaping

SLEEP_60 = [PY, "-c", "import time; time.sleep(60)"]
STUBBORN = [
    PY,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
]
TREE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
sys.exit(child.wait())
"""


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "GUARD_INTERVAL_S", INTERVAL_S)


def burner(watts: float = BURN_W, **kwargs: Any) -> Any:
    def make() -> Meter:
        return FakeMeter({Component.CPU: watts}, **kwargs)

    return make


def a_guard(watch: Watch, lines: list[str] | None = None) -> Guard:
    said = lines if lines is not None else []
    price = Intensity(INTENSITY, "a test intensity")
    return Guard(watch, pue=1.0, price=lambda: price, say=said.append)


def alive(pid: int) -> bool:
    """Whether a process runs: gone, or a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# The guard in the runner, with a fake source burning at a known rate.


def test_the_guard_stops_the_whole_process_group_within_an_interval(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    lines: list[str] = []
    child, _ = run_measured(
        [PY, "-c", TREE, str(pid_file)],
        [burner()],
        a_guard(Watch(limit_kg=CAP_KG), lines),
    )
    stop = child.guard_stop
    assert stop is not None and not stop.killed
    assert child.signal == "SIGTERM" or child.exit_code == 128 + signal.SIGTERM
    assert child.forwarded == ()  # the guard's signal is not one co2gate received
    assert stop.at_kg >= CAP_KG and stop.limit_kg == CAP_KG
    assert stop.at_kg == pytest.approx(stop.energy_kwh * INTENSITY / 1000.0)
    # the source burns from its start, so the cap is crossed CROSSING_S in; one interval later
    # at most the guard has seen it and the whole group has had SIGTERM
    assert CROSSING_S <= stop.after_s <= CROSSING_S + INTERVAL_S + SLACK_S
    assert child.duration_s <= CROSSING_S + INTERVAL_S + SLACK_S
    deadline = time.monotonic() + 5
    while alive(grandchild := int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)  # the grandchild got SIGTERM too
    assert len(lines) == 1 and "reached the 500 mg limit" in lines[0]  # 0.0005 kg


def test_at_the_default_interval_a_cap_due_between_readings_is_caught_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read at 1 s, the rate says the cap falls at 1.5 s: the guard reads every 0.1 s till then."""
    monkeypatch.setattr(guard, "GUARD_INTERVAL_S", 1.0)
    cap = 1.5 * KG_PER_S
    child, _ = run_measured(SLEEP_60, [burner()], a_guard(Watch(limit_kg=cap)))
    stop = child.guard_stop
    assert stop is not None
    assert 1.5 <= stop.after_s <= 1.5 + guard.NEAR_CAP_INTERVAL_S + 0.3  # not at the 2 s reading
    assert child.duration_s <= 1.5 + guard.NEAR_CAP_INTERVAL_S + SLACK_S


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    lines: list[str] = []
    grace = 0.5
    child, _ = run_measured(
        STUBBORN, [burner()], a_guard(Watch(limit_kg=CAP_KG, grace_s=grace), lines)
    )
    stop = child.guard_stop
    assert stop is not None and stop.killed
    assert (child.exit_code, child.signal) == (128 + signal.SIGKILL, "SIGKILL")
    assert stop.signals == ("SIGTERM", "SIGKILL")
    assert stop.after_s + grace <= child.duration_s <= CROSSING_S + INTERVAL_S + grace + SLACK_S
    assert "SIGKILL" in lines[-1]


def test_no_cap_no_guard() -> None:
    watch = Watch()
    assert not watch.wanted and watch.source_interval_s() is None
    quiet = a_guard(watch)
    child, _ = run_measured([PY, "-c", "import time; time.sleep(0.7)"], [burner()], quiet)
    assert child.guard_stop is None and child.limit_kg is None and child.exit_code == 0
    assert quiet._thread is None  # nothing was watching


def test_a_run_under_its_cap_is_left_alone() -> None:
    child, _ = run_measured(
        [PY, "-c", "import time; time.sleep(0.5)"], [burner()], a_guard(Watch(limit_kg=1.0))
    )
    assert child.guard_stop is None and child.exit_code == 0 and child.limit_kg == 1.0


def test_the_guard_acts_only_on_what_sources_have_read() -> None:
    """A source that cannot say (or is not ready) adds nothing: no stop on a guess."""
    child, _ = run_measured(
        [PY, "-c", "import time; time.sleep(0.6)"],
        [burner(live=False)],
        a_guard(Watch(limit_kg=CAP_KG / 100)),
    )
    assert child.guard_stop is None and child.exit_code == 0


def test_energy_so_far_adds_up_the_ready_sources_only() -> None:
    class Broken(FakeMeter):
        def so_far(self) -> float | None:
            raise RuntimeError("vendor surprise")

    ready = FakeMeter({Component.CPU: BURN_W})
    ready.start()
    outcomes = [
        MeterOutcome("fake", ready, ready_after_s=0.1),
        MeterOutcome("starting", FakeMeter({Component.RAM: 1.0})),  # not ready: no figure yet
        MeterOutcome("failed", FakeMeter({Component.RAM: 1.0}), error="boom", ready_after_s=0.1),
        MeterOutcome("broken", Broken({Component.GPU: 1.0}), ready_after_s=0.1),
        MeterOutcome("absent"),
    ]
    time.sleep(0.2)
    kwh = energy_so_far(outcomes)
    assert kwh is not None and 0.2 * 0.001 <= kwh < 0.5 * 0.001  # 3600 W: 0.001 kWh a second
    assert energy_so_far(outcomes[1:]) is None


# Heartbeat lines.


def test_heartbeat_lines_come_at_the_interval() -> None:
    stamps: list[tuple[float, str]] = []
    beat = a_guard(Watch(heartbeat_s=0.25))
    beat.say = lambda line: stamps.append((time.monotonic(), line))
    t0 = time.monotonic()
    run_measured([PY, "-c", "import time; time.sleep(1.2)"], [burner()], beat)
    assert 4 <= len(stamps) <= 5
    shape = re.compile(r"^[\d.]+ s: [\d.]+ (mWh|Wh|kWh), ([\d.]+) (mg|g|kg) CO2e so far$")
    matches = [shape.match(line) for _, line in stamps]
    assert all(matches), stamps
    for n, (when, _) in enumerate(stamps, start=1):
        assert when - t0 == pytest.approx(0.25 * n, abs=0.2)
    per_kg = {"mg": 1e-6, "g": 1e-3, "kg": 1.0}
    kg = [float(m[2]) * per_kg[m[3]] for m in matches if m]
    assert kg == sorted(kg) and kg[-1] > 0


def test_a_heartbeat_says_the_limit_and_when_there_is_no_reading_yet() -> None:
    lines: list[str] = []
    beat = a_guard(Watch(limit_kg=25.0, heartbeat_s=0.2), lines)
    run_measured([PY, "-c", "import time; time.sleep(0.5)"], [burner(live=False)], beat)
    assert lines and re.fullmatch(r"0\.2\d* s: no energy reading yet \(limit 25 kg\)", lines[0])
    assert (
        beat.heartbeat_line(720.0, 1.2, 0.48)
        == "12 min 00 s: 1.2 kWh, 480 g CO2e so far (limit 25 kg)"
    )


def test_the_heartbeat_is_on_in_github_actions_only() -> None:
    assert default_heartbeat_s({"GITHUB_ACTIONS": "true"}) == 300.0
    assert default_heartbeat_s({}) == 0.0
    assert default_heartbeat_s({"GITHUB_ACTIONS": "false"}) == 0.0


def test_watch_refuses_nonsense() -> None:
    for bad in ({"limit_kg": 0.0}, {"limit_kg": float("inf")}, {"grace_s": -1.0}):
        with pytest.raises(ValueError):
            Watch(**bad)


# What each source can say while the command runs.


def test_fake_meter_so_far_burns_at_its_watts() -> None:
    meter = FakeMeter({Component.CPU: 1800.0, Component.RAM: 1800.0})
    assert meter.so_far() is None  # not started
    meter.start()
    time.sleep(0.2)
    kwh = meter.so_far()
    assert kwh is not None and 0.2 * 0.001 <= kwh < 0.4 * 0.001
    assert FakeMeter({Component.CPU: 1.0}, live=False).so_far() is None


@pytest.mark.parametrize("counter", [True, False])
def test_nvml_so_far_is_the_sampled_energy(counter: bool) -> None:
    fake = FakeNvml([FakeGpu(0, "NVIDIA H100 80GB HBM3", "GPU-0", 360.0, counter)])
    meter = NvmlMeter(fake, interval_s=0.05)
    assert meter.so_far() is None
    meter.start()
    time.sleep(0.5)
    calls = sum(fake.calls.values())
    kwh = meter.so_far()
    assert sum(fake.calls.values()) == calls  # no NVML call of its own
    reading = meter.stop()
    total = reading.parts[0].energy_kwh
    # 360 W = 0.1 Wh a second: about 0.05 Wh after 0.5 s, at most one interval stale
    assert kwh is not None and total - 360.0 * 0.1 / 3.6e6 <= kwh <= total
    assert kwh == pytest.approx(360.0 * 0.5 / 3.6e6, rel=0.3)
    assert meter.so_far() is None  # stopped


def test_codecarbon_so_far_only_when_live() -> None:
    still = CodecarbonMeter()
    still.start()
    try:
        assert still.so_far() is None  # one reading at stop: it cannot say
    finally:
        still.stop()
    live = CodecarbonMeter(live_interval_s=0.2)
    assert live.so_far() is None
    live.start()
    time.sleep(0.7)
    kwh = live.so_far()
    reading = live.stop()
    assert kwh is not None and 0 < kwh <= sum(p.energy_kwh for p in reading.parts)
    with pytest.raises(ValueError):
        CodecarbonMeter(live_interval_s=0)


# The partial run: written, gated and recorded like any other.


def test_the_partial_run_is_written_with_the_guards_note(tmp_path: Path) -> None:
    lines: list[str] = []
    measured = measure_command(
        SLEEP_60,
        location=Location(intensity_g_per_kwh=INTENSITY),
        labels=RunLabels("train", "training"),
        out_dir=tmp_path,
        env={},
        sources=[burner()],
        watch=Watch(limit_kg=CAP_KG),
        say=lines.append,
    )
    assert measured.stopped_by_guard and measured.exit_code == 128 + signal.SIGTERM
    doc = json.loads((tmp_path / "emissions.json").read_text())
    assert doc == measured.measurement.to_json()
    run = doc["run"]
    assert run["stopped_by_guard"] is True and run["limit_kg"] == CAP_KG
    assert run["guard"]["signals"] == ["SIGTERM"] and run["guard"]["limit_kg"] == CAP_KG
    assert run["guard"]["stopped_at_kg"] >= CAP_KG
    (note,) = [n for n in doc["notes"] if n.startswith("stopped by the guard")]
    assert "(limit 500 mg)" in note and "SIGTERM to its process group" in note
    assert doc["emissions_kg"] >= run["guard"]["stopped_at_kg"]  # shutdown included
    assert (tmp_path / "emissions.csv").exists()
    from importlib import resources

    schema = json.loads(
        resources.files("co2gate").joinpath("schemas/emissions.v1.json").read_text()
    )
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    assert any("reached the 500 mg limit" in line for line in lines)

    budget = budgets.parse(
        "version: 1\nannual_budget_kg: 1000\nallocations: {training: 1}\n", "test"
    )
    gated = gate.gate(measured.measurement, budget, NoneLedger(), record=False)
    assert gated.decision.verdict is budgets.Verdict.FAIL
    assert any(r.startswith("Stopped by the guard at ") for r in gated.decision.reasons)
    warn = budgets.parse(
        "version: 1\nannual_budget_kg: 1000\nallocations: {training: 1}\non_exceed: warn\n", "t"
    )
    warned = gate.gate(measured.measurement, warn, NoneLedger(), record=False).decision
    assert warned.verdict is budgets.Verdict.WARN  # on_exceed keeps its meaning
    assert any(r.startswith("Stopped by the guard at ") for r in warned.reasons)


def test_the_stop_note_reads_well() -> None:
    from datetime import datetime, timezone

    stop = GuardStop(
        limit_kg=25.0,
        at_kg=25.3,
        energy_kwh=63.25,
        after_s=4520.0,
        at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc),
        grace_s=10.0,
        killed=True,
    )
    assert stop.note() == (
        "stopped by the guard at 25.3 kg CO2e (limit 25 kg), 1 h 15 min into the run "
        "(2025-03-01T12:00:00+00:00): SIGTERM to its process group, then SIGKILL after the "
        "10 s grace; the figures include its shutdown"
    )


def test_the_smaller_limit_wins() -> None:
    budget = budgets.parse(
        "version: 1\nannual_budget_kg: 100\nallocations: {training: 0.5, inference: 0.5}\n"
        "limits: {training: 25}\n",
        "test",
    )
    assert budgets.run_limit_kg(budget, "training") == 25
    assert budgets.run_limit_kg(budget, "training", 5.0) == 5.0
    assert budgets.run_limit_kg(budget, "training", 50.0) == 25
    assert budgets.run_limit_kg(budget, "inference") is None
    assert budgets.run_limit_kg(budget, "inference", 3.0) == 3.0
    decision = budgets.decide(budget, "inference", 0.0, 4.0, max_kg=3.0)
    assert decision.verdict is budgets.Verdict.FAIL
    assert "The run's 4 kg exceeds the 3 kg limit for one inference run." in decision.reasons


# Through the CLI, with the real sources: codecarbon's RAM estimate alone draws about 10 W,
# which at 1,000,000 g/kWh emits about 2.8 g a second: a cap of grams is crossed in seconds.

BUDGET = """version: 1
annual_budget_kg: 1000
allocations: {{training: 0.7, inference: 0.3}}
limits: {{training: {limit}}}
on_exceed: {on_exceed}
location: {{intensity: 1000000}}
ledger: {{backend: file, path: ledger}}
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("GITHUB_")]:
        monkeypatch.delenv(name)
    return tmp_path


def write_budget(root: Path, limit: float = 100.0, on_exceed: str = "fail") -> None:
    path = root / ".github" / "carbon-budget.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BUDGET.format(limit=limit, on_exceed=on_exceed))


def outputs(root: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    out = root / "co2gate-report"
    ledger = [
        line for f in (root / "ledger").rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    return (
        json.loads((out / "emissions.json").read_text()),
        json.loads((out / "verdict.json").read_text()),
        ledger,
    )


def test_cli_a_guarded_run_exits_1_and_is_recorded(co2gate: CliRun, repo: Path) -> None:
    write_budget(repo, limit=100.0)
    t0 = time.monotonic()
    result = co2gate("run", "--max-kg", "0.002", "--heartbeat", "0.5", "--", *SLEEP_60)
    assert result.returncode == 1, result.stderr  # the gate's, not 128 + SIGTERM
    assert time.monotonic() - t0 < 30
    doc, verdict, ledger = outputs(repo)
    run = doc["run"]
    assert run["stopped_by_guard"] is True and run["exit_code"] == 128 + signal.SIGTERM
    assert run["limit_kg"] == 0.002  # --max-kg below the budget's 100 kg: it wins
    assert verdict["verdict"] == "fail"
    reason = next(r for r in verdict["reasons"] if r.startswith("Stopped by the guard at "))
    assert reason.endswith("the limit is 2 g.")  # 0.002 kg
    assert len(ledger) == 1
    err = result.stderr
    assert "co2gate: guard: " in err and "reached the 2 g limit" in err
    assert re.search(r"co2gate: [\d.]+ s: .* CO2e so far \(limit 2 g\)", err)


def test_cli_the_budgets_smaller_limit_wins_and_on_exceed_warn_holds(
    co2gate: CliRun, repo: Path
) -> None:
    write_budget(repo, limit=0.002, on_exceed="warn")
    result = co2gate("run", "--max-kg", "5", "--", *SLEEP_60)
    assert result.returncode == 0, result.stderr  # on_exceed: warn lets it through
    doc, verdict, _ = outputs(repo)
    assert doc["run"]["stopped_by_guard"] is True and doc["run"]["limit_kg"] == 0.002
    assert verdict["verdict"] == "warn"
    assert any(r.startswith("Stopped by the guard at ") for r in verdict["reasons"])


def test_cli_without_a_cap_there_is_no_guard(co2gate: CliRun, repo: Path) -> None:
    path = repo / ".github" / "carbon-budget.yml"
    path.parent.mkdir(parents=True)
    path.write_text(BUDGET.replace("limits: {{training: {limit}}}\n", "").format(on_exceed="fail"))
    result = co2gate("run", "--", PY, "-c", "import time; time.sleep(2.5)")
    assert result.returncode == 0, result.stderr
    doc, _, _ = outputs(repo)
    assert doc["run"]["stopped_by_guard"] is False and doc["run"]["limit_kg"] is None
    assert doc["run"]["guard"] is None and "guard" not in result.stderr


@pytest.mark.parametrize(
    "args", [["--max-kg", "0"], ["--max-kg", "nan"], ["--grace", "-1"], ["--heartbeat", "inf"]]
)
def test_cli_refuses_bad_guard_options(co2gate: CliRun, repo: Path, args: list[str]) -> None:
    write_budget(repo)
    result = co2gate("run", *args, "--", *late("ran"))
    assert result.returncode == 2
    assert not (repo / "ran").exists()
