"""Each provider's latest figure against a local server answering with its documented shape
(Electricity Maps' /latest, WattTime's /v3/historical, the GB API's /intensity), its refusals
and malformed bodies, the cache that keeps it only until its interval ends, and the pauser's
read and `co2gate when`'s "starting now" filled from it, against hand-computed figures."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import test_grid_providers as providers
from test_grid_providers import KEY, LB, FakeGrid, Seen, wattime_routes, wt_data

from co2gate import pause
from co2gate.app.when import WhenRequest, around, when
from co2gate.errors import InputError
from co2gate.grid import schedule
from co2gate.grid.carbonintensity_uk import CarbonIntensityUkSource
from co2gate.grid.electricitymaps import ElectricityMapsSource
from co2gate.grid.file import FileSource
from co2gate.grid.http import Client
from co2gate.grid.signal import ForecastUnavailable, Interval, ProviderError, Series, Signal
from co2gate.grid.watttime import WattTimeSource

grid = providers.grid  # the FakeGrid fixture: a provider on 127.0.0.1

UTC = timezone.utc
H = timedelta(hours=1)
M = timedelta(minutes=1)
T0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
NOW = T0 + 3 * H + 20 * M  # 13:20
EM_LATEST = "/v3/carbon-intensity/latest"


def at(grid: FakeGrid, name: str, now: datetime = NOW, cache: Path | None = None) -> Client:
    return providers.client(grid, name, now=now, cache=cache)


def em_at(grid: FakeGrid, now: datetime = NOW, cache: Path | None = None) -> ElectricityMapsSource:
    return ElectricityMapsSource("DE", KEY, at(grid, "electricitymaps DE", now, cache))


def wt_at(grid: FakeGrid, signal: Signal = Signal.AVERAGE, now: datetime = NOW) -> WattTimeSource:
    client = at(grid, "watttime CAISO_NORTH", now)
    return WattTimeSource("CAISO_NORTH", "wt-user", "wt-Pass-word-55", client, signal)


def gb_at(
    grid: FakeGrid, region: int | None = None, now: datetime = NOW, cache: Path | None = None
) -> CarbonIntensityUkSource:
    name = "carbonintensity-uk " + ("national" if region is None else f"region {region}")
    return CarbonIntensityUkSource(region, at(grid, name, now, cache))


def em_latest(g: Any = 302, start: datetime = T0 + 3 * H, **more: Any) -> dict[str, Any]:
    """Electricity Maps v3 /carbon-intensity/latest as documented."""
    return {
        "zone": "DE",
        "carbonIntensity": g,
        "datetime": start.isoformat().replace("+00:00", ".000Z"),
        "updatedAt": "2026-05-01T13:12:44.093Z",
        "createdAt": "2026-04-28T13:14:03.553Z",
        "emissionFactorType": "lifecycle",
        "isEstimated": True,
        "estimationMethod": "TIME_SLICER_AVERAGE",
        **more,
    }


def gb_now(forecast: Any, actual: Any, start: datetime = T0 + 3 * H) -> dict[str, Any]:
    """The GB API's /intensity: the current half-hour, national."""
    return {
        "data": [
            {
                "from": start.strftime("%Y-%m-%dT%H:%MZ"),
                "to": (start + 30 * M).strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"},
            }
        ]
    }


# ---------------------------------------------------------------- the documented shapes


def test_electricitymaps_latest_is_the_hour_starting_at_its_datetime(grid: FakeGrid) -> None:
    grid.routes[EM_LATEST] = [(200, em_latest(302), {})]
    assert em_at(grid).latest() == Interval(T0 + 3 * H, T0 + 4 * H, 302.0)
    (seen,) = grid.seen
    assert seen.query == {"zone": "DE"} and seen.headers["auth-token"] == KEY


