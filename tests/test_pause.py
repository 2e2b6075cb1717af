"""Pause-and-resume with real processes: the Pauser beside the Supervisor SIGSTOPs and SIGCONTs
the command's process group by a grid file that the test rewrites, and the CLI refuses to wait
on GitHub-hosted runners."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from co2gate.grid.file import FileSource
from co2gate.guard import Guard, Watch
from co2gate.pause import Pauser, PauseSettings
from co2gate.runner import Supervisor

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

TICK_S = 0.05
UTC = timezone.utc
FAR = timedelta(hours=2)

# A busy command: writes its pid, spins until a stop file appears (or it has used `cpu` s of
# CPU), noting SIGUSR1 (its checkpoint signal) with the time it came.
CHILD = r"""
import os, signal, sys, time
out = sys.argv[1]
cpu = float(sys.argv[2])
def checkpoint(signum, frame):
    with open(os.path.join(out, "checkpoint"), "a") as f:
        f.write(f"{time.time()}\n")
signal.signal(signal.SIGUSR1, checkpoint)
with open(os.path.join(out, "pid"), "w") as f:
    f.write(str(os.getpid()))
x = 0
while not os.path.exists(os.path.join(out, "stop")) and time.process_time() < cpu:
    x += 1
"""


def write_grid(path: Path, rows: list[tuple[datetime, float]]) -> None:
    text = "timestamp,g_per_kwh\n" + "".join(f"{t.isoformat()},{g}\n" for t, g in rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the pauser never reads half a file


def flat(path: Path, g: float) -> None:
    now = datetime.now(UTC)
    write_grid(path, [(now - FAR, g), (now + FAR, g)])


def cpu_ticks(pid: int) -> tuple[int, str]:
    """utime + stime (clock ticks) and the state letter, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), fields[0]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


class Run:
    """Runs the command under a Supervisor and a Pauser in the main thread, while `drive`
    (the test's checks) runs in another."""

    def __init__(self, tmp: Path, settings: PauseSettings, cpu: float = 60.0) -> None:
        self.tmp = tmp
        self.grid = tmp / "grid.csv"
        self.lines: list[str] = []
        self.pauser = Pauser(
            settings,
            lambda now: FileSource(self.grid).history(now - FAR, now + FAR),
            say=self.lines.append,
            tick_s=TICK_S,
            refresh_s=TICK_S,
        )
        self.argv = [sys.executable, "-c", CHILD, str(tmp), str(cpu)]
        self.error: BaseException | None = None

    def pid(self) -> int:
        """The command's pid, once it has set itself up (written its pid file)."""
        wait_for(lambda: (self.tmp / "pid").exists() and (self.tmp / "pid").read_text() != "")
        return int((self.tmp / "pid").read_text())

    def dirty(self, g: float = 500.0) -> int:
        """Once the command is up, the grid turns dirty from now on; its pid."""
        pid = self.pid()
        now = datetime.now(UTC)
        write_grid(self.grid, [(now - FAR, 50.0), (now, g), (now + FAR, g)])
        wait_for(lambda: cpu_ticks(pid)[1] == "T")  # stopped
        return pid

    def stop(self) -> None:
        (self.tmp / "stop").touch()

    def go(self, drive: Callable[[], None], guard: Guard | None = None, stop: bool = True) -> Any:
        """Run to the command's exit; `stop`: end it once `drive` returns (else it ends when
        it has used its CPU)."""

        def end() -> None:
            self.stop()
            self.pauser.release()  # never leave the command stopped

        def driver() -> None:
            try:
                drive()
            except BaseException as e:  # reported in the main thread
                self.error = e
                end()
            else:
                if stop:
                    end()

        thread = threading.Thread(target=driver, daemon=True)
        thread.start()
        with Supervisor(self.argv, guard, self.pauser) as supervisor:
            child, _ = supervisor.run([])
        thread.join(10)
        if self.error is not None:
            raise self.error
        return child


