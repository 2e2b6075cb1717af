"""The live guard: watch a running command's emissions, report them, stop it at a cap.

Every decision is taken on what the energy sources have read so far (`Meter.so_far`),
priced with the run's PUE and intensity: never on a projection, and never on the
extrapolation to the command's whole lifetime that the final figures apply. A source that
is not ready yet, or cannot say, adds nothing until it can.

The Supervisor drives it through two calls: `begin` once the command runs, `end` once it
has exited. In between a thread reads the sources every GUARD_INTERVAL_S, and every
NEAR_CAP_INTERVAL_S once the rate it has seen would reach the cap before the next regular
reading; when the emissions read reach the cap it sends SIGTERM to the command's process
group, and SIGKILL if the command is still running after the grace period.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from co2gate import fmt, units
from co2gate.lines import line

if TYPE_CHECKING:
    from co2gate.intensity import Intensity

GUARD_INTERVAL_S = 1.0  # how often the guard reads the sources; tests lower it
NEAR_CAP_INTERVAL_S = 0.1  # how often once the cap is due before the next regular reading
DEFAULT_GRACE_S = 10.0  # from SIGTERM to SIGKILL
CI_HEARTBEAT_S = 300.0  # the heartbeat's default in GitHub Actions; elsewhere it is off
HEARTBEAT_SOURCE_S = 15.0  # with a heartbeat only, how often codecarbon reads (its default)
JOIN_TIMEOUT_S = 5.0
MAX_READINGS = 4096  # readings kept for pricing by interval (thinned beyond)

EnergySoFar = Callable[[], "float | None"]  # kWh the sources have read so far, None: none can say
SignalGroup = Callable[[int], None]  # send a signal to the command's process group


def default_heartbeat_s(env: Mapping[str, str]) -> float:
    """A heartbeat every 5 minutes in GitHub Actions (a log that shows progress), else none."""
    return CI_HEARTBEAT_S if env.get("GITHUB_ACTIONS") == "true" else 0.0


def _say_on_stderr(text: str) -> None:
    print(line(text), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Watch:
    """What to watch a running command for: a cap (kg CO2e) and a heartbeat (0: none)."""

    limit_kg: float | None = None
    grace_s: float = DEFAULT_GRACE_S
    heartbeat_s: float = 0.0

    def __post_init__(self) -> None:
        if self.limit_kg is not None and not (math.isfinite(self.limit_kg) and self.limit_kg > 0):
            raise ValueError(f"limit_kg must be a positive number, got {self.limit_kg!r}")
        if not (math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise ValueError(f"grace_s must be a number >= 0, got {self.grace_s!r}")
        if not (math.isfinite(self.heartbeat_s) and self.heartbeat_s >= 0):
            raise ValueError(f"heartbeat_s must be a number >= 0, got {self.heartbeat_s!r}")

    @property
    def wanted(self) -> bool:
        """Whether anything is to be watched at all."""
        return self.limit_kg is not None or self.heartbeat_s > 0

    def source_interval_s(self) -> float | None:
        """How often a source that reads on a schedule (codecarbon) should read for this watch.

        Under a cap, twice per guard interval, so a figure the guard sees is at most half an
        interval old; for a heartbeat alone, codecarbon's own default; else never (one
        reading at stop, the cheapest).
        """
        if self.limit_kg is not None:
            return GUARD_INTERVAL_S / 2.0
        if self.heartbeat_s > 0:
            return min(self.heartbeat_s, HEARTBEAT_SOURCE_S)
        return None


@dataclass(frozen=True)
class GuardStop:
    """The guard stopped the command: when, at what emissions, and with which signals."""

    limit_kg: float
    at_kg: float  # the emissions the sources had read when the guard acted
    energy_kwh: float  # the energy behind at_kg (before PUE)
    after_s: float  # from the command's start
    at: datetime
    grace_s: float
    killed: bool  # SIGKILL was needed: the command outlived the grace period

    @property
    def signals(self) -> tuple[str, ...]:
        return ("SIGTERM", "SIGKILL") if self.killed else ("SIGTERM",)

    def note(self) -> str:
        """A sentence for emissions.json's notes and the report."""
        how = "SIGTERM to its process group"
        if self.killed:
            how += f", then SIGKILL after the {fmt.duration(self.grace_s)} grace"
        return (
            f"stopped by the guard at {fmt.mass(self.at_kg)} CO2e (limit "
            f"{fmt.mass(self.limit_kg)}), {fmt.duration(self.after_s)} into the run "
            f"({self.at.isoformat(timespec='seconds')}): {how}; the figures include its shutdown"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "limit_kg": self.limit_kg,
            "stopped_at_kg": self.at_kg,
            "stopped_at_kwh": self.energy_kwh,
            "stopped_after_s": self.after_s,
            "stopped_at": self.at.isoformat(timespec="milliseconds"),
            "grace_s": self.grace_s,
            "signals": list(self.signals),
        }


