"""Provider `carbonintensity-uk`: the GB grid's Carbon Intensity API (NESO), free, no key,
half-hourly, with a 48-hour forecast.

`GET /intensity/{from}/{to}` answers `{"data": [{"from": t, "to": t, "intensity":
{"forecast": g, "actual": g | null, "index": "low"}}, ...]}` for Great Britain;
`/intensity/{from}/fw48h` the next 48 hours. With a `zone` that is a region id (1-17),
`/regional/intensity/{from}/{to}/regionid/{id}` and `.../fw48h/regionid/{id}` answer
`{"data": {"regionid": id, "data": [...]}}` (some answers wrap it in a one-item list);
regional figures are forecasts only. A past half-hour's figure is its `actual` where the
API has one, else its `forecast`. Latest: `GET /intensity` (national) and
`/regional/regionid/{id}` answer the current half-hour in the same shapes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Final

from co2gate.grid import shapes
from co2gate.grid.http import Client
from co2gate.grid.signal import Interval, ProviderError, Series

DEFAULT_URL: Final = "https://api.carbonintensity.org.uk"
NATIONAL: Final = frozenset({"", "gb", "national"})
REGIONS: Final = range(1, 18)


def region_of(zone: str | None) -> int | None:
    """None for Great Britain as a whole, else the API's region id; ValueError otherwise."""
    text = (zone or "").strip().lower()
    if text in NATIONAL:
        return None
    if text.isdigit() and int(text) in REGIONS:
        return int(text)
    raise ValueError(f"zone {zone!r} is not GB (national) or a Carbon Intensity API region id 1-17")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _half_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc).replace(second=0, microsecond=0)
    return moment.replace(minute=0 if moment.minute < 30 else 30)


class CarbonIntensityUkSource:
    def __init__(self, region: int | None, client: Client) -> None:
        self.region = region
        self.name = client.name
        self._client = client

    def _path(self, span: str) -> str:
        if self.region is None:
            return f"/intensity/{span}"
        return f"/regional/intensity/{span}/regionid/{self.region}"

    def _rows(self, doc: Any) -> list[Any]:
        top = shapes.obj(doc, self.name, "the answer")
        data = top.get("data")
        if self.region is None:
            return shapes.array(data, self.name, "data")
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        region = shapes.obj(data, self.name, "data")
        if region.get("regionid", self.region) != self.region:
            raise shapes.fail(self.name, f"data.regionid is not {self.region}")
        return shapes.array(region.get("data"), self.name, "data.data")

    def _series(self, doc: Any, forecast: bool) -> Series:
        found: dict[datetime, Interval] = {}
        for i, raw in enumerate(self._rows(doc)):
            where = f"data[{i}]"
            item = shapes.obj(raw, self.name, where)
            start = shapes.when(item.get("from"), self.name, f"{where}.from")
            end = shapes.when(item.get("to"), self.name, f"{where}.to")
            figures = shapes.obj(item.get("intensity"), self.name, f"{where}.intensity")
            value = None if forecast else figures.get("actual")
            key = "actual"
            if value is None:
                value, key = figures.get("forecast"), "forecast"
            if value is None:
                continue  # a half-hour with no figure yet: a gap
            g = shapes.number(value, self.name, f"{where}.intensity.{key}")
            found[start] = shapes.interval(self.name, where, start, end, g)
        try:
            return Series(tuple(found[k] for k in sorted(found)), self.name, forecast)
        except ValueError as e:
            raise shapes.fail(self.name, str(e)) from None

    def history(self, start: datetime, end: datetime) -> Series:
        # Whole half-hours, so that runs ending in the same half-hour share a cached answer.
        span = f"{_iso(_half_hour(start))}/{_iso(_half_hour(end) + timedelta(minutes=30))}"
        doc = self._client.get(self._path(span), what="intensity")
        return self._series(doc, forecast=False).between(start, end)

    def forecast(self, start: datetime, end: datetime) -> Series:
        now = self._client.now()
        doc = self._client.get(self._path(f"{_iso(_half_hour(now))}/fw48h"), what="forecast")
        series = self._series(doc, forecast=True)
        if not series.intervals:
            raise ProviderError(f"{self.name}: forecast: the answer holds no points")
        return series.between(start, end)

    def latest(self) -> Interval:
        return self._client.latest("latest", self._latest)

    def _latest(self) -> Interval:
        path = "/intensity" if self.region is None else f"/regional/regionid/{self.region}"
        series = self._series(self._client.get(path, what="latest", cache=False), forecast=False)
        if not series.intervals:
            raise ProviderError(f"{self.name}: latest: the answer holds no figure")
        return series.at(self._client.now()) or series.intervals[-1]
