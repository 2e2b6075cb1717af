"""Open the grid signal the budget file's `intensity:` section names.

This build opens the `file` provider only; the live providers (Electricity Maps, WattTime,
the GB Carbon Intensity API) come with their own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from co2gate.grid.file import FileSource
from co2gate.grid.signal import GridSource, IntensityConfig, ProviderError, ProviderName


def open_source(
    config: IntensityConfig, environ: Mapping[str, str], *, base_dir: Path | None = None
) -> GridSource:
    """The configured provider; ProviderError when it is none or not in this build."""
    del environ  # the live providers read their keys from it
    if config.provider is ProviderName.FILE and config.path is not None:
        path = Path(config.path)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return FileSource(path)
    if config.provider is ProviderName.NONE:
        raise ProviderError("no grid signal: the budget file's intensity.provider is none")
    raise ProviderError(
        f"intensity provider {config.provider.value} is not available in this build"
    )
