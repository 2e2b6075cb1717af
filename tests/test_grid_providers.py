"""The live intensity providers against a local server answering with each provider's
documented shapes (Electricity Maps v3, WattTime v3, the GB Carbon Intensity API), the
hourly cache, per-interval pricing, and a real `co2gate measure` priced by a provider or
falling back to codecarbon's figure."""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import CliRun
from test_report import doc

from co2gate import report, tokens, units
from co2gate.app.companion import Adopted, priced
from co2gate.app.grid import priced_by_provider, provider_pricing
from co2gate.budget import Budget
from co2gate.grid import pricing
from co2gate.grid.carbonintensity_uk import CarbonIntensityUkSource
from co2gate.grid.electricitymaps import ElectricityMapsSource
from co2gate.grid.http import Client
from co2gate.grid.providers import open_source
from co2gate.grid.signal import (
    ForecastUnavailable,
    IntensityConfig,
    Interval,
    ProviderError,
    ProviderName,
    Series,
    Signal,
)
from co2gate.grid.watttime import WattTimeSource
from co2gate.intensity import Location
from co2gate.model import Measurement, MeasurementError
from co2gate.sci import Embodied

PY = sys.executable
UTC = timezone.utc
HOUR = timedelta(hours=1)
T0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
KEY = "em-Secret-Key-7f3a9c"
LB = 0.45359237

Answer = tuple[int, Any, dict[str, str]]  # status, body (bytes or JSON-able), headers


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeGrid:
    """A provider on 127.0.0.1: `routes[path]` answers (a callable of the request, or a list
    of answers given in turn, the last one repeated); `delay_s` sleeps before answering."""

    routes: dict[str, Any] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    delay_s: float = 0.0
    url: str = ""

    def answer(self, request: Seen) -> Answer:
        route = self.routes.get(request.path)
        if route is None:
            return 404, {"error": "not found"}, {}
        if callable(route):
            result: Answer = route(request)
            return result
        return route.pop(0) if len(route) > 1 else route[0]


@pytest.fixture
def grid() -> Iterator[FakeGrid]:
    fake = FakeGrid()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            request = Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()})
            fake.seen.append(request)
            if fake.delay_s:
                time.sleep(fake.delay_s)
            status, body, headers = fake.answer(request)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def client(
    grid: FakeGrid, name: str, *, now: datetime = T0 + 3 * HOUR, cache: Path | None = None
) -> Client:
    return Client(
        name=name,
        base_url=grid.url,
        timeout_s=2.0,
        cache_dir=cache,
        sleep=lambda s: None,
        now=lambda: now,
    )


def em_point(start: datetime, g: Any) -> dict[str, Any]:
    """One point as Electricity Maps v3 documents it."""
    return {
        "zone": "DE",
        "carbonIntensity": g,
        "datetime": start.isoformat().replace("+00:00", ".000Z"),
        "updatedAt": "2026-05-01T12:51:21.912Z",
        "createdAt": "2026-04-28T12:54:03.553Z",
        "emissionFactorType": "lifecycle",
        "isEstimated": False,
        "estimationMethod": None,
    }


def em_history(*figures: Any) -> dict[str, Any]:
    return {"zone": "DE", "history": [em_point(T0 + i * HOUR, g) for i, g in enumerate(figures)]}


def em(grid: FakeGrid, **kw: Any) -> ElectricityMapsSource:
    return ElectricityMapsSource("DE", KEY, client(grid, "electricitymaps DE", **kw))


# ---------------------------------------------------------------- Electricity Maps


def test_electricitymaps_history_sends_the_key_in_its_header_and_reads_hourly_points(
    grid: FakeGrid,
) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history(300, 250, 200), {})]
    series = em(grid).history(T0 + HOUR / 2, T0 + 2.5 * HOUR)
    assert [(iv.start, iv.end, iv.g_per_kwh) for iv in series.intervals] == [
        (T0, T0 + HOUR, 300.0),
        (T0 + HOUR, T0 + 2 * HOUR, 250.0),
        (T0 + 2 * HOUR, T0 + 3 * HOUR, 200.0),
    ]
    assert series.source == "electricitymaps DE" and not series.forecast
    (seen,) = grid.seen
    assert seen.query == {"zone": "DE"} and seen.headers["auth-token"] == KEY


def test_electricitymaps_asks_past_range_for_a_window_older_than_its_history(
    grid: FakeGrid,
) -> None:
    old = {"zone": "DE", "data": [em_point(T0, 111)]}
    grid.routes["/v3/carbon-intensity/past-range"] = [(200, old, {})]
    series = em(grid, now=T0 + 48 * HOUR).history(T0, T0 + HOUR / 2)
    assert [iv.g_per_kwh for iv in series.intervals] == [111.0]
    assert grid.seen[0].query == {
        "zone": "DE",
        "start": "2026-05-01T10:00Z",
        "end": "2026-05-01T11:00Z",
    }


