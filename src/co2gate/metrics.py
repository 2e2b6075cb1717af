"""A run's quality figures (validation loss, accuracy): `--metric NAME=VALUE` and
`--metrics-file PATH`, checked before they reach emissions.json and the ledger.

Pure: the standard library and co2gate.errors; nothing heavy.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from co2gate.errors import InputError

MAX_METRICS: Final = 32
MAX_NAME: Final = 64  # characters in a metric's name
MAX_VALUE: Final = 1e15  # |value|: a loss, an accuracy, a perplexity, a count of tokens
MAX_FILE_BYTES: Final = 64 * 1024  # a metrics file: a small JSON object
NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")


class MetricsError(InputError):
    """A metric co2gate cannot take: one line naming where it came from."""


def check_name(name: object, given: str) -> str:
    """A metric's name: 1-64 of letters, digits and _ . : / - (not starting with . : / -)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name[: MAX_NAME + 1]) if isinstance(name, str) else type(name).__name__
        raise MetricsError(
            f"{given}: {shown} is not a metric name (1-{MAX_NAME} letters, digits and "
            "_ . : / -, starting with a letter, digit or _)"
        )
    return name


def check_value(value: object, given: str) -> float:
    """A metric's value: a finite number within +-MAX_VALUE (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricsError(f"{given}: {type(value).__name__} is not a number")
    if not (-MAX_VALUE <= value <= MAX_VALUE):  # NaN fails too; a huge int is never converted
        raise MetricsError(f"{given}: not a finite number within +-{MAX_VALUE:g}")
    return float(value)


def check(metrics: Mapping[Any, Any], given: str) -> dict[str, float]:
    """Names and values checked, at most MAX_METRICS of them; sorted by name."""
    if len(metrics) > MAX_METRICS:
        raise MetricsError(f"{given}: {len(metrics)} metrics; at most {MAX_METRICS}")
    checked = {}
    for name, value in metrics.items():
        key = check_name(name, given)
        checked[key] = check_value(value, f"{given}: {key}")
    return dict(sorted(checked.items()))


def parse_options(options: Iterable[str]) -> dict[str, float]:
    """`--metric NAME=VALUE`, repeatable: a later NAME replaces an earlier one."""
    parsed: dict[str, float] = {}
    for option in options:
        name, eq, text = option.partition("=")
        if not eq:
            raise MetricsError(f"--metric {option[:80]!r}: give NAME=VALUE, e.g. val_loss=0.412")
        check_name(name, "--metric")
        try:
            value = float(text.strip())
        except ValueError:
            raise MetricsError(f"--metric {name}: {text[:40]!r} is not a number") from None
        parsed[name] = check_value(value, f"--metric {name}")
    return check(parsed, "--metric")


def _no_constants(word: str) -> float:
    raise ValueError(f"{word} is not a finite number")


def read_file(path: Path) -> dict[str, float]:
    """A metrics file: a JSON object of name -> number, at most MAX_FILE_BYTES, a regular file.

    Raises MetricsError naming the file and what is wrong.
    """
    given = f"--metrics-file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise MetricsError(f"{given}: cannot be read: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MetricsError(f"{given}: not a regular file")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as e:
        raise MetricsError(f"{given}: cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise MetricsError(f"{given}: more than {MAX_FILE_BYTES:,} bytes")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        what = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise MetricsError(f"{given}: not a JSON object ({what})") from None
    if not isinstance(doc, dict):
        raise MetricsError(f"{given}: not a JSON object of name -> number")
    return check(doc, given)


def merged(given: Mapping[str, float], from_file: Mapping[str, float]) -> dict[str, float]:
    """The file's metrics with the options' over them (an option says it explicitly);
    at most MAX_METRICS in all."""
    return check({**from_file, **given}, "--metric and --metrics-file together")


@dataclass(frozen=True)
class Wanted:
    """The metrics a command was given: checked options now, a file read after the run."""

    given: Mapping[str, float] = field(default_factory=dict)
    file: Path | None = None

    @classmethod
    def of(cls, options: Iterable[str], file: Path | None) -> Wanted:
        """--metric options parsed (MetricsError naming --metric), before anything runs."""
        return cls(parse_options(options), file)

    def collect(self) -> tuple[dict[str, float], str | None]:
        """The metrics after the run, and a note when the file could not be used: a
        measured run is never lost over its metrics (the options' are kept)."""
        if self.file is None:
            return dict(self.given), None
        try:
            return merged(self.given, read_file(self.file)), None
        except MetricsError as e:
            kept = "its --metric values" if self.given else "no metrics"
            return dict(self.given), f"{e}: the run is recorded with {kept}"
