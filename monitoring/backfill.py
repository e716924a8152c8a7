"""Backfill mode: prediction-log records from an events file, so history can be monitored without a
live log. At each window start a point-in-time snapshot is built (the same code as training data:
every consenting user with history, features strictly before the cut-off) and scored with the
model; each row becomes a record with ``time`` = the cut-off and ``source`` = ``backfill``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from features.batch.snapshot import SNAPSHOT_EVENT_COLUMNS, build_snapshots_at
from features.ingest.tables import read_table
from features.ingest.validate import validate_events, validate_users
from monitoring.log import LOG_SCHEMA
from propensity.progress import Progress

SEGMENT_COLUMNS = ("engagement_score", "journey_stage")


def read_events(events_path: str | Path, users_path: str | Path | None
                ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Clean events and users (ingestion's validation: duplicates and bad rows left out)."""
    events = validate_events(read_table(events_path, SNAPSHOT_EVENT_COLUMNS), source=str(events_path)).clean
    users = validate_users(read_table(users_path), source=str(users_path)).clean if users_path else None
    return events, users


def snapshot_records(model: object, name: str, version: str, events: pl.DataFrame,
                     users: pl.DataFrame | None, as_ofs: Sequence[datetime], horizon: timedelta,
                     progress: Progress | None = None) -> pl.DataFrame:
    """Records in the prediction-log shape (:data:`monitoring.log.LOG_SCHEMA` plus the feature
    columns) for the snapshots at ``as_ofs``, scored by ``model`` (a ``ConversionModel``)."""
    say = progress or (lambda _m: None)
    if not as_ofs:
        return pl.DataFrame(schema=LOG_SCHEMA)
    say(f"monitor: building {len(as_ofs)} snapshots")
    frame = build_snapshots_at(events, users, as_ofs, horizon)
    if set(SEGMENT_COLUMNS) & set(model.feature_names):  # type: ignore[attr-defined]
        from features.segments.stage import add_segment_features

        frame = add_segment_features(frame, events, None)
    say(f"monitor: scoring {frame.height} rows")
    probability = model.predict_proba(frame)  # type: ignore[attr-defined]
    records = frame.drop("label").with_columns(
        pl.concat_str([pl.lit("bf-"), pl.col("as_of").dt.strftime("%Y%m%d%H%M"), pl.lit("-"),
                       pl.col("user_id")]).alias("request_id"),
        pl.col("as_of").alias("time"),
        pl.lit(name).alias("model_name"), pl.lit(version).alias("model_version"),
        pl.lit(None, pl.String).alias("variant"), pl.lit(None, pl.String).alias("experiment"),
        pl.Series("probability", probability, dtype=pl.Float64),
        pl.lit(None, pl.String).alias("segment"),
        *([] if "journey_stage" in frame.columns else [pl.lit(None, pl.String).alias("journey_stage")]),
        pl.lit(None, pl.String).alias("decision"), pl.lit("backfill").alias("source"),
    )
    features = [c for c in records.columns if c not in LOG_SCHEMA and c != "as_of"]
    return records.select(*[pl.col(c).cast(t) for c, t in LOG_SCHEMA.items()], *features)
