"""Point-in-time feature snapshots: the columns of :mod:`features.registry`, computed in Polars.

A snapshot at ``as_of`` uses only events with ``timestamp < as_of``; window W covers
``as_of - W <= timestamp < as_of``. Its label is 1 when the user has a ``purchase`` in
``[as_of, as_of + horizon)``. Rows: every user with at least one event before ``as_of``, minus users
without personalization consent and users listed in ``exclude_users`` (the forget ledger).

Time arithmetic is done on integer microseconds since the epoch (``timestamp`` is
``datetime[us, UTC]``), so a day is exactly 86 400 000 000 µs and results do not depend on the
machine's time zone. Money, durations and scroll depths are summed as integer millionths
(:data:`FIXED_POINT`), so every feature is exact and independent of row order: the local build and
each Spark shard give bit-identical results.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from features.ingest import EVENT_SCHEMA, USER_SCHEMA, UTC_US
from features.registry import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    KEY_COLUMNS,
    LABEL_COLUMN,
    WINDOWS_DAYS,
)
from features.schema import AGE_BANDS, DEVICES, EVENT_TYPES, SOURCES

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
# Sums and means of value, duration_s and scroll_depth are taken over the values rounded to
# millionths as integers: exact, hence identical whatever the row order, thread count or shard.
FIXED_POINT = 1_000_000
SNAPSHOT_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *FEATURE_NAMES, LABEL_COLUMN)
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "as_of": UTC_US,
    **{name: (pl.String() if name in CATEGORICAL_FEATURES else pl.Float64()) for name in FEATURE_NAMES},
    LABEL_COLUMN: pl.Int64(),
}
POLARS_ENGINE: Final = "streaming"
# The event columns features are computed from (product_id and category are not used).
SNAPSHOT_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "user_id", "timestamp", "event", "session_id", "page_type", "value", "duration_s",
    "scroll_depth", "device", "source",
)

_AGE = "__age_us"  # as_of minus timestamp, µs (> 0 for history)
_FIXED_COLUMNS = ("duration_s", "scroll_depth", "value")
_EV = pl.col("event")
_ATC = _EV == "add_to_cart"
_PURCHASE = _EV == "purchase"


def to_utc(as_of: datetime) -> datetime:
    """``as_of`` as an aware UTC datetime (naive means UTC)."""
    return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)


def _epoch_us(moment: datetime) -> int:
    return (to_utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def conform_events(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Events with every contract column (missing optional ones null) in the canonical dtypes."""
    lf = events.lazy()
    names = lf.collect_schema().names()
    return lf.select([
        (pl.col(c).cast(t) if c in names else pl.lit(None, t).alias(c)) for c, t in EVENT_SCHEMA.items()
    ])


def conform_users(users: pl.DataFrame | pl.LazyFrame | None) -> pl.LazyFrame:
    """Users with every contract column (missing ones null) in the canonical dtypes; empty for None."""
    if users is None:
        return pl.DataFrame(schema=USER_SCHEMA).lazy()
    lf = users.lazy()
    names = lf.collect_schema().names()
    return lf.select([
        (pl.col(c).cast(t) if c in names else pl.lit(None, t).alias(c)) for c, t in USER_SCHEMA.items()
    ])


def _in_window(days: int) -> pl.Expr:
    return pl.col(_AGE) <= days * US_PER_DAY


def _count(cond: pl.Expr, name: str) -> pl.Expr:
    return cond.sum().cast(pl.Float64).alias(name)


def _fixed(column: str) -> pl.Expr:
    """A float column as integer millionths, so sums are exact and do not depend on row order."""
    return (pl.col(column) * FIXED_POINT).round(0).cast(pl.Int64).alias(f"__{column}")


def _sum(fixed: pl.Expr, name: str) -> pl.Expr:
    return (fixed.sum() / FIXED_POINT).alias(name)


def _mean(fixed: pl.Expr, name: str) -> pl.Expr:
    count = fixed.count()
    return pl.when(count > 0).then(fixed.sum() / count / FIXED_POINT).alias(name)


def _share(numerator: str, denominator: str) -> pl.Expr:
    den = pl.col(denominator)
    return pl.when(den > 0).then(pl.col(numerator) / den).otherwise(None)


