"""The runner: the command's output, exit code and signals pass through untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import CliRun

from co2gate import emissions
from co2gate.intensity import Location, resolve
from co2gate.measure.fake import FakeMeter
from co2gate.measure.interface import Component, Method
from co2gate.runner import ChildResult, CommandError, MeterOutcome, Supervisor, run_measured

PY = sys.executable


def measure(co2gate: CliRun, tmp_path: Path, *command: str) -> subprocess.CompletedProcess[bytes]:
    return co2gate("measure", "--out", str(tmp_path / "out"), "--", *command, text=False)


def record(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((tmp_path / "out" / "emissions.json").read_text())


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_code_is_the_commands(co2gate: CliRun, tmp_path: Path, code: int) -> None:
    result = measure(co2gate, tmp_path, PY, "-c", f"raise SystemExit({code})")
    assert result.returncode == code
    assert record(tmp_path)["run"]["exit_code"] == code


def test_death_by_signal_exits_128_plus_n(co2gate: CliRun, tmp_path: Path) -> None:
    result = measure(
        co2gate, tmp_path, PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert result.returncode == 137
    run = record(tmp_path)["run"]
    assert (run["exit_code"], run["signal"]) == (137, "SIGKILL")


def test_binary_and_large_output_pass_through_byte_for_byte(
    co2gate: CliRun, tmp_path: Path
) -> None:
    script = (
        "import sys, random; r = random.Random(7); "
        "sys.stdout.buffer.write(bytes(range(256)) + r.randbytes(8 << 20)); "
        "sys.stderr.write('child-stderr\\n')"
    )
    import random

    expected = bytes(range(256)) + random.Random(7).randbytes(8 << 20)
    result = measure(co2gate, tmp_path, PY, "-c", script)
    assert result.returncode == 0
    assert result.stdout == expected  # nothing added, nothing lost, nothing re-encoded
    err = result.stderr.decode()
    assert err.startswith("child-stderr\n")  # co2gate speaks after the command
    assert "co2gate: " in err and "co2gate: " not in result.stdout.decode("latin-1")


def test_output_is_not_buffered_by_co2gate(tmp_path: Path) -> None:
    """A line the command flushes reaches the reader while the command is still running."""
    script = "import time; print('first', flush=True); time.sleep(3); print('second')"
    proc = subprocess.Popen(
        [PY, "-m", "co2gate", "measure", "--out", str(tmp_path / "out"), "--", PY, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    t0 = time.monotonic()
    assert proc.stdout.readline() == b"first\n"
    assert time.monotonic() - t0 < 2.5
    assert proc.wait(timeout=30) == 0


SLEEPER = """
import signal, subprocess, sys, time
mode = sys.argv[1]
if mode == "trap":
    signal.signal(signal.SIGINT, lambda *a: (print("child got SIGINT", flush=True), sys.exit(7)))
grandchild = subprocess.Popen(["sleep", "30"]) if mode == "tree" else None
print("ready", flush=True)
if grandchild:
    sys.exit(grandchild.wait())