def test_watttime_latest_is_the_last_historical_point_at_or_before_now(grid: FakeGrid) -> None:
    wattime_routes(grid)

    def historical(request: Seen) -> providers.Answer:
        signal = request.query["signal_type"]
        base = 1000.0 if signal == "co2_aoer" else 1500.0
        # 12:25 .. 13:25 every 5 minutes; 13:25 is after now (13:22), so not yet the latest
        values = [base + i for i in range(13)]
        return 200, wt_data(signal, T0 + 2 * H + 25 * M, values), {}

    grid.routes["/v3/historical"] = historical
    now = NOW + 2 * M
    average = wt_at(grid, Signal.AVERAGE, now).latest()
    # the point at 13:20 is the 12th (index 11): 1011 lb/MWh
    assert (average.start, average.end) == (T0 + 3 * H + 20 * M, T0 + 3 * H + 25 * M)
    assert average.g_per_kwh == pytest.approx(1011 * LB) and average.marginal_g_per_kwh is None
    asked = [s for s in grid.seen if s.path == "/v3/historical"]
    assert asked[0].query == {
        "region": "CAISO_NORTH",
        "signal_type": "co2_aoer",
        "start": "2026-05-01T12:22:00Z",
        "end": "2026-05-01T13:22:00Z",
    }
    marginal = wt_at(grid, Signal.MARGINAL, now).latest()
    assert marginal.marginal_g_per_kwh == pytest.approx(1511 * LB)
    assert marginal.g_per_kwh == pytest.approx(1011 * LB)


@pytest.mark.parametrize(("forecast", "actual", "g"), [(180, 175, 175.0), (180, None, 180.0)])
def test_gb_latest_takes_the_actual_else_the_forecast(
    grid: FakeGrid, forecast: float, actual: float | None, g: float
) -> None:
    grid.routes["/intensity"] = [(200, gb_now(forecast, actual), {})]
    assert gb_at(grid).latest() == Interval(T0 + 3 * H, T0 + 3.5 * H, g)
    assert "auth-token" not in grid.seen[0].headers


def test_gb_regional_latest_reads_the_wrapped_region(grid: FakeGrid) -> None:
    rows = gb_now(150, None)["data"]
    for row in rows:
        del row["intensity"]["actual"]  # regional figures are forecasts only
        row["generationmix"] = [{"fuel": "wind", "perc": 41.2}]
    region = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London", "data": rows}
    grid.routes["/regional/regionid/13"] = [(200, {"data": [region]}, {})]
    assert gb_at(grid, 13).latest() == Interval(T0 + 3 * H, T0 + 3.5 * H, 150.0)
    grid.routes["/regional/regionid/13"] = [(200, {"data": [region | {"regionid": 12}]}, {})]
    with pytest.raises(ProviderError, match=r"data\.regionid is not 13"):
        gb_at(grid, 13).latest()


def test_file_latest_is_the_row_holding_now(tmp_path: Path) -> None:
    csv = tmp_path / "grid.csv"
    csv.write_text(
        "timestamp,g_per_kwh,marginal_g_per_kwh\n"
        "2026-05-01T12:00:00Z,300,\n2026-05-01T13:00:00Z,120,410\n2026-05-01T14:00:00Z,90,\n"
    )
    assert FileSource(csv, now=lambda: NOW).latest() == Interval(
        T0 + 3 * H, T0 + 4 * H, 120.0, 410.0
    )
    later = FileSource(csv, now=lambda: NOW + 3 * H)  # the last row (14:00) lasts an hour
    with pytest.raises(
        ProviderError, match=r"^file grid.csv: latest: no row holds 2026-05-01T16:20"
    ):
        later.latest()
    csv.write_text("timestamp,g_per_kwh\n2026-05-01T13:00:00,120\n")
    with pytest.raises(InputError, match="has no timezone"):
        FileSource(csv, now=lambda: NOW).latest()


# ---------------------------------------------------------------- refusals, on every provider


def em_route(grid: FakeGrid) -> str:
    return EM_LATEST


def wt_route(grid: FakeGrid) -> str:
    wattime_routes(grid)
    return "/v3/historical"


def gb_route(grid: FakeGrid) -> str:
    return "/intensity"


def _em(grid: FakeGrid) -> Any:
    return em_at(grid)


def _wt(grid: FakeGrid) -> Any:
    return wt_at(grid)


def _gb(grid: FakeGrid) -> Any:
    return gb_at(grid)