def test_electricitymaps_forecast_and_its_paid_feature_refusal(grid: FakeGrid) -> None:
    points = [
        {"carbonIntensity": 90 + i, "datetime": (T0 + i * HOUR).isoformat()} for i in range(48)
    ]
    grid.routes["/v3/carbon-intensity/forecast"] = [
        (200, {"zone": "DE", "forecast": points, "updatedAt": "x"}, {}),
        (403, {"error": "Your plan does not include forecasts"}, {}),
    ]
    series = em(grid).forecast(T0, T0 + 2 * HOUR)
    assert series.forecast and [iv.g_per_kwh for iv in series.intervals] == [90.0, 91.0]
    with pytest.raises(ForecastUnavailable, match="paid feature"):
        em(grid).forecast(T0, T0 + 2 * HOUR)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_one_line_naming_the_provider_never_the_key(
    grid: FakeGrid, status: int
) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(status, {"error": f"bad token {KEY}"}, {})]
    with pytest.raises(ProviderError) as raised:
        em(grid).history(T0, T0 + HOUR)
    assert not isinstance(raised.value, ForecastUnavailable)
    assert str(raised.value) == f"electricitymaps DE: history: key refused (HTTP {status})"


def test_a_429_is_retried_once_after_its_retry_after(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [
        (429, {"error": "slow down"}, {"Retry-After": "3"}),
        (200, em_history(120), {}),
    ]
    waited: list[float] = []
    source = em(grid)
    source._client.sleep = waited.append
    assert source.history(T0, T0 + HOUR).intervals[0].g_per_kwh == 120.0
    assert waited == [3.0] and len(grid.seen) == 2


def test_a_429_asking_for_longer_than_the_cap_or_twice_gives_up(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(429, {}, {"Retry-After": "3600"})]
    with pytest.raises(ProviderError, match=r"rate limited \(HTTP 429, retry after 3600 s\)"):
        em(grid).history(T0, T0 + HOUR)
    assert len(grid.seen) == 1
    grid.routes["/v3/carbon-intensity/history"] = [(429, {}, {"Retry-After": "0"})]
    with pytest.raises(ProviderError, match=r"rate limited \(HTTP 429\) twice"):
        em(grid).history(T0, T0 + HOUR)
    assert len(grid.seen) == 3


def test_a_provider_slower_than_the_timeout_is_given_up(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history(120), {})]
    grid.delay_s = 1.5
    source = em(grid)
    source._client.timeout_s = 0.3
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"electricitymaps DE: history: no answer within 0.3 s"):
        source.history(T0, T0 + HOUR)
    assert time.monotonic() - started < 1.4


def test_a_redirect_is_not_followed_so_the_key_stays_with_the_provider(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(302, b"", {"Location": "/elsewhere"})]
    grid.routes["/elsewhere"] = [(200, em_history(1), {})]
    with pytest.raises(ProviderError, match=r"redirected \(HTTP 302\), not followed"):
        em(grid).history(T0, T0 + HOUR)
    assert [s.path for s in grid.seen] == ["/v3/carbon-intensity/history"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "history: the answer is not JSON"),
        (b'{"zone": "DE", "history": {"a": 1}}', "malformed answer: history is not a list"),
        (b"[1, 2]", "malformed answer: the answer is not an object"),
        (b'{"zone": "FR", "history": []}', "malformed answer: zone 'FR' is not 'DE'"),
        (json.dumps(em_history("lots")).encode(), r"history\[0\].carbonIntensity is not a number"),
        (json.dumps(em_history(True)).encode(), r"history\[0\].carbonIntensity is not a number"),
        (json.dumps(em_history(-5)).encode(), "g_per_kwh -5.0 is outside"),
        (json.dumps(em_history(1e9)).encode(), "g_per_kwh 1000000000.0 is outside"),
        (
            b'{"zone": "DE", "history": '
            b'[{"carbonIntensity": NaN, "datetime": "2026-05-01T10:00Z"}]}',
            "is not finite",
        ),
        (
            b'{"zone": "DE", "history": [{"carbonIntensity": 1, "datetime": "yesterday"}]}',
            "is not ISO 8601",
        ),
        (
            b'{"zone": "DE", "history": [{"carbonIntensity": 1, "datetime": "2026-05-01T10:00"}]}',
            "has no timezone",
        ),
    ],
)
def test_a_malformed_answer_is_one_line_naming_the_provider_and_the_fault(
    grid: FakeGrid, body: bytes, message: str
) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, body, {})]
    with pytest.raises(ProviderError, match=message) as raised:
        em(grid).history(T0, T0 + HOUR)
    text = str(raised.value)
    assert text.startswith("electricitymaps DE: ") and "\n" not in text and "<html>" not in text


def test_an_hour_without_a_figure_is_a_gap(grid: FakeGrid) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history(100, None, 300), {})]
    series = em(grid).history(T0, T0 + 3 * HOUR)
    assert [(iv.start, iv.g_per_kwh) for iv in series.intervals] == [
        (T0, 100.0),
        (T0 + 2 * HOUR, 300.0),
    ]


