"""The one HTTP client the providers share: GET a JSON document, with one timeout, at most
one retry on 429 (honouring Retry-After up to a cap), no redirects, a size cap, and an
on-disk cache for the hour. A provider's latest figure is cached apart (Client.latest): until
the interval it describes ends, since a provider revises its current figure within the hour.

Every failure becomes a ProviderError (or ForecastUnavailable) naming the provider in one
line; a key never appears in one: callers register it with tokens.register before any
request, and no message here quotes a body or a header. urllib is imported inside the
functions, after the measured command has started.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from co2gate.grid.signal import Interval, ProviderError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "RETRY_AFTER_CAP_S",
    "Client",
    "cache_dir_from",
]

DEFAULT_TIMEOUT_S: Final = 10.0  # per request; CO2GATE_GRID_TIMEOUT_S overrides it
RETRY_AFTER_CAP_S: Final = 10.0  # a 429 asking for a longer wait is not retried
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
TIMEOUT_VARIABLE: Final = "CO2GATE_GRID_TIMEOUT_S"
CACHE_VARIABLE: Final = "CO2GATE_CACHE_DIR"
LATEST_LAG_KEEP: Final = timedelta(minutes=5)  # a latest interval already over when fetched


def cache_dir_from(env: Mapping[str, str]) -> Path | None:
    """Where responses are cached: CO2GATE_CACHE_DIR, else the runner's temp directory
    (GitHub Actions), else XDG's cache directory; None when none is known."""
    if env.get(CACHE_VARIABLE):
        return Path(env[CACHE_VARIABLE])
    if env.get("RUNNER_TEMP"):
        return Path(env["RUNNER_TEMP"]) / "co2gate-cache"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "co2gate"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".cache" / "co2gate"
    return None


