"""Carbon-aware waiting: hold a command's start for the forecast's low, and pause a running
command's process group while the grid is dirty.

The Pauser runs beside the Supervisor (runner.py), like the Guard: `begin` once the command
runs, `end` once it has exited. A thread re-reads the grid series every `refresh_s` and
decides every `tick_s` by grid.schedule.should_pause: pause while the intensity is above the
threshold, unless the time left to the deadline is no more than the work left. A pause sends
the optional checkpoint signal, waits the grace, then SIGSTOPs the process group; a resume
SIGCONTs it. The process stays alive throughout: nothing is lost but time.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

from co2gate import fmt
from co2gate.errors import Co2gateError
from co2gate.grid.schedule import mean_intensity, should_pause
from co2gate.grid.signal import Series
from co2gate.lines import line

TICK_S = 1.0  # how often the pauser decides; tests lower it
REFRESH_S = 300.0  # how often it re-reads the grid series
LATEST_MAX_AGE = timedelta(hours=1)  # a provider's latest figure stands in for now this long
JOIN_TIMEOUT_S = 5.0

ReadSeries = Callable[[datetime], Series]  # the series around a moment (history + forecast)
SignalGroup = Callable[[int], None]


def _say_on_stderr(text: str) -> None:
    print(line(text), file=sys.stderr, flush=True)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _hhmm(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class PauseSettings:
    """run --pause-above G --deadline T [--duration D --pause-signal SIG --pause-grace S]."""

    threshold_g_per_kwh: float
    deadline: datetime
    work_s: float | None = None  # the command's run time unpaused; None: unknown (taken as 0)
    signal: int | None = None  # sent first, so the command can checkpoint
    grace_s: float = 0.0  # from that signal to SIGSTOP

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold_g_per_kwh) and self.threshold_g_per_kwh >= 0):
            raise ValueError("the threshold must be a number >= 0")
        if self.deadline.tzinfo is None:
            raise ValueError("the deadline must carry a timezone")
        if not (math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise ValueError("the grace must be a number >= 0")


@dataclass(frozen=True)
class Pause:
    start: datetime
    end: datetime
    g_per_kwh: float  # the intensity that started it

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(timespec="seconds"),
            "end": self.end.isoformat(timespec="seconds"),
            "duration_s": (self.end - self.start).total_seconds(),
            "g_per_kwh": self.g_per_kwh,
        }


@dataclass(frozen=True)
class PauseReport:
    """What the pauser did, and what it saved against running straight through, both priced
    on the same series (the last one read)."""

    settings: PauseSettings
    pauses: tuple[Pause, ...]
    running: tuple[tuple[datetime, datetime], ...]  # the spans the command ran
    g_per_kwh: float | None  # mean over the spans it ran
    unpaused_g_per_kwh: float | None  # mean had it run as long, straight from its start
    source: str

    @property
    def saving(self) -> float | None:
        if self.g_per_kwh is None or not self.unpaused_g_per_kwh:
            return None
        return 1.0 - self.g_per_kwh / self.unpaused_g_per_kwh

    def lines(self) -> list[str]:
        """One line per pause, then the saving: for stderr and emissions.json's notes."""
        out = [
            f"paused {_hhmm(p.start)} to {_hhmm(p.end)} ({fmt.duration(p.seconds)}) at "
            f"{p.g_per_kwh:g} gCO2e/kWh, above {self.settings.threshold_g_per_kwh:g}"
            for p in self.pauses
        ]
        if not self.pauses:
            out.append(
                f"not paused: the grid stayed at or below "
                f"{self.settings.threshold_g_per_kwh:g} gCO2e/kWh, or the deadline left no slack"
            )
        if self.saving is not None:
            out.append(
                f"pause-and-resume: {self.g_per_kwh:.0f} gCO2e/kWh over the hours run, against "
                f"{self.unpaused_g_per_kwh:.0f} without pausing ({fmt.pct(self.saving)} less), "
                f"on {self.source}"
            )
        else:
            out.append(f"pause-and-resume: no saving figure ({self.source} does not cover the run)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold_g_per_kwh": self.settings.threshold_g_per_kwh,
            "deadline": self.settings.deadline.isoformat(timespec="seconds"),
            "pauses": [p.to_json() for p in self.pauses],
            "g_per_kwh": self.g_per_kwh,
            "unpaused_g_per_kwh": self.unpaused_g_per_kwh,
            "saving": self.saving,
            "source": self.source,
        }