# ---------------------------------------------------------------- WattTime


def wt_data(
    signal: str, start: datetime, values: list[float], units: str = "lbs_co2_per_mwh"
) -> dict[str, Any]:
    step = timedelta(minutes=5)
    return {
        "data": [
            {"point_time": (start + i * step).isoformat(), "value": v, "version": "3.2"}
            for i, v in enumerate(values)
        ],
        "meta": {
            "data_point_period_seconds": 300,
            "region": "CAISO_NORTH",
            "signal_type": signal,
            "units": units,
            "warnings": [],
            "model": {"date": "2023-03-01", "type": "binned_regression"},
        },
    }


def wattime_routes(grid: FakeGrid, token: str = "wt-bearer-Token-91ab") -> None:
    def login(request: Seen) -> Answer:
        expected = "Basic " + base64.b64encode(b"wt-user:wt-Pass-word-55").decode()
        if request.headers.get("authorization") != expected:
            return 401, {"error": "bad credentials"}, {}
        return 200, {"token": token}, {}

    def historical(request: Seen) -> Answer:
        if request.headers.get("authorization") != f"Bearer {token}":
            return 401, {}, {}
        signal = request.query["signal_type"]
        values = [1000.0, 500.0] if signal == "co2_aoer" else [1500.0, 1200.0]
        return 200, wt_data(signal, T0, values), {}

    grid.routes["/login"] = login
    grid.routes["/v3/historical"] = historical


def wt(
    grid: FakeGrid, signal: Signal = Signal.MARGINAL, password: str = "wt-Pass-word-55"
) -> WattTimeSource:
    return WattTimeSource(
        "CAISO_NORTH", "wt-user", password, client(grid, "watttime CAISO_NORTH"), signal
    )


def test_watttime_logs_in_then_reads_average_and_marginal_in_g_per_kwh(grid: FakeGrid) -> None:
    wattime_routes(grid)
    series = wt(grid).history(T0, T0 + timedelta(minutes=10))
    assert [(iv.start, iv.end) for iv in series.intervals] == [
        (T0, T0 + timedelta(minutes=5)),
        (T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)),
    ]
    # 1000 lb/MWh = 453.59237 g/kWh
    assert [iv.g_per_kwh for iv in series.intervals] == pytest.approx([1000 * LB, 500 * LB])
    assert [iv.marginal_g_per_kwh for iv in series.intervals] == pytest.approx(
        [1500 * LB, 1200 * LB]
    )
    assert [s.path for s in grid.seen] == ["/login", "/v3/historical", "/v3/historical"]
    assert {s.query["signal_type"] for s in grid.seen[1:]} == {"co2_aoer", "co2_moer"}
    assert tokens.mask("wt-bearer-Token-91ab") == tokens.MASK  # the session token is a secret too


def test_watttime_average_signal_asks_for_the_average_only(grid: FakeGrid) -> None:
    wattime_routes(grid)
    series = wt(grid, Signal.AVERAGE).history(T0, T0 + timedelta(minutes=5))
    assert series.intervals[0].marginal_g_per_kwh is None
    assert [s.query.get("signal_type") for s in grid.seen] == [None, "co2_aoer"]


def test_watttime_refusals_login_plan_and_forecast(grid: FakeGrid) -> None:
    wattime_routes(grid)
    with pytest.raises(
        ProviderError, match=r"watttime CAISO_NORTH: login: key refused \(HTTP 401\)"
    ):
        wt(grid, password="wrong").history(T0, T0 + HOUR)
    grid.routes["/v3/historical"] = [(403, {"error": "not in your plan"}, {})]
    with pytest.raises(ProviderError, match="historical co2_aoer: a paid feature") as raised:
        wt(grid).history(T0, T0 + HOUR)
    assert not isinstance(raised.value, ForecastUnavailable)
    grid.routes["/v3/forecast"] = [(403, {}, {})]
    with pytest.raises(
        ForecastUnavailable, match="forecast: a paid feature the key's plan does not include"
    ):
        wt(grid).forecast(T0, T0 + HOUR)


def test_watttime_forecast_of_the_marginal_signal(grid: FakeGrid) -> None:
    wattime_routes(grid)
    body = wt_data("co2_moer", T0, [800.0, 900.0, 1000.0])
    body["meta"]["generated_at"] = T0.isoformat()
    grid.routes["/v3/forecast"] = [(200, body, {})]
    series = wt(grid).forecast(T0, T0 + timedelta(minutes=15))
    assert series.forecast
    assert [iv.marginal_g_per_kwh for iv in series.intervals] == pytest.approx(
        [800 * LB, 900 * LB, 1000 * LB]
    )
    assert grid.seen[-1].query == {
        "region": "CAISO_NORTH",
        "signal_type": "co2_moer",
        "horizon_hours": "72",
    }


def test_watttime_unknown_units_are_refused(grid: FakeGrid) -> None:
    wattime_routes(grid)
    grid.routes["/v3/historical"] = [(200, wt_data("co2_aoer", T0, [1.0], units="percentile"), {})]
    with pytest.raises(ProviderError, match=r"meta\.units 'percentile' is not a known unit"):
        wt(grid, Signal.AVERAGE).history(T0, T0 + HOUR)


