"""codecarbon's logging, kept off co2gate's stderr unless the user asks for it."""

from __future__ import annotations

import logging
import os
import threading

_lock = threading.Lock()
_quiet: bool | None = None  # decided once, on the first call, from the user's environment


def quiet_codecarbon() -> bool:
    """Silence codecarbon's logger; call before importing codecarbon. False when the user set
    CODECARBON_LOG_LEVEL: they asked to see its lines, and they are left alone.

    Sets co2gate's own environment only: the command already runs with its own copy. Later
    calls (another thread, another source) give the first call's answer.
    """
    global _quiet
    with _lock:
        if _quiet is None:
            _quiet = not os.environ.get("CODECARBON_LOG_LEVEL")
            if _quiet:
                os.environ["CODECARBON_LOG_LEVEL"] = "critical"  # codecarbon reads it at import
                logger = logging.getLogger("codecarbon")
                logger.setLevel(logging.CRITICAL)
                logger.propagate = False
        return _quiet
