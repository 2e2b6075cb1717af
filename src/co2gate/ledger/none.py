"""A ledger that records nothing: `ledger.backend: none`, or --no-record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from co2gate.ledger.interface import Ledger


class NoneLedger(Ledger):
    """Every run is the first: nothing is recorded and nothing read back."""

    name = "none"

    def append(self, entry: Mapping[str, Any]) -> bool:
        return False

    def entries(self, start: date, end: date) -> list[dict[str, Any]]:
        return []
