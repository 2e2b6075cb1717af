"""Provider `electricitymaps`: Electricity Maps' API v3, hourly average (location-based)
intensities per zone (`DE`, `US-CAL-CISO`, ...).

`GET /v3/carbon-intensity/history?zone=Z` answers the last 24 hours as
`{"zone": Z, "history": [{"carbonIntensity": g, "datetime": start, ...}, ...]}`;
`/past-range?zone=Z&start=&end=` the same points under `data` for older windows; and
`/forecast?zone=Z` (a paid feature) `{"zone": Z, "forecast": [{"carbonIntensity": g,
"datetime": start}, ...]}`. `/latest?zone=Z` answers one point, `{"zone": Z,
"carbonIntensity": g, "datetime": start, "updatedAt": t, "emissionFactorType": ...,
"isEstimated": bool, ...}`: the hour starting at `datetime`, revised as the hour goes on.
The key travels in the `auth-token` header.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Final

from co2gate.grid import shapes
from co2gate.grid.http import Client
from co2gate.grid.signal import ForecastUnavailable, Interval, ProviderError, Series

DEFAULT_URL: Final = "https://api.electricitymap.org"
HOUR: Final = timedelta(hours=1)
HISTORY_SPAN: Final = timedelta(hours=23)  # /history covers the last 24 h


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class ElectricityMapsSource:
    """One zone of Electricity Maps; `key` is the auth-token's value (registered for masking)."""

    def __init__(self, zone: str, key: str, client: Client) -> None:
        self.zone = zone
        self.name = client.name
        self._key = key
        self._client = client

    def _headers(self) -> dict[str, str]:
        return {"auth-token": self._key}

    def _points(self, doc: Any, field: str) -> list[tuple[datetime, float, float | None]]:
        top = shapes.obj(doc, self.name, "the answer")
        if "zone" in top and top["zone"] != self.zone:
            raise shapes.fail(self.name, f"zone {top['zone']!r} is not {self.zone!r}")
        points: list[tuple[datetime, float, float | None]] = []
        for i, raw in enumerate(shapes.array(top.get(field), self.name, field)):
            where = f"{field}[{i}]"
            item = shapes.obj(raw, self.name, where)
            value = item.get("carbonIntensity")
            if value is None:
                continue  # an hour the provider has no figure for: a gap
            start = shapes.when(item.get("datetime"), self.name, f"{where}.datetime")
            g = shapes.number(value, self.name, f"{where}.carbonIntensity")
            points.append((start, g, None))
        return points

    def history(self, start: datetime, end: datetime) -> Series:
        now = self._client.now()
        if start >= now - HISTORY_SPAN:
            doc = self._client.get(
                "/v3/carbon-intensity/history",
                {"zone": self.zone},
                headers=self._headers,
                what="history",
            )
            points = self._points(doc, "history")
        else:
            query = {
                "zone": self.zone,
                "start": _iso(start.replace(minute=0, second=0, microsecond=0)),
                "end": _iso(end.replace(minute=0, second=0, microsecond=0) + HOUR),
            }
            doc = self._client.get(
                "/v3/carbon-intensity/past-range", query, headers=self._headers, what="history"
            )
            points = self._points(doc, "data")
        return shapes.series(points, self.name, HOUR).between(start, end)

    def forecast(self, start: datetime, end: datetime) -> Series:
        doc = self._client.get(
            "/v3/carbon-intensity/forecast",
            {"zone": self.zone},
            headers=self._headers,
            paid=ForecastUnavailable,
            what="forecast",
        )
        series = shapes.series(self._points(doc, "forecast"), self.name, HOUR, forecast=True)
        if not series.intervals:
            raise ProviderError(f"{self.name}: forecast: the answer holds no points")
        return series.between(start, end)

    def latest(self) -> Interval:
        return self._client.latest("latest", self._latest)

    def _latest(self) -> Interval:
        doc = self._client.get(
            "/v3/carbon-intensity/latest",
            {"zone": self.zone},
            headers=self._headers,
            what="latest",
            cache=False,
        )
        top = shapes.obj(doc, self.name, "the answer")
        if "zone" in top and top["zone"] != self.zone:
            raise shapes.fail(self.name, f"zone {top['zone']!r} is not {self.zone!r}")
        value = top.get("carbonIntensity")
        if value is None:
            raise ProviderError(f"{self.name}: latest: the answer holds no figure")
        start = shapes.when(top.get("datetime"), self.name, "latest.datetime")
        g = shapes.number(value, self.name, "latest.carbonIntensity")
        return shapes.interval(self.name, "latest", start, start + HOUR, g)