def _user_aggregates() -> list[pl.Expr]:
    """Per-user aggregates over the history (events before as_of), one expression per column."""
    aggs: list[pl.Expr] = []
    for w in WINDOWS_DAYS:
        in_w = _in_window(w)
        aggs += [_count((_EV == ev) & in_w, f"{ev}_{w}d") for ev in EVENT_TYPES]
        aggs.append(_count(in_w, f"events_{w}d"))
        aggs.append(pl.col("session_id").filter(in_w).drop_nulls().n_unique().cast(pl.Float64)
                    .alias(f"sessions_{w}d"))
    in30 = _in_window(30)
    age = pl.col(_AGE)
    duration, scroll, value = (pl.col(f"__{c}") for c in _FIXED_COLUMNS)
    aggs += [
        age.min().alias("__last_age"),
        age.max().alias("__first_age"),
        age.filter(_ATC).min().alias("__last_atc_age"),
        age.filter(_PURCHASE).min().alias("__last_purchase_age"),
        _sum(duration.filter(in30 & (pl.col("page_type") == "product")), "product_time_s_30d"),
        _mean(duration.filter(in30), "avg_duration_s_30d"),
        _mean(scroll.filter(in30), "avg_scroll_depth_30d"),
        _sum(value.filter(in30 & _ATC), "cart_value_30d"),
        _sum(value.filter(in30 & _PURCHASE), "purchase_value_30d"),
        _count(_PURCHASE, "purchases_total"),
        _sum(value.filter(_PURCHASE), "purchase_value_total"),
        _count(in30 & pl.col("device").is_not_null(), "__devices_30d"),
        _count(in30 & pl.col("source").is_not_null(), "__sources_30d"),
    ]
    aggs += [_count(in30 & (pl.col("device") == d), f"__device_{d}") for d in DEVICES]
    aggs += [_count(in30 & (pl.col("source") == s), f"__source_{s}") for s in SOURCES]
    return aggs


def _cart_sessions(history: pl.LazyFrame) -> pl.LazyFrame:
    """Per-user 30-day sessions with an add_to_cart, and those of them without a purchase.

    Only cart and purchase events with a session in the window take part, so the (user, session)
    grouping runs over a small share of the events.
    """
    in_session = _in_window(30) & pl.col("session_id").is_not_null() & (_ATC | _PURCHASE)
    sessions = (history.filter(in_session).group_by("user_id", "session_id")
                .agg(_ATC.any().alias("__cart"), _PURCHASE.any().alias("__bought"))
                .filter(pl.col("__cart")))
    return sessions.group_by("user_id").agg(
        _count(pl.col("__cart"), "__cart_sessions"),
        _count(~pl.col("__bought"), "__abandoned_sessions"),
    )


def _age_band(age: pl.Expr) -> pl.Expr:
    """The audit band of :data:`features.schema.AGE_BANDS` as an expression (null outside every band)."""
    band = pl.lit(None, pl.String)
    for low, high, name in reversed(AGE_BANDS):
        band = pl.when((age >= low) & (age <= high)).then(pl.lit(name)).otherwise(band)
    return band


def snapshot_lazy(events: pl.DataFrame | pl.LazyFrame, users: pl.DataFrame | pl.LazyFrame | None,
                  as_of: datetime, horizon: timedelta, *, consent_default: bool = True,
                  exclude_users: Collection[str] = ()) -> pl.LazyFrame:
    """The lazy query behind :func:`build_snapshot` (see there); rows are not sorted."""
    as_of = to_utc(as_of)
    as_of_us = _epoch_us(as_of)
    end_us = as_of_us + horizon // timedelta(microseconds=1)
    ev = conform_events(events)
    crm = conform_users(users)
    if exclude_users:
        gone = pl.Series("user_id", sorted(exclude_users), dtype=pl.String)
        ev = ev.filter(~pl.col("user_id").is_in(gone))
        crm = crm.filter(~pl.col("user_id").is_in(gone))
    ts_us = pl.col("timestamp").cast(pl.Int64)
    history = ev.filter(ts_us < as_of_us).with_columns((pl.lit(as_of_us) - ts_us).alias(_AGE),
                                                       *[_fixed(c) for c in _FIXED_COLUMNS])
    buyers = (ev.filter(_PURCHASE & (ts_us >= as_of_us) & (ts_us < end_us))
              .select("user_id").unique().with_columns(pl.lit(1, pl.Int64).alias(LABEL_COLUMN)))
    per_user = history.group_by("user_id").agg(_user_aggregates())
    frame = (
        per_user.join(_cart_sessions(history), on="user_id", how="left")
        .join(crm, on="user_id", how="left")
        .join(buyers, on="user_id", how="left")
        .filter(pl.col("consent").fill_null(consent_default))
    )
    cart_open = pl.col("__last_atc_age").is_not_null() & (
        pl.col("__last_purchase_age").is_null() | (pl.col("__last_atc_age") < pl.col("__last_purchase_age")))
    signup_us = pl.col("signup_date").cast(pl.Datetime("us")).cast(pl.Int64)
    age = pl.col("age").cast(pl.Float64)
    derived = {
        "user_id": pl.col("user_id"),
        "as_of": pl.lit(as_of, dtype=UTC_US),
        "days_since_last_event": pl.col("__last_age") / US_PER_DAY,
        "days_since_last_add_to_cart": pl.col("__last_atc_age") / US_PER_DAY,
        "days_since_last_purchase": pl.col("__last_purchase_age") / US_PER_DAY,
        "days_since_first_event": pl.col("__first_age") / US_PER_DAY,
        "cart_open": cart_open.cast(pl.Float64),
        "hours_since_cart_abandoned": pl.when(cart_open).then(pl.col("__last_atc_age") / US_PER_HOUR),
        "cart_abandon_rate_30d": _share("__abandoned_sessions", "__cart_sessions"),
        **{f"device_share_{d}_30d": _share(f"__device_{d}", "__devices_30d") for d in DEVICES},
        **{f"source_share_{s}_30d": _share(f"__source_{s}", "__sources_30d") for s in SOURCES},
        "age": age,
        "age_band": _age_band(age),
        # A signup after as_of is not known at as_of: no tenure then.
        "tenure_days": pl.when(signup_us <= as_of_us).then((as_of_us - signup_us) / US_PER_DAY),
        LABEL_COLUMN: pl.col(LABEL_COLUMN).fill_null(0),
    }
    return frame.select([
        derived.get(name, pl.col(name)).cast(dtype).alias(name) for name, dtype in SNAPSHOT_SCHEMA.items()
    ])