# ---------------------------------------------------------------- GB Carbon Intensity API


def gb_row(start: datetime, forecast: float | None, actual: float | None) -> dict[str, Any]:
    fmt = "%Y-%m-%dT%H:%MZ"
    return {
        "from": start.strftime(fmt),
        "to": (start + timedelta(minutes=30)).strftime(fmt),
        "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"},
    }


def test_gb_history_takes_the_actual_where_published_else_the_forecast(grid: FakeGrid) -> None:
    half = timedelta(minutes=30)
    rows = [gb_row(T0, 200, 190), gb_row(T0 + half, 180, None)]
    grid.routes["/intensity/2026-05-01T10:00Z/2026-05-01T11:00Z"] = [(200, {"data": rows}, {})]
    source = CarbonIntensityUkSource(None, client(grid, "carbonintensity-uk national"))
    series = source.history(T0 + timedelta(minutes=5), T0 + timedelta(minutes=50))
    assert [(iv.start, iv.end, iv.g_per_kwh) for iv in series.intervals] == [
        (T0, T0 + half, 190.0),
        (T0 + half, T0 + HOUR, 180.0),
    ]
    assert "auth-token" not in grid.seen[0].headers and "authorization" not in grid.seen[0].headers


@pytest.mark.parametrize("wrapped", [False, True])
def test_gb_regional_forecast_in_either_shape(grid: FakeGrid, wrapped: bool) -> None:
    rows = [gb_row(T0 + i * timedelta(minutes=30), 100 + i, None) for i in range(96)]
    region: Any = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London", "data": rows}
    grid.routes["/regional/intensity/2026-05-01T10:00Z/fw48h/regionid/13"] = [
        (200, {"data": [region] if wrapped else region}, {})
    ]
    source = CarbonIntensityUkSource(13, client(grid, "carbonintensity-uk region 13", now=T0))
    series = source.forecast(T0, T0 + HOUR)
    assert series.forecast and [iv.g_per_kwh for iv in series.intervals] == [100.0, 101.0]


def test_gb_zone_must_be_national_or_a_region_id() -> None:
    config = IntensityConfig(provider=ProviderName.CARBONINTENSITY_UK, zone="Narnia")
    with pytest.raises(ProviderError, match="carbonintensity-uk: zone 'Narnia' is not GB"):
        open_source(config, {})
    assert open_source(IntensityConfig(provider=ProviderName.CARBONINTENSITY_UK), {}).name == (
        "carbonintensity-uk national"
    )


# ---------------------------------------------------------------- opening, keys, the cache


def test_open_source_reads_keys_from_the_named_variables_and_masks_them(tmp_path: Path) -> None:
    config = IntensityConfig(ProviderName.ELECTRICITYMAPS, zone="DE", token_env="EM_KEY")
    with pytest.raises(ProviderError, match="token_env variable EM_KEY is not set"):
        open_source(config, {})
    source = open_source(config, {"EM_KEY": " Opened-Key-123 \n"}, cache_dir=tmp_path)
    assert source.name == "electricitymaps DE"
    assert tokens.mask("key=Opened-Key-123.") == "key=***."
    csv = tmp_path / "grid.csv"
    csv.write_text("timestamp,g_per_kwh\n2026-05-01T10:00:00Z,42\n")
    config = IntensityConfig(ProviderName.FILE, path="grid.csv")
    series = open_source(config, {}, base_dir=tmp_path).history(T0, T0 + HOUR)
    assert [iv.g_per_kwh for iv in series.intervals] == [42.0]


def test_two_runs_in_the_same_hour_make_one_request(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(200, em_history(300, 250), {})]
    cache = tmp_path / "cache"
    first = em(grid, now=T0 + timedelta(minutes=70), cache=cache).history(T0, T0 + HOUR)
    second = em(grid, now=T0 + timedelta(minutes=115), cache=cache).history(T0, T0 + HOUR)
    assert first == second and len(grid.seen) == 1
    assert KEY not in "".join(p.read_text() for p in cache.iterdir())  # bodies only
    em(grid, now=T0 + timedelta(minutes=125), cache=cache).history(T0, T0 + HOUR)
    assert len(grid.seen) == 2  # the next hour asks again
    assert len(list(cache.glob("*.json"))) == 1  # and the last hour's answer is pruned


def test_a_refusal_is_not_cached(grid: FakeGrid, tmp_path: Path) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(401, {}, {}), (200, em_history(300), {})]
    with pytest.raises(ProviderError):
        em(grid, cache=tmp_path).history(T0, T0 + HOUR)
    assert em(grid, cache=tmp_path).history(T0, T0 + HOUR).intervals[0].g_per_kwh == 300.0


# ---------------------------------------------------------------- pricing per interval


