"""co2gate: a carbon budget gate for CI."""

__version__ = "0.1.0"
