"""The budget file's `intensity:` section as a record: which provider, zone and signal.

Apart from signal.py (what a provider answers) so that reading a budget file, which happens
before the measured command starts, loads only these few lines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["IntensityConfig", "ProviderName", "Signal"]


class ProviderName(str, enum.Enum):
    ELECTRICITYMAPS = "electricitymaps"
    WATTTIME = "watttime"
    CARBONINTENSITY_UK = "carbonintensity-uk"
    FILE = "file"
    NONE = "none"


class Signal(str, enum.Enum):
    AVERAGE = "average"  # location-based: what the ledger always records
    MARGINAL = "marginal"  # the emissions of the next kWh (WattTime's MOER)


@dataclass(frozen=True)
class IntensityConfig:
    """The budget file's `intensity:` section. `none` sends nothing anywhere."""

    provider: ProviderName = ProviderName.NONE
    zone: str | None = None  # the provider's zone, region or balancing authority
    signal: Signal = Signal.AVERAGE
    token_env: str | None = None  # the variable holding the key; its value is never printed
    user_env: str | None = None  # WattTime logs in with a user and a password
    password_env: str | None = None
    url: str | None = None  # base URL (proxies, tests)
    path: str | None = None  # provider `file`: CSV timestamp,g_per_kwh[,marginal_g_per_kwh]
