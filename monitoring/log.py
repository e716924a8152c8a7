"""The prediction log: one record per answered prediction, and how outcomes are joined to it.

This is the one place the schema is defined. The service appends these records (serving/predlog.py:
Parquet files in a folder, or a Redis stream); ``propensity monitor --predictions LOG`` and the
backfill mode both produce and read this shape. LOG is a Parquet file, a folder of them (searched
recursively), or ``redis://HOST:PORT/DB#STREAM_KEY`` (the stream the service writes).

| column | type | notes |
|---|---|---|
| request_id | string | unique per prediction |
| time | timestamp (µs, UTC) | when the prediction was made |
| user_id | string | |
| model_name, model_version | string | the registered model that answered |
| variant | string | experiment arm (``champion``/``challenger``/...) or null |
| experiment | string | the experiment the user was enrolled in when it answered (null: none) |
| probability | float64 | P(convert within the horizon) |
| segment, journey_stage, decision | string | as answered (null when not computed) |
| source | string | where the features came from: ``profile`` (online store), ``features`` (sent |
|  |  | raw in the request) or ``backfill`` (a snapshot scored by ``propensity monitor``) |
| *features* | as in the snapshot | the model inputs (:data:`features.registry.FEATURE_NAMES` and |
|  |  | segment features); null on records outside the configured feature sample share |

Outcome: a record is *converted* when its user has a ``purchase`` event in ``[time, time + horizon)``;
it is *labelled* once ``time + horizon`` is not after the latest event time seen.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from propensity.errors import DataError
from propensity.redact import redact

UTC_US = pl.Datetime("us", "UTC")
LOG_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(), "time": UTC_US, "user_id": pl.String(), "model_name": pl.String(),
    "model_version": pl.String(), "variant": pl.String(), "experiment": pl.String(),
    "probability": pl.Float64(),
    "segment": pl.String(), "journey_stage": pl.String(), "decision": pl.String(), "source": pl.String(),
}
REQUIRED = ("time", "user_id", "model_version", "probability")


def scan_prediction_log(path: str | Path) -> pl.LazyFrame:
    """A lazy scan of a log file or folder of ``*.parquet`` files, with ``time`` as µs UTC.

    Raises :class:`DataError` for a missing path or a log without the required columns.
    """
    if str(path).startswith(("redis://", "rediss://")):
        return _normalized(read_prediction_stream(str(path)).lazy(), redact(str(path)))
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise DataError(f"{path}: no .parquet files in the prediction log folder")
        lf = _scan_files(files)
    elif path.exists():
        lf = pl.scan_parquet(path)
    else:
        raise DataError(f"{path}: prediction log not found")
    return _normalized(lf, str(path))


def _scan_files(files: list[Path]) -> pl.LazyFrame:
    """One scan of files whose columns may differ (a service restarted with a model computing other
    features): the union of their columns, null where a file lacks one."""
    union: dict[str, pl.DataType] = {}
    for file in files:
        for name, dtype in pl.read_parquet_schema(file).items():
            union.setdefault(name, dtype)
    return pl.scan_parquet(files, schema=union, missing_columns="insert", extra_columns="ignore")


def _normalized(lf: pl.LazyFrame, path: str) -> pl.LazyFrame:
    names = lf.collect_schema().names()
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise DataError(f"{path}: the prediction log has no {', '.join(missing)} column(s)")
    time_type = lf.collect_schema()["time"]
    time = pl.col("time")
    if isinstance(time_type, pl.Datetime):
        time = (time.dt.replace_time_zone("UTC") if time_type.time_zone is None
                else time.dt.convert_time_zone("UTC"))
    else:
        time = time.str.to_datetime(time_zone="UTC")
    return lf.with_columns(time.dt.cast_time_unit("us").alias("time"),
                           pl.col("model_version").cast(pl.String))


def read_prediction_stream(url: str, batch: int = 10_000) -> pl.DataFrame:
    """Every record of the Redis stream ``redis://HOST:PORT/DB#STREAM_KEY`` (one JSON object per
    entry, field ``record``) as a frame; DataError when the URL names no stream or it is empty."""
    import redis

    address, _, key = url.partition("#")
    if not key:
        raise DataError(f"{redact(url)}: name the stream after '#', e.g. redis://127.0.0.1:6379/0#propensity:predictions")
    client = redis.Redis.from_url(address, socket_connect_timeout=2.0)
    lines: list[bytes] = []
    start = "-"
    try:
        while True:
            entries: Any = client.xrange(key, min=start, max="+", count=batch)
            lines.extend(fields[b"record"] for _, fields in entries)
            if len(entries) < batch:
                break
            start = "(" + entries[-1][0].decode()
    except redis.RedisError as exc:
        raise DataError(f"{redact(address)}: cannot read the prediction stream ({exc})") from None
    finally:
        client.close()
    if not lines:
        raise DataError(f"{redact(address)}#{key}: the prediction stream is empty or absent")
    return pl.read_ndjson(io.BytesIO(b"\n".join(lines)), infer_schema_length=None,
                          schema_overrides={"model_version": pl.String()})


def with_outcomes(log: pl.LazyFrame, purchases: pl.LazyFrame, horizon: timedelta,
                  data_end: datetime) -> pl.LazyFrame:
    """``log`` with ``label`` (1 converted, 0 not, null while ``time + horizon > data_end``).

    ``purchases`` holds ``user_id`` and ``timestamp`` of purchase events. For every record the next
    purchase at or after ``time`` is found with an as-of join (forward, by user).
    """
    nxt = purchases.select("user_id", pl.col("timestamp").alias("__next")).sort("__next")
    joined = log.sort("time", maintain_order=True).join_asof(
        nxt, left_on="time", right_on="__next", by="user_id", strategy="forward",
        check_sortedness=False)  # sorted above
    labelled = pl.col("time") + horizon <= pl.lit(data_end).cast(UTC_US)
    soon = pl.col("__next") < pl.col("time") + horizon
    converted = (pl.col("__next").is_not_null() & soon).cast(pl.Int64)
    return joined.with_columns(pl.when(labelled).then(converted).alias("label")).drop("__next")
