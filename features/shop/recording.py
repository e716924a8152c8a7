"""What the tracking records of the behaviour: lost events and fields, duplicates and corrupted rows.

* A ``tracking`` disparity keeps only a share of its group's client-side events (purchases are
  server-side and always recorded); a ``tracking`` shift drops one field from an onset day on.
* **Noise**: a share of events is delivered twice (same ``event_id``) and a share of extra
  corrupted rows (missing ids or timestamp, negative value or duration, scroll depth above 1) is
  mixed in; ingestion must de-duplicate and quarantine them. Corrupted rows are copies of
  non-purchase events, so they never change a label.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from features.shop.config import GenerateConfig


def lose_tracking(factor: float, rng: np.random.Generator, events: pl.DataFrame,
                   group: pl.Series) -> pl.DataFrame:
    """Keep only a share ``factor`` of the client-side events of the users in ``group`` (their
    purchases all stay)."""
    in_group = events["user_id"].is_in(group.implode()).to_numpy()
    keep = ~in_group | (events["event"] == "purchase").to_numpy() | (rng.random(events.height) < factor)
    return events.filter(pl.Series(keep))


def stop_tracking(cfg: GenerateConfig, events: pl.DataFrame) -> pl.DataFrame:
    """Tracking shifts: from the onset day, events of sessions with the attribute value lose the field."""
    day0 = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC)
    for shift in (s for s in cfg.shifts if s.kind == "tracking"):
        assert shift.field is not None
        onset = day0 + timedelta(days=shift.day)
        lost = (pl.col(shift.feature) == shift.value) & (pl.col("timestamp") >= onset)
        events = events.with_columns(pl.when(lost).then(None).otherwise(pl.col(shift.field))
                                     .alias(shift.field))
    return events


def add_noise(cfg: GenerateConfig, rng: np.random.Generator,
           events: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Append duplicate deliveries and corrupted rows, then order by time (bad timestamps last)."""
    n = events.height
    n_dup = int(round(cfg.duplicate_share * n))
    n_bad = int(round(cfg.malformed_share * n))
    dups = events[np.sort(rng.choice(n, size=n_dup, replace=False))] if n_dup else events.clear()
    candidates = np.flatnonzero(events["event"].to_numpy() != "purchase")
    bad = events[np.sort(rng.choice(candidates, size=min(n_bad, len(candidates)), replace=False))] \
        if n_bad else events.clear()
    kind = rng.integers(0, 5, bad.height)
    kinds = pl.Series("kind", kind)
    bad = bad.with_columns(kinds).with_columns(
        pl.concat_str([pl.lit("x"), pl.int_range(pl.len()).cast(pl.String).str.zfill(8)]).alias("event_id"),
        pl.when(pl.col("kind") == 0).then(None).otherwise(pl.col("user_id")).alias("user_id"),
        pl.when(pl.col("kind") == 1).then(None).otherwise(pl.col("timestamp")).alias("timestamp"),
        pl.when(pl.col("kind") == 2).then(-pl.col("value").fill_null(9.99)).otherwise(pl.col("value"))
        .alias("value"),
        pl.when(pl.col("kind") == 3).then(1.0 + pl.col("scroll_depth").fill_null(0.5))
        .otherwise(pl.col("scroll_depth")).alias("scroll_depth"),
        pl.when(pl.col("kind") == 4).then(-1.0 - pl.col("duration_s")).otherwise(pl.col("duration_s"))
        .alias("duration_s"),
    ).drop("kind")
    out = pl.concat([events, dups, bad]).sort("timestamp", nulls_last=True, maintain_order=True)
    return out, n_dup, bad.height

