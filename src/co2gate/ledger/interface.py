"""The one interface every ledger implements: append a run's entry, read entries back.

An entry is a small JSON object, one line of a `YYYY/MM.jsonl` shard, keyed by
`repository/run_id/run_attempt/job/label` so that recording the same run twice counts once.
"""

from __future__ import annotations

import abc
import heapq
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from co2gate.errors import ServiceError
from co2gate.model import CiInfo, Measurement

log = logging.getLogger("co2gate")

KEY_FIELDS = ("repository", "run_id", "run_attempt", "job", "label")
ENTRY_FIELDS = (
    "key",
    *KEY_FIELDS,
    "category",
    "emissions_kg",
    "energy_kwh",
    "duration_s",
    "ended_at",
    "sha",
    "ref",
    "event",
    "pr",
)


class LedgerError(ServiceError):
    """The ledger could not be read or written; the message says which and why."""


class LedgerReadOnly(LedgerError):
    """The ledger can be read but not written here (a fork PR's read-only token)."""


class Ledger(abc.ABC):
    """Where gated runs are recorded so that a year's usage carries over between runs."""

    name: str = "ledger"

    @abc.abstractmethod
    def append(self, entry: Mapping[str, Any]) -> bool:
        """Record one entry: True if added, False if its key was there already.

        Raises LedgerError (LedgerReadOnly where the ledger can be read but not written).
        """

    @abc.abstractmethod
    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        """Entries whose `ended_at` (UTC) falls on a day in [start, end). Raises LedgerError."""


def entry_key(entry: Mapping[str, Any]) -> str:
    """`repository/run_id/run_attempt/job/label`: one gated step of one attempt of one run."""
    try:
        return "/".join(str(entry[name]) for name in KEY_FIELDS)
    except KeyError as e:
        raise LedgerError(f"ledger entry has no {e.args[0]!r}") from e


def utc_day(ended_at: str, *, strict: bool = False) -> str:
    """`YYYY-MM-DD` of an ISO 8601 timestamp, in UTC (naive timestamps are taken as UTC)."""
    if not strict and ended_at.endswith(("+00:00", "Z")) and ended_at[4:5] == "-":
        return ended_at[:10]  # the fast path for reading: co2gate writes UTC timestamps
    try:
        moment = datetime.fromisoformat(ended_at.replace("Z", "+00:00"))
    except ValueError as e:
        raise LedgerError(f"ended_at is not an ISO 8601 timestamp: {ended_at!r}") from e
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date().isoformat()


def shard_of(entry: Mapping[str, Any]) -> str:
    """The shard an entry belongs in: `YYYY/MM.jsonl` of its `ended_at` in UTC."""
    ended_at = entry.get("ended_at")
    if not isinstance(ended_at, str):
        raise LedgerError("ledger entry has no ended_at timestamp")
    day = utc_day(ended_at, strict=True)
    return f"{day[:4]}/{day[5:7]}.jsonl"


def shards_between(start: date, end: date) -> list[str]:
    """The shards that can hold entries of days in [start, end), oldest first."""
    if end <= start:
        return []
    last = date.fromordinal(end.toordinal() - 1)
    year, month, shards = start.year, start.month, []
    while (year, month) <= (last.year, last.month):
        shards.append(f"{year:04d}/{month:02d}.jsonl")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return shards


def make_entry(m: Measurement, category: str) -> dict[str, Any]:
    """The ledger entry for one measured run.

    Outside CI (`ci` is None) the run is keyed as repository "local", job "local", by its uuid.
    """
    ci = m.ci or CiInfo()
    ended = m.run.ended_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    entry: dict[str, Any] = {
        "key": "",
        "repository": ci.repository or "local",
        "run_id": ci.run_id or m.run.id,
        "run_attempt": ci.run_attempt or "1",
        "job": ci.job or "local",
        "label": m.run.label,
        "category": category,
        "emissions_kg": m.emissions_kg,
        "energy_kwh": m.energy_kwh.total,
        "duration_s": m.run.duration_s,
        "ended_at": ended,
        "sha": ci.sha or None,
        "ref": ci.ref or None,
        "event": ci.event or None,
        "pr": ci.pr,
    }
    entry["key"] = entry_key(entry)
    return entry


def to_line(entry: Mapping[str, Any]) -> str:
    """One JSON Lines line for an entry, with its key, ending in a newline."""
    shard_of(entry)  # refuses an entry without a valid ended_at before it is written
    line = {"key": entry_key(entry)} | {k: v for k, v in entry.items() if k != "key"}
    try:
        return json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise LedgerError(f"ledger entry {line['key']} is not plain JSON: {e}") from e


