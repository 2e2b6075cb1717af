"""co2gate: a carbon budget gate for CI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("co2gate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
