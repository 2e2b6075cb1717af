"""codecarbon's logging, kept off co2gate's stderr unless the user asks for it."""

from __future__ import annotations

import logging
import os


def quiet_codecarbon() -> bool:
    """Silence codecarbon's logger; call before importing codecarbon. False when
    CODECARBON_LOG_LEVEL is set: the user asked to see its lines, and they are left alone.

    Sets co2gate's own environment only: the command already runs with its own copy.
    """
    if os.environ.get("CODECARBON_LOG_LEVEL"):
        return False
    os.environ["CODECARBON_LOG_LEVEL"] = "critical"  # codecarbon reads it at import
    logger = logging.getLogger("codecarbon")
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    return True