def two_hours(
    first: float, second: float, marginal: tuple[float | None, float | None] = (None, None)
) -> Series:
    return Series(
        (
            Interval(T0, T0 + HOUR, first, marginal[0]),
            Interval(T0 + HOUR, T0 + 2 * HOUR, second, marginal[1]),
        ),
        "t",
    )


def test_even_energy_over_two_hours_at_100_and_300_g_is_0_4_kg() -> None:
    sample = pricing.EnergySample(T0, T0 + 2 * HOUR, 2.0)  # 1 kWh per hour
    priced = pricing.price(two_hours(100, 300), [sample])
    assert priced.g_per_kwh == pytest.approx(200.0)
    assert units.emissions_kg(2.0, 1.0, priced.g_per_kwh) == pytest.approx(0.4)
    assert priced.method is pricing.Method.HOURLY
    assert [iv.energy_kwh for iv in priced.intervals] == pytest.approx([1.0, 1.0])


def test_uneven_energy_is_priced_per_interval_not_at_the_mean_intensity() -> None:
    samples = [
        pricing.EnergySample(T0, T0 + HOUR, 3.0),
        pricing.EnergySample(T0 + HOUR, T0 + 2 * HOUR, 1.0),
    ]
    priced = pricing.price(two_hours(100, 300), samples, pricing.EnergySpread.SAMPLED)
    kg = units.emissions_kg(4.0, 1.0, priced.g_per_kwh)
    assert kg == pytest.approx(3 * 0.1 + 1 * 0.3)  # 0.6 kg
    assert kg != pytest.approx(4.0 * 200 / 1000)  # the mean of the intensities: 0.8 kg


def test_the_guards_readings_lay_the_energy_over_time() -> None:
    end = T0 + 2 * HOUR
    readings = [(T0 + HOUR, 3.0), (end - timedelta(seconds=1), 4.0)]  # kWh read so far
    samples, spread = pricing.samples_from_readings(T0, end, 4.0, readings)
    assert spread is pricing.EnergySpread.SAMPLED
    assert sum(s.energy_kwh for s in samples) == pytest.approx(4.0)
    priced = pricing.price(two_hours(100, 300), samples, spread)
    assert units.emissions_kg(4.0, 1.0, priced.g_per_kwh) == pytest.approx(0.6, rel=1e-3)
    # a source ready late reads less than the run's extrapolated figure: shares are kept
    samples, _ = pricing.samples_from_readings(T0, end, 8.0, readings)
    assert [s.energy_kwh for s in samples[:2]] == pytest.approx([6.0, 2.0], rel=1e-3)


@pytest.mark.parametrize(
    "readings",
    [[], [(T0 + HOUR, 0.0)], [(T0 - HOUR, 1.0), (T0 + 3 * HOUR, 2.0)]],
    ids=["none", "never-moved", "outside-the-run"],
)
def test_without_readings_that_moved_the_energy_is_spread_evenly(
    readings: list[tuple[datetime, float]],
) -> None:
    samples, spread = pricing.samples_from_readings(T0, T0 + 2 * HOUR, 2.0, readings)
    assert spread is pricing.EnergySpread.EVEN
    assert samples == [pricing.EnergySample(T0, T0 + 2 * HOUR, 2.0)]


def test_the_guard_keeps_its_readings_for_pricing() -> None:
    from co2gate.guard import Guard, Watch
    from co2gate.intensity import Intensity

    said: list[str] = []
    guard = Guard(
        Watch(heartbeat_s=0.05), pue=1.0, price=lambda: Intensity(100.0, "t"), say=said.append
    )
    energy = iter(range(1, 10_000))
    started = datetime.now(UTC)
    guard.begin(time.monotonic(), started, lambda: float(next(energy)), lambda sig: None)
    time.sleep(0.4)
    guard.end()
    assert len(guard.readings) >= 2
    times = [t for t, _ in guard.readings]
    assert times == sorted(times) and times[0] > started
    assert [e for _, e in guard.readings] == [float(i + 1) for i in range(len(guard.readings))]


def test_a_run_inside_one_interval_is_provider_latest() -> None:
    sample = pricing.EnergySample(T0 + timedelta(minutes=5), T0 + timedelta(minutes=9), 0.01)
    priced = pricing.price(two_hours(100, 300), [sample])
    assert priced.method is pricing.Method.LATEST and priced.g_per_kwh == 100.0


def test_time_the_series_leaves_uncovered_takes_the_nearest_interval_up_to_a_limit() -> None:
    series = Series((Interval(T0, T0 + HOUR, 100.0),), "t")  # the next hour not published yet
    sample = pricing.EnergySample(T0 + HOUR / 2, T0 + 1.5 * HOUR, 1.0)
    assert pricing.price(series, [sample]).g_per_kwh == 100.0
    far = pricing.EnergySample(T0 + 4 * HOUR, T0 + 5 * HOUR, 1.0)
    with pytest.raises(ProviderError, match="no figure within 2:00:00"):
        pricing.price(series, [far])
    with pytest.raises(ProviderError, match="no figures over the run"):
        pricing.price(Series((), "t"), [far])


