"""The one interface every ledger implements: append a run's entry, read entries back.

An entry is a small JSON object, one line of a `YYYY/MM.jsonl` shard, keyed by
`repository/run_id/run_attempt/job/label` so that recording the same run twice counts once.
"""

from __future__ import annotations

import abc
import heapq
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from co2gate.errors import ServiceError
from co2gate.tokens import mask

if TYPE_CHECKING:
    from co2gate.model import Measurement

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

# What a valid entry may hold; anything else in a line is refused when read and never written.
MAX_TEXT = 512  # characters in the key and in each key field
MAX_EMISSIONS_KG = 1e9
MAX_ENERGY_KWH = 1e12
MAX_DURATION_S = 1e9
MAX_WATER_L = 1e12  # an optional field: the run's litres of water, where it had a figure
MAX_PR = 2**53  # the largest integer every JSON reader keeps exactly
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2100, 12, 31)  # of ended_at, in UTC
NUMBER_BOUNDS = (
    ("emissions_kg", MAX_EMISSIONS_KG),
    ("energy_kwh", MAX_ENERGY_KWH),
    ("duration_s", MAX_DURATION_S),
)
OPTIONAL_TEXT = ("sha", "ref", "event")


class LedgerError(ServiceError):
    """The ledger could not be read or written; the message says which and why."""


class LedgerReadOnly(LedgerError):
    """The ledger can be read but not written here (a fork PR's read-only token)."""


@dataclass(frozen=True)
class Beside:
    """Files written beside the ledger in the same write as an entry (the badges).

    `files` gets the entries of the days [start, end), the new one included, read in the same
    compare-and-swap as the write, and returns {path: text}; paths are relative, `/`-separated.
    """

    start: date
    end: date
    files: Callable[[list[dict[str, Any]]], Mapping[str, str]]