def current(series: Series | None, now: datetime) -> float | None:
    """The intensity now: the interval holding `now`, else the latest one that ended within
    LATEST_MAX_AGE (providers publish with a lag); None if neither."""
    if series is None:
        return None
    here = series.at(now)
    if here is not None:
        return here.g_per_kwh
    before = [iv for iv in series.intervals if iv.end <= now and now - iv.end <= LATEST_MAX_AGE]
    return before[-1].g_per_kwh if before else None


@dataclass
class _State:
    paused_since: datetime | None = None
    paused_g: float | None = None
    run_since_m: float | None = None  # monotonic start of the current running span
    run_since: datetime | None = None
    worked_s: float = 0.0
    pauses: list[Pause] = field(default_factory=list)
    running: list[tuple[datetime, datetime]] = field(default_factory=list)


class Pauser:
    """Pauses and resumes one command's process group by the grid's intensity."""

    def __init__(
        self,
        settings: PauseSettings,
        read: ReadSeries,
        say: Callable[[str], None] | None = None,
        tick_s: float | None = None,
        refresh_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.read = read  # called in the pauser's thread, after the command has started
        self.say = say if say is not None else _say_on_stderr
        self.tick_s = tick_s if tick_s is not None else TICK_S
        self.refresh_s = refresh_s if refresh_s is not None else REFRESH_S
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._released = False
        self._state = _State()
        self._series: Series | None = None
        self._signal: SignalGroup | None = None
        self._thread: threading.Thread | None = None
        self.report: PauseReport | None = None  # set by end()

    # ------------------------------------------------------------------ the Supervisor's calls

    def begin(self, started_at: datetime, signal_group: SignalGroup) -> None:
        self._signal = signal_group
        with self._lock:
            self._state.run_since_m, self._state.run_since = time.monotonic(), started_at
        self._thread = threading.Thread(target=self._run, name="co2gate-pauser", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """co2gate passed a cancelling signal on: resume for good, so the command can act on
        it (a stopped process does not run its handlers)."""
        with self._lock:
            self._released = True
            paused = self._state.paused_since is not None
        if paused:
            self._resume(_utc_now(), "co2gate was signalled")

    def end(self) -> PauseReport:
        self._exited.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        now = _utc_now()
        with self._lock:
            state = self._state
            if state.paused_since is not None:  # it exited while paused (killed)
                state.pauses.append(Pause(state.paused_since, now, state.paused_g or 0.0))
                state.paused_since = None
            if state.run_since is not None:
                state.running.append((state.run_since, now))
                state.run_since = None
        self.report = self._report()
        return self.report

    def status(self) -> str | None:
        """For the heartbeat: 'paused since 12:00:00 UTC (250 gCO2e/kWh, above 200)'."""
        with self._lock:
            since, g = self._state.paused_since, self._state.paused_g
            count = len(self._state.pauses) + (since is not None)
        if since is not None:
            return (
                f"paused since {_hhmm(since)} ({g:g} gCO2e/kWh, above "
                f"{self.settings.threshold_g_per_kwh:g})"
            )
        return f"running ({count} pause{'s' if count != 1 else ''} so far)" if count else None

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        next_refresh = 0.0
        warned = False
        while True:
            m = time.monotonic()
            if m >= next_refresh:
                next_refresh = m + self.refresh_s
                try:
                    self._series = self.read(_utc_now())
                except Co2gateError as e:
                    if not warned:
                        self.say(f"pause: the grid signal could not be read ({e}); running on")
                        warned = True
            self._decide()
            if self._exited.wait(self.tick_s):
                return

    def _decide(self) -> None:
        now, m = _utc_now(), time.monotonic()
        g = current(self._series, now)
        with self._lock:
            if self._released:
                return
            state = self._state
            worked = state.worked_s + (m - state.run_since_m if state.run_since_m else 0.0)
            paused = state.paused_since is not None
        left = max(0.0, (self.settings.work_s or 0.0) - worked)
        slack = (self.settings.deadline - now).total_seconds() - left
        if should_pause(g, self.settings.threshold_g_per_kwh, slack):
            if not paused and g is not None:
                self._pause(now, g)
        elif paused:
            why = "the deadline needs it" if g is not None and slack <= 0 else "the grid is cleaner"
            self._resume(now, why)

    def _pause(self, now: datetime, g: float) -> None:
        threshold = self.settings.threshold_g_per_kwh
        sig = self.settings.signal
        if sig is not None:
            name = signal.Signals(sig).name
            self.say(
                f"pause: {g:g} gCO2e/kWh is above {threshold:g}: {name} to the command's process "
                f"group, SIGSTOP after {fmt.duration(self.settings.grace_s)}"
            )
            self._send(sig)
            if self._exited.wait(self.settings.grace_s):
                return
        else:
            self.say(f"pause: {g:g} gCO2e/kWh is above {threshold:g}: SIGSTOP to the command")
        with self._lock:
            if self._released:
                return
            state = self._state
            stopped_at, m = _utc_now(), time.monotonic()
            if state.run_since_m is not None and state.run_since is not None:
                state.worked_s += m - state.run_since_m
                state.running.append((state.run_since, stopped_at))
            state.run_since_m, state.run_since = None, None
            state.paused_since, state.paused_g = stopped_at, g
            self._send(signal.SIGSTOP)

    def _resume(self, now: datetime, why: str) -> None:
        with self._lock:
            state = self._state
            if state.paused_since is None:
                return
            self._send(signal.SIGCONT)
            state.pauses.append(Pause(state.paused_since, now, state.paused_g or 0.0))
            state.paused_since, state.paused_g = None, None
            state.run_since_m, state.run_since = time.monotonic(), now
        self.say(f"resume: {why}: SIGCONT to the command's process group")

    def _send(self, signum: int) -> None:
        if self._signal is not None:
            self._signal(signum)

    def _report(self) -> PauseReport:
        series: Series | None
        try:
            series = self.read(_utc_now())
        except Co2gateError:
            series = self._series
        state = self._state
        g = unpaused = None
        source = series.source if series is not None else "no grid signal"
        if series is not None and state.running:
            spans = [(a, b) for a, b in state.running if b > a]
            total = sum((b - a).total_seconds() for a, b in spans)
            means = [mean_intensity(series, a, b) for a, b in spans]
            if total > 0 and all(x is not None for x in means):
                g = (
                    sum(
                        (b - a).total_seconds() * (x or 0.0)
                        for (a, b), x in zip(spans, means, strict=True)
                    )
                    / total
                )
                first = state.running[0][0]
                unpaused = mean_intensity(series, first, first + timedelta(seconds=total))
        return PauseReport(
            self.settings, tuple(state.pauses), tuple(state.running), g, unpaused, source
        )


# ---------------------------------------------------------------------- waiting to start


@contextlib.contextmanager
def _interruptible(woken: threading.Event, got: list[int]) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the wait (noted in `got`) instead of killing co2gate."""
    previous: dict[int, Any] = {}

    def note(signum: int, _frame: FrameType | None) -> None:
        got.append(signum)
        woken.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, note)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_until(
    start: datetime,
    say: Callable[[str], None],
    heartbeat_s: float,
    what: str,
) -> int | None:
    """Sleep until `start` (UTC), saying `what` every heartbeat_s (0: once). Returns the signal
    that ended the wait early, or None once `start` has come."""
    woken, got = threading.Event(), list[int]()
    with _interruptible(woken, got):
        while True:
            left = (start - _utc_now()).total_seconds()
            if left <= 0:
                return None
            say(f"waiting {fmt.duration(left)} for {_hhmm(start)}: {what}")
            step = min(left, heartbeat_s) if heartbeat_s > 0 else left
            if woken.wait(step):
                return got[0] if got else None


def hold(
    settings: PauseSettings,
    read: ReadSeries,
    say: Callable[[str], None],
    heartbeat_s: float,
    tick_s: float | None = None,
    refresh_s: float | None = None,
) -> int | None:
    """A pause before the start is a wait: while the pause rule says pause, do not start the
    command at all (a command signalled before its handlers are set would die of it).
    Returns the signal that ended the wait early, or None once the command may start."""
    tick = tick_s if tick_s is not None else TICK_S
    refresh = refresh_s if refresh_s is not None else REFRESH_S
    woken, got = threading.Event(), list[int]()
    series: Series | None = None
    next_refresh = next_say = 0.0
    with _interruptible(woken, got):
        while True:
            m, now = time.monotonic(), _utc_now()
            if m >= next_refresh:
                next_refresh = m + refresh
                with contextlib.suppress(Co2gateError):
                    series = read(now)
            g = current(series, now)
            slack = (settings.deadline - now).total_seconds() - (settings.work_s or 0.0)
            if not should_pause(g, settings.threshold_g_per_kwh, slack):
                return None
            if m >= next_say:
                say(
                    f"waiting to start: {g:g} gCO2e/kWh is above "
                    f"{settings.threshold_g_per_kwh:g}; at the latest in {fmt.duration(slack)}"
                )
                next_say = m + heartbeat_s if heartbeat_s > 0 else math.inf
            if woken.wait(tick):
                return got[0] if got else None