PROVIDERS = {
    "electricitymaps": (em_route, _em, "electricitymaps DE: latest", em_latest(302)),
    "watttime": (
        wt_route,
        _wt,
        "watttime CAISO_NORTH: latest co2_aoer",
        wt_data("co2_aoer", T0 + 3 * H, [1000.0]),
    ),
    "carbonintensity-uk": (gb_route, _gb, "carbonintensity-uk national: latest", gb_now(1, 2)),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_key_on_latest_is_one_line_naming_the_provider(
    grid: FakeGrid, provider: str
) -> None:
    route, source, label, _ = PROVIDERS[provider]
    grid.routes[route(grid)] = [(401, {"error": f"bad token {KEY}"}, {})]
    with pytest.raises(ProviderError) as raised:
        source(grid).latest()
    assert str(raised.value) == f"{label}: key refused (HTTP 401)"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_429_on_latest_is_retried_once_after_its_retry_after(
    grid: FakeGrid, provider: str
) -> None:
    route, source, label, body = PROVIDERS[provider]
    path = route(grid)
    grid.routes[path] = [(429, {}, {"Retry-After": "2"}), (200, body, {})]
    opened = source(grid)
    waited: list[float] = []
    opened._client.sleep = waited.append
    assert opened.latest().start == T0 + 3 * H
    assert waited == [2.0] and [s.path for s in grid.seen if s.path == path] == [path, path]
    grid.routes[path] = [(429, {}, {"Retry-After": "600"})]
    with pytest.raises(
        ProviderError, match=rf"^{label}: rate limited \(HTTP 429, retry after 600 s\)"
    ):
        source(grid).latest()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_latest_slower_than_the_timeout_is_given_up(grid: FakeGrid, provider: str) -> None:
    route, source, _, body = PROVIDERS[provider]
    grid.routes[route(grid)] = [(200, body, {})]
    grid.delay_s = 1.5
    opened = source(grid)
    opened._client.timeout_s = 0.3
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"no answer within 0.3 s"):
        opened.latest()
    assert time.monotonic() - started < 1.4


# ---------------------------------------------------------------- malformed bodies

BAD_FIGURES = [
    ("NaN", "is not a number"),  # a NaN-like string
    ("lots", "is not a number"),
    (True, "is not a number"),
    (-5, "is outside 0"),
    (1e9, "is outside 0"),
]


