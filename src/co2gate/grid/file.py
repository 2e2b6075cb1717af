"""Provider `file`: intensities from a CSV the repository keeps (or a job downloads).

Columns: `timestamp` (ISO 8601 with a timezone, or `Z`), `g_per_kwh`, and optionally
`marginal_g_per_kwh`. Each row holds from its timestamp to the next row's; the last row
lasts as long as the one before it (an hour when the file has one row). The same file
answers history, forecast and latest (the row holding now): it is whatever the user put in it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

from co2gate.errors import InputError
from co2gate.grid.signal import Interval, ProviderError, Series

__all__ = ["MAX_ROWS", "FileSource", "parse"]

MAX_ROWS: Final = 200_000  # over 20 years of hourly rows
MAX_BYTES: Final = 16 * 1024 * 1024


def _time(text: str, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{where}: timestamp {text!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise InputError(f"{where}: timestamp {text!r} has no timezone (add Z or +00:00)")
    return when


def _number(text: str | None, where: str, column: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {column} {text!r} is not a number") from None


def parse(text: str, name: str) -> Series:
    """The series a CSV's text holds; InputError names the file, line and column."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = set(reader.fieldnames or ())
    if not {"timestamp", "g_per_kwh"} <= columns:
        raise InputError(f"{name}: needs the columns timestamp and g_per_kwh")
    rows: list[tuple[datetime, float, float | None]] = []
    for line, row in enumerate(reader, start=2):
        where = f"{name} line {line}"
        if len(rows) >= MAX_ROWS:
            raise InputError(f"{name}: more than {MAX_ROWS} rows")
        average = _number(row.get("g_per_kwh"), where, "g_per_kwh")
        if average is None:
            raise InputError(f"{where}: g_per_kwh is empty")
        marginal = _number(row.get("marginal_g_per_kwh"), where, "marginal_g_per_kwh")
        rows.append((_time(row["timestamp"] or "", where), average, marginal))
    rows.sort(key=lambda r: r[0])
    intervals: list[Interval] = []
    for i, (start, average, marginal) in enumerate(rows):
        if i + 1 < len(rows):
            end = rows[i + 1][0]
        else:
            end = start + (start - rows[i - 1][0] if i else timedelta(hours=1))
        try:
            intervals.append(Interval(start, end, average, marginal))
        except ValueError as e:
            raise InputError(f"{name} at {start.isoformat()}: {e}") from None
    return Series(tuple(intervals), f"file {name}")


class FileSource:
    """The `file` provider: reads the CSV at each call (it may be rewritten between them)."""

    def __init__(self, path: Path, now: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self.name = f"file {path.name}"
        self._now = now or (lambda: datetime.now(timezone.utc))

    def _read(self) -> Series:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise InputError(f"{self.path}: cannot read: {e.strerror or e}") from None
        if len(data) > MAX_BYTES:
            raise InputError(f"{self.path}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text") from None
        return parse(text, str(self.path))

    def history(self, start: datetime, end: datetime) -> Series:
        return self._read().between(start, end)

    def forecast(self, start: datetime, end: datetime) -> Series:
        series = self._read().between(start, end)
        return Series(series.intervals, series.source, forecast=True)

    def latest(self) -> Interval:
        """The row holding now; ProviderError when none does (the file ends before now)."""
        series = self._read()
        now = self._now()
        here = series.at(now)
        if here is None:
            raise ProviderError(
                f"{self.name}: latest: no row holds {now.isoformat(timespec='minutes')}"
            )
        return here
