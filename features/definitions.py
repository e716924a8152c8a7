"""Declarative feature definitions: every behavioural feature is a :class:`FeatureSpec`.

A spec says which events take part (event types, field filters), which column, which aggregation
and which window. The batch evaluator (:mod:`features.batch.evaluate`, Polars, used by the snapshot and
by every Spark shard) and the online evaluator (:mod:`features.live.evaluate`, a live profile's
events at any ``as_of``) both interpret these specs with the same integer arithmetic, so training
and serving agree by construction. Features that are not plain aggregations (the cart state, the
CRM attributes) are named special cases of :mod:`features.special`.

The built-in set (:data:`BUILTIN`) keeps the names and values of the registry; users add entries
under ``features:`` in ``configs/features.yaml`` (see :func:`parse_user_specs`).

Windows end at ``as_of``, exclusive: an event counts in window W days when
``as_of - W <= timestamp < as_of``; ``window_days`` None means all history before ``as_of``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from features.contract import EVENT_FIELDS
from features.schema import DEVICES, EVENT_TYPES, SOURCES
from propensity.errors import ConfigError

WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)

# aggregate -> (needs a column, unit when the column does not say)
AGGREGATES: dict[str, str] = {
    "count": "events",
    "sum": "",
    "mean": "",
    "min": "",
    "max": "",
    "share": "share 0..1",
    "distinct_count": "distinct values",
    "days_since_last": "days",
    "days_since_first": "days",
    "hours_since_last": "hours",
}
COLUMN_AGGREGATES = frozenset({"sum", "mean", "min", "max", "share", "distinct_count"})
NUMERIC_AGGREGATES = frozenset({"sum", "mean", "min", "max"})
# Internal helpers of the special cases (not writable in configs/features.yaml): microseconds.
INTERNAL_AGGREGATES = frozenset({"us_since_last"})
_COLUMN_UNITS = {"value": "currency", "duration_s": "seconds", "scroll_depth": "share 0..1"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_WINDOW = re.compile(r"^\s*(\d+)\s*d\s*$")


@dataclass(frozen=True)
class Feature:
    """One column of a snapshot, as documented in docs/FEATURES.md."""

    name: str
    meaning: str
    window: str  # "1d", "7d", "30d", "all history", "static"
    unit: str
    kind: str = "numeric"  # "numeric" or "categorical"
    sensitive: bool = False  # a protected attribute: used by the audit, excluded from models by default
    group: str = "behaviour"


@dataclass(frozen=True)
class FeatureSpec:
    """A behavioural feature as data: per-user ``aggregate`` over the matching events in the window.

    ``events``: event types taking part (empty: every event, unknown types included); ``where``:
    string field -> allowed values (all must hold); ``column``: the event field aggregated (sum,
    mean, min, max, share, distinct_count); ``value``: for ``share``, the value of ``column`` whose
    share among events with a non-null ``column`` is taken. Results: counts and sums are 0 when
    nothing matched; means, shares, min/max and recencies are null.
    """

    name: str
    aggregate: str
    events: tuple[str, ...] = ()
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    column: str | None = None
    value: str | None = None
    window_days: int | None = None
    meaning: str = ""
    group: str = "custom"

    @property
    def window(self) -> str:
        return "all history" if self.window_days is None else f"{self.window_days}d"

    @property
    def unit(self) -> str:
        if self.column is not None and self.aggregate in NUMERIC_AGGREGATES:
            return _COLUMN_UNITS.get(self.column, self.column)
        return AGGREGATES.get(self.aggregate, "µs")

    def describe(self) -> str:
        """The meaning given, else one generated from the definition."""
        if self.meaning:
            return self.meaning
        what = f"{self.aggregate.replace('_', ' ')}" + (f" of {self.column}" if self.column else "")
        if self.value is not None:
            what += f" = '{self.value}'"
        events = ", ".join(f"'{e}'" for e in self.events) or "any"
        conds = "".join(f"; {f} in {{{', '.join(v)}}}" for f, v in self.where)
        return f"{what} over events {events}{conds}"

    @property
    def feature(self) -> Feature:
        return Feature(self.name, self.describe(), self.window, self.unit, group=self.group)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored with snapshots and models); :func:`spec_from_dict` reads it back."""
        data = asdict(self)
        data["events"] = list(self.events)
        data["where"] = {f: list(v) for f, v in self.where}
        return data


