"""Online features: the registry's columns for one user, computed from the live profile at ``as_of``.

The live profile keeps every event of the retention period as a compact :class:`EventRecord`
(exact event time, microseconds) plus :class:`CompactedHistory` scalars for older events, so any
window ``[as_of - W, as_of)`` is evaluated exactly, whatever order the events arrived in. The
semantics are those of :mod:`features.registry` and the batch snapshot (:mod:`features.snapshot`):
counts are float64 and 0 when nothing happened, recency and averages are NaN when the thing never
happened, categoricals are strings or ``None``. No pandas here: this runs on every request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from features.errors import DataError
from features.eventtime import TimestampUnit, parse_event_time
from features.registry import FEATURE_NAMES, WINDOWS_DAYS
from features.schema import DEVICES, EVENT_TYPES, SOURCES, age_band

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
    an epoch number: the one rule of :func:`features.eventtime.parse_event_time`, shared with batch."""
    return parse_event_time(value, unit, field_name)


def from_epoch_us(ts: int) -> datetime:
    """The UTC datetime of epoch microseconds."""
    return datetime.fromtimestamp(ts // 1_000_000, tz=UTC).replace(microsecond=ts % 1_000_000)


def _enum(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _opt_float(event: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = event.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"{name}: not a finite number: {value!r}")
    if not low <= number <= high:
        raise DataError(f"{name}: {number} is outside [{low}, {high}]")
    return number


def normalize_event(event: Mapping[str, Any],
                    timestamp_unit: TimestampUnit | None = None) -> tuple[str, EventRecord]:
    """(user_id, record) of one raw event of the data contract; :class:`DataError` names a bad field.

    Epoch-number timestamps are read in ``timestamp_unit`` (s, ms, µs) and refused without one.
    """
    for name in ("event_id", "user_id", "timestamp", "event"):
        if event.get(name) in (None, ""):
            raise DataError(f"{name}: required field is missing")
    kind = _enum(event["event"])
    if kind is None:
        raise DataError("event: required field is empty")
    record = EventRecord(
        ts=to_epoch_us(event["timestamp"], unit=timestamp_unit),
        event_id=str(event["event_id"]),
        event=kind,
        session_id=_opt_str(event.get("session_id")),
        page_type=_enum(event.get("page_type")),
        value=_opt_float(event, "value", 0.0, math.inf),
        duration_s=_opt_float(event, "duration_s", 0.0, math.inf),
        scroll_depth=_opt_float(event, "scroll_depth", 0.0, 1.0),
        device=_enum(event.get("device")),
        source=_enum(event.get("source")),
    )
    return str(event["user_id"]), record


USER_ATTRIBUTES: tuple[str, ...] = ("age", "gender", "country", "loyalty_tier", "signup_date", "consent")


def normalize_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """CRM attributes of the users contract, JSON-ready (signup_date as ISO date); unknown keys dropped."""
    out: dict[str, Any] = {}
    for name in USER_ATTRIBUTES:
        if name not in attrs:
            continue
        value = attrs[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[name] = None
        elif name == "age":
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
                    or not 0 <= value <= 120:
                raise DataError(f"age: expected a whole number of years in [0, 120], got {value!r}")
            out[name] = int(value)
        elif name == "consent":
            if not isinstance(value, bool):
                raise DataError(f"consent: expected true or false, got {value!r}")
            out[name] = value
        elif name == "signup_date":
            out[name] = _iso_date(value)
        else:
            out[name] = _enum(value)
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

_COUNT_NAMES = {w: {ev: f"{ev}_{w}d" for ev in EVENT_TYPES} for w in WINDOWS_DAYS}
_DEVICE_NAMES = {d: f"device_share_{d}_30d" for d in DEVICES}
_SOURCE_NAMES = {s: f"source_share_{s}_30d" for s in SOURCES}


def empty_features() -> dict[str, Any]:
    """The feature vector of a user with no history and no attributes (cold start)."""
    out: dict[str, Any] = dict.fromkeys(FEATURE_NAMES, NAN)
    for w in WINDOWS_DAYS:
        for name in _COUNT_NAMES[w].values():
            out[name] = 0.0
        out[f"events_{w}d"] = 0.0
        out[f"sessions_{w}d"] = 0.0
    for name in ("product_time_s_30d", "cart_value_30d", "purchase_value_30d", "purchases_total",
                 "purchase_value_total", "cart_open"):
        out[name] = 0.0
    for name in ("age_band", "gender", "country", "loyalty_tier"):
        out[name] = None
    return out


def online_features(profile: UserProfile, as_of_us: int) -> dict[str, Any]:
    """Every registry feature of ``profile`` at ``as_of_us`` (UTC epoch microseconds).

    Uses only events with ``timestamp < as_of``; windows are ``[as_of - W days, as_of)``.
    Returns a dict keyed by exactly :data:`features.registry.FEATURE_NAMES`.
    """
    out = empty_features()
    starts = {w: as_of_us - w * US_PER_DAY for w in WINDOWS_DAYS}
    start30 = starts[30]
    comp = profile.compacted
    first_ts, last_ts = comp.first_ts, comp.last_ts
    last_atc, last_buy = comp.last_add_to_cart_ts, comp.last_purchase_ts
    purchases, purchase_value = float(comp.purchases), comp.purchase_value
    sessions: dict[int, set[str]] = {w: set() for w in WINDOWS_DAYS}
    cart_sessions: dict[str, bool] = {}  # session -> had a purchase (30d)
    product_time = cart_value = buy_value_30 = 0.0
    dur_sum = scroll_sum = 0.0
    dur_n = scroll_n = device_n = source_n = 0
    devices: dict[str, int] = {}
    sources: dict[str, int] = {}
    for rec in profile.events:
        ts = rec.ts
        if ts >= as_of_us:
            continue
        kind = rec.event
        first_ts = ts if first_ts is None or ts < first_ts else first_ts
        last_ts = ts if last_ts is None or ts > last_ts else last_ts
        if kind == "add_to_cart":
            last_atc = ts if last_atc is None or ts > last_atc else last_atc
        elif kind == "purchase":
            last_buy = ts if last_buy is None or ts > last_buy else last_buy
            purchases += 1.0
            purchase_value += rec.value or 0.0
        if ts < start30:
            continue
        for w in WINDOWS_DAYS:
            if ts >= starts[w]:
                name = _COUNT_NAMES[w].get(kind)
                if name is not None:
                    out[name] += 1.0
                out[f"events_{w}d"] += 1.0
                if rec.session_id is not None:
                    sessions[w].add(rec.session_id)
        if rec.page_type == "product" and rec.duration_s is not None:
            product_time += rec.duration_s
        if rec.duration_s is not None:
            dur_sum += rec.duration_s
            dur_n += 1
        if rec.scroll_depth is not None:
            scroll_sum += rec.scroll_depth
            scroll_n += 1
        if kind == "add_to_cart":
            cart_value += rec.value or 0.0
            if rec.session_id is not None:
                cart_sessions.setdefault(rec.session_id, False)
        elif kind == "purchase":
            buy_value_30 += rec.value or 0.0
        if rec.device is not None:
            device_n += 1
            devices[rec.device] = devices.get(rec.device, 0) + 1
        if rec.source is not None:
            source_n += 1
            sources[rec.source] = sources.get(rec.source, 0) + 1
    if cart_sessions:
        bought = {r.session_id for r in profile.events
                  if r.event == "purchase" and start30 <= r.ts < as_of_us and r.session_id in cart_sessions}
        out["cart_abandon_rate_30d"] = sum(1 for s in cart_sessions if s not in bought) / len(cart_sessions)
    for w in WINDOWS_DAYS:
        out[f"sessions_{w}d"] = float(len(sessions[w]))
    out["product_time_s_30d"] = product_time
    out["avg_duration_s_30d"] = dur_sum / dur_n if dur_n else NAN
    out["avg_scroll_depth_30d"] = scroll_sum / scroll_n if scroll_n else NAN
    out["cart_value_30d"] = cart_value
    out["purchase_value_30d"] = buy_value_30
    out["purchases_total"] = purchases
    out["purchase_value_total"] = purchase_value
    for d, name in _DEVICE_NAMES.items():
        out[name] = devices.get(d, 0) / device_n if device_n else NAN
    for s, name in _SOURCE_NAMES.items():
        out[name] = sources.get(s, 0) / source_n if source_n else NAN
    out["days_since_last_event"] = _days(as_of_us, last_ts)
    out["days_since_first_event"] = _days(as_of_us, first_ts)
    out["days_since_last_add_to_cart"] = _days(as_of_us, last_atc)
    out["days_since_last_purchase"] = _days(as_of_us, last_buy)
    if last_atc is not None and (last_buy is None or last_atc > last_buy):
        out["cart_open"] = 1.0
        out["hours_since_cart_abandoned"] = (as_of_us - last_atc) / US_PER_HOUR
    out.update(profile_attributes(profile.attributes, as_of_us))
    return out


def profile_attributes(attrs: Mapping[str, Any], as_of_us: int) -> dict[str, Any]:
    """The static CRM features (age, age_band, gender, country, loyalty_tier, tenure_days)."""
    age = attrs.get("age")
    signup = attrs.get("signup_date")
    tenure = NAN
    if signup is not None:
        signup_us = to_epoch_us(datetime.combine(date.fromisoformat(signup), datetime.min.time(), UTC))
        if signup_us <= as_of_us:  # a signup after as_of is not known at as_of
            tenure = (as_of_us - signup_us) / US_PER_DAY
    return {
        "age": float(age) if age is not None else NAN,
        "age_band": age_band(age) if age is not None else None,
        "gender": attrs.get("gender"),
        "country": attrs.get("country"),
        "loyalty_tier": attrs.get("loyalty_tier"),
        "tenure_days": tenure,
    }


def _days(as_of_us: int, ts: int | None) -> float:
    return (as_of_us - ts) / US_PER_DAY if ts is not None else NAN


def events_before(events: Iterable[EventRecord], as_of_us: int) -> list[EventRecord]:
    """Retained events strictly before ``as_of``, in event-time order (ties by event_id)."""
    return sorted((r for r in events if r.ts < as_of_us), key=lambda r: (r.ts, r.event_id))
