"""Route aliases: ``GET /recommendations?...`` reaches the FastAPI app mounted at ``/recommendations``.

Starlette mounts match ``/recommendations/...`` only; without this alias the bare path (the documented
one) would get a 307 redirect to the trailing-slash form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
ALIASES = {"/recommendations": "/recommendations/"}


class PathAliases:
    """Rewrites an exact aliased path before routing (query strings are untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") in ALIASES:
            scope["path"] = ALIASES[scope["path"]]
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)
