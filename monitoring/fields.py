"""Arrival of the model inputs' event fields: a tracking outage seen where it happens.

A model input computed from an event field over a long window hardly moves when one device stops
sending the field: ``avg_scroll_depth_30d`` (the mean scroll depth of the last 30 days) keeps the
mean of what still arrives, and becomes missing only for users whose whole 30 days fall after the
outage, so its PSI grows by a fraction of a percent a day. The field itself stops at once. So per
window the events are counted per field, slice (all events, and each value of the session attributes
``device`` and ``source``) and event type: how many there were and how many carried the field.

Like with like: a window is compared with the window of the same weekday one week earlier, over
the event types that carried the field there (at least half of them did), so neither the weekly
rhythm nor a change of the event mix moves the share. The statistics are the drift ones on the
two-bin (carried, missing) counts: PSI, and the chi-square test on counts scaled down to
``test_sample_rows``. A judged change above both thresholds alerts as drift of every model input
computed from the field (``field`` and ``slice`` say where).

Which events a window sees: in a prediction log, those in the window; in backfill mode (a window is
a snapshot at its start) those of the window before it, the events its snapshot saw first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from monitoring.drift import chi2_p_value, psi_from_counts, scaled_counts

CARRIED_SHARE = 0.5  # an event type carries a field when at least this share of its events had it
NOT_FIELDS = frozenset({"event", "user_id", "timestamp", "event_id"})
WEEK = timedelta(days=7)


def input_fields(feature_names: Sequence[str], event_columns: Sequence[str]) -> dict[str, list[str]]:
    """Event field -> the model inputs computed from it (the specs' ``column`` and ``where`` fields)."""
    from features.feature_set import active_feature_set

    wanted = set(feature_names)
    out: dict[str, list[str]] = {}
    for spec in active_feature_set().specs:
        if spec.name not in wanted:
            continue
        for name in {spec.column, *(w[0] for w in spec.where)}:
            if name and name in event_columns and name not in NOT_FIELDS:
                out.setdefault(name, []).append(spec.name)
    return out


def arrival_counts(events: pl.DataFrame, fields: Sequence[str], slices: Sequence[str], t0: datetime,
                   every: timedelta, lag: timedelta) -> pl.DataFrame:
    """Per (window start ``__w``, field, slice, event type): ``events`` and ``carried`` counts.
    Windows start at ``t0 + k * every``; an event at ``t`` belongs to the window starting at
    ``t + lag`` rounded down."""
    step = every // timedelta(microseconds=1)
    origin = int(t0.timestamp() * 1_000_000)
    shifted = pl.col("timestamp").cast(pl.Int64) + lag // timedelta(microseconds=1)
    window = (((shifted - origin) // step) * step + origin).cast(pl.Datetime("us", "UTC")).alias("__w")
    lf = events.lazy().with_columns(window)
    parts = []
    for name in fields:
        for attr in ("all", *[s for s in slices if s in events.columns and s != name]):
            key = (pl.lit("all") if attr == "all"
                   else pl.lit(f"{attr}=") + pl.col(attr).cast(pl.String).fill_null("<missing>"))
            parts.append(lf.group_by("__w", key.alias("slice"), "event").agg(
                pl.len().alias("events"), pl.col(name).is_not_null().sum().alias("carried"))
                .with_columns(pl.lit(name).alias("field")))
    if not parts:
        return pl.DataFrame(schema={"__w": pl.Datetime("us", "UTC"), "slice": pl.String,
                                    "event": pl.String, "events": pl.UInt32, "carried": pl.UInt32,
                                    "field": pl.String})
    return pl.concat(pl.collect_all(parts), how="vertical_relaxed")


def field_changes(counts: pl.DataFrame, min_rows: int,
                  sample_rows: int) -> dict[datetime, list[dict[str, Any]]]:
    """Per window start: each (field, slice) judged against the same window one week earlier —
    ``{"field", "slice", "share", "share_before", "events", "psi", "p_value"}`` (see the module
    docstring); slices with fewer than ``min_rows`` carrying events on either side are left out."""
    before = counts.with_columns(pl.col("__w") + WEEK).rename({"events": "events_b", "carried": "carried_b"})
    keys = ["__w", "field", "slice", "event"]
    paired = (counts.join(before, on=keys, how="inner")
              .filter(pl.col("carried_b") >= CARRIED_SHARE * pl.col("events_b"))
              .group_by("__w", "field", "slice")
              .agg(pl.col("events", "carried", "events_b", "carried_b").sum())
              .filter((pl.col("events") >= min_rows) & (pl.col("events_b") >= min_rows))
              .sort("__w", "field", "slice"))
    out: dict[datetime, list[dict[str, Any]]] = {}
    for row in paired.iter_rows(named=True):
        now = np.array([row["carried"], row["events"] - row["carried"]], dtype=np.float64)
        then = np.array([row["carried_b"], row["events_b"] - row["carried_b"]], dtype=np.float64)
        out.setdefault(row["__w"], []).append({
            "field": row["field"], "slice": row["slice"], "events": int(row["events"]),
            "share": float(now[0] / now.sum()), "share_before": float(then[0] / then.sum()),
            "psi": psi_from_counts(then, now),
            "p_value": chi2_p_value(*scaled_counts(then, now, sample_rows))})
    return out


def field_alerts(changes: list[dict[str, Any]], feeds: dict[str, list[str]], psi_threshold: float,
                 p_value_threshold: float) -> list[tuple[str, dict[str, Any]]]:
    """(model input, change) for every judged field change above both thresholds, largest PSI first."""
    out = []
    for c in sorted(changes, key=lambda c: -c["psi"] if not math.isnan(c["psi"]) else 0.0):
        if not math.isnan(c["psi"]) and c["psi"] > psi_threshold and c["p_value"] < p_value_threshold:
            out += [(feature, c) for feature in feeds.get(c["field"], [])]
    return out
