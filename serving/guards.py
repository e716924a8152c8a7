"""Bounds on request bodies, checked before any work: JSON that parses, finite numbers, nesting
depth, batch sizes, id and string lengths, scalar feature values.

The middleware (:mod:`serving.protection`) reads the whole body (chunked or not) up to the size
limit, runs :func:`check_body` and only then hands the body to the route, so an oversized batch
costs a parse, never a model call. Every failure is a :class:`BodyError` with an HTTP status and
the field it names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from features.live.profile import EventRecord, from_epoch_us
from features.registry import CATEGORICAL_FEATURES, FEATURE_NAMES
from propensity.errors import DataError

MAX_ID_CHARS = 256  # user_id, event_id, session_id, product_id: characters
MAX_STRING_CHARS = 1024  # any other string value: characters
MAX_SLOTS = 10  # /content: slots per request
MAX_SLOT_CHARS = 64
MAX_DEPTH = 8  # JSON nesting: the deepest legitimate body (/predict_batch features) has 3 levels
_ID_FIELDS = ("user_id", "event_id", "session_id", "product_id")
_NUMERIC_FEATURES = frozenset(FEATURE_NAMES) - frozenset(CATEGORICAL_FEATURES) | {"engagement_score"}
_CATEGORICAL = frozenset(CATEGORICAL_FEATURES) | {"journey_stage", "segment", "cluster"}


@dataclass
class BodyError(Exception):
    """A request body the service refuses: HTTP status, message, and the field it is about."""

    status: int
    message: str
    field: str | None = "body"


@dataclass(frozen=True)
class Limits:
    """The bounds of :func:`check_body` (``max_batch`` items per list body)."""

    max_batch: int = 1000
    max_depth: int = MAX_DEPTH


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def parse_json(body: bytes, limits: Limits) -> Any:
    """The JSON value of ``body``: UTF-8, no NaN/Infinity, finite numbers, nesting <= ``max_depth``."""
    if not body.strip():
        raise BodyError(400, "body: expected a JSON document, got an empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "body: not UTF-8 text") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise BodyError(400, f"body: JSON nested deeper than {limits.max_depth} levels") from None
    except ValueError as exc:
        raise BodyError(400, f"body: not valid JSON ({str(exc)[:120]})") from None
    # Nesting deeper than max_depth needs more than max_depth brackets: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > limits.max_depth and _depth_exceeds(value, limits.max_depth):
        raise BodyError(400, f"body: JSON nested deeper than {limits.max_depth} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def check_body(path: str, value: Any, limits: Limits) -> None:
    """Route-specific shape and size checks of a parsed body (see the module docstring)."""
    if path == "/predict":
        _check_predict(value, "")
    elif path == "/content":
        _check_content(value)
    elif path in ("/predict_batch", "/events"):
        if not isinstance(value, list):
            raise BodyError(422, "body: expected a JSON list")
        if len(value) > limits.max_batch:
            raise BodyError(413, f"body: at most {limits.max_batch} items per request, got {len(value)}")
        for i, item in enumerate(value):
            if path == "/events":
                _check_object(item, f"[{i}]")
            else:
                _check_predict(item, f"[{i}]")
    elif path.startswith("/users/"):
        _check_object(value, "")


def check_user_path(path: str) -> None:
    """``/users/{user_id}``: the id is 1..MAX_ID_CHARS characters."""
    user_id = path[len("/users/"):]
    if not user_id or "/" in user_id:
        raise BodyError(404, "user_id: expected /users/{user_id}", "user_id")
    if len(user_id) > MAX_ID_CHARS * 3:  # percent-encoded characters take up to 3 bytes each
        raise BodyError(414, f"user_id: longer than {MAX_ID_CHARS} characters", "user_id")


def _check_object(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise BodyError(422, f"{where or 'body'}: expected a JSON object", where or "body")
    for key, value in item.items():
        name = f"{where}.{key}" if where else str(key)
        if isinstance(value, str):
            limit = MAX_ID_CHARS if key in _ID_FIELDS else MAX_STRING_CHARS
            if len(value) > limit:
                raise BodyError(422, f"{name}: longer than {limit} characters", name)
        elif isinstance(value, dict | list) and key not in ("context", "features"):
            raise BodyError(422, f"{name}: expected a single value, not a {type(value).__name__}", name)


def _check_predict(item: Any, where: str) -> None:
    _check_object(item, where)
    prefix = f"{where}." if where else ""
    for section in ("context", "features"):
        values = item.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise BodyError(422, f"{prefix}{section}: expected a JSON object", f"{prefix}{section}")
        for key, value in values.items():
            _check_feature(f"{prefix}{section}.{key}", key, value)


def _check_content(item: Any) -> None:
    """``/content``: a /predict-like object plus ``slots``, a short list of short names."""
    if not isinstance(item, dict):
        raise BodyError(422, "body: expected a JSON object")
    slots = item.get("slots")
    _check_predict({k: v for k, v in item.items() if k != "slots"}, "")
    if slots is None:
        return
    if not isinstance(slots, list) or len(slots) > MAX_SLOTS:
        raise BodyError(422, f"slots: expected a list of at most {MAX_SLOTS} slot names", "slots")
    for i, slot in enumerate(slots):
        if not isinstance(slot, str) or not 0 < len(slot) <= MAX_SLOT_CHARS:
            raise BodyError(422, f"slots[{i}]: expected a slot name of 1 to {MAX_SLOT_CHARS} characters",
                            f"slots[{i}]")


def _check_feature(name: str, key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict | list):
        raise BodyError(422, f"{name}: expected a number, a string or null", name)
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise BodyError(422, f"{name}: longer than {MAX_STRING_CHARS} characters", name)
        if key in _NUMERIC_FEATURES:
            raise BodyError(422, f"{name}: expected a number, got a string", name)
    elif key in _CATEGORICAL and not isinstance(value, int):
        raise BodyError(422, f"{name}: expected a string", name)


class FutureEvent(DataError):
    """An event later than now plus the allowed clock skew (``ingest.max_future_skew``)."""


def check_not_future(event: tuple[str, EventRecord], latest_us: int) -> tuple[str, EventRecord]:
    """The event, unless it is later than ``latest_us`` (now + the allowed clock skew, epoch µs):
    a device clock far ahead must never move a profile's history (compaction) forward."""
    if event[1].ts > latest_us:
        latest = from_epoch_us(latest_us).isoformat()
        raise FutureEvent(f"timestamp: {from_epoch_us(event[1].ts).isoformat()} is in the future "
                          f"(later than {latest}, now + ingest.max_future_skew)")
    return event