def build_snapshot(events: pl.DataFrame, users: pl.DataFrame | None, as_of: datetime, horizon: timedelta,
                   *, consent_default: bool = True, exclude_users: Collection[str] = ()) -> pl.DataFrame:
    """One point-in-time snapshot: KEY_COLUMNS + FEATURE_NAMES + ["label"], one row per user.

    ``events`` are clean events (:func:`features.ingest.validate_events`); ``users`` the clean CRM
    frame or None. ``as_of`` is the cut-off (naive means UTC); ``horizon`` the label window.
    Users with ``consent`` false (or null/absent when ``consent_default`` is False) and users in
    ``exclude_users`` are left out. Rows are sorted by user_id; numeric features are float64,
    categoricals strings, ``label`` int64 0/1.
    """
    return snapshot_lazy(events, users, as_of, horizon, consent_default=consent_default,
                         exclude_users=exclude_users).sort("user_id").collect(engine=POLARS_ENGINE)


def snapshot_times(as_of: datetime, k: int, every: timedelta) -> list[datetime]:
    """The cut-offs of ``k`` stacked snapshots, oldest first: as_of - (k-1)*every, ..., as_of."""
    if k < 1:
        raise ValueError(f"the number of snapshots must be >= 1, got {k}")
    as_of = to_utc(as_of)
    return [as_of - i * every for i in reversed(range(k))]


def build_snapshots_at(events: pl.DataFrame, users: pl.DataFrame | None, as_ofs: Sequence[datetime],
                       horizon: timedelta, *, consent_default: bool = True,
                       exclude_users: Collection[str] = ()) -> pl.DataFrame:
    """Snapshots at each cut-off in ``as_ofs`` stacked, sorted by (as_of, user_id)."""
    events_lf = events.lazy()
    users_lf = users.lazy() if users is not None else None
    queries = [snapshot_lazy(events_lf, users_lf, t, horizon, consent_default=consent_default,
                             exclude_users=exclude_users) for t in as_ofs]
    if not queries:
        return pl.DataFrame(schema=SNAPSHOT_SCHEMA)
    return pl.concat(queries).sort("as_of", "user_id").collect(engine=POLARS_ENGINE)


def build_snapshots(events: pl.DataFrame, users: pl.DataFrame | None, as_of: datetime, horizon: timedelta,
                    k: int = 1, every: timedelta = timedelta(days=7), *, consent_default: bool = True,
                    exclude_users: Collection[str] = ()) -> pl.DataFrame:
    """``k`` snapshots at as_of, as_of - every, ... stacked (rolling cut-offs), sorted by (as_of, user_id).

    Each has the semantics of :func:`build_snapshot`; a user appears once per cut-off at which they
    have history.
    """
    return build_snapshots_at(events, users, snapshot_times(as_of, k, every), horizon,
                              consent_default=consent_default, exclude_users=exclude_users)
