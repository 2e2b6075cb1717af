"""Start the measured command: one posix_spawn into a process group of its own, with the
environment it is given. Standard library only, so that `co2gate measure` and `run` can start
the command before importing the rest of co2gate (co2gate/launch.py); the runner starts it
through here too (co2gate/runner.py).
"""

from __future__ import annotations

import os
import signal
import time

TYPE_CHECKING = False  # typing's, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from resource import struct_rusage
    from types import FrameType

# GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later; a terminal sends SIGHUP/SIGQUIT.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Python ignores these at start-up and an ignored signal stays ignored across exec: the
# command gets their defaults back, as subprocess.Popen's restore_signals does.
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
STOP_GRACE_S = 2.0  # from SIGTERM to SIGKILL when co2gate stops a command it refused


class Started:
    """A command co2gate started: its pid, which is also its process group's id, and when.

    `forwarded` names the signals passed on to it; `reaped` is set once its exit status has
    been collected (until then its pid cannot be reused, so signalling it is safe)."""

    def __init__(self, argv: tuple[str, ...], pid: int, started_at: float, t0: float) -> None:
        self.argv = argv
        self.pid = pid
        self.started_at = started_at  # time.time() just before the spawn
        self.t0 = t0  # time.monotonic() just before the spawn
        self.forwarded: list[str] = []
        self.reaped = False
        self.claimed = False  # a Supervisor watches it (runner.py)
        # launch.py: the --budget-file it read, and its bytes before the command started
        # (None: there was none), so that the command cannot change the budget it is judged by.
        self.budget_before: tuple[str, bytes | None] | None = None
        self._terminal: int | None = None  # the process group that had the terminal

    def signal(self, signum: int) -> None:
        """Send signum to the command's process group and note it, unless it is reaped."""
        if self.reaped:
            return
        self.forwarded.append(signal_name(signum))
        _killpg(self.pid, signum)

    def wait4(self) -> tuple[int, struct_rusage]:
        """Wait for the command to end and reap it: its wait status and resource usage.
        Signal handlers run between retries (PEP 475 restarts the wait after each)."""
        _, status, usage = os.wait4(self.pid, 0)
        self.reaped = True
        return status, usage

    def stop(self, grace_s: float = STOP_GRACE_S) -> str:
        """End a command co2gate will not measure: SIGTERM to its group, SIGKILL after
        grace_s, then reap it. Says what became of it."""
        if self.reaped:
            return "the command had ended"
        ran = time.monotonic() - self.t0
        ended = _exited(self.pid)
        if not ended:
            _killpg(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while not _exited(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        # What is left of its group; the leader is not reaped yet, so the group id is its own.
        _killpg(self.pid, signal.SIGKILL)
        self.wait4()
        self.give_back_terminal()
        if ended:
            return f"the command had ended after {ran:.2f} s"
        return f"stopped the command {ran:.2f} s after it started"

    def take_terminal(self) -> None:
        """Make the command the terminal's foreground job, as a shell would, so it can read
        the terminal and gets Ctrl-C itself. Nothing to do in CI, where there is no terminal."""
        try:
            if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
                return
            _foreground(self.pid)
            self._terminal = os.getpgrp()
        except OSError:
            return

    def give_back_terminal(self) -> None:
        if self._terminal is None:
            return
        try:  # noqa: SIM105  (contextlib would cost the start: see launch.py)
            _foreground(self._terminal)
        except OSError:
            pass
        self._terminal = None


def start(argv: Sequence[str], env: Mapping[str, str]) -> Started:
    """Start argv (looked up on PATH) in a new process group. Raises OSError when it cannot
    be started (FileNotFoundError, PermissionError, ...)."""
    started_at, t0 = time.time(), time.monotonic()
    pid = os.posix_spawnp(argv[0], list(argv), env, setpgroup=0, setsigdef=_RESTORED)
    return Started(tuple(argv), pid, started_at, t0)


class Relay:
    """co2gate's handler of FORWARDED from just before the command starts until a Supervisor
    takes it over: each signal goes to the command's process group (one that comes before the
    command exists is held, then sent) instead of ending co2gate, which would leave the
    command running unmeasured. Once the command is reaped, a signal does what it did before.
    """

    def __init__(self) -> None:
        self.child: Started | None = None
        self._held: list[int] = []
        self._before: dict[int, object] = {}

    def install(self) -> None:
        for signum in FORWARDED:
            self._before[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        """Put back what was there (the command did not start); a held signal is raised now."""
        for signum, handler in self._before.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        for signum in self._held:
            signal.raise_signal(signum)
        self._held.clear()

    def attach(self, child: Started) -> None:
        self.child = child
        for signum in self._held:
            child.signal(signum)
        self._held.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        child = self.child
        if child is None:
            self._held.append(signum)
        elif not child.reaped:
            child.signal(signum)
        else:
            before = self._before.get(signum, signal.SIG_DFL)
            if callable(before):
                before(signum, frame)
            elif before == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid stays reserved); False
    where waitid is missing (macOS before Python 3.13)."""
    if not hasattr(os, "waitid"):
        return False
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return found is not None


def _killpg(pgid: int, signum: int) -> None:
    try:  # noqa: SIM105  (contextlib would cost the start: see launch.py)
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _foreground(pgid: int) -> None:
    """Give the terminal to process group pgid; SIGTTOU, which a background group gets for
    this, is ignored meanwhile."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(0, pgid)
    finally:
        signal.signal(signal.SIGTTOU, previous)