def spec_from_dict(data: Mapping[str, Any]) -> FeatureSpec:
    """The inverse of :meth:`FeatureSpec.to_dict`."""
    return FeatureSpec(
        name=data["name"], aggregate=data["aggregate"], events=tuple(data.get("events") or ()),
        where=tuple((f, tuple(v)) for f, v in (data.get("where") or {}).items()),
        column=data.get("column"), value=data.get("value"), window_days=data.get("window_days"),
        meaning=data.get("meaning", ""), group=data.get("group", "custom"))


@dataclass(frozen=True)
class Special:
    """A named feature that is not a plain aggregation, computed by :mod:`features.special`."""

    feature: Feature

    @property
    def name(self) -> str:
        return self.feature.name


Entry = FeatureSpec | Special

# The named special cases (computed in features/special.py, for both evaluators).
CART_FEATURES: tuple[Feature, ...] = (
    Feature("cart_open", "1 when the latest add_to_cart is later than the latest purchase (an abandoned "
            "or pending cart), else 0", "all history", "flag 0/1", group="cart"),
    Feature("hours_since_cart_abandoned", "as_of minus the latest add_to_cart when cart_open, else null",
            "all history", "hours", group="cart"),
    Feature("cart_abandon_rate_30d",
            "share of sessions with an add_to_cart but no purchase among sessions "
            "with an add_to_cart; null if none", "30d", "share 0..1", group="cart"),
)
PROFILE_FEATURES: tuple[Feature, ...] = (
    Feature("age", "age from the CRM", "static", "years", sensitive=True, group="profile"),
    Feature("age_band", "audit band of age (18-24, ..., 65+)", "static", "band", kind="categorical",
            sensitive=True, group="profile"),
    Feature("gender", "gender from the CRM", "static", "category", kind="categorical", sensitive=True,
            group="profile"),
    Feature("country", "country from the CRM", "static", "ISO code", kind="categorical", sensitive=True,
            group="profile"),
    Feature("loyalty_tier", "loyalty tier from the CRM", "static", "category", kind="categorical",
            group="profile"),
    Feature("tenure_days", "as_of minus signup_date; null if unknown", "static", "days", group="profile"),
)


def _count(ev: str, w: int) -> FeatureSpec:
    return FeatureSpec(f"{ev}_{w}d", "count", (ev,), window_days=w, meaning=f"number of '{ev}' events",
                       group="counts")


def _builtin() -> list[Entry]:
    out: list[Entry] = []
    for w in WINDOWS_DAYS:
        out += [_count(ev, w) for ev in EVENT_TYPES]
        out.append(FeatureSpec(f"events_{w}d", "count", window_days=w,
                               meaning="number of events of any type (unknown types included)",
                               group="counts"))
        out.append(FeatureSpec(f"sessions_{w}d", "distinct_count", column="session_id", window_days=w,
                               meaning="number of distinct non-null session_id values", group="counts"))
    out += [
        FeatureSpec("days_since_last_event", "days_since_last",
                    meaning="as_of minus the latest event before as_of", group="recency"),
        FeatureSpec("days_since_last_add_to_cart", "days_since_last", ("add_to_cart",),
                    meaning="as_of minus the latest add_to_cart; null if none", group="recency"),
        FeatureSpec("days_since_last_purchase", "days_since_last", ("purchase",),
                    meaning="as_of minus the latest purchase; null if none", group="recency"),
        FeatureSpec("days_since_first_event", "days_since_first",
                    meaning="as_of minus the first event (how long we have known the user)", group="recency"),
        FeatureSpec("product_time_s_30d", "sum", where=(("page_type", ("product",)),), column="duration_s",
                    window_days=30, meaning="sum of duration_s over events with page_type 'product'",
                    group="engagement"),
        FeatureSpec("avg_duration_s_30d", "mean", column="duration_s", window_days=30,
                    meaning="mean duration_s over events with a duration; null if none", group="engagement"),
        FeatureSpec("avg_scroll_depth_30d", "mean", column="scroll_depth", window_days=30,
                    meaning="mean scroll_depth over events with a scroll depth; null if none",
                    group="engagement"),
        FeatureSpec("cart_value_30d", "sum", ("add_to_cart",), column="value", window_days=30,
                    meaning="sum of value over add_to_cart events", group="value"),
        FeatureSpec("purchase_value_30d", "sum", ("purchase",), column="value", window_days=30,
                    meaning="sum of value over purchase events", group="value"),
        FeatureSpec("purchases_total", "count", ("purchase",),
                    meaning="number of purchase events in all history", group="value"),
        FeatureSpec("purchase_value_total", "sum", ("purchase",), column="value",
                    meaning="sum of value over all purchase events", group="value"),
    ]
    out += [Special(f) for f in CART_FEATURES]
    out += [FeatureSpec(f"device_share_{d}_30d", "share", column="device", value=d, window_days=30,
                        meaning=f"share of events from device '{d}' among events with a device; null if none",
                        group="mix") for d in DEVICES]
    out += [FeatureSpec(f"source_share_{s}_30d", "share", column="source", value=s, window_days=30,
                        meaning=f"share of events from source '{s}' among events with a source; null if none",
                        group="mix") for s in SOURCES]
    out += [Special(f) for f in PROFILE_FEATURES]
    return out