def test_marginal_is_weighted_like_the_average_and_absent_if_any_interval_lacks_it() -> None:
    sample = pricing.EnergySample(T0, T0 + 2 * HOUR, 2.0)
    both = pricing.price(two_hours(100, 300, (400, 600)), [sample])
    assert both.marginal_g_per_kwh == pytest.approx(500.0)
    assert pricing.price(two_hours(100, 300, (400, None)), [sample]).marginal_g_per_kwh is None


def test_a_long_series_is_bounded_and_still_sums_to_the_same_emissions() -> None:
    step = timedelta(minutes=5)
    n = 2500
    series = Series(
        tuple(Interval(T0 + i * step, T0 + (i + 1) * step, 100.0 + i % 7 * 50) for i in range(n)),
        "t",
    )
    samples = [
        pricing.EnergySample(T0 + i * step, T0 + (i + 1) * step, 0.001 * (1 + i % 3))
        for i in range(n)
    ]
    priced = pricing.price(series, samples, pricing.EnergySpread.SAMPLED)
    assert len(priced.intervals) <= pricing.MAX_SERIES
    total = sum(s.energy_kwh for s in samples)
    by_interval = sum(iv.energy_kwh * iv.g_per_kwh for iv in priced.intervals) / 1000
    exact = sum(s.energy_kwh * series.intervals[i].g_per_kwh for i, s in enumerate(samples)) / 1000
    assert by_interval == pytest.approx(exact) == pytest.approx(total * priced.g_per_kwh / 1000)


# ---------------------------------------------------------------- the application and the record


def hourly_csv(path: Path, start: datetime, figures: list[tuple[float, float | None]]) -> Path:
    rows = ["timestamp,g_per_kwh,marginal_g_per_kwh"]
    for i, (g, m) in enumerate(figures):
        rows.append(f"{(start + i * HOUR).isoformat()},{g},{'' if m is None else m}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_run_priced_by_a_provider_keeps_the_house_identity_and_round_trips(
    tmp_path: Path,
) -> None:
    m = doc(2.0)  # 10 h, 2026-11-20 00:00 to 10:00, PUE 1.1
    start = m.run.started_at
    hourly_csv(tmp_path / "grid.csv", start, [(100.0 + 10 * i, 300.0 + i) for i in range(10)])
    config = IntensityConfig(ProviderName.FILE, path="grid.csv")
    out = priced_by_provider(m, config, {}, Embodied(), base_dir=tmp_path)
    total = m.energy_kwh.total
    assert out.intensity_g_per_kwh == pytest.approx(145.0)  # even energy: the hours' mean
    assert out.emissions_kg == pytest.approx(total * 1.1 * 145.0 / 1000)
    assert out.intensity_source == "file grid.csv"
    assert out.grid is not None and out.grid.method == "provider-hourly"
    assert out.grid.marginal_g_per_kwh == pytest.approx(304.5)
    assert out.grid.marginal_emissions_kg == pytest.approx(total * 1.1 * 304.5 / 1000)
    low, high = out.emissions_bounds
    assert low == pytest.approx(0.7 * out.emissions_kg * m.energy_bounds.total[0] / total)
    assert high == pytest.approx(1.3 * out.emissions_kg * m.energy_bounds.total[1] / total)
    back = Measurement.from_json(json.loads(json.dumps(out.to_json())), "e.json")
    assert back == out
    assert doc(2.0).grid is None and "intensity_method" not in doc(2.0).to_json()  # older files
    bad = out.to_json() | {"intensity_method": "hourly-ish"}
    with pytest.raises(MeasurementError, match="intensity_method: 'hourly-ish' is not one of"):
        Measurement.from_json(bad, "e.json")


def test_a_provider_failure_keeps_codecarbons_figure_and_says_why(tmp_path: Path) -> None:
    m = doc(2.0)
    config = IntensityConfig(ProviderName.FILE, path="missing.csv")
    out = priced_by_provider(m, config, {}, Embodied(), base_dir=tmp_path)
    assert (out.emissions_kg, out.intensity_g_per_kwh, out.grid) == (
        m.emissions_kg,
        m.intensity_g_per_kwh,
        None,
    )
    assert out.notes[-1].startswith("file missing.csv: ") and ": cannot read: " in out.notes[-1]
    assert out.notes[-1].endswith(
        f"codecarbon's figure used ({m.intensity_g_per_kwh:.4g} g/kWh, {m.intensity_source})"
    )


def test_a_cancelled_run_is_written_without_asking_the_provider(tmp_path: Path) -> None:
    m = doc(2.0)
    m = replace(m, run=replace(m.run, forwarded_signals=("SIGINT",)))
    hourly_csv(tmp_path / "grid.csv", m.run.started_at, [(1.0, None)] * 10)
    config = IntensityConfig(ProviderName.FILE, path="grid.csv")
    out = priced_by_provider(m, config, {}, Embodied(), base_dir=tmp_path)
    assert out.grid is None and out.emissions_kg == m.emissions_kg
    assert out.notes[-1] == "file grid.csv: not asked after SIGINT; codecarbon's figure used"