def shard_keys(text: str) -> set[str]:
    """The keys present in a shard's text (invalid lines ignored, silently)."""
    objs = _parse_all(text)
    if objs is None:
        objs = [obj for _, obj in _parse_lines(text)]
    return {obj["key"] for obj in objs if type(obj) is dict and type(obj.get("key")) is str}


def parse_shard(
    text: str, source: str, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """The valid entries of a shard's text, in order, optionally only days in [start, end).

    A torn or invalid line (a crash mid-write, a hand edit) is skipped; one warning per
    shard names the source and the line numbers.
    """
    objs = _parse_all(text)
    numbered = enumerate(objs, 1) if objs is not None else _parse_lines(text)
    low, high = (start.isoformat() if start else ""), (end.isoformat() if end else "~")
    out: list[dict[str, Any]] = []
    bad: list[int] = []
    for number, obj in numbered:
        day = _day_if_valid(obj)
        if day is None:
            bad.append(number)
        elif low <= day < high:
            out.append(obj)
    if bad:
        shown = ", ".join(str(n) for n in bad[:10]) + (", ..." if len(bad) > 10 else "")
        log.warning(
            "%s: skipped %d invalid ledger line(s) (a torn write or a hand edit): line %s",
            source,
            len(bad),
            shown,
        )
    return out


def _parse_all(text: str) -> list[Any] | None:
    """Every line in one C-level parse; None unless each line is exactly one JSON value."""
    body = text.strip()
    try:
        objs = json.loads("[" + body.replace("\n", ",") + "]")
    except ValueError:
        return None  # a torn line, a blank line: go line by line
    lines = body.count("\n") + 1 if body else 0
    return objs if isinstance(objs, list) and len(objs) == lines else None


def _parse_lines(text: str) -> list[tuple[int, Any]]:
    """(line number, object or None when not JSON) for each non-blank line."""
    parsed: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            parsed.append((number, json.loads(raw)))
        except ValueError:
            parsed.append((number, None))
    return parsed


_NUMBER_TYPES = (int, float, type(None))  # by exact type(): a bool is no number here


def _day_if_valid(obj: Any) -> str | None:
    """The UTC day of a parsed line that is a usable entry, else None."""
    if type(obj) is not dict:
        return None
    ended_at = obj.get("ended_at")
    if (
        type(obj.get("key")) is not str
        or type(ended_at) is not str
        or type(obj.get("emissions_kg")) not in _NUMBER_TYPES
        or type(obj.get("energy_kwh")) not in _NUMBER_TYPES
    ):
        return None
    try:
        return utc_day(ended_at)
    except LedgerError:
        return None


def dedupe(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with the first of each key kept, so a run is never counted twice."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        key = entry["key"]
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


def summarize(entries: Iterable[Mapping[str, Any]], *, top: int = 10) -> dict[str, Any]:
    """Totals per category, per month (`YYYY-MM`, UTC) and per label, and the top runs.

    Each total is {"count", "emissions_kg", "energy_kwh"}; groups are sorted by name,
    `top_runs` by emissions, largest first.
    """
    by_category: dict[str, list[float]] = {}
    by_month: dict[str, list[float]] = {}
    by_label: dict[str, list[float]] = {}
    count, total_kg, total_kwh = 0, 0.0, 0.0
    rows = entries if isinstance(entries, list) else list(entries)
    for entry in rows:
        kg = entry.get("emissions_kg") or 0.0
        kwh = entry.get("energy_kwh") or 0.0
        count += 1
        total_kg += kg
        total_kwh += kwh
        for groups, name in (
            (by_category, entry.get("category") or "unknown"),
            (by_month, utc_day(entry["ended_at"])[:7]),
            (by_label, entry.get("label") or "unknown"),
        ):
            acc = groups.get(name)
            if acc is None:
                groups[name] = [1, kg, kwh]
            else:
                acc[0] += 1
                acc[1] += kg
                acc[2] += kwh
    return {
        "count": count,
        "emissions_kg": total_kg,
        "energy_kwh": total_kwh,
        "by_category": _totals(by_category),
        "by_month": _totals(by_month),
        "by_label": _totals(by_label),
        "top_runs": [
            dict(e) for e in heapq.nlargest(top, rows, key=lambda e: e.get("emissions_kg") or 0.0)
        ],
    }


def _totals(groups: Mapping[str, list[float]]) -> dict[str, dict[str, Any]]:
    return {
        name: {"count": int(acc[0]), "emissions_kg": acc[1], "energy_kwh": acc[2]}
        for name, acc in sorted(groups.items())
    }