class Ledger(abc.ABC):
    """Where gated runs are recorded so that a year's usage carries over between runs."""

    name: str = "ledger"

    @abc.abstractmethod
    def append(self, entry: Mapping[str, Any]) -> bool:
        """Record one entry: True if added, False if its key was there already.

        Raises LedgerError (LedgerReadOnly where the ledger can be read but not written).
        """

    def append_with(self, entry: Mapping[str, Any], beside: Beside) -> bool:
        """append(entry) and write beside's files with it, in one write where the ledger can;
        this default records the entry alone (the none ledger, ledgers of tests)."""
        return self.append(entry)

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
    """`YYYY-MM-DD` of an ISO 8601 timestamp, in UTC (naive timestamps are taken as UTC).

    Raises LedgerError for a timestamp that is not one, or whose day in UTC is outside
    1970-01-01..2100-12-31. Without `strict`, a co2gate-written UTC timestamp of a valid
    entry is trusted as it is.
    """
    if not strict and ended_at.endswith(("+00:00", "Z")) and ended_at[4:5] == "-":
        return ended_at[:10]  # the fast path for reading: co2gate writes UTC timestamps
    try:
        return _utc_ended_at(ended_at)[1]
    except _Invalid as e:
        raise LedgerError(str(e)) from None


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
    Raises LedgerError when the figures would make an invalid entry (see `valid_entry`).
    """
    from co2gate.model import CiInfo

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
    if m.requests:  # its units of work: the regression rule compares PRs per unit
        entry["units"] = m.requests
        entry["unit"] = m.unit or "requests"
    if m.metrics:  # its quality figures: the comment's front of CO2e against them
        entry["metrics"] = dict(m.metrics)
    if m.water is not None:
        entry["water_l"] = m.water.water_l
    entry |= provenance(m)
    entry["key"] = entry_key(entry)
    return valid_entry(entry)


def provenance(m: Measurement) -> dict[str, Any]:
    """How a run's figures were obtained, for the annual report, in few characters (a line
    stays small): its energy per method (kWh before PUE; parts without energy left out),
    PUE, the intensity's source, SCI's embodied share, and `stopped_by_guard` when it was."""
    by_method: dict[str, float] = {}
    for part in ("cpu", "gpu", "ram"):
        kwh, method = getattr(m.energy_kwh, part), getattr(m.methods, part).value
        if kwh > 0:
            by_method[method] = by_method.get(method, 0.0) + kwh
    found: dict[str, Any] = {
        "kwh_by_method": by_method,
        "pue": m.pue,
        "intensity_source": m.intensity_source,
    }
    if m.sci is not None:
        found["embodied_kg"] = m.sci.embodied_kg
    if m.run.stopped_by_guard:
        found["stopped_by_guard"] = True
    return found


def refusal_entry(
    ci: Mapping[str, Any] | None,
    label: str,
    category: str,
    ended_at: datetime,
    projected_kg: float,
) -> dict[str, Any]:
    """The ledger entry for a run `run --preflight` refused: zero kg, zero kWh, marked
    `refused: true`, with the projection that refused it. Budget totals do not move; the
    annual report counts it. Outside CI it is keyed by a fresh uuid, like a local run."""
    import uuid

    ci = ci or {}
    entry: dict[str, Any] = {
        "key": "",
        "repository": ci.get("repository") or "local",
        "run_id": ci.get("run_id") or uuid.uuid4().hex,
        "run_attempt": ci.get("run_attempt") or "1",
        "job": ci.get("job") or "local",
        "label": label,
        "category": category,
        "emissions_kg": 0.0,
        "energy_kwh": 0.0,
        "duration_s": 0.0,
        "ended_at": ended_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "sha": ci.get("sha") or None,
        "ref": ci.get("ref") or None,
        "event": ci.get("event") or None,
        "pr": ci.get("pr"),
        "refused": True,
        "projected_kg": projected_kg if math.isfinite(projected_kg) else None,
    }
    entry["key"] = entry_key(entry)
    return valid_entry(entry)


def valid_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of entry with its numbers as floats and ended_at in UTC; LedgerError if invalid.

    Valid: `key` and the key fields non-empty strings of at most MAX_TEXT characters;
    `category` a string; emissions_kg, energy_kwh and duration_s (absent or null: 0) finite
    numbers from 0 to their bound, never a bool; ended_at an ISO 8601 timestamp whose UTC day
    is in 1970-01-01..2100-12-31; pr null or a positive integer; sha, ref, event null or
    strings; every string Unicode text (no lone surrogate).
    """
    try:
        normal, _ = _normalised(entry)
        _check_unicode(normal)
    except _Invalid as e:
        raise LedgerError(f"ledger entry {_show(entry.get('key'))} is invalid: {e}") from None
    return normal


def to_line(entry: Mapping[str, Any]) -> str:
    """One JSON Lines line for a valid entry, with its key, ending in a newline.

    Raises LedgerError for an entry that reading would skip: none is ever written.
    """
    line = {"key": entry_key(entry)} | {k: v for k, v in entry.items() if k != "key"}
    line = valid_entry(line)
    try:
        return mask(json.dumps(line, separators=(",", ":"), allow_nan=False)) + "\n"
    except (TypeError, ValueError) as e:
        raise LedgerError(f"ledger entry {line['key']} is not plain JSON: {e}") from e


def holds_key(text: str, key: str) -> bool:
    """Whether a valid entry in a shard's text has this key.

    An invalid line does not count: it is never summed, so its run may be recorded again.
    Most appends are of a new run, found absent without parsing: to_line writes the key
    as json.dumps does, quotes included.
    """
    if json.dumps(key) not in text:
        return False
    entries, _ = _valid_entries(text, "", "~")
    return any(entry["key"] == key for entry in entries)