def test_on_a_pull_request_the_file_provider_reads_the_csv_at_the_base_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    m = doc(2.0)
    csv = hourly_csv(tmp_path / "grid.csv", m.run.started_at, [(400.0, None)] * 10)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "grid.csv")
    git("commit", "-qm", "base")
    base = git("rev-parse", "HEAD")
    hourly_csv(csv, m.run.started_at, [(1.0, None)] * 10)  # the PR's own, much cleaner grid
    monkeypatch.chdir(tmp_path)
    config = IntensityConfig(ProviderName.FILE, path="grid.csv")
    ci = {"base_sha": base, "event": "pull_request"}
    out = priced_by_provider(m, config, {}, Embodied(), ci=ci)
    assert out.intensity_g_per_kwh == pytest.approx(400.0)
    pushed = priced_by_provider(m, config, {}, Embodied(), ci={"event": "push"})
    assert pushed.intensity_g_per_kwh == pytest.approx(1.0)
    (tmp_path / "grid.csv").rename(tmp_path / "moved.csv")
    git("rm", "-q", "--cached", "grid.csv")
    git("commit", "-qm", "gone")
    gone = priced_by_provider(
        m,
        config,
        {},
        Embodied(),
        ci={"base_sha": git("rev-parse", "HEAD"), "event": "pull_request"},
    )
    assert gone.grid is None and "has no grid.csv; codecarbon's figure used" in gone.notes[-1]


def test_a_fixed_figure_or_provider_none_means_no_provider_pricing() -> None:
    budget = Budget(annual_budget_kg=1, allocations={"training": 1.0})
    assert provider_pricing(budget, Location(), {}) is None
    wired = replace(budget, intensity=IntensityConfig(ProviderName.CARBONINTENSITY_UK))
    assert provider_pricing(wired, Location(), {}) is not None
    assert provider_pricing(wired, Location(intensity_g_per_kwh=50.0), {}) is None
    assert provider_pricing(None, Location(), {}) is None


def test_the_report_shows_average_and_marginal_side_by_side(tmp_path: Path) -> None:
    m = doc(2.0)
    hourly_csv(tmp_path / "grid.csv", m.run.started_at, [(100.0, 400.0)] * 10)
    out = priced_by_provider(
        m, IntensityConfig(ProviderName.FILE, path="grid.csv"), {}, Embodied(), base_dir=tmp_path
    )
    body = report.render("comment.md.j2", report.context(out))
    assert "| average (location-based: gated and recorded) | 100 |" in body
    assert "| marginal (the next kWh's: shown only) | 400 |" in body
    assert "provider-hourly" in body
    assert any(line.startswith("marginal: ") for line in report.summary_lines(out))
    plain = report.render("comment.md.j2", report.context(m))
    assert "marginal" not in plain


def test_the_companion_reprices_a_provider_priced_artifact_and_drops_its_series(
    tmp_path: Path,
) -> None:
    m = doc(2.0)
    hourly_csv(tmp_path / "grid.csv", m.run.started_at, [(10.0, 900.0)] * 10)
    out = priced_by_provider(
        m, IntensityConfig(ProviderName.FILE, path="grid.csv"), {}, Embodied(), base_dir=tmp_path
    )
    budget = Budget(annual_budget_kg=1, allocations={"training": 1.0})
    (again,) = priced([Adopted(out, ())], budget)
    assert again.measurement.grid is None
    assert again.measurement.intensity_g_per_kwh != 10.0  # codecarbon's figure for this repository
    assert again.measurement.intensity_source.startswith("codecarbon")


# ---------------------------------------------------------------- a real `co2gate measure`


def budget_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "budget.yml"
    path.write_text(
        "version: 1\nannual_budget_kg: 500\nallocations:\n  training: 1.0\n"
        "intensity:\n  provider: electricitymaps\n  zone: DE\n  token_env: EM_KEY\n"
        f"  url: {url}\n"
    )
    return path


def measure(co2gate: CliRun, tmp_path: Path, url: str) -> tuple[Any, dict[str, Any], str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "EM_KEY": KEY,
        "CO2GATE_CACHE_DIR": str(tmp_path / "cache"),
        "CO2GATE_GRID_TIMEOUT_S": "2",
    }
    out = tmp_path / "out"
    result = co2gate(
        "measure",
        "--budget-file",
        str(budget_file(tmp_path, url)),
        "--out",
        str(out),
        "--",
        PY,
        "-c",
        "import os; print('trained', 'EM_KEY' in os.environ)",  # the key is co2gate's alone
        env=env,
    )
    written = "".join(p.read_text() for p in out.iterdir() if p.is_file()) if out.exists() else ""
    return result, json.loads((out / "emissions.json").read_text()), written


def live_history(request: Seen) -> Answer:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    points = [em_point(now - HOUR * k, 150 + k) for k in range(23, -1, -1)]
    return 200, {"zone": "DE", "history": points}, {}