class Guard:
    """Watches one run: begin() when the command runs, end() when it has exited."""

    def __init__(
        self,
        watch: Watch,
        *,
        pue: float,
        price: Callable[[], Intensity],
        say: Callable[[str], None] | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.watch = watch
        self.pue = pue
        self.price = price  # called in the guard's thread, after the command has started
        self.say = say if say is not None else _say_on_stderr
        self.interval_s = interval_s if interval_s is not None else GUARD_INTERVAL_S
        self._exited = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: GuardStop | None = None
        # (when, kWh read so far) at each reading: how the energy fell over time, for pricing
        # it by a provider's intervals (app.grid); thinned to at most MAX_READINGS.
        self.readings: list[tuple[datetime, float]] = []
        self.status: Callable[[], str | None] | None = None  # e.g. the pauser's state

    def kg(self, energy_kwh: float) -> float:
        return units.emissions_kg(energy_kwh, self.pue, self.price().g_per_kwh)

    def begin(self, t0: float, started_at: datetime, read: EnergySoFar, kill: SignalGroup) -> None:
        """Start watching a command that started at t0 (time.monotonic()) and started_at."""
        if not self.watch.wanted:
            return
        self._thread = threading.Thread(
            target=self._run, args=(t0, started_at, read, kill), name="co2gate-guard", daemon=True
        )
        self._thread.start()

    def end(self) -> GuardStop | None:
        """The command has exited: stop watching; what the guard did, if it stopped it."""
        self._exited.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        return self._stop

    def _run(self, t0: float, started_at: datetime, read: EnergySoFar, kill: SignalGroup) -> None:
        limit, beat = self.watch.limit_kg, self.watch.heartbeat_s
        next_beat = t0 + beat if beat > 0 else math.inf
        regular = t0 + self.interval_s if limit is not None else math.inf
        next_poll = regular
        seen_t, seen_kg, rate = t0, 0.0, 0.0  # the last reading that moved; kg/s up to it
        while True:
            if self._exited.wait(max(0.0, min(next_beat, next_poll) - time.monotonic())):
                return
            now = time.monotonic()
            energy = _safely(read)
            if energy is not None:
                self._keep(started_at + timedelta(seconds=now - t0), energy)
            kg = self.kg(energy) if energy is not None else None
            if now >= next_beat:
                self.say(self.heartbeat_line(now - t0, energy, kg))
                while next_beat <= now:
                    next_beat += beat
            if limit is None:
                continue
            if kg is not None and energy is not None:
                if kg >= limit:
                    at = started_at + timedelta(seconds=now - t0)
                    self._enforce(limit, kg, energy, now - t0, at, kill)
                    return
                if kg > seen_kg and now > seen_t:
                    rate = (kg - seen_kg) / (now - seen_t)
                    seen_t, seen_kg = now, kg
            if now >= next_poll:
                while regular <= now:
                    regular += self.interval_s
                next_poll = regular
                # At the rate seen so far the cap falls before the next reading: read often
                # until then, so the stop is not up to a whole interval late.
                if kg is not None and rate > 0 and kg + rate * (regular - now) >= limit:
                    next_poll = min(regular, now + min(NEAR_CAP_INTERVAL_S, self.interval_s))

    def _keep(self, when: datetime, energy: float) -> None:
        self.readings.append((when, energy))
        if len(self.readings) > MAX_READINGS:
            self.readings = self.readings[::2]  # a long run keeps an even spread of them

    def _enforce(
        self,
        limit: float,
        kg: float,
        energy: float,
        after: float,
        at: datetime,
        kill: SignalGroup,
    ) -> None:
        grace = self.watch.grace_s
        self.say(
            f"guard: {fmt.mass(kg)} CO2e reached the {fmt.mass(limit)} limit "
            f"{fmt.duration(after)} into the run: stopping the command (SIGTERM to its process "
            f"group, SIGKILL after {fmt.duration(grace)})"
        )
        stop = GuardStop(limit, kg, energy, after, at, grace, killed=False)
        self._stop = stop
        kill(signal.SIGTERM)
        if self._exited.wait(grace):
            return
        self._stop = GuardStop(limit, kg, energy, after, at, grace, killed=True)
        self.say(
            f"guard: the command was still running {fmt.duration(grace)} after SIGTERM: SIGKILL"
        )
        kill(signal.SIGKILL)

    def heartbeat_line(self, elapsed_s: float, energy: float | None, kg: float | None) -> str:
        """'12 min 00 s: 1.2 kWh, 480 g CO2e so far (limit 25 kg)'."""
        if energy is None or kg is None:
            figures = "no energy reading yet"
        else:
            figures = f"{fmt.energy(energy)}, {fmt.mass(kg)} CO2e so far"
        limit = self.watch.limit_kg
        cap = f" (limit {fmt.mass(limit)})" if limit is not None else ""
        state = self.status() if self.status is not None else None
        return f"{fmt.duration(elapsed_s)}: {figures}{cap}" + (f"; {state}" if state else "")


def _safely(read: EnergySoFar) -> float | None:
    """A reading, or None: a source's surprise must not end the guard's thread."""
    try:
        return read()
    except Exception:
        return None