def settings(g: float = 200.0, deadline: timedelta = FAR, **kw: Any) -> PauseSettings:
    return PauseSettings(g, datetime.now(UTC) + deadline, **kw)


def test_a_paused_process_group_uses_no_cpu_and_resumes_when_the_grid_is_cleaner(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path, settings(200.0))
    flat(run.grid, 50.0)
    seen: dict[str, Any] = {}

    def drive() -> None:
        pid = run.dirty()
        before, _ = cpu_ticks(pid)
        time.sleep(1.0)
        after, state = cpu_ticks(pid)
        seen["paused"] = (before, after, state)
        flat(run.grid, 50.0)  # the grid clears: the pauser resumes the command
        wait_for(lambda: cpu_ticks(pid)[1] in "RS")
        start, _ = cpu_ticks(pid)
        wait_for(lambda: cpu_ticks(pid)[0] >= start + 20)  # it runs again: 0.2 s of CPU

    child = run.go(drive)
    before, after, state = seen["paused"]
    assert state == "T"
    assert after - before <= 1  # at most a tick of rounding while stopped for a whole second
    assert child.exit_code == 0
    report = child.pauses
    assert len(report.pauses) == 1
    assert report.pauses[0].g_per_kwh == 500.0
    assert report.pauses[0].seconds >= 1.0
    assert any(line.startswith("pause: 500 gCO2e/kWh is above 200") for line in run.lines)
    assert any(line.startswith("resume: the grid is cleaner") for line in run.lines)


def test_the_heartbeat_says_paused(tmp_path: Path) -> None:
    run = Run(tmp_path, settings(200.0))
    flat(run.grid, 50.0)
    said: list[str] = []

    def no_price() -> Any:
        raise AssertionError("no energy is read, so nothing is priced")

    guard = Guard(Watch(heartbeat_s=0.2), pue=1.0, price=no_price, say=said.append)
    guard.status = run.pauser.status

    def drive() -> None:
        run.dirty()
        wait_for(lambda: any("paused since" in line for line in said), timeout=5)

    run.go(drive, guard)
    beat = next(line for line in said if "paused since" in line)
    assert "(500 gCO2e/kWh, above 200)" in beat


def test_the_pause_signal_comes_first_and_sigstop_after_the_grace(tmp_path: Path) -> None:
    run = Run(tmp_path, settings(200.0, signal=signal.SIGUSR1, grace_s=0.5))
    flat(run.grid, 50.0)
    child = run.go(run.dirty)
    checkpoints = [float(t) for t in (tmp_path / "checkpoint").read_text().split()]
    assert len(checkpoints) == 1
    stopped_at = child.pauses.pauses[0].start.timestamp()
    assert stopped_at - checkpoints[0] >= 0.45  # the grace, then SIGSTOP
    assert any("SIGUSR1 to the command's process group" in line for line in run.lines)


def test_the_deadline_forces_the_resume(tmp_path: Path) -> None:
    # The grid turns dirty for good; 2 s of work must end by the deadline 3 s away: about
    # 1 s of slack, less the moments the command ran before the grid turned.
    run = Run(tmp_path, settings(200.0, deadline=timedelta(seconds=3), work_s=2.0))
    flat(run.grid, 50.0)

    def drive() -> None:
        pid = run.dirty()
        wait_for(lambda: cpu_ticks(pid)[1] in "RS", timeout=5)

    child = run.go(drive)
    (pause,) = child.pauses.pauses
    assert 0.3 <= pause.seconds <= 1.2
    assert any(line.startswith("resume: the deadline needs it") for line in run.lines)


def test_a_signal_while_paused_reaches_the_command(tmp_path: Path) -> None:
    run = Run(tmp_path, settings(200.0))
    flat(run.grid, 50.0)

    def drive() -> None:
        run.dirty()
        os.kill(os.getpid(), signal.SIGTERM)  # the job is cancelled: co2gate forwards it

    child = run.go(drive)
    assert child.signal == "SIGTERM"  # it did not hang stopped
    assert child.forwarded == ("SIGTERM",)