def test_measure_is_priced_by_the_provider_after_the_command(
    co2gate: CliRun, grid: FakeGrid, tmp_path: Path
) -> None:
    grid.routes["/v3/carbon-intensity/history"] = live_history
    result, emissions, written = measure(co2gate, tmp_path, grid.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "trained False\n"  # the provider's key withheld from the command
    assert emissions["intensity_source"] == "electricitymaps DE"
    assert emissions["intensity_method"] in ("provider-latest", "provider-hourly")
    assert emissions["intensity_g_per_kwh"] in (150.0, pytest.approx(150.0, abs=1.0))
    assert math.isclose(
        emissions["emissions_kg"],
        emissions["energy_kwh"]["total"]
        * emissions["pue"]
        * emissions["intensity_g_per_kwh"]
        / 1000,
        rel_tol=1e-9,
    )
    assert len(grid.seen) == 1 and grid.seen[0].headers["auth-token"] == KEY
    assert KEY not in result.stderr + result.stdout + written


def test_measure_falls_back_to_codecarbon_when_the_key_is_refused(
    co2gate: CliRun, grid: FakeGrid, tmp_path: Path
) -> None:
    grid.routes["/v3/carbon-intensity/history"] = [(401, {"error": f"invalid {KEY}"}, {})]
    result, emissions, written = measure(co2gate, tmp_path, grid.url)
    assert result.returncode == 0, result.stderr
    assert emissions["intensity_source"].startswith("codecarbon")
    assert "intensity_method" not in emissions
    assert any(
        n.startswith(
            "electricitymaps DE: history: key refused (HTTP 401); codecarbon's figure used"
        )
        for n in emissions["notes"]
    )
    assert "key refused" in result.stderr
    assert KEY not in result.stderr + result.stdout + written


def test_run_gates_on_the_providers_average_and_shows_the_marginal_beside_it(
    co2gate: CliRun, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hourly_csv(tmp_path / "grid.csv", now - 2 * HOUR, [(200.0, 500.0)] * 5)
    budget = tmp_path / "budget.yml"
    budget.write_text(
        "version: 1\nannual_budget_kg: 500\nallocations:\n  training: 1.0\n"
        "ledger:\n  backend: none\n"
        f"intensity:\n  provider: file\n  path: {tmp_path / 'grid.csv'}\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    out = tmp_path / "out"
    result = co2gate(
        "run",
        "--budget-file",
        str(budget),
        "--out",
        str(out),
        "--heartbeat",
        "0.3",
        "--",
        PY,
        "-c",
        "import time; time.sleep(6)",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    emissions = json.loads((out / "emissions.json").read_text())
    verdict = json.loads((out / "verdict.json").read_text())
    assert emissions["intensity_source"] == "file grid.csv"
    assert emissions["intensity_g_per_kwh"] == pytest.approx(200.0)
    assert emissions["intensity_series"]["energy"] == "sampled"  # the heartbeat's readings
    assert emissions["marginal_g_per_kwh"] == pytest.approx(500.0)
    assert verdict["run_kg"] == emissions["emissions_kg"]  # the average is gated, not the marginal
    assert emissions["marginal_emissions_kg"] == pytest.approx(emissions["emissions_kg"] * 2.5)
    body = (out / "report.md").read_text()
    assert "| marginal (the next kWh's: shown only) | 500 |" in body


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from email.utils import format_datetime

    from co2gate.grid.http import _retry_after_s

    assert _retry_after_s("7") == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (_retry_after_s(later) or 0) <= 120
    assert _retry_after_s("soon") is None and _retry_after_s(None) is None
    assert _retry_after_s("-5") == 0.0 and _retry_after_s("nan") is None


def test_the_cache_and_timeout_come_from_the_environment() -> None:
    from co2gate.grid.http import DEFAULT_TIMEOUT_S, cache_dir_from, timeout_from

    assert cache_dir_from({"CO2GATE_CACHE_DIR": "/c", "RUNNER_TEMP": "/r"}) == Path("/c")
    assert cache_dir_from({"RUNNER_TEMP": "/r", "HOME": "/h"}) == Path("/r/co2gate-cache")
    assert cache_dir_from({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/co2gate")
    assert cache_dir_from({"HOME": "/h"}) == Path("/h/.cache/co2gate")
    assert cache_dir_from({}) is None
    assert timeout_from({"CO2GATE_GRID_TIMEOUT_S": "2.5"}) == 2.5
    for bad in ("0", "-1", "inf", "nan", "soon", ""):
        assert timeout_from({"CO2GATE_GRID_TIMEOUT_S": bad}) == DEFAULT_TIMEOUT_S


def test_a_provider_that_is_not_there_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    source = ElectricityMapsSource(
        "DE", KEY, Client(name="electricitymaps DE", base_url=f"http://127.0.0.1:{port}")
    )
    with pytest.raises(ProviderError, match=r"^electricitymaps DE: history: cannot connect: "):
        source.history(T0, T0 + HOUR)
