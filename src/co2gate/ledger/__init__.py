"""The usage ledger: one entry per gated run, so a year's usage carries over between runs."""

from __future__ import annotations

from co2gate.ledger.factory import open_ledger
from co2gate.ledger.interface import (
    Ledger,
    LedgerError,
    LedgerReadOnly,
    entry_key,
    make_entry,
    shard_of,
    summarize,
    valid_entry,
)

__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerReadOnly",
    "entry_key",
    "make_entry",
    "open_ledger",
    "shard_of",
    "summarize",
    "valid_entry",
]
