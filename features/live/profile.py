"""Online features: the feature definitions evaluated for one user from the live profile at ``as_of``.

The live profile keeps every event of the retention period as a compact :class:`EventRecord`
(exact event time, microseconds) plus :class:`CompactedHistory` scalars for older events, so any
window ``[as_of - W, as_of)`` is evaluated exactly, whatever order the events arrived in. The
definitions are those of :mod:`features.definitions`, compiled by :mod:`features.live.evaluate`
with the arithmetic of the batch snapshot (:mod:`features.batch.snapshot`): counts are float64 and 0 when
nothing happened, recency and averages are NaN when the thing never happened, categoricals are
strings or ``None``. Raw events and attributes are checked against :mod:`features.contract`.
No pandas here: this runs on every request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from features.contract import EVENT_FIELDS, Field, describe_value, user_fields
from features.definitions import FeatureSet
from features.ingest.eventtime import TimestampUnit, parse_event_time
from features.special import profile_attributes as profile_attributes
from propensity.errors import DataError

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
NAN = math.nan


class EventRecord(NamedTuple):
    """One event as the profile stores it: only what a feature reads. ``ts`` is UTC epoch microseconds."""

    ts: int
    event_id: str
    event: str
    session_id: str | None = None
    page_type: str | None = None
    value: float | None = None
    duration_s: float | None = None
    scroll_depth: float | None = None
    device: str | None = None
    source: str | None = None
    # Appended last: records stored before these fields existed read back with None.
    product_id: str | None = None
    category: str | None = None


@dataclass
class CompactedHistory:
    """All-history scalars of events folded out of the retention period (they hit no 30-day window).

    Timestamps are UTC epoch microseconds, ``None`` when no compacted event had that type.
    """

    n_events: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    last_add_to_cart_ts: int | None = None
    last_purchase_ts: int | None = None
    purchases: int = 0
    purchase_value: float = 0.0

    def fold(self, rec: EventRecord) -> None:
        """Add one event to the scalars (order-free: min, max, sums)."""
        self.n_events += 1
        self.first_ts = rec.ts if self.first_ts is None else min(self.first_ts, rec.ts)
        self.last_ts = _max(self.last_ts, rec.ts)
        if rec.event == "add_to_cart":
            self.last_add_to_cart_ts = _max(self.last_add_to_cart_ts, rec.ts)
        elif rec.event == "purchase":
            self.last_purchase_ts = _max(self.last_purchase_ts, rec.ts)
            self.purchases += 1
            self.purchase_value += rec.value or 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompactedHistory:
        return cls(**data)


@dataclass
class UserProfile:
    """What the store returns for a user: CRM attributes, retained events, compacted scalars.

    ``version`` increases on every write to the user (prediction caches compare it);
    ``deleted`` is true after a privacy deletion (the user then gets no personalized answer).
    """

    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    compacted: CompactedHistory = field(default_factory=CompactedHistory)
    version: int = 0
    deleted: bool = False

    @property
    def known(self) -> bool:
        """True when the store has seen any attribute or event of this user."""
        return bool(self.attributes) or bool(self.events) or self.compacted.n_events > 0


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


# ---------------------------------------------------------------------------------------------
# Input normalisation (the same rules as ingestion: enums trimmed and lower-cased, naive = UTC)


def to_epoch_us(value: Any, field_name: str = "timestamp", unit: TimestampUnit | None = None) -> int:
    """UTC epoch microseconds of a datetime, an ISO-8601 string (naive means UTC) or, with ``unit``,
    an epoch number: the one rule of :func:`features.ingest.eventtime.parse_event_time`, shared with batch."""
    return parse_event_time(value, unit, field_name)


def from_epoch_us(ts: int) -> datetime:
    """The UTC datetime of epoch microseconds."""
    return datetime.fromtimestamp(ts // 1_000_000, tz=UTC).replace(microsecond=ts % 1_000_000)


def _string(spec: Field, value: Any) -> str | None:
    """A string field by the contract: blank is missing, enums trimmed and lower-cased, bounded length."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None
    text = spec.normalise(text)
    if spec.max_length is not None and len(text) > spec.max_length:
        raise DataError(f"{spec.name}: longer than {spec.max_length} characters")
    return text


