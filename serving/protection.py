"""ASGI middleware in front of every route: keys and scopes, rate limit, body bounds, error shape.

In order, for a request that is not a probe (/livez, /readyz, /metrics, docs):

1. **Authentication** (:mod:`serving.auth`): 401 without a valid key, 403 for a wrong scope or,
   with no keys configured, for a client that is not on loopback (unless insecure).
2. **Rate limit**: a token bucket per authenticated client (the key's name; the peer address
   without keys), ``rate_per_s`` tokens per second up to ``burst``. With a Redis store the buckets
   live in Redis and are shared by every worker and replica; else per worker. 429 + ``Retry-After``.
3. **Body bounds** (:mod:`serving.guards`): the whole body is read, chunked or not, up to
   ``max_request_bytes`` (413 beyond), must be JSON (415 for another media type) with finite
   numbers, bounded depth, batch sizes and string lengths, before the route sees it.
4. **One error shape**: any 4xx/5xx answer of the framework (BentoML's validation errors,
   FastAPI's 422, Starlette's 404/405) is rewritten to ``{"error", "field"}``.

It also keeps ``/metrics`` bounded: BentoML labels requests with the raw path, so a path holding
a user id is shown to the metrics layer as its route template (``/users/{user_id}``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.auth import Authenticator, scope_for
from serving.errors import error_body, normalize_error
from serving.guards import BodyError, Limits, check_body, check_user_path, parse_json
from serving.metrics import publish_all

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REAL_PATH = "propensity.path"  # scope key holding the real path while metrics see the template
_JSON_TYPES = ("application/json", "")
logger = logging.getLogger("propensity.serving")


class TokenBuckets:
    """Token buckets keyed by client; ``take(client)`` returns 0 when allowed, else seconds to wait."""

    def __init__(self, rate_per_s: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_clients:
                self._buckets.pop(next(iter(self._buckets)))
        return wait

    async def take_async(self, client: str) -> float:
        return self.take(client)


# KEYS: bucket hash; ARGV: rate per s, burst. Redis's own clock, so every worker agrees.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RedisTokenBuckets:
    """The same buckets in Redis, shared by all workers and replicas; fails open when Redis is down
    (the request then meets the store outage and gets its 503)."""

    def __init__(self, redis_url: str, key_prefix: str, rate_per_s: float, burst: float) -> None:
        import redis.asyncio as aioredis

        self._r = aioredis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._script = self._r.register_script(_TAKE)
        self.prefix = f"{key_prefix}rl:"
        self.rate, self.burst = rate_per_s, burst

    async def take_async(self, client: str) -> float:
        import redis

        try:
            wait = await self._script(keys=[self.prefix + client], args=[self.rate, self.burst])
        except redis.RedisError:
            return 0.0
        return float(wait)


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with a JSON document."""
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass


def metrics_template(path: str) -> str:
    """The route template of a path, for metric labels (``/users/u1`` -> ``/users/{user_id}``)."""
    if path.startswith("/users/"):
        return "/users/{user_id}"
    return path


class ProtectionMiddleware:
    """Authentication, rate limit, body bounds and the error shape (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_request_bytes: int = 1_048_576, rate_limit: bool = False,
                 rate_per_s: float = 200.0, burst: float = 400.0,
                 authenticator: Authenticator | None = None, max_batch: int = 1000,
                 shared_buckets: tuple[str, str] | None = None) -> None:
        self.app = app
        self.max_bytes = max_request_bytes
        self.auth = authenticator or Authenticator([], insecure=True)
        self.limits = Limits(max_batch=max_batch)
        self.buckets: TokenBuckets | RedisTokenBuckets | None = None
        if rate_limit:
            self.buckets = (RedisTokenBuckets(shared_buckets[0], shared_buckets[1], rate_per_s, burst)
                            if shared_buckets else TokenBuckets(rate_per_s, burst))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.pop(_REAL_PATH, None) or scope.get("path", "")
        scope["path"] = path
        headers = dict(scope.get("headers") or [])
        peer = str((scope.get("client") or ("",))[0])
        needed = scope_for(path)
        decision = self.auth.check(path, headers.get(b"authorization", b"").decode("latin-1"), peer, needed)
        if decision.client is None:
            await send_json(send, decision.status, error_body(decision.error, "authorization"),
                            [(b"www-authenticate", b"Bearer")] if decision.status == 401 else [])
            return
        if needed is None:  # probes, metrics, docs: open and never limited
            if path == "/metrics":
                publish_all()  # this worker's counts of the last second (serving.metrics)
            await self.app(scope, receive, send)
            return
        if self.buckets is not None:
            wait = await self.buckets.take_async(decision.client)
            if wait > 0:
                await send_json(send, 429, error_body("rate limit exceeded", None, retry_after_s=wait),
                                [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
                return
        try:
            replay = await self._checked_body(scope, receive, headers, path)
        except BodyError as exc:
            await send_json(send, exc.status, error_body(exc.message, exc.field))
            return
        await self.app(scope, replay, _error_shaping(send))

    async def _checked_body(self, scope: Scope, receive: Receive, headers: dict[bytes, bytes],
                            path: str) -> Receive:
        if path.startswith("/users/"):
            check_user_path(path)
        method = scope.get("method", "GET")
        if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise BodyError(413, f"body: request larger than {self.max_bytes} bytes")
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if media not in _JSON_TYPES:
            raise BodyError(415, f"body: expected application/json, got '{media[:60]}'", "content-type")
        body = await self._read(receive)
        check_body(path, parse_json(body, self.limits), self.limits)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: wait for the disconnect as usual
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyError(400, "body: the client disconnected")
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise BodyError(413, f"body: request larger than {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _error_shaping(send: Send) -> Send:
    """A ``send`` that rewrites a framework's error body (status >= 400) into ``{"error", "field"}``."""
    status = 0
    start: Message | None = None
    parts: list[bytes] = []

    async def shaped(message: Message) -> None:
        nonlocal status, start
        if message["type"] == "http.response.start":
            status = int(message["status"])
            if status < 400:
                await send(message)
                return
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = normalize_error(status, b"".join(parts))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",
                                                                                     b"content-type")]
        await send({**start, "headers": [*headers, (b"content-type", b"application/json"),
                                         (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return shaped


def install_metrics_templates() -> None:
    """Make BentoML's request metrics label paths by route template (bounded label sets).

    BentoML's metrics middleware runs before every user middleware and reads ``scope["path"]``;
    it is shown the template and :class:`ProtectionMiddleware` restores the real path.
    """
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = RunnerTrafficMetricsMiddleware.__call__
    if getattr(original, "_propensity_templates", False):
        return

    async def call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            template = metrics_template(scope.get("path", ""))
            if template != scope.get("path"):
                scope[_REAL_PATH] = scope["path"]
                scope["path"] = template
        await original(self, scope, receive, send)

    call._propensity_templates = True  # type: ignore[attr-defined]
    RunnerTrafficMetricsMiddleware.__call__ = call  # type: ignore[method-assign]
