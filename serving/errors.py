"""One error shape for every 4xx and 503: ``{"error": message, "field": name-or-null}``.

Also maps the exceptions a request can meet to that shape: :class:`DataError` (bad input, 4xx),
an unreachable profile store (503 with ``Retry-After``), a user whose deletion stands (409).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.responses import JSONResponse

from propensity.errors import DataError, StoreUnavailable
from propensity.redact import redact

RETRY_AFTER_S = 2  # what a 503 asks the client to wait, seconds
logger = logging.getLogger("propensity.serving")


def error_body(message: str, field: str | None, **extra: Any) -> dict[str, Any]:
    """The error document; ``message`` is redacted (no password ever leaves the service)."""
    return {"error": redact(message), "field": field, **extra}


def split_field(message: str) -> tuple[str | None, str]:
    """``"field: problem"`` -> (field, message); a message without a field gives (None, message)."""
    field, sep, problem = message.partition(": ")
    if sep and problem and " " not in field.strip() and len(field) <= 128:
        return field, message
    return None, message


def is_store_outage(exc: BaseException) -> bool:
    """True for the connection and timeout errors of a store client (redis-py), or StoreUnavailable."""
    if isinstance(exc, StoreUnavailable):
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith(("LOADING", "MASTERDOWN", "READONLY")))


def unavailable_response() -> JSONResponse:
    """503 with ``Retry-After`` while the store is down."""
    return JSONResponse(error_body("store: the profile store does not answer; retry later", "store",
                                   retry_after_s=RETRY_AFTER_S),
                        status_code=503, headers={"retry-after": str(RETRY_AFTER_S)})


def error_response(exc: Exception) -> JSONResponse:
    """The JSON answer for an exception raised while serving a request.

    DataError -> 422 (409 for a forgotten user), store outage -> 503; anything else is re-raised
    (a bug: BentoML answers 500 and logs it).
    """
    from features.privacy import ForgottenUser

    if is_store_outage(exc):
        logger.warning("profile store unavailable: %s", redact(str(exc).splitlines()[0] if str(exc) else
                                                                type(exc).__name__))
        return unavailable_response()
    if isinstance(exc, ForgottenUser):
        return JSONResponse(error_body(str(exc), "reconsent_reason"), status_code=409)
    if isinstance(exc, DataError):
        field, message = split_field(str(exc))
        return JSONResponse(error_body(message, field), status_code=422)
    raise exc


def normalize_error(status: int, body: bytes) -> bytes:
    """Rewrite a framework's 4xx/5xx body (BentoML, FastAPI, Starlette) into the one error shape."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data and "field" in data:
        return body
    message, field = _framework_message(status, data, body)
    return json.dumps(error_body(message, field)).encode()


def _framework_message(status: int, data: Any, body: bytes) -> tuple[str, str | None]:
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):  # pydantic errors
        first = detail[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "root", "query", "path")]
        field = ".".join(loc) or None
        return f"{field or 'body'}: {first.get('msg', 'invalid')}", field
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"], None
    if isinstance(detail, str):
        return detail, None
    text = body.decode("utf-8", "replace").strip()[:200]
    return text or f"HTTP {status}", None


class _OneLineClientErrors(logging.Filter):
    """Turns BentoML's ERROR-with-traceback for a client's mistake (a validation error, a 4xx
    BentoMLException) into one INFO line; real failures keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not _is_client_error(exc):
            return True
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        record.msg = f"{record.getMessage()}: client error: {redact(first)[:200]}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _is_client_error(exc: BaseException) -> bool:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError | DataError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", None)
    return isinstance(code, int) and 400 <= code < 500


def install_log_filter() -> None:
    """Attach the one-line filter to the loggers BentoML reports request errors on."""
    for name in ("bentoml._internal.server.http_app", "_bentoml_impl.server.app", "bentoml.serve"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _OneLineClientErrors) for f in log.filters):
            log.addFilter(_OneLineClientErrors())