time.sleep(30)
"""


def _start_and_signal(tmp_path: Path, mode: str, signum: int) -> tuple[int, bytes, float]:
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "co2gate",
            "measure",
            "--out",
            str(tmp_path / "out"),
            "--",
            PY,
            "-c",
            SLEEPER,
            mode,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, time.monotonic() - t0


def test_sigterm_is_forwarded_and_partial_run_written(tmp_path: Path) -> None:
    code, _, elapsed = _start_and_signal(tmp_path, "plain", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert elapsed < 5  # not the child's 30 s sleep
    doc = record(tmp_path)
    assert doc["run"]["forwarded_signals"] == ["SIGTERM"]
    assert doc["run"]["signal"] == "SIGTERM"
    assert doc["energy_kwh"]["total"] > 0


def test_sigint_reaches_a_child_that_traps_it(tmp_path: Path) -> None:
    code, out, _ = _start_and_signal(tmp_path, "trap", signal.SIGINT)
    assert code == 7  # the child's own exit code, not co2gate's
    assert b"child got SIGINT" in out
    doc = record(tmp_path)
    assert doc["run"]["forwarded_signals"] == ["SIGINT"] and doc["run"]["signal"] is None


def test_signals_reach_the_whole_process_group(tmp_path: Path) -> None:
    code, _, elapsed = _start_and_signal(tmp_path, "tree", signal.SIGTERM)
    assert elapsed < 5  # the grandchild `sleep 30` got it too, or the child would still wait
    assert code in (128 + signal.SIGTERM, 256 - signal.SIGTERM)


def test_missing_command_is_one_line_and_exit_2(co2gate: CliRun, tmp_path: Path) -> None:
    result = measure(co2gate, tmp_path, "co2gate-no-such-command-xyz", "--flag")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines == ["Error: cannot start 'co2gate-no-such-command-xyz': command not found"]
    assert not (tmp_path / "out" / "emissions.json").exists()


def test_not_executable_is_exit_2(co2gate: CliRun, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = measure(co2gate, tmp_path, str(script))
    assert result.returncode == 2
    assert "permission denied" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


# In-process, with the fake meter: how sources are started, stopped and accounted.

SLEEP = [PY, "-c", "import time; time.sleep(0.6)"]


def build(child: ChildResult, outcomes: list[MeterOutcome]) -> dict:  # type: ignore[type-arg]
    intensity = resolve(Location(intensity_g_per_kwh=100.0))
    labels = emissions.RunLabels("t", "training")
    return emissions.build(child, outcomes, intensity, pue=1.0, labels=labels, ci=None).to_json()


PASS = [PY, "-c", "pass"]


def test_source_starts_beside_the_command_and_is_scaled_to_its_lifetime() -> None:
    child, outcomes = run_measured(SLEEP, [lambda: FakeMeter({Component.CPU: 36.0}, setup_s=0.2)])
    (outcome,) = outcomes
    assert outcome.error is None and outcome.reading is not None
    assert 0.2 <= (outcome.ready_after_s or 0) < 0.5  # the command did not wait for it
    assert 0.6 <= child.duration_s < 2.0
    doc = build(child, outcomes)
    # 36 W for the whole lifetime, by hand: 36 W x d s / 3.6e6 J/kWh = d x 1e-5 kWh
    assert doc["energy_kwh"]["cpu"] == pytest.approx(child.duration_s * 1e-5, rel=1e-6)
    assert 0.5 < doc["coverage"]["cpu"] < 0.8
    assert any("extrapolated" in n for n in doc["notes"])


def test_a_source_that_fails_is_labelled_and_the_run_still_counts() -> None:
    child, outcomes = run_measured(
        PASS,
        [lambda: FakeMeter({Component.CPU: 5.0, Component.RAM: 5.0}, fail="start")],
    )
    assert child.exit_code == 0
    assert outcomes[0].error == "fake: start failed as asked"
    doc = build(child, outcomes)
    assert doc["methods"] == {"cpu": "failed", "gpu": "none", "ram": "failed"}
    assert any("fake failed: fake: start failed as asked" in n for n in doc["notes"])


def test_a_source_that_is_absent_is_none() -> None:
    child, outcomes = run_measured(PASS, [lambda: None])
    assert outcomes[0].meter is None and outcomes[0].error is None
    doc = build(child, outcomes)
    assert doc["methods"]["gpu"] == Method.NONE.value
    assert doc["energy_kwh"]["total"] == 0.0


def test_run_measured_refuses_an_empty_command() -> None:
    with pytest.raises(CommandError, match="no command given"):
        run_measured([], [])


def test_previous_signal_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    run_measured([PY, "-c", "pass"], [])
    assert signal.getsignal(signal.SIGTERM) is before
    assert os.getpgrp() == os.getpgid(0)


def test_a_signal_before_the_child_exists_still_reaches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub may cancel while co2gate is spawning: the signal is held, then forwarded."""
    from co2gate import runner

    real_spawn = runner._spawn

    def cancelled_while_spawning(argv: tuple[str, ...]) -> subprocess.Popen[bytes]:
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the child exists
        return real_spawn(argv)

    monkeypatch.setattr(runner, "_spawn", cancelled_while_spawning)
    t0 = time.monotonic()
    child, _ = run_measured(["sleep", "30"], [])
    assert time.monotonic() - t0 < 5
    assert (child.exit_code, child.signal) == (128 + signal.SIGTERM, "SIGTERM")
    assert child.forwarded == ("SIGTERM",)


def test_work_beside_the_command_runs_while_it_runs_and_never_fails_it() -> None:
    seen: list[str] = []

    def warm() -> None:
        seen.append(threading.current_thread().name)

    def broken() -> None:
        raise RuntimeError("a warm-up that fails is met again where its work is needed")

    with Supervisor([sys.executable, "-c", "import time; time.sleep(0.5)"]) as supervisor:
        child, _ = supervisor.run([], [warm, broken])
    assert child.exit_code == 0
    assert seen == ["co2gate-warm"]