def _number(spec: Field, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{spec.name}: not a number: {describe_value(value)}") from None
    if not math.isfinite(number):
        raise DataError(f"{spec.name}: not a finite number: {describe_value(value)}")
    if spec.check_number(number) is not None:
        low = float(spec.low) if spec.low is not None else -math.inf
        high = float(spec.high) if spec.high is not None else math.inf
        raise DataError(f"{spec.name}: {number} is outside [{low}, {high}]")
    return number


_STRING_FIELDS = tuple(f for f in EVENT_FIELDS.values() if f.is_string and f.name != "user_id")
_NUMBER_FIELDS = tuple(f for f in EVENT_FIELDS.values() if f.kind == "float")
_REQUIRED = tuple(f.name for f in EVENT_FIELDS.values() if f.required)


def normalize_event(event: Mapping[str, Any],
                    timestamp_unit: TimestampUnit | None = None) -> tuple[str, EventRecord]:
    """(user_id, record) of one raw event of the data contract; :class:`DataError` names a bad field.

    Epoch-number timestamps are read in ``timestamp_unit`` (s, ms, µs) and refused without one.
    """
    for name in _REQUIRED:
        value = event.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{name}: required field is missing")
    values: dict[str, Any] = {f.name: _string(f, event.get(f.name)) for f in _STRING_FIELDS}
    values.update({f.name: _number(f, event.get(f.name)) for f in _NUMBER_FIELDS})
    user_id = _string(EVENT_FIELDS["user_id"], event["user_id"])
    if values["event"] is None or user_id is None:
        raise DataError("event: required field is empty")
    return user_id, EventRecord(ts=to_epoch_us(event["timestamp"], unit=timestamp_unit), **values)


USER_ATTRIBUTES: tuple[str, ...] = tuple(name for name in user_fields((0, 120)) if name != "user_id")


def normalize_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """CRM attributes of the users contract, JSON-ready (signup_date as ISO date); unknown keys dropped.

    The age range is the configured one (:func:`features.contract.age_range`), as in batch ingestion.
    """
    fields = user_fields()
    out: dict[str, Any] = {}
    for name in USER_ATTRIBUTES:
        if name not in attrs:
            continue
        value = attrs[name]
        spec = fields[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[name] = None
        elif spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
                    or not (spec.low or 0) <= value <= (spec.high if spec.high is not None else math.inf):
                raise DataError(f"{name}: expected a whole number of years in [{spec.low:g}, {spec.high:g}], "
                                f"got {describe_value(value)}")
            out[name] = int(value)
        elif spec.kind == "bool":
            if not isinstance(value, bool):
                raise DataError(f"{name}: expected true or false, got {describe_value(value)}")
            out[name] = value
        elif spec.kind == "date":
            out[name] = _iso_date(value)
        else:
            out[name] = _string(spec, value)
    return out


def _iso_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        raise DataError(f"signup_date: not an ISO date: {value!r}") from None


# ---------------------------------------------------------------------------------------------
# Feature computation


def _feature_set(feature_set: FeatureSet | None) -> FeatureSet:
    if feature_set is not None:
        return feature_set
    from features.feature_set import active_feature_set

    return active_feature_set()


def empty_features(feature_set: FeatureSet | None = None) -> dict[str, Any]:
    """The feature vector of a user with no history and no attributes (cold start)."""
    from features.live.evaluate import evaluator_for

    return evaluator_for(_feature_set(feature_set))((), 0, CompactedHistory(), {})


def online_features(profile: UserProfile, as_of_us: int, feature_set: FeatureSet | None = None
                    ) -> dict[str, Any]:
    """Every feature of ``feature_set`` (default: the configured set) of ``profile`` at ``as_of_us``
    (UTC epoch microseconds).

    Uses only events with ``timestamp < as_of``; windows are ``[as_of - W days, as_of)``.
    Returns a dict keyed by exactly the set's names, in order.
    """
    from features.live.evaluate import evaluator_for

    evaluate = evaluator_for(_feature_set(feature_set))
    return evaluate(profile.events, as_of_us, profile.compacted, profile.attributes)


def events_before(events: Iterable[EventRecord], as_of_us: int) -> list[EventRecord]:
    """Retained events strictly before ``as_of``, in event-time order (ties by event_id)."""
    return sorted((r for r in events if r.ts < as_of_us), key=lambda r: (r.ts, r.event_id))