def parse_shard(
    text: str, source: str, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """The valid entries of a shard's text, in order, optionally only days in [start, end).

    An invalid line (a crash mid-write, a hand edit, a figure no run can have) is skipped;
    one warning per shard names the source, the line numbers and what is wrong with the
    first. Numbers come back as floats, ended_at in UTC (see `valid_entry`).
    """
    low, high = (start.isoformat() if start else ""), (end.isoformat() if end else "~")
    out, bad = _valid_entries(text, low, high)
    if bad:
        (first, problem), rest = bad[0], bad[1:10]
        shown = ", ".join([f"line {first} ({problem})"] + [f"line {n}" for n, _ in rest])
        log.warning(
            "%s: skipped %d invalid ledger line(s): %s%s",
            source,
            len(bad),
            shown,
            ", ..." if len(bad) > 10 else "",
        )
    return out


class _Invalid(Exception):
    """What is wrong with one ledger line, as `field: what`."""


class _NotJson:
    """A line that is not JSON at all, and why."""

    def __init__(self, error: Exception) -> None:
        if isinstance(error, json.JSONDecodeError):
            self.reason = f"{error.msg} (column {error.colno})"
        elif isinstance(error, RecursionError):
            self.reason = "nested too deeply"
        else:  # Python refuses integers of over 4,300 digits
            self.reason = " ".join(str(error).split(";")[0].split())


_MISSING = object()  # a field that is not there
_TEXT_FIELDS = (*KEY_FIELDS, "key")  # the key last: the field that makes it bad is named first
_FAST_FIELDS = (
    "key",
    *KEY_FIELDS,
    "category",
    "emissions_kg",
    "energy_kwh",
    "duration_s",
    "ended_at",
    *OPTIONAL_TEXT,
    "pr",
)


def _fields_getter(first: Any) -> itemgetter[Any]:
    """An itemgetter of _FAST_FIELDS keyed by the first line's own key objects.

    json.loads gives every line of a shard the same key objects, so each lookup then ends
    at a pointer comparison instead of comparing two equal strings.
    """
    same = {name: name for name in first} if type(first) is dict else {}
    return itemgetter(*(same.get(name, name) for name in _FAST_FIELDS))


_fromisoformat = datetime.fromisoformat
_UTC = timezone.utc  # what fromisoformat gives for +00:00, -00:00 and Z


def _valid_entries(
    text: str, low: str, high: str
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The valid entries in a shard's text whose UTC day is in [low, high) (`YYYY-MM-DD`),
    and (line number, what is wrong) for each invalid line."""
    objs = _parse_all(text)
    numbered = enumerate(objs, 1) if objs is not None else _parse_lines(text)
    # Only a \uD800-\uDFFF escape can make a string that is no Unicode text (a lone
    # surrogate, which crashes whoever writes it out): then every entry is checked for one.
    # ("\\" alone first: a search for one character is ten times faster than for three.)
    escapes = "\\" in text and ("\\ud" in text or "\\uD" in text)
    days: set[str] = set()  # the valid `YYYY-MM-DD` seen so far
    fields = _fields_getter(objs[0] if objs else None)
    out: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for number, obj in numbered:
        # The fast path takes a line as co2gate writes it (every field there, floats, a UTC
        # `YYYY-MM-DDTHH:MM:SS.mmm+00:00`, the key made of its fields); _normalised() takes
        # the rest or says why not. Every check here is one _normalised() makes too.
        try:
            (
                key,
                repository,
                run_id,
                run_attempt,
                job,
                label,
                category,
                kg,
                kwh,
                duration,
                ended_at,
                sha,
                ref,
                event,
                pr,
            ) = fields(obj)
            fast = (
                # the five key fields strings (join refuses others), none longer than the key
                "/".join((repository, run_id, run_attempt, job, label)) == key
                and len(key) <= MAX_TEXT
                and repository  # none empty
                and run_id
                and run_attempt
                and job
                and label
                and type(category) is str
                and type(kg) is float  # exact types: no bool, no int to normalise
                and 0.0 <= kg <= MAX_EMISSIONS_KG  # False for NaN, and for infinities
                and type(kwh) is float
                and 0.0 <= kwh <= MAX_ENERGY_KWH
                and type(duration) is float
                and 0.0 <= duration <= MAX_DURATION_S
                and (pr is None or (type(pr) is int and 0 < pr <= MAX_PR))
                and (sha is None or type(sha) is str)
                and (ref is None or type(ref) is str)
                and (event is None or type(event) is str)
                # a UTC timestamp (ValueError unless ISO 8601) that starts with its valid day
                and (ended_at[:10] in days or _learn_day(days, ended_at[:10]))
                and _fromisoformat(ended_at).tzinfo is _UTC
                and not escapes
                and ("water_l" not in obj or _fast_water(obj["water_l"]))
            )
        except (KeyError, TypeError, ValueError, IndexError):
            fast = False  # not a dict, a field missing, not ISO 8601: _normalised says which
        if fast:
            if low <= ended_at < high:  # ended_at starts with its UTC day
                out.append(obj)
            continue
        try:
            entry, day = _normalised(obj)
            if escapes:
                _check_unicode(entry)
        except _Invalid as e:
            bad.append((number, str(e)))
            continue
        if low <= day < high:
            out.append(entry)
    return out, bad


def _fast_water(value: Any) -> bool:
    return type(value) is float and 0.0 <= value <= MAX_WATER_L


def _learn_day(days: set[str], text: str) -> bool:
    """Whether text is a `YYYY-MM-DD` day in FIRST_DAY..LAST_DAY; if so it joins days."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return False
    if FIRST_DAY <= day <= LAST_DAY and day.isoformat() == text:  # not 2025-W10-1, 20250304
        days.add(text)
        return True
    return False


def _normalised(obj: Any) -> tuple[dict[str, Any], str]:
    """obj as a valid entry (numbers as floats, ended_at in UTC, absent optional fields
    null) and its UTC day; raises _Invalid naming the first field that is wrong."""
    if type(obj) is not dict:
        if isinstance(obj, _NotJson):
            raise _Invalid(f"not JSON: {obj.reason}")
        raise _Invalid(f"{_show(obj)} is not a JSON object")
    entry = dict(obj)
    for name in _TEXT_FIELDS:
        value = entry.get(name, _MISSING)
        if type(value) is not str or not 0 < len(value) <= MAX_TEXT:
            what = f"a non-empty string of at most {MAX_TEXT} characters"
            raise _Invalid(_wrong(name, value, what))
    if type(entry.get("category")) is not str:
        raise _Invalid(_wrong("category", entry.get("category", _MISSING), "a string"))
    for name, bound in NUMBER_BOUNDS:
        value = entry.get(name, _MISSING)
        if name == "duration_s" and (value is None or value is _MISSING):
            entry[name] = 0.0  # older lines have no duration
        else:
            entry[name] = _number(name, value, bound)
    entry["ended_at"], day = _utc_ended_at(entry.get("ended_at", _MISSING))
    if entry.get("water_l") is not None:  # optional: absent or null, the run had no figure
        entry["water_l"] = _number("water_l", entry["water_l"], MAX_WATER_L)
    pr = entry.setdefault("pr", None)
    if pr is not None and not (type(pr) is int and 0 < pr <= MAX_PR):
        raise _Invalid(f"pr: {_show(pr)} is not null or a positive integer")
    for name in OPTIONAL_TEXT:
        value = entry.setdefault(name, None)
        if value is not None and type(value) is not str:
            raise _Invalid(f"{name}: {_show(value)} is not null or a string")
    return entry, day


def _number(name: str, value: Any, bound: float) -> float:
    """value as a float when it is a finite number in [0, bound]; else _Invalid."""
    if type(value) is not float and type(value) is not int:  # exact types: a bool is no number
        raise _Invalid(_wrong(name, value, "a number"))
    if 0 <= value <= bound:  # an int is compared exactly, never converted: no OverflowError
        return float(value)
    if value < 0 or (type(value) is float and not math.isfinite(value)):  # ints: no float()
        raise _Invalid(f"{name}: {_show(value)} is not a finite number >= 0")
    raise _Invalid(f"{name}: {_show(value)} is over {bound:g}, more than any run can use")


def _utc_ended_at(value: Any) -> tuple[str, str]:
    """(value as a UTC ISO 8601 timestamp, its day `YYYY-MM-DD`); _Invalid unless value is
    a timestamp whose UTC day is in FIRST_DAY..LAST_DAY."""
    if type(value) is not str:
        raise _Invalid(_wrong("ended_at", value, "an ISO 8601 timestamp"))
    try:
        moment = _fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise _Invalid(f"ended_at: {_show(value)} is not an ISO 8601 timestamp") from None
    span = f"ended_at: {_show(value)} is not between {FIRST_DAY} and {LAST_DAY} (UTC)"
    if not FIRST_DAY.year - 1 <= moment.year <= LAST_DAY.year + 1:
        raise _Invalid(span)  # checked first: moving year 1 or 9999 to UTC can overflow
    utc = moment.tzinfo is _UTC
    moment = (
        moment.replace(tzinfo=timezone.utc)
        if moment.tzinfo is None
        else moment.astimezone(timezone.utc)
    )
    day = moment.date()
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _Invalid(span)
    iso_day = day.isoformat()
    if utc and value[:10] == iso_day:
        return value, iso_day
    return moment.isoformat(timespec="milliseconds"), iso_day


def _check_unicode(entry: Mapping[str, Any]) -> None:
    """_Invalid when a string in entry holds a lone surrogate (no UTF-8 for it)."""
    try:
        json.dumps(entry, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("a string holds a lone surrogate: it is not Unicode text") from None
    except (TypeError, ValueError):
        pass  # not JSON at all: to_line says so


def _wrong(name: str, value: Any, what: str) -> str:
    if value is _MISSING:
        return f"{name}: missing"
    return f"{name}: {_show(value)} is not {what}"


def _show(value: Any) -> str:
    """A value as the warning shows it: in JSON's words, long text and numbers cut short."""
    if value is None or value is True or value is False:
        return json.dumps(value)
    if type(value) is float:
        if math.isnan(value):
            return "NaN"
        return repr(value) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if type(value) is int:
        if value.bit_length() <= 64:
            return str(value)
        if value.bit_length() < 14_000:  # str() refuses more than 4,300 digits
            return f"a {len(str(abs(value))):,}-digit integer"
        return "an integer of over 4,000 digits"
    if type(value) is str:
        if len(value) <= 40:
            return repr(value)
        return f"{value[:40]!r}... ({len(value):,} characters)"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _parse_all(text: str) -> list[Any] | None:
    """Every line in one C-level parse; None unless each line is exactly one JSON value."""
    body = text.rstrip()
    if body[:1].isspace():
        return None  # blank lines first: go line by line, so that line numbers stay right
    try:
        objs = json.loads("[" + body.replace("\n", ",") + "]")
    except (ValueError, RecursionError):
        return None  # a torn line, a blank line, nesting too deep: go line by line
    lines = body.count("\n") + 1 if body else 0
    return objs if isinstance(objs, list) and len(objs) == lines else None


def _parse_lines(text: str) -> list[tuple[int, Any]]:
    """(line number, object or _NotJson) for each non-blank line."""
    parsed: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            parsed.append((number, json.loads(raw)))
        except (ValueError, RecursionError) as e:  # NaN, Infinity, 1e400 parse: checked later
            parsed.append((number, _NotJson(e)))
    return parsed


def dedupe(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with the first of each key kept, so a run is never counted twice."""
    rows = entries if isinstance(entries, list) else list(entries)
    if len(set(map(_KEY, rows))) == len(rows):
        return rows  # the usual case, found at C speed
    seen: set[str] = set()
    out = []
    for entry in rows:
        key = entry["key"]
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


_KEY = itemgetter("key")


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
