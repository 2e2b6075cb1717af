"""A category's badge: a shields.io endpoint JSON of its year (used / allocation).

shields.io renders `https://img.shields.io/endpoint?url=<raw URL of the file>`; the schema is
{"schemaVersion": 1, "label", "message", "color"}. The ledger keeps one per category at
`badges/<category>.json`, written with each entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from co2gate import fmt

DIRECTORY = "badges"


def colour(used_kg: float, allocation_kg: float, warn_at: float) -> str:
    """green below warn_at of the allocation, yellow from there to all of it, red over it."""
    if used_kg > allocation_kg:
        return "red"
    if used_kg >= warn_at * allocation_kg and used_kg > 0:
        return "yellow"
    return "green"


def endpoint(category: str, used_kg: float, allocation_kg: float, warn_at: float) -> dict[str, Any]:
    """The shields.io endpoint document of one category."""
    return {
        "schemaVersion": 1,
        "label": f"CO2e {category}",
        "message": f"{fmt.mass(used_kg)} / {fmt.mass(allocation_kg)}",
        "color": colour(used_kg, allocation_kg, warn_at),
    }


def path(category: str) -> str:
    return f"{DIRECTORY}/{category}.json"


def files(
    entries: Sequence[Mapping[str, Any]], allocations: Mapping[str, float], warn_at: float
) -> dict[str, str]:
    """{path: JSON text} of every category's badge from the year's entries."""
    used = dict.fromkeys(allocations, 0.0)
    for e in entries:
        if e.get("category") in used:
            used[e["category"]] += float(e["emissions_kg"])
    return {
        path(category): json.dumps(endpoint(category, used[category], kg, warn_at)) + "\n"
        for category, kg in allocations.items()
    }
