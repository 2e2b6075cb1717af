"""A ledger in a local directory: JSON Lines shards `YYYY/MM.jsonl`, safe across processes.

Files written beside an entry (the badges, `badges/<category>.json`) go in the same directory,
under the same lock as the entry, each replaced whole (written aside, then renamed).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from co2gate.ledger.interface import (
    Beside,
    Ledger,
    LedgerError,
    dedupe,
    entry_key,
    holds_key,
    parse_shard,
    shard_of,
    shards_between,
    to_line,
    valid_entry,
)

LOCK_NAME = ".lock"
log = logging.getLogger("co2gate")


class FileLedger(Ledger):
    """Appends under an exclusive flock on `root/.lock`, so processes on one machine never
    interleave lines or record a key twice; reads under a shared lock."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def append(self, entry: Mapping[str, Any]) -> bool:
        return self._append(entry, None)

    def append_with(self, entry: Mapping[str, Any], beside: Beside) -> bool:
        return self._append(entry, beside)

    def _append(self, entry: Mapping[str, Any], beside: Beside | None) -> bool:
        key, line = entry_key(entry), to_line(entry)
        path = self.root / shard_of(entry)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(fcntl.LOCK_EX, create=True):
                data = path.read_bytes() if path.exists() else b""
                if holds_key(data.decode("utf-8", errors="replace"), key):
                    return False
                payload = line.encode("utf-8")
                if data and not data.endswith(b"\n"):
                    payload = b"\n" + payload  # a torn last line stays alone on its line
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    written = os.write(fd, payload)  # one write: no other writer can interleave
                    if written != len(payload):  # a full disk, a file size limit
                        os.ftruncate(fd, len(data))  # no torn line left for the next run
                finally:
                    os.close(fd)
                if written == len(payload) and beside is not None:
                    try:
                        self._write_beside(beside, valid_entry(entry))
                    except OSError as e:  # the entry is recorded: a stale badge is no loss
                        log.warning("could not write beside the ledger in %s: %s", self.root, e)
        except OSError as e:
            raise LedgerError(f"cannot write the ledger file {path}: {e.strerror or e}") from e
        if written != len(payload):
            raise LedgerError(f"short write to the ledger file {path} (disk full?)")
        return True

    def _write_beside(self, beside: Beside, entry: dict[str, Any]) -> None:
        """beside's files from the year's entries (this one included), each replaced whole."""
        found = [entry, *self._read(beside.start, beside.end)]
        for name, text in beside.files(dedupe(found)).items():
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            aside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            aside.write_text(text, encoding="utf-8")
            os.replace(aside, target)

    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            if not self.root.is_dir():
                return found
            with self._locked(fcntl.LOCK_SH, create=False):
                found = self._read(start, end)
        except OSError as e:
            raise LedgerError(f"cannot read the ledger in {self.root}: {e}") from e
        return dedupe(found)

    def _read(self, start: date, end: date) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for shard in shards_between(start, end):
            path = self.root / shard
            if path.is_file():
                text = path.read_bytes().decode("utf-8", errors="replace")
                found.extend(parse_shard(text, str(path), start, end))
        return found

    @contextlib.contextmanager
    def _locked(self, operation: int, *, create: bool) -> Iterator[None]:
        """Hold flock(operation) on the lock file; a reader of a read-only root goes unlocked."""
        fd = self._open_lock(create)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _open_lock(self, create: bool) -> int | None:
        lock_path = self.root / LOCK_NAME
        try:
            return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if create:
                raise
        try:
            return os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
