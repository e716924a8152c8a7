"""ASGI middleware protecting the service: request size limit (413) and per-client rate limit (429).

The rate limit is a token bucket per client (the ``client_header`` value, else the peer address),
per worker process: ``rate_per_s`` tokens per second up to ``burst``. A refused request gets 429
with ``Retry-After`` (whole seconds until a token is back). Probes (/livez, /readyz, /metrics)
are never limited.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNLIMITED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/"})


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


async def _json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass


class ProtectionMiddleware:
    """Size limit and optional rate limit in front of every route (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_request_bytes: int = 1_048_576, rate_limit: bool = False,
                 rate_per_s: float = 200.0, burst: float = 400.0, client_header: str = "x-client-id") -> None:
        self.app = app
        self.max_bytes = max_request_bytes
        self.buckets = TokenBuckets(rate_per_s, burst) if rate_limit else None
        self.client_header = client_header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.buckets is not None:
            client = headers.get(self.client_header, b"").decode() or str((scope.get("client") or ("?",))[0])
            wait = self.buckets.take(client)
            if wait > 0:
                await _json(send, 429, {"error": "rate limit exceeded", "field": None,
                                        "retry_after_s": wait},
                            [(b"retry-after", str(max(1, math.ceil(wait))).encode())])
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _json(send, 413, {"error": f"body: request larger than {self.max_bytes} bytes",
                                    "field": "body"}, [])
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _json(send, 413, {"error": f"body: request larger than {self.max_bytes} bytes",
                                    "field": "body"}, [])