@pytest.mark.parametrize(("value", "message"), BAD_FIGURES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_latest_figure_is_refused(
    grid: FakeGrid, provider: str, value: Any, message: str
) -> None:
    route, source, _, _ = PROVIDERS[provider]
    path = route(grid)
    if provider == "electricitymaps":
        body: Any = em_latest(value)
    elif provider == "watttime":
        body = wt_data("co2_aoer", T0 + 3 * H, [value])
        if isinstance(value, float) and value > 1:
            body["data"][0]["value"] = value / LB  # huge in g/kWh, after the unit's factor
    else:
        body = gb_now(100, value)
    grid.routes[path] = [(200, body, {})]
    with pytest.raises(ProviderError, match=message) as raised:
        source(grid).latest()
    text = str(raised.value)
    assert "malformed answer" in text and "\n" not in text


@pytest.mark.parametrize(
    ("provider", "body", "message"),
    [
        ("electricitymaps", b"<html>502</html>", "latest: the answer is not JSON"),
        ("electricitymaps", b"[1]", "the answer is not an object"),
        ("electricitymaps", b'{"zone": "DE", "carbonIntensity": NaN, '
         b'"datetime": "2026-05-01T13:00Z"}', "latest.carbonIntensity is not finite"),
        ("electricitymaps", json.dumps(em_latest(zone="FR")).encode(), "zone 'FR' is not 'DE'"),
        ("electricitymaps", json.dumps(em_latest(None)).encode(), "latest: the answer holds no"),
        ("electricitymaps", json.dumps({"zone": "DE", "datetime": "2026-05-01T13:00Z"}).encode(),
         "latest: the answer holds no figure"),
        ("electricitymaps", json.dumps({"zone": "DE", "carbonIntensity": 3}).encode(),
         "latest.datetime is not a timestamp"),
        ("electricitymaps", json.dumps(em_latest() | {"datetime": "2026-05-01T13:00:00"}).encode(),
         "latest.datetime '2026-05-01T13:00:00' has no timezone"),
        ("electricitymaps", json.dumps(em_latest() | {"datetime": "now"}).encode(),
         "is not ISO 8601"),
        ("watttime", b'{"meta": {"signal_type": "co2_aoer"}}', "data is not a list"),
        ("watttime", json.dumps(wt_data("co2_aoer", T0, [])).encode(),
         "latest: no point in the hour before now"),
        ("watttime", json.dumps(wt_data("co2_aoer", T0 + 4 * H, [1.0])).encode(),
         "latest: no point in the hour before now"),  # only a point after now
        ("watttime", json.dumps(wt_data("co2_aoer", T0, [1.0], units="percentile")).encode(),
         r"meta\.units 'percentile' is not a known unit"),  # what signal-index answers
        ("watttime", json.dumps({"data": [{"point_time": "2026-05-01T13:00:00", "value": 1}],
                                 "meta": {}}).encode(), "has no timezone"),
        ("watttime", json.dumps({"data": [{"point_time": "2026-05-01T13:00Z"}]}).encode(),
         r"data\[0\].value is not a number"),
        ("carbonintensity-uk", json.dumps({"data": []}).encode(), "latest: the answer holds no"),
        ("carbonintensity-uk", json.dumps(gb_now(None, None)).encode(), "the answer holds no"),
        ("carbonintensity-uk", json.dumps({"data": [{"from": "2026-05-01T13:00",
         "to": "2026-05-01T13:30Z", "intensity": {"forecast": 1}}]}).encode(), "has no timezone"),
        ("carbonintensity-uk", json.dumps({"data": [{"from": "2026-05-01T13:00Z",
         "to": "2026-05-01T13:30Z"}]}).encode(), r"data\[0\].intensity is not an object"),
        ("carbonintensity-uk", json.dumps({"data": [{"from": "2026-05-01T13:30Z",
         "to": "2026-05-01T13:00Z", "intensity": {"forecast": 1}}]}).encode(),
         "must end after it starts"),
    ],
)  # fmt: skip
def test_a_malformed_latest_is_one_line_naming_the_provider_and_the_fault(
    grid: FakeGrid, provider: str, body: bytes, message: str
) -> None:
    route, source, label, _ = PROVIDERS[provider]
    grid.routes[route(grid)] = [(200, body, {})]
    with pytest.raises(ProviderError, match=message) as raised:
        source(grid).latest()
    text = str(raised.value)
    assert (
        text.startswith(label.split(": ")[0] + ": ") and "\n" not in text and "<html>" not in text
    )


# ---------------------------------------------------------------- the cache: to the interval's end


def test_latest_is_kept_until_its_interval_ends_then_asked_again(
    grid: FakeGrid, tmp_path: Path
) -> None:
    grid.routes[EM_LATEST] = [(200, em_latest(302), {}), (200, em_latest(250, T0 + 4 * H), {})]
    cache = tmp_path / "cache"
    assert em_at(grid, NOW, cache).latest().g_per_kwh == 302.0
    assert em_at(grid, T0 + 3 * H + 59 * M, cache).latest().g_per_kwh == 302.0  # 13:59: kept
    assert len(grid.seen) == 1
    assert em_at(grid, T0 + 4 * H, cache).latest() == Interval(T0 + 4 * H, T0 + 5 * H, 250.0)
    assert len(grid.seen) == 2  # 14:00: the interval is over, asked again
    assert KEY not in "".join(p.read_text() for p in cache.iterdir())


def test_a_half_hour_latest_is_not_kept_for_the_clock_hour(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes["/intensity"] = [
        (200, gb_now(180, 175), {}),
        (200, gb_now(90, None, NOW + 10 * M), {}),
    ]
    assert gb_at(grid, now=NOW, cache=tmp_path).latest().g_per_kwh == 175.0
    assert gb_at(grid, now=NOW + 9 * M, cache=tmp_path).latest().g_per_kwh == 175.0  # 13:29
    assert gb_at(grid, now=NOW + 10 * M, cache=tmp_path).latest().g_per_kwh == 90.0  # 13:30
    assert len(grid.seen) == 2


def test_a_latest_already_over_when_fetched_is_kept_five_minutes(
    grid: FakeGrid, tmp_path: Path
) -> None:
    grid.routes[EM_LATEST] = [(200, em_latest(200, T0 + 2 * H), {})]  # 12:00-13:00, at 13:20
    for minutes in (0, 4):
        assert em_at(grid, NOW + minutes * M, tmp_path).latest().end == T0 + 3 * H
    assert len(grid.seen) == 1
    em_at(grid, NOW + 5 * M, tmp_path).latest()
    assert len(grid.seen) == 2


def test_a_tampered_or_foreign_kept_answer_is_asked_again(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes[EM_LATEST] = [(200, em_latest(302), {})]
    em_at(grid, NOW, tmp_path).latest()
    (kept,) = tmp_path.glob("latest-*.json")
    for bad in (
        json.loads(kept.read_text()) | {"g_per_kwh": -5},
        json.loads(kept.read_text()) | {"g_per_kwh": "NaN"},
        json.loads(kept.read_text()) | {"fetched": "2026-05-01T13:30:00+00:00"},  # from the future
        json.loads(kept.read_text()) | {"start": "2026-05-01T13:00:00"},  # naive
        [1, 2],
    ):
        kept.write_text(json.dumps(bad))
        assert em_at(grid, NOW + M, tmp_path).latest().g_per_kwh == 302.0
    assert len(grid.seen) == 6
    other = ElectricityMapsSource("FR", KEY, at(grid, "electricitymaps FR", NOW, tmp_path))
    grid.routes[EM_LATEST] = [(200, em_latest(55) | {"zone": "FR"}, {})]
    assert other.latest().g_per_kwh == 55.0  # one zone's kept answer never answers another


def test_a_refused_latest_is_not_kept(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes[EM_LATEST] = [(401, {}, {}), (200, em_latest(302), {})]
    with pytest.raises(ProviderError):
        em_at(grid, NOW, tmp_path).latest()
    assert em_at(grid, NOW, tmp_path).latest().g_per_kwh == 302.0


# ---------------------------------------------------------------- the pauser's read


def em_history_to_13() -> dict[str, Any]:
    """Measured 10:00-13:00: 300, 250, 200 (the 13:00 hour not published yet)."""
    return providers.em_history(300, 250, 200)


def test_the_pauser_reads_the_latest_where_history_stops_before_now(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history_to_13(), {})]
    grid.routes[EM_LATEST] = [(200, em_latest(120), {})]
    grid.routes["/v3/carbon-intensity/forecast"] = [(403, {}, {})]  # a plan without forecasts
    series = around(em_at(grid))(NOW)
    assert [(iv.start.hour, iv.end.hour, iv.g_per_kwh) for iv in series.intervals] == [
        (11, 12, 250.0),
        (12, 13, 200.0),
        (13, 14, 120.0),
    ]
    # at 13:20 the intensity is the latest 120, not the 12:00 hour's 200 that stood in before
    assert pause.current(series, NOW) == 120.0
    assert not schedule.should_pause(pause.current(series, NOW), 150.0, 3600.0)
    assert schedule.should_pause(200.0, 150.0, 3600.0)  # what the stale hour would have done


def test_the_pausers_read_joins_history_latest_and_forecast(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history_to_13(), {})]
    grid.routes[EM_LATEST] = [(200, em_latest(120), {})]
    forecast = [{"carbonIntensity": g, "datetime": (T0 + (3 + i) * H).isoformat()}
                for i, g in enumerate([400, 90, 90])]  # fmt: skip
    grid.routes["/v3/carbon-intensity/forecast"] = [(200, {"zone": "DE", "forecast": forecast}, {})]
    series = around(em_at(grid))(NOW)
    # the forecast's 13:00 hour (400) yields to the latest figure (120); its 14:00 hour follows
    assert [(iv.start.hour, iv.g_per_kwh) for iv in series.intervals][-3:] == [
        (13, 120.0),
        (14, 90.0),
        (15, 90.0),
    ]
    # 13:20-14:20: 40 min at 120 and 20 min at 90 = (4800 + 1800) / 60 = 110
    assert schedule.mean_intensity(series, NOW, NOW + H) == pytest.approx(110.0)


def test_the_pauser_asks_no_latest_when_history_covers_now(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [
        (200, providers.em_history(300, 250, 200, 180), {})
    ]
    grid.routes["/v3/carbon-intensity/forecast"] = [(403, {}, {})]
    series = around(em_at(grid))(NOW)
    assert pause.current(series, NOW) == 180.0
    assert EM_LATEST not in [s.path for s in grid.seen]


def test_the_pauser_goes_on_without_a_latest_it_cannot_get(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history_to_13(), {})]
    grid.routes[EM_LATEST] = [(401, {}, {})]
    grid.routes["/v3/carbon-intensity/forecast"] = [(403, {}, {})]
    series = around(em_at(grid))(NOW)
    assert series.end == T0 + 3 * H
    assert pause.current(series, NOW) == 200.0  # the hour that ended within the hour, as before


class Fixed:
    """A provider answering fixed series (for the cut at history's end)."""

    name = "fixed"

    def __init__(self, past: Series, current: Interval) -> None:
        self.past, self.current = past, current

    def history(self, start: datetime, end: datetime) -> Series:
        return self.past.between(start, end)

    def forecast(self, start: datetime, end: datetime) -> Series:
        raise ForecastUnavailable("none")

    def latest(self) -> Interval:
        return self.current


def test_a_latest_overlapping_history_is_cut_where_history_ends() -> None:
    five = timedelta(minutes=5)
    past = Series(
        tuple(
            Interval(T0 + 3 * H + i * five, T0 + 3 * H + (i + 1) * five, 300.0) for i in range(3)
        ),
        "fixed",
    )  # 13:00-13:15
    series = around(Fixed(past, Interval(T0 + 3 * H, T0 + 4 * H, 120.0)))(NOW)
    assert series.intervals[-1] == Interval(T0 + 3 * H + 15 * M, T0 + 4 * H, 120.0)
    # 13:00-14:00 = 15 min at 300 and 45 at 120: (4500 + 5400) / 60 = 165
    assert schedule.mean_intensity(series, T0 + 3 * H, T0 + 4 * H) == pytest.approx(165.0)
    older = around(Fixed(past, Interval(T0 + 2 * H, T0 + 3 * H, 50.0)))(NOW)
    assert older.intervals == past.intervals  # a latest older than history adds nothing


# ---------------------------------------------------------------- co2gate when: starting now


def when_budget(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "b.yml"
    path.write_text(
        "version: 1\nannual_budget_kg: 10\nallocations:\n  training: 1\n"
        "intensity:\n  provider: electricitymaps\n  zone: DE\n  token_env: EM_KEY\n"
        f"  url: {url}\n"
    )
    return path


def from_14(*figures: float) -> dict[str, Any]:
    points = [{"carbonIntensity": g, "datetime": (T0 + (4 + i) * H).isoformat()}
              for i, g in enumerate(figures)]  # fmt: skip
    return {"zone": "DE", "forecast": points}


def ask(tmp_path: Path, url: str, as_json: bool = True) -> Any:
    request = WhenRequest(3 * H / 3, 3 * H, when_budget(tmp_path, url), as_json=as_json)
    out = when(request, {"EM_KEY": KEY}, now=NOW)
    return json.loads(out.stdout) if as_json else out.stdout


def test_when_fills_starting_now_from_the_latest_where_the_forecast_starts_later(
    grid: FakeGrid, tmp_path: Path
) -> None:
    grid.routes["/v3/carbon-intensity/forecast"] = [(200, from_14(100, 300, 300, 300), {})]
    grid.routes[EM_LATEST] = [(200, em_latest(400), {})]
    doc = ask(tmp_path, grid.url)
    assert doc["best"]["start"] == "2026-05-01T14:00+00:00" and doc["best"]["g_per_kwh"] == 100.0
    # now 13:20 for 1 h: 40 min at the latest 400, 20 min at the forecast's 100: 300
    assert doc["start_now"]["g_per_kwh"] == pytest.approx(300.0)
    assert doc["start_now"]["from"] == "latest"
    assert doc["saving"]["fraction"] == pytest.approx(1 - 100 / 300)
    text = ask(tmp_path, grid.url, as_json=False)
    assert "starting now: 300 gCO2e/kWh (from the latest figure) (66.7% less)" in text


def test_when_without_a_latest_leaves_starting_now_unknown(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes["/v3/carbon-intensity/forecast"] = [(200, from_14(100, 300, 300, 300), {})]
    grid.routes[EM_LATEST] = [(429, {}, {"Retry-After": "3600"})]
    doc = ask(tmp_path, grid.url)
    assert doc["best"]["g_per_kwh"] == 100.0
    assert doc["start_now"]["g_per_kwh"] is None and doc["start_now"]["from"] is None
    assert doc["saving"]["fraction"] is None
    grid.routes[EM_LATEST] = [(200, em_latest(400, T0 + 2 * H), {})]  # 12:00-13:00: not now
    assert ask(tmp_path, grid.url)["start_now"]["g_per_kwh"] is None


def test_when_asks_no_latest_when_the_forecast_covers_now(grid: FakeGrid, tmp_path: Path) -> None:
    forecast = from_14(100, 300)
    forecast["forecast"].insert(0, {"carbonIntensity": 250, "datetime": (T0 + 3 * H).isoformat()})
    grid.routes["/v3/carbon-intensity/forecast"] = [(200, forecast, {})]
    doc = ask(tmp_path, grid.url)
    # 40 min at 250 and 20 at 100: (10000 + 2000) / 60 = 200
    assert doc["start_now"]["g_per_kwh"] == pytest.approx(200.0)
    assert doc["start_now"]["from"] == "forecast"
    assert EM_LATEST not in [s.path for s in grid.seen]