def timeout_from(env: Mapping[str, str]) -> float:
    """CO2GATE_GRID_TIMEOUT_S when it is a positive number, else DEFAULT_TIMEOUT_S."""
    try:
        value = float(env.get(TIMEOUT_VARIABLE, ""))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT_S


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass
class Client:
    """GETs JSON for one provider. `name` starts every message ("electricitymaps DE")."""

    name: str
    base_url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    cache_dir: Path | None = None
    retry_after_cap_s: float = RETRY_AFTER_CAP_S
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    requests_made: int = 0  # requests sent over the network (tests: a cache hit sends none)

    def get(
        self,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        headers: Callable[[], Mapping[str, str]] | None = None,
        paid: type[ProviderError] | None = None,
        what: str = "",
        cache: bool = True,
    ) -> Any:
        """The parsed JSON at base_url + path. `headers` is called only when a request is
        sent (a cache hit logs nothing in); `paid`: the error a 402/403 raises, when it means
        the key's plan lacks the feature (ForecastUnavailable for a forecast) rather than a
        refused key. `cache`: keep it for the hour."""
        from urllib.parse import urlencode

        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urlencode(sorted(query.items()))
        label = what or path
        key = self._key(url) if cache else None
        cached = self._cached(key)
        if cached is not None:
            return cached
        body = self._send(url, dict(headers() if headers else {}), paid, label)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise ProviderError(f"{self.name}: {label}: the answer is not JSON") from None
        if cache:
            self._store(key, body)
        return doc

    def latest(self, what: str, fetch: Callable[[], Interval]) -> Interval:
        """The provider's current interval: `fetch` asks for it (uncached) and checks it. The
        answer is kept until that interval ends (a provider revises its current figure, so
        never for the clock hour); one already over when fetched (a publishing lag) is kept
        LATEST_LAG_KEEP, so that a pauser re-reading every few minutes asks at most that often."""
        now = self.now()
        key = self._latest_key(what)
        kept = self._recall(key, now)
        if kept is not None:
            return kept
        interval = fetch()
        until = interval.end if interval.end > now else now + LATEST_LAG_KEEP
        self._keep(key, interval, now, until)
        return interval

    # ------------------------------------------------------------------ the network

    def _send(
        self, url: str, headers: dict[str, str], paid: type[ProviderError] | None, label: str
    ) -> bytes:
        for attempt in (1, 2):
            status, retry_after, body = self._once(url, headers, label)
            if status == 200:
                return body
            if status == 429 and attempt == 1:
                wait = _retry_after_s(retry_after)
                if wait is not None and wait <= self.retry_after_cap_s:
                    self.sleep(wait)
                    continue
                later = f", retry after {wait:.0f} s" if wait is not None else ""
                raise ProviderError(f"{self.name}: {label}: rate limited (HTTP 429{later})")
            raise self._refusal(status, paid, label)
        raise ProviderError(f"{self.name}: {label}: rate limited (HTTP 429) twice")

    def _refusal(self, status: int, paid: type[ProviderError] | None, label: str) -> ProviderError:
        if status == 401:
            return ProviderError(f"{self.name}: {label}: key refused (HTTP 401)")
        if paid is not None and status in (402, 403):
            return paid(
                f"{self.name}: {label}: a paid feature the key's plan does not include "
                f"(HTTP {status})"
            )
        if status == 403:
            return ProviderError(f"{self.name}: {label}: key refused (HTTP 403)")
        if status == 429:
            return ProviderError(f"{self.name}: {label}: rate limited (HTTP 429) twice")
        if 300 <= status < 400:
            return ProviderError(f"{self.name}: {label}: redirected (HTTP {status}), not followed")
        return ProviderError(f"{self.name}: {label}: HTTP {status}")

    def _once(self, url: str, headers: dict[str, str], label: str) -> tuple[int, str | None, bytes]:
        import socket
        import urllib.error
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            # A redirect would carry the key to wherever it points: refuse it.
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", **headers}, method="GET"
        )
        self.requests_made += 1
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_BODY_BYTES + 1)
                status = response.status
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers.get("Retry-After") if e.headers else None, b""
        except TimeoutError:
            raise ProviderError(
                f"{self.name}: {label}: no answer within {self.timeout_s:g} s"
            ) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise ProviderError(
                    f"{self.name}: {label}: no answer within {self.timeout_s:g} s"
                ) from None
            why = getattr(reason, "strerror", None) or str(reason)
            raise ProviderError(f"{self.name}: {label}: cannot connect: {why}") from None
        except (OSError, ValueError) as e:  # a reset connection, a malformed URL or answer
            why = getattr(e, "strerror", None) or type(e).__name__
            raise ProviderError(f"{self.name}: {label}: the request failed: {why}") from None
        if len(body) > MAX_BODY_BYTES:
            raise ProviderError(
                f"{self.name}: {label}: the answer is larger than "
                f"{MAX_BODY_BYTES // (1024 * 1024)} MiB"
            )
        return status, None, body

    # ------------------------------------------------------------------ the cache

    def _key(self, url: str) -> str | None:
        """The file name a response is cached under: the URL (never a key: providers send
        theirs in headers) and the hour it was fetched in."""
        if self.cache_dir is None:
            return None
        hour = self.now().astimezone(timezone.utc).strftime("%Y%m%d%H")
        digest = hashlib.sha256(f"{self.name}\n{url}".encode()).hexdigest()[:32]
        return f"{hour}-{digest}.json"

    def _cached(self, key: str | None) -> Any:
        if key is None or self.cache_dir is None:
            return None
        try:
            with (self.cache_dir / key).open("rb") as f:
                body = f.read(MAX_BODY_BYTES + 1)
            return json.loads(body) if len(body) <= MAX_BODY_BYTES else None
        except (OSError, ValueError, RecursionError):
            return None  # absent or unreadable: ask again

    def _store(self, key: str | None, body: bytes) -> None:
        if key is None or self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.cache_dir / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(body)
            os.replace(tmp, self.cache_dir / key)
            self._prune(key[:10])
        except OSError:
            pass  # a cache that cannot be written only costs a request next time

    def _prune(self, hour: str) -> None:
        """Drop responses cached in earlier hours."""
        assert self.cache_dir is not None
        for old in self.cache_dir.glob("??????????-*.json"):
            if old.name[:10].isdigit() and old.name[:10] < hour:
                old.unlink(missing_ok=True)

    def _latest_key(self, what: str) -> str | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.name}\n{self.base_url}\n{what}".encode()).hexdigest()
        return f"latest-{digest[:32]}.json"

    def _recall(self, key: str | None, now: datetime) -> Interval | None:
        """The kept interval while it is fresh (fetched <= now < until); None otherwise, and
        for anything unreadable or out of bounds (checked again, as any provider answer)."""
        if key is None or self.cache_dir is None:
            return None
        try:
            with (self.cache_dir / key).open("rb") as f:
                kept = json.loads(f.read(4096))
            fetched = datetime.fromisoformat(kept["fetched"])
            until = datetime.fromisoformat(kept["until"])
            if not fetched <= now < until:
                return None
            marginal = kept["marginal_g_per_kwh"]
            return Interval(
                datetime.fromisoformat(kept["start"]),
                datetime.fromisoformat(kept["end"]),
                float(kept["g_per_kwh"]),
                None if marginal is None else float(marginal),
            )
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None  # absent, unreadable or stale-shaped: ask again

    def _keep(self, key: str | None, interval: Interval, now: datetime, until: datetime) -> None:
        if key is None or self.cache_dir is None:
            return
        kept = {
            "fetched": now.isoformat(),
            "until": until.isoformat(),
            "start": interval.start.isoformat(),
            "end": interval.end.isoformat(),
            "g_per_kwh": interval.g_per_kwh,
            "marginal_g_per_kwh": interval.marginal_g_per_kwh,
        }
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.cache_dir / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(kept))
            os.replace(tmp, self.cache_dir / key)
        except OSError:
            pass  # a cache that cannot be written only costs a request next time