def test_the_report_prices_the_pauses_on_the_same_series(tmp_path: Path) -> None:
    # Clean, then dirty for 2 s once the command is up, then clean: the command (1 s of CPU)
    # pauses through the dirty spell. Both means are checked against the spell by hand.
    run = Run(tmp_path, settings(200.0), cpu=1.0)
    flat(run.grid, 50.0)
    spell: list[datetime] = []

    def drive() -> None:
        run.pid()
        now = datetime.now(UTC)
        spell[:] = [now, now + timedelta(seconds=2)]
        rows = [(now - FAR, 50.0), (now, 500.0), (spell[1], 50.0), (now + FAR, 50.0)]
        write_grid(run.grid, rows)

    child = run.go(drive, stop=False)
    report = child.pauses
    assert child.exit_code == 0
    assert len(report.pauses) == 1

    def by_hand(a: datetime, b: datetime) -> float:
        """The mean of 500 inside the spell and 50 outside it over [a, b)."""
        inside = max(timedelta(0), min(b, spell[1]) - max(a, spell[0])).total_seconds()
        return (500 * inside + 50 * ((b - a).total_seconds() - inside)) / (b - a).total_seconds()

    spans = [(a, b) for a, b in report.running if b > a]
    total = sum((b - a).total_seconds() for a, b in spans)
    ran = sum((b - a).total_seconds() * by_hand(a, b) for a, b in spans) / total
    first = report.running[0][0]
    assert report.g_per_kwh == pytest.approx(ran)
    assert report.unpaused_g_per_kwh == pytest.approx(
        by_hand(first, first + timedelta(seconds=total))
    )
    assert report.g_per_kwh < 100  # it ran (nearly) only on the clean grid
    assert report.saving is not None and report.saving > 0
    assert "less), on file" in report.lines()[-1]


def test_the_grid_never_above_the_threshold_never_pauses(tmp_path: Path) -> None:
    run = Run(tmp_path, settings(200.0), cpu=0.2)
    flat(run.grid, 150.0)
    child = run.go(lambda: None, stop=False)
    assert child.pauses.pauses == ()
    assert child.pauses.saving == pytest.approx(0.0)


@pytest.fixture
def budget_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yml").write_text(
        "version: 1\nannual_budget_kg: 100\nallocations:\n  training: 1\n"
        "ledger:\n  backend: none\nintensity:\n  provider: file\n  path: grid.csv\n"
    )
    flat(tmp_path / "grid.csv", 100.0)
    return tmp_path


@pytest.mark.parametrize(
    "options",
    [["--start-within", "2h"], ["--pause-above", "100", "--deadline", "2h"]],
)
def test_a_github_hosted_runner_is_refused_unless_forced(
    co2gate: Any, budget_dir: Path, options: list[str]
) -> None:
    env = {**os.environ, "RUNNER_ENVIRONMENT": "github-hosted", "CODECARBON_LOG_LEVEL": "error"}
    env.pop("GITHUB_ACTIONS", None)
    marker = budget_dir / "ran"
    argv = ["run", "--budget-file", "b.yml", "--out", "out", "--no-comment", *options]
    command = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    refused = co2gate(*argv, *command, env=env)
    assert refused.returncode == 2
    assert not marker.exists()
    (message,) = refused.stderr.strip().splitlines()
    assert "refused on a GitHub-hosted runner" in message
    assert "--force-hosted" in message
    forced = co2gate(*argv, "--force-hosted", *command, env=env)
    assert forced.returncode == 0, forced.stderr
    assert marker.exists()


def test_pause_above_needs_a_deadline(co2gate: Any, budget_dir: Path) -> None:
    result = co2gate(
        "run", "--budget-file", "b.yml", "--pause-above", "100", "--", "true", env=dict(os.environ)
    )
    assert result.returncode == 2
    assert "--pause-above and --deadline go together" in result.stderr
