"""Edge protections of the gateway: body size limit, API keys with per-key rate limits, the admin token.

- `BodyLimit`: a pure ASGI middleware (wraps the app, same interface) that answers **413** in OpenAI's
  error shape when a request body exceeds `max_body_bytes` (1 MiB), from `Content-Length` or while
  reading a chunked body — before any handler parses it. Served by `grid.live.server.uvicorn_server`,
  the HTTP protocol already refuses such bodies before the app starts (`grid.live.http_limits`, with
  the head limits, read timeouts and the body budget); this stays for any other server of the app.
- `ApiKeys`: optional inference keys (`Authorization: Bearer <key>`); none configured = open. A
  missing or wrong key is **401**; each key has a token bucket (`rate_rps`, `burst`) and a request
  over it is **429** `rate_limit_exceeded` with `Retry-After`. Keys are compared in constant time and
  never logged (only a short fingerprint is, if ever needed). A key may carry a population
  (`ApiKey.population`): its requests come from there unless they name one themselves
  (`grid.live.intake`).
- `check_admin`: the admin endpoints' bearer token (they are not even routed without one).

Keys come from settings (`GatewaySettings.api_keys`, `admin_token`); `grid up` reads them from the
environment (`GRID_API_KEYS`, comma-separated `KEY` or `KEY=POPULATION`, and `GRID_ADMIN_TOKEN`) at
start, never at import.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from grid.live import openai_api as api

MAX_BODY_BYTES = 1 << 20  # 1 MiB


def _bearer(headers) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(token: str | None, secret: str) -> bool:
    return token is not None and hmac.compare_digest(token.encode(), secret.encode())


def check_admin(headers, admin_token: str) -> None:
    if not _matches(_bearer(headers), admin_token):
        raise api.ApiError(
            401, "Invalid or missing admin token (Authorization: Bearer <token>).", code="invalid_admin_token"
        )


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


@dataclass(frozen=True)
class ApiKey:
    """One inference key and the population its requests come from (None: the request or the
    default decides). The key never appears in a repr."""

    key: str = field(repr=False)
    population: str | None = None


class ApiKeys:
    """Inference API keys and their token buckets (bounded: one bucket per configured key)."""

    def __init__(self, keys: Sequence[str | ApiKey], rate_rps: float, burst: float) -> None:
        entries = (k if isinstance(k, ApiKey) else ApiKey(k) for k in keys)
        self.entries = tuple(e for e in entries if e.key)
        self.keys = tuple(e.key for e in self.entries)
        self.rate_rps = rate_rps
        self.burst = max(1.0, burst)
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, headers, now: float) -> ApiKey | None:
        """The caller's key (None when keys are off); raises 401 / 429 in OpenAI's shape."""
        if not self.keys:
            return None
        token = _bearer(headers)
        entry = next((e for e in self.entries if _matches(token, e.key)), None)
        if entry is None:
            raise api.ApiError(
                401,
                "Incorrect or missing API key (send Authorization: Bearer <key>).",
                code="invalid_api_key",
            )
        key = entry.key
        if self.rate_rps > 0:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate_rps)
            bucket.at = now
            if bucket.tokens < 1.0:
                wait_s = (1.0 - bucket.tokens) / self.rate_rps
                raise api.ApiError(
                    429,
                    f"Rate limit reached for this API key ({self.rate_rps:g} requests/s); retry later.",
                    type_="rate_limit_error",
                    code="rate_limit_exceeded",
                    retry_after_s=max(0.001, wait_s),
                )
            bucket.tokens -= 1.0
        return entry


class BodyLimit:
    """ASGI middleware: 413 for request bodies larger than `max_bytes`."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await self._reject(send, 400, "Invalid Content-Length header.")
                break
        if length is not None and length > self.max_bytes:
            return await self._too_large(send)
        if length is not None:
            return await self.app(scope, receive, send)
        # No length (chunked): read it here, up to the limit, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks)}], receive), send)

    async def _too_large(self, send) -> None:
        mib = self.max_bytes / (1 << 20)
        await self._reject(send, 413, f"The request body is larger than {mib:g} MiB.", code="request_too_large")

    @staticmethod
    async def _reject(send, status: int, message: str, code: str | None = None) -> None:
        body = json.dumps(api.ApiError(status, message, code=code).body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[dict], receive=None):
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        if receive is not None:
            return await receive()  # after the body: disconnects
        return {"type": "http.disconnect"}

    return replayed


def parse_api_keys(text: str | None) -> tuple[ApiKey, ...]:
    """`GRID_API_KEYS`: comma-separated entries, each `KEY` or `KEY=POPULATION` (blanks ignored), e.g.
    `key1=tokyo,key2`. The population follows the entry's last `=`; an entry ending in `=` (base64
    padding) is a key without one, so a key with `=` elsewhere needs its population given (`a=b=tokyo`).
    Raises ValueError, naming the entry by position (never its text: it may be part of a key), for a
    population without a key."""
    if not text:
        return ()
    entries = []
    for n, item in enumerate((k.strip() for k in text.split(",")), 1):
        if not item:
            continue
        key, sep, population = item.rpartition("=")
        key, population = key.strip(), population.strip()
        if not sep or not population:
            entries.append(ApiKey(item))
        elif not key:
            raise ValueError(f"entry {n} has a population but no key (KEY=POPULATION)")
        else:
            entries.append(ApiKey(key, population))
    return tuple(entries)


def check_key_populations(keys: Sequence[str | ApiKey], populations: Collection[str]) -> None:
    """Raise ValueError when a key's population is not one of `populations`, naming the key by its
    position only: what follows a `=` may be part of a key that contains one (`a=b`), so it is not
    echoed either."""
    for n, entry in enumerate(keys, 1):
        if isinstance(entry, ApiKey) and entry.population is not None and entry.population not in populations:
            raise ValueError(
                f"API key {n}: its population (after the last '=') is not in the scenario; valid populations: "
                + ", ".join(populations)
            )