BUILTIN: tuple[Entry, ...] = tuple(_builtin())
BUILTIN_NAMES = frozenset(e.name for e in BUILTIN)


def parse_window(text: Any, where: str) -> int | None:
    """``14d`` (any whole number of days > 0), an integer of days, or ``all`` (all history)."""
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    if isinstance(text, str) and text.strip().lower() in ("all", "all history", "all_history"):
        return None
    match = _WINDOW.match(str(text)) if isinstance(text, str) else None
    if match and int(match.group(1)) > 0:
        return int(match.group(1))
    raise ConfigError(f"{where}: window '{text}' is not a number of days such as 14d, or 'all'")


_SPEC_KEYS = {"name", "events", "where", "column", "value", "aggregate", "window", "meaning", "override"}


def parse_user_spec(raw: Any, where: str) -> tuple[FeatureSpec, bool]:
    """One entry of ``features:`` as (spec, override); :class:`ConfigError` names the entry."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{name: ..., aggregate: count, window: 14d}}")
    name = raw.get("name")
    label = f"{where} '{name}'" if isinstance(name, str) else where
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{label}: name must be lower_snake_case (letters, digits, _), got {name!r}")
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key '{unknown[0]}' (use {', '.join(sorted(_SPEC_KEYS))})")
    aggregate = raw.get("aggregate")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"{label}: unknown aggregation {aggregate!r} (use {', '.join(AGGREGATES)})")
    events = raw.get("events") or []
    events = [events] if isinstance(events, str) else events
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"{label}: events must be a list of event names")
    bad_event = [e for e in events if e.strip().lower() not in EVENT_TYPES]
    if bad_event:
        raise ConfigError(f"{label}: unknown event '{bad_event[0]}' (use {', '.join(EVENT_TYPES)})")
    spec = FeatureSpec(
        name=name, aggregate=aggregate, events=tuple(sorted({e.strip().lower() for e in events})),
        where=_parse_where(raw.get("where") or {}, label), column=_parse_column(raw, aggregate, label),
        value=_parse_value(raw, aggregate, label), window_days=parse_window(raw.get("window", "all"), label),
        meaning=str(raw.get("meaning") or ""), group="custom")
    override = raw.get("override", False)
    if not isinstance(override, bool):
        raise ConfigError(f"{label}: override must be true or false")
    return spec, override


def _parse_where(where: Any, label: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(where, Mapping):
        raise ConfigError(f"{label}: where must map a field to a value or a list of values")
    out = []
    for name, allowed in sorted(where.items()):
        spec = EVENT_FIELDS.get(str(name))
        if spec is None or spec.kind not in ("id", "string", "enum"):
            raise ConfigError(f"{label}: unknown field '{name}' in where (use {', '.join(FILTER_FIELDS)})")
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{label}: where.{name} must be a string or a list of strings")
        out.append((str(name), tuple(sorted({spec.normalise(str(v)) for v in values}))))
    return tuple(out)


def _parse_column(raw: Mapping[str, Any], aggregate: str, label: str) -> str | None:
    column = raw.get("column")
    if aggregate not in COLUMN_AGGREGATES:
        if column is not None:
            raise ConfigError(f"{label}: aggregation '{aggregate}' takes no column")
        return None
    allowed = NUMERIC_COLUMNS if aggregate in NUMERIC_AGGREGATES else FILTER_FIELDS
    if column not in allowed:
        raise ConfigError(f"{label}: unknown field {column!r} for '{aggregate}' (use {', '.join(allowed)})")
    return str(column)


def _parse_value(raw: Mapping[str, Any], aggregate: str, label: str) -> str | None:
    value = raw.get("value")
    if aggregate != "share":
        if value is not None:
            raise ConfigError(f"{label}: only aggregation 'share' takes a value")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ConfigError(f"{label}: 'share' needs the value whose share is taken (value: ...)")
    return EVENT_FIELDS[str(raw["column"])].normalise(str(value))


FILTER_FIELDS: tuple[str, ...] = tuple(n for n, f in EVENT_FIELDS.items()
                                       if f.is_string and n not in ("event_id", "user_id"))
NUMERIC_COLUMNS: tuple[str, ...] = tuple(n for n, f in EVENT_FIELDS.items() if f.kind == "float")


def merge_specs(user: Iterable[tuple[FeatureSpec, bool]], where: str) -> tuple[Entry, ...]:
    """Built-ins with the user's entries: an override replaces the built-in in place, others follow."""
    entries = list(BUILTIN)
    index = {e.name: i for i, e in enumerate(entries)}
    seen: set[str] = set()
    for spec, override in user:
        if spec.name in seen:
            raise ConfigError(f"{where} '{spec.name}': defined twice")
        seen.add(spec.name)
        if spec.name in index:
            if not override:
                raise ConfigError(f"{where} '{spec.name}': reuses a built-in feature name "
                                  "(add 'override: true' to replace it)")
            if isinstance(entries[index[spec.name]], Special):
                raise ConfigError(f"{where} '{spec.name}': the special feature cannot be overridden")
            entries[index[spec.name]] = spec
        else:
            entries.append(spec)
    return tuple(entries)


