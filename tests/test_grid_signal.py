"""The grid signal's records, the `file` provider and the budget file's `intensity:` section."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from co2gate import budget
from co2gate.errors import InputError
from co2gate.grid import file
from co2gate.grid.signal import Interval, ProviderName, Series, Signal

UTC = timezone.utc
T0 = datetime(2026, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_an_interval_refuses_bad_figures() -> None:
    for bad in (math.nan, math.inf, -1.0, 1e9):
        with pytest.raises(ValueError, match="g_per_kwh"):
            Interval(T0, T0 + HOUR, bad)
    with pytest.raises(ValueError, match="timezone"):
        Interval(datetime(2026, 5, 1), datetime(2026, 5, 1, 1), 100.0)
    with pytest.raises(ValueError, match="end after"):
        Interval(T0, T0, 100.0)


def test_a_series_finds_the_interval_holding_a_time_and_refuses_overlaps() -> None:
    series = Series(
        (Interval(T0, T0 + HOUR, 100.0), Interval(T0 + 2 * HOUR, T0 + 3 * HOUR, 50.0)), "t"
    )
    assert series.at(T0 + HOUR / 2) == series.intervals[0]
    assert series.at(T0 + HOUR * 1.5) is None  # a gap
    assert series.at(T0 + 2 * HOUR).g_per_kwh == 50.0  # type: ignore[union-attr]
    assert series.at(T0 + 3 * HOUR) is None
    assert [iv.g_per_kwh for iv in series.between(T0 + HOUR / 2, T0 + 2.5 * HOUR).intervals] == [
        100,
        50,
    ]
    with pytest.raises(ValueError, match="overlap"):
        Series((Interval(T0, T0 + 2 * HOUR, 1.0), Interval(T0 + HOUR, T0 + 3 * HOUR, 1.0)), "t")


def test_the_file_provider_reads_rows_as_intervals_up_to_the_next(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text(
        "\ufefftimestamp,g_per_kwh,marginal_g_per_kwh\n"
        "2026-05-01T01:00:00Z,120,\n"
        "2026-05-01T00:00:00+00:00,200.5,410\n"  # out of order: sorted
    )
    source = file.FileSource(path)
    series = source.history(T0, T0 + 3 * HOUR)
    assert [(iv.start, iv.end, iv.g_per_kwh, iv.marginal_g_per_kwh) for iv in series.intervals] == [
        (T0, T0 + HOUR, 200.5, 410.0),
        (T0 + HOUR, T0 + 2 * HOUR, 120.0, None),  # the last row lasts as long as the one before
    ]
    assert source.forecast(T0, T0 + HOUR).forecast
    assert series.source == f"file {path}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,g\n", "needs the columns timestamp and g_per_kwh"),
        ("timestamp,g_per_kwh\nyesterday,1\n", "line 2: timestamp 'yesterday' is not ISO 8601"),
        ("timestamp,g_per_kwh\n2026-05-01T00:00:00,1\n", "line 2: timestamp .* has no timezone"),
        (
            "timestamp,g_per_kwh\n2026-05-01T00:00:00Z,lots\n",
            "line 2: g_per_kwh 'lots' is not a number",
        ),
        ("timestamp,g_per_kwh\n2026-05-01T00:00:00Z,nan\n", "g_per_kwh must be a finite number"),
        ("timestamp,g_per_kwh\n2026-05-01T00:00:00Z,\n", "line 2: g_per_kwh is empty"),
    ],
)
def test_the_file_provider_names_the_file_and_line_of_a_bad_row(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        file.parse(text, "grid.csv")


BASE = "version: 1\nannual_budget_kg: 100\nallocations: {training: 0.5, inference: 0.5}\n"


def test_the_intensity_section_defaults_to_no_provider() -> None:
    assert budget.parse(BASE, "b.yml").intensity.provider is ProviderName.NONE


def test_the_intensity_section_reads_a_provider() -> None:
    config = budget.parse(
        BASE + "intensity: {provider: watttime, zone: CAISO_NORTH, signal: marginal,"
        " user_env: WT_USER, password_env: WT_PASSWORD, url: 'http://127.0.0.1:9/v3'}\n",
        "b.yml",
    ).intensity
    assert (config.provider, config.zone, config.signal) == (
        ProviderName.WATTTIME,
        "CAISO_NORTH",
        Signal.MARGINAL,
    )
    assert (config.user_env, config.password_env, config.url) == (
        "WT_USER",
        "WT_PASSWORD",
        "http://127.0.0.1:9/v3",
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{provider: electricitymap}", "intensity.provider: must be one of"),
        ("{provider: electricitymaps, token_env: EM}", "intensity.zone: missing"),
        ("{provider: electricitymaps, zone: DE}", "intensity.token_env: missing"),
        ("{provider: file}", "intensity.path: missing"),
        ("{zone: DE}", "intensity.zone: needs intensity.provider"),
        ("{provider: electricitymaps, zone: DE, token_env: GITHUB_TOKEN}", "never sends"),
        ("{provider: electricitymaps, zone: DE, token_env: 'A B'}", "not an environment variable"),
        (
            "{provider: carbonintensity-uk, url: 'file:///etc/passwd'}",
            "intensity.url: must be an http",
        ),
        ("{provider: carbonintensity-uk, signal: loud}", "intensity.signal: must be one of"),
        ("{provider: carbonintensity-uk, token: x}", "unknown key 'token'"),
    ],
)
def test_a_bad_intensity_section_names_its_key(section: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        budget.parse(BASE + f"intensity: {section}\n", "b.yml")
    assert "b.yml" in str(e.value)


def test_a_fixed_intensity_and_a_provider_cannot_both_apply() -> None:
    text = BASE + "location: {intensity: 50}\nintensity: {provider: carbonintensity-uk}\n"
    with pytest.raises(InputError, match=r"location\.intensity is set too"):
        budget.parse(text, "b.yml")
