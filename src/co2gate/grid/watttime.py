"""Provider `watttime`: WattTime's API v3, 5-minute intensities per balancing authority
(`CAISO_NORTH`, ...).

`GET /login` with HTTP basic auth (user and password) answers `{"token": T}`, sent after
as `Authorization: Bearer T`. `GET /v3/historical?region=R&start=&end=&signal_type=S` and
`/v3/forecast?region=R&signal_type=S` (both for subscribers; CAISO_NORTH is a free
preview) answer `{"data": [{"point_time": t, "value": v}, ...], "meta": {"units":
"lbs_co2_per_mwh", "data_point_period_seconds": 300, ...}}`.

Signals: `co2_aoer` (average) is what the ledger records; `co2_moer` (marginal, WattTime's
MOER) is fetched beside it when the budget file says `signal: marginal`. A forecast is of
one signal per request: with `signal: marginal` its intervals carry the MOER as both
figures (it is what a start time is chosen by), and `forecast=True` says it is predicted.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from co2gate import tokens
from co2gate.grid import shapes
from co2gate.grid.http import Client
from co2gate.grid.signal import ForecastUnavailable, Interval, ProviderError, Series, Signal

DEFAULT_URL: Final = "https://api.watttime.org"
DEFAULT_STEP: Final = timedelta(minutes=5)
AVERAGE: Final = "co2_aoer"
MARGINAL: Final = "co2_moer"
FORECAST_HOURS: Final = 72
_UNITS: Final = {
    "lbs_co2_per_mwh": shapes.LB_PER_MWH_TO_G_PER_KWH,
    "kg_co2_per_mwh": 1.0,
    "g_co2_per_kwh": 1.0,
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


class WattTimeSource:
    """One region of WattTime; logs in on the first request that misses the cache."""

    def __init__(self, zone: str, user: str, password: str, client: Client, signal: Signal) -> None:
        self.zone = zone
        self.name = client.name
        self.signal = signal
        self._user = user
        self._password = password
        self._client = client
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            pair = base64.b64encode(f"{self._user}:{self._password}".encode()).decode("ascii")
            tokens.register(pair)
            doc = self._client.get(
                "/login",
                headers=lambda: {"Authorization": f"Basic {pair}"},
                what="login",
                cache=False,
            )
            token = shapes.obj(doc, self.name, "the login answer").get("token")
            if not isinstance(token, str) or not token.strip():
                raise shapes.fail(self.name, "the login answer has no token")
            tokens.register(token)
            self._token = token
        return {"Authorization": f"Bearer {self._token}"}

    def _points(self, doc: Any, signal_type: str) -> tuple[dict[datetime, float], timedelta]:
        top = shapes.obj(doc, self.name, "the answer")
        meta = shapes.obj(top.get("meta", {}), self.name, "meta")
        if meta.get("signal_type", signal_type) != signal_type:
            raise shapes.fail(self.name, f"meta.signal_type is not {signal_type}")
        units = meta.get("units", "lbs_co2_per_mwh")
        if units not in _UNITS:
            raise shapes.fail(self.name, f"meta.units {str(units)[:40]!r} is not a known unit")
        factor = _UNITS[units]
        step = DEFAULT_STEP
        if meta.get("data_point_period_seconds") is not None:
            seconds = shapes.number(meta["data_point_period_seconds"], self.name, "meta.period")
            if not 1 <= seconds <= 86_400:
                raise shapes.fail(self.name, "meta.data_point_period_seconds is out of range")
            step = timedelta(seconds=seconds)
        points: dict[datetime, float] = {}
        for i, raw in enumerate(shapes.array(top.get("data"), self.name, "data")):
            item = shapes.obj(raw, self.name, f"data[{i}]")
            start = shapes.when(item.get("point_time"), self.name, f"data[{i}].point_time")
            points[start] = shapes.number(item.get("value"), self.name, f"data[{i}].value") * factor
        return points, step

    def _historical(
        self, signal_type: str, start: datetime, end: datetime, *, latest: bool = False
    ) -> Any:
        """Whole hours (cached for the hour); `latest`: exactly [start, end), never cached."""
        query = {
            "region": self.zone,
            "signal_type": signal_type,
            "start": _iso(start if latest else _hour(start)),
            "end": _iso(end if latest else _hour(end) + timedelta(hours=1)),
        }
        return self._client.get(
            "/v3/historical",
            query,
            headers=self._headers,
            paid=ProviderError,
            what=f"{'latest' if latest else 'historical'} {signal_type}",
            cache=not latest,
        )

    def history(self, start: datetime, end: datetime) -> Series:
        average, step = self._points(self._historical(AVERAGE, start, end), AVERAGE)
        marginal: dict[datetime, float] = {}
        if self.signal is Signal.MARGINAL:
            marginal, _ = self._points(self._historical(MARGINAL, start, end), MARGINAL)
        points = [(t, g, marginal.get(t)) for t, g in average.items()]
        return shapes.series(points, self.name, step).between(start, end)

    def forecast(self, start: datetime, end: datetime) -> Series:
        signal_type = MARGINAL if self.signal is Signal.MARGINAL else AVERAGE
        query = {
            "region": self.zone,
            "signal_type": signal_type,
            "horizon_hours": str(FORECAST_HOURS),
        }
        doc = self._client.get(
            "/v3/forecast",
            query,
            headers=self._headers,
            paid=ForecastUnavailable,
            what="forecast",
        )
        values, step = self._points(doc, signal_type)
        both = signal_type == MARGINAL
        points = [(t, g, g if both else None) for t, g in values.items()]
        series = shapes.series(points, self.name, step, forecast=True)
        if not series.intervals:
            raise ProviderError(f"{self.name}: forecast: the answer holds no points")
        return series.between(start, end)

    def latest(self) -> Interval:
        return self._client.latest(f"latest {self.signal.value}", self._latest)

    def _latest(self) -> Interval:
        now = self._client.now().replace(microsecond=0)
        start = now - timedelta(hours=1)
        average, step = self._points(self._historical(AVERAGE, start, now, latest=True), AVERAGE)
        published = [t for t in average if t <= now]
        if not published:
            raise ProviderError(f"{self.name}: latest: no point in the hour before now")
        last = max(published)
        marginal: float | None = None
        if self.signal is Signal.MARGINAL:
            moer, _ = self._points(self._historical(MARGINAL, start, now, latest=True), MARGINAL)
            marginal = moer.get(last)
        return shapes.interval(self.name, "latest", last, last + step, average[last], marginal)