def parse_user_specs(raw: Sequence[Any] | None, where: str = "features") -> tuple[Entry, ...]:
    """Built-ins plus the ``features:`` entries of a config file, validated."""
    parsed = [parse_user_spec(item, f"{where}[{i}]") for i, item in enumerate(raw or [])]
    return merge_specs(parsed, where)


@dataclass(frozen=True)
class FeatureSet:
    """An ordered set of feature definitions: the columns of a snapshot, in order."""

    entries: tuple[Entry, ...] = field(default=BUILTIN)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    @property
    def features(self) -> tuple[Feature, ...]:
        return tuple(e.feature for e in self.entries)

    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        return tuple(e for e in self.entries if isinstance(e, FeatureSpec))

    @property
    def custom(self) -> tuple[FeatureSpec, ...]:
        """The specs that differ from the built-ins (user additions and overrides)."""
        return tuple(s for s in self.specs if s not in BUILTIN)

    def __getstate__(self) -> dict[str, Any]:
        # The compiled online evaluator cached on the object is rebuilt where it is needed.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def to_dicts(self) -> list[dict[str, Any]]:
        """Every spec as JSON (specials by name), to store with a snapshot or a model."""
        return [e.to_dict() if isinstance(e, FeatureSpec) else {"special": e.name} for e in self.entries]

    @classmethod
    def from_dicts(cls, data: Sequence[Mapping[str, Any]]) -> FeatureSet:
        specials = {e.name: e for e in BUILTIN if isinstance(e, Special)}
        entries: list[Entry] = []
        for item in data:
            if "special" in item:
                if item["special"] not in specials:
                    raise ConfigError(f"feature specs: unknown special feature '{item['special']}'")
                entries.append(specials[item["special"]])
            else:
                entries.append(spec_from_dict(item))
        return cls(tuple(entries))
