"""One base error and its few kinds. Every failure co2gate expects is a Co2gateError: the
command line prints its message as one line on stderr and exits 2, never a traceback."""

from __future__ import annotations


class Co2gateError(Exception):
    """A failure co2gate expects; its message is one line that names what is wrong."""


class InputError(Co2gateError):
    """Something the user gave (an option, the budget file, a measurement file, an artifact,
    the environment) is unusable; found before anything is measured or recorded."""


class ServiceError(Co2gateError):
    """Something outside co2gate (the GitHub API, the ledger, a meter) failed or refused."""


class OutputError(Co2gateError):
    """co2gate could not write what it measured or decided (a file, a runner file)."""
