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

from features.batch.evaluate import AGE as _AGE
from features.batch.evaluate import FIXED_COLUMNS as _FIXED_COLUMNS
from features.batch.evaluate import FIXED_POINT, all_aggregations, finishers
from features.batch.evaluate import fixed as _fixed
from features.definitions import FeatureSet
from features.feature_set import active_feature_set
from features.ingest.tables import EVENT_SCHEMA, USER_SCHEMA, UTC_US
from features.registry import FEATURE_NAMES, KEY_COLUMNS, LABEL_COLUMN
from features.special import cart_aggregates, cart_columns, cart_sessions, profile_columns

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
__all__ = ["FIXED_POINT", "SNAPSHOT_COLUMNS", "SNAPSHOT_SCHEMA", "build_snapshot", "snapshot_schema"]


def snapshot_schema(feature_set: FeatureSet | None = None) -> dict[str, pl.DataType]:
    """Columns and dtypes of a snapshot of ``feature_set`` (default: the configured features)."""
    fs = feature_set or active_feature_set()
    return {
        "user_id": pl.String(),
        "as_of": UTC_US,
        **{f.name: (pl.String() if f.kind == "categorical" else pl.Float64()) for f in fs.features},
        LABEL_COLUMN: pl.Int64(),
    }


# The built-in snapshot (no features added in configs/features.yaml).
SNAPSHOT_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *FEATURE_NAMES, LABEL_COLUMN)
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = snapshot_schema(FeatureSet())
POLARS_ENGINE: Final = "streaming"
# The event columns features are computed from.
SNAPSHOT_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "user_id", "timestamp", "event", "session_id", "page_type", "product_id", "category",
    "value", "duration_s", "scroll_depth", "device", "source",
)


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


def conformed_inputs(events: pl.DataFrame | pl.LazyFrame, users: pl.DataFrame | pl.LazyFrame | None,
                     exclude_users: Collection[str] = ()) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Events and users in the canonical schema, without the users of ``exclude_users`` (the
    privacy deletions): what the local build and every Spark shard start from."""
    ev, crm = conform_events(events), conform_users(users)
    if exclude_users:
        gone = pl.Series("user_id", sorted(exclude_users), dtype=pl.String)
        ev = ev.filter(~pl.col("user_id").is_in(gone))
        crm = crm.filter(~pl.col("user_id").is_in(gone))
    return ev, crm


def snapshot_lazy(events: pl.DataFrame | pl.LazyFrame, users: pl.DataFrame | pl.LazyFrame | None,
                  as_of: datetime, horizon: timedelta, *, consent_default: bool = True,
                  exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None) -> pl.LazyFrame:
    """The lazy query behind :func:`build_snapshot` (see there); rows are not sorted."""
    fs = feature_set or active_feature_set()
    as_of = to_utc(as_of)
    as_of_us = _epoch_us(as_of)
    end_us = as_of_us + horizon // timedelta(microseconds=1)
    ev, crm = conformed_inputs(events, users, exclude_users)
    ts_us = pl.col("timestamp").cast(pl.Int64)
    history = ev.filter(ts_us < as_of_us).with_columns((pl.lit(as_of_us) - ts_us).alias(_AGE),
                                                       *[_fixed(c) for c in _FIXED_COLUMNS])
    buyers = (ev.filter((pl.col("event") == "purchase") & (ts_us >= as_of_us) & (ts_us < end_us))
              .select("user_id").unique().with_columns(pl.lit(1, pl.Int64).alias(LABEL_COLUMN)))
    specs = fs.specs
    per_user = history.group_by("user_id").agg(all_aggregations(specs) + cart_aggregates())
    frame = (
        per_user.join(cart_sessions(history), on="user_id", how="left")
        .join(crm, on="user_id", how="left")
        .join(buyers, on="user_id", how="left")
        .filter(pl.col("consent").fill_null(consent_default))
    )
    derived = {
        "user_id": pl.col("user_id"),
        "as_of": pl.lit(as_of, dtype=UTC_US),
        **finishers(specs),
        **cart_columns(),
        **profile_columns(as_of_us),
        LABEL_COLUMN: pl.col(LABEL_COLUMN).fill_null(0),
    }
    return frame.select([
        derived.get(name, pl.col(name)).cast(dtype).alias(name) for name, dtype in snapshot_schema(fs).items()
    ])


def build_snapshot(events: pl.DataFrame, users: pl.DataFrame | None, as_of: datetime, horizon: timedelta,
                   *, consent_default: bool = True, exclude_users: Collection[str] = (),
                   feature_set: FeatureSet | None = None) -> pl.DataFrame:
    """One point-in-time snapshot: KEY_COLUMNS + FEATURE_NAMES + ["label"], one row per user.

    ``events`` are clean events (:func:`features.ingest.validate_events`); ``users`` the clean CRM
    frame or None. ``as_of`` is the cut-off (naive means UTC); ``horizon`` the label window.
    Users with ``consent`` false (or null/absent when ``consent_default`` is False) and users in
    ``exclude_users`` are left out. Rows are sorted by user_id; numeric features are float64,
    categoricals strings, ``label`` int64 0/1. ``feature_set``: the features to compute (default:
    the built-ins plus those of configs/features.yaml, :func:`features.feature_set.active_feature_set`).
    """
    return snapshot_lazy(events, users, as_of, horizon, consent_default=consent_default,
                         exclude_users=exclude_users, feature_set=feature_set
                         ).sort("user_id").collect(engine=POLARS_ENGINE)


def snapshot_times(as_of: datetime, k: int, every: timedelta) -> list[datetime]:
    """The cut-offs of ``k`` stacked snapshots, oldest first: as_of - (k-1)*every, ..., as_of."""
    if k < 1:
        raise ValueError(f"the number of snapshots must be >= 1, got {k}")
    as_of = to_utc(as_of)
    return [as_of - i * every for i in reversed(range(k))]


def build_snapshots_at(events: pl.DataFrame, users: pl.DataFrame | None, as_ofs: Sequence[datetime],
                       horizon: timedelta, *, consent_default: bool = True,
                       exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None
                       ) -> pl.DataFrame:
    """Snapshots at each cut-off in ``as_ofs`` stacked, sorted by (as_of, user_id)."""
    events_lf = events.lazy()
    users_lf = users.lazy() if users is not None else None
    fs = feature_set or active_feature_set()
    queries = [snapshot_lazy(events_lf, users_lf, t, horizon, consent_default=consent_default,
                             exclude_users=exclude_users, feature_set=fs) for t in as_ofs]
    if not queries:
        return pl.DataFrame(schema=snapshot_schema(fs))
    return pl.concat(queries).sort("as_of", "user_id").collect(engine=POLARS_ENGINE)


def build_snapshots(events: pl.DataFrame, users: pl.DataFrame | None, as_of: datetime, horizon: timedelta,
                    k: int = 1, every: timedelta = timedelta(days=7), *, consent_default: bool = True,
                    exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None
                    ) -> pl.DataFrame:
    """``k`` snapshots at as_of, as_of - every, ... stacked (rolling cut-offs), sorted by (as_of, user_id).

    Each has the semantics of :func:`build_snapshot`; a user appears once per cut-off at which they
    have history.
    """
    return build_snapshots_at(events, users, snapshot_times(as_of, k, every), horizon,
                              consent_default=consent_default, exclude_users=exclude_users,
                              feature_set=feature_set)
