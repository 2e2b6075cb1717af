"""The small factory: the budget file's `intensity:` section -> one GridSource.

Keys come from the environment variables the section names (never from the file), are
registered for masking before anything can print them, and are only ever sent to the
provider's own host in a header. Opening a source sends nothing; each call may.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from co2gate import tokens
from co2gate.grid.http import Client, cache_dir_from, timeout_from
from co2gate.grid.signal import GridSource, IntensityConfig, ProviderError, ProviderName

__all__ = ["open_source"]


def _secret(environ: Mapping[str, str], variable: str | None, what: str, name: str) -> str:
    value = environ.get(variable or "", "")
    tokens.register(value)
    if not variable or not value.strip():
        raise ProviderError(f"{name}: {what} variable {variable or '(none)'} is not set or empty")
    return value.strip()


def open_source(
    config: IntensityConfig,
    environ: Mapping[str, str],
    *,
    base_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> GridSource:
    """The provider config names. base_dir resolves a relative `path` (provider file);
    cache_dir (default: cache_dir_from(environ)) keeps answers for the hour. Raises
    ProviderError when a key is missing, ValueError for provider `none` (nothing to open)."""
    provider = config.provider
    zone = (config.zone or "").strip()
    name = f"{provider.value} {zone}".strip()
    if provider is ProviderName.NONE:
        raise ValueError("provider none: codecarbon's data, no source to open")
    if provider is ProviderName.FILE:
        from co2gate.grid.file import FileSource

        path = Path(config.path or "")
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return FileSource(path)

    def client(default_url: str, label: str) -> Client:
        return Client(
            name=label,
            base_url=config.url or default_url,
            timeout_s=timeout_from(environ),
            cache_dir=cache_dir if cache_dir is not None else cache_dir_from(environ),
        )

    if provider is ProviderName.ELECTRICITYMAPS:
        from co2gate.grid import electricitymaps

        key = _secret(environ, config.token_env, "token_env", name)
        return electricitymaps.ElectricityMapsSource(
            zone, key, client(electricitymaps.DEFAULT_URL, name)
        )
    if provider is ProviderName.WATTTIME:
        from co2gate.grid import watttime

        user = _secret(environ, config.user_env, "user_env", name)
        password = _secret(environ, config.password_env, "password_env", name)
        return watttime.WattTimeSource(
            zone, user, password, client(watttime.DEFAULT_URL, name), config.signal
        )
    if provider is ProviderName.CARBONINTENSITY_UK:
        from co2gate.grid import carbonintensity_uk as gb

        try:
            region = gb.region_of(config.zone)
        except ValueError as e:
            raise ProviderError(f"{provider.value}: {e}") from None
        label = provider.value + (" national" if region is None else f" region {region}")
        return gb.CarbonIntensityUkSource(region, client(gb.DEFAULT_URL, label))
    _never(provider)


def _never(value: NoReturn) -> NoReturn:
    """typing.assert_never (Python 3.11): mypy proves the dispatch covers every provider."""
    raise AssertionError(f"unhandled: {value!r}")
