"""Start the command at once, pass its output and signals through, and measure its lifetime.

The child inherits co2gate's stdin, stdout and stderr, so its output reaches the terminal or
the runner log byte for byte with no copy in between. It runs in its own process group, so a
forwarded signal reaches everything it started. Energy sources start in background threads
while the child is already running: none of them delays it. A Guard, when given, watches the
sources while the child runs and may stop it (co2gate/guard.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import FrameType
from typing import TYPE_CHECKING

from co2gate.errors import InputError
from co2gate.guard import Guard, GuardStop
from co2gate.measure.interface import Meter, MeterError, Reading
from co2gate.spawn import FORWARDED, Started, signal_name, start
from co2gate.tokens import child_environment

if TYPE_CHECKING:
    from co2gate.pause import Pauser, PauseReport

MeterFactory = Callable[[], "Meter | None"]


class CommandError(InputError):
    """The command could not be started at all."""


@dataclass(frozen=True)
class ChildResult:
    argv: tuple[str, ...]
    exit_code: int  # the shell's convention: 128 + N when the child died of signal N
    signal: str | None  # name of the signal that ended the child, if one did
    forwarded: tuple[str, ...]  # signals co2gate received and passed on
    started_at: datetime
    ended_at: datetime
    duration_s: float
    cpu_s: float  # user + system time of the child and the descendants it waited for
    limit_kg: float | None = None  # the cap a guard watched the child against, if any
    guard_stop: GuardStop | None = None  # set when the guard stopped the child
    pauses: PauseReport | None = None  # what the pauser did, when one watched the grid


@dataclass
class MeterOutcome:
    """What became of one energy source: its reading, or why there is none."""

    name: str
    meter: Meter | None = None
    reading: Reading | None = None
    error: str | None = None
    ready_after_s: float | None = None  # from the child's start to the source's window opening
    _thread: threading.Thread | None = field(default=None, repr=False)


def run_measured(
    argv: Sequence[str], sources: Sequence[MeterFactory], guard: Guard | None = None
) -> tuple[ChildResult, list[MeterOutcome]]:
    """Run argv to completion under every energy source that is present; never raises for them."""
    with Supervisor(argv, guard) as supervisor:
        return supervisor.run(sources)


class Supervisor:
    """Owns the child's lifetime. Signals stay forwarded, or deferred once the child is gone,
    until the `with` block ends: wrap the writing of results in it so a late SIGTERM cannot
    lose what was measured. `started`: the command, already started (co2gate/launch.py), to
    watch instead of starting it."""

    def __init__(
        self,
        argv: Sequence[str],
        guard: Guard | None = None,
        pauser: Pauser | None = None,
        started: Started | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.guard = guard
        self.pauser = pauser
        self.proc: Started | None = None
        self._started = started
        self._exited = False  # the child has exited (it may not be reaped yet); under _lock
        self._lock = threading.Lock()
        self._early: list[int] = []  # signals that came before the child existed
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.give_back_terminal()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def run(
        self, sources: Sequence[MeterFactory], beside: Sequence[Callable[[], object]] = ()
    ) -> tuple[ChildResult, list[MeterOutcome]]:
        """Run the command to its end under `sources`. `beside`: work for what follows the
        command (imports, compiled templates), done in background threads while it runs."""
        # Handlers first: a signal between the spawn and their installation would kill
        # co2gate and leave the command running, unmeasured. One that comes before the
        # child exists is held and delivered as soon as it does.
        for signum in FORWARDED:
            self._previous[signum] = signal.signal(signum, self._forward)
        if self._started is None:
            self.proc = _spawn(self.argv)
            self.proc.take_terminal()
        else:
            self.proc = self._started
        self.proc.claimed = True
        started_at = datetime.fromtimestamp(self.proc.started_at, timezone.utc)
        t0 = self.proc.t0
        for early in self._early:
            self.proc.signal(early)
            if self.pauser is not None:
                self.pauser.release()
        outcomes = [_start_in_background(factory, t0) for factory in sources]
        for task in beside:
            threading.Thread(target=_warm, args=(task,), name="co2gate-warm", daemon=True).start()
        if self.guard is not None:
            self.guard.begin(t0, started_at, lambda: energy_so_far(outcomes), self._guard_signal)
        if self.pauser is not None:
            self.pauser.begin(started_at, self._guard_signal)

        _wait_exit(self.proc.pid)
        with self._lock:  # from here the guard signals nothing: the pid is about to be freed
            self._exited = True
        status, usage = self.proc.wait4()
        duration, ended_at = time.monotonic() - t0, datetime.now(timezone.utc)
        code = os.waitstatus_to_exitcode(status)
        self.proc.give_back_terminal()
        stopped = self.guard.end() if self.guard is not None else None
        pauses = self.pauser.end() if self.pauser is not None else None

        for outcome in outcomes:
            _stop(outcome)
        died_of = signal_name(-code) if code < 0 else None
        result = ChildResult(
            argv=self.argv,
            exit_code=128 - code if code < 0 else code,
            signal=died_of,
            forwarded=tuple(self.proc.forwarded),
            started_at=started_at,
            ended_at=ended_at,
            duration_s=duration,
            cpu_s=usage.ru_utime + usage.ru_stime,
            limit_kg=self.guard.watch.limit_kg if self.guard is not None else None,
            guard_stop=stopped,
            pauses=pauses,
        )
        return result, outcomes

    def _guard_signal(self, signum: int) -> None:
        """The guard's signal to the child's process group, never to a pid already freed."""
        with self._lock:
            if self.proc is not None and not self._exited:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signum)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        proc = self.proc
        if proc is None:
            self._early.append(signum)
        elif not proc.reaped:
            proc.signal(signum)
            if self.pauser is not None:  # a stopped command would not see the signal
                self.pauser.release()
        # else the child is gone: co2gate finishes writing what it measured


def _spawn(argv: tuple[str, ...]) -> Started:
    if not argv:
        raise CommandError(
            "no command given: put it after --, e.g. co2gate measure -- python train.py"
        )
    # No GitHub token reaches the command through its environment (tokens.CHILD_DROPPED).
    env = child_environment(os.environ)
    try:
        return start(argv, env)
    except FileNotFoundError as e:
        raise CommandError(f"cannot start {argv[0]!r}: command not found") from e
    except PermissionError as e:
        raise CommandError(f"cannot start {argv[0]!r}: permission denied (not executable?)") from e
    except OSError as e:
        raise CommandError(f"cannot start {argv[0]!r}: {e.strerror or e}") from e


def _wait_exit(pid: int) -> None:
    """Wait for the child to exit without reaping it: until it is reaped its pid (the process
    group's id) cannot be reused, so a signal sent meanwhile cannot reach a stranger."""
    if hasattr(os, "waitid"):  # not on macOS before Python 3.13: wait4 alone then
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _start_in_background(factory: MeterFactory, t0: float) -> MeterOutcome:
    outcome = MeterOutcome(name=getattr(factory, "__name__", "meter"))

    def start() -> None:
        try:
            meter = factory()
            if meter is None:
                return
            outcome.name, outcome.meter = meter.name, meter
            meter.start()
            outcome.ready_after_s = time.monotonic() - t0
        except MeterError as e:
            outcome.error = str(e)
        except Exception as e:  # a vendor library's surprise must never lose the run
            outcome.error = f"{type(e).__name__}: {e}"

    outcome._thread = threading.Thread(target=start, name=f"co2gate-{outcome.name}", daemon=True)
    outcome._thread.start()
    return outcome


def _warm(task: Callable[[], object]) -> None:
    """Run a warm-up; a failure is left for the same work to meet later, where it is needed."""
    with contextlib.suppress(Exception):
        task()


def energy_so_far(outcomes: Sequence[MeterOutcome]) -> float | None:
    """kWh the ready sources have read so far, added up; None when none of them can say."""
    readings = []
    for outcome in outcomes:
        meter = outcome.meter
        if meter is None or outcome.ready_after_s is None or outcome.error is not None:
            continue  # not ready yet, absent, or broken
        try:
            kwh = meter.so_far()
        except Exception:  # a vendor library's surprise must not blind the guard for good
            continue
        if kwh is not None:
            readings.append(kwh)
    return sum(readings) if readings else None


def _stop(outcome: MeterOutcome) -> None:
    if outcome._thread is not None:
        outcome._thread.join()  # a short command waits here for a slow source to be ready
    if outcome.meter is None or outcome.error is not None:
        return
    try:
        outcome.reading = outcome.meter.stop()
    except MeterError as e:
        outcome.error = str(e)
    except Exception as e:
        outcome.error = f"{type(e).__name__}: {e}"


class Cancelled(BaseException):
    """A cancelling signal came while co2gate waited on the network after the command.

    A BaseException, so that no `except Exception` in a client library swallows it.
    """


class AfterCommand:
    """The job's cancellation once the command is over: SIGINT, SIGTERM and SIGHUP are noted,
    never fatal. One that comes while co2gate waits on the network (`waiting()`) ends that
    wait with Cancelled, and every later wait is skipped at once, so what is left to write
    (verdict.json, report.md, the summary, the outputs) is written before the runner's
    SIGKILL. Enter it before the Supervisor starts: the Supervisor's handlers come back to it.
    A command already started (`started`) is sent the signals that come before its Supervisor
    watches it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, started: Started | None = None) -> None:
        self.got: str | None = None  # the first cancelling signal, by name
        self._started = started  # a command started before this was entered (launch.py)
        self._waiting = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> AfterCommand:
        if threading.current_thread() is threading.main_thread():  # signals reach it only
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        started = self._started
        if started is not None and not started.claimed:  # its Supervisor is not watching yet
            started.signal(signum)
            return
        self.got = self.got or signal_name(signum)
        if self._waiting:
            self._waiting = False
            raise Cancelled(self.got)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait on the network that a cancelling signal ends (Cancelled); none is started
        once one has come."""
        if self.got is not None:
            raise Cancelled(self.got)
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False
