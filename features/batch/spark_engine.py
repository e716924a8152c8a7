"""The Spark feature engine: the local Polars snapshot code applied per user shard with ``applyInArrow``.

Users are split into ``shards`` groups by ``pmod(xxhash64(user_id), shards)``; events and CRM rows of a
shard are co-grouped and handed to :func:`features.batch.snapshot.build_snapshots_at` as Arrow tables.
Every feature is a per-user aggregate computed exactly (integer time and fixed-point sums), so the
union of the shards equals the local build bit for bit.

Notes from this stack: Spark refuses nanosecond Parquet timestamps (we write µs), its Python
workers must run this interpreter (``PYSPARK_PYTHON``), and ``applyInArrow`` checks the returned
Arrow types exactly (``string``, not ``large_string``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from features.batch.engine import FeatureEngine
from features.batch.snapshot import (
    SNAPSHOT_SCHEMA,
    build_snapshots_at,
    conformed_inputs,
    snapshot_schema,
)
from features.definitions import FeatureSet
from features.feature_set import active_feature_set

_SHARD = "__shard"


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    if dtype == pl.String:
        return pa.string()
    if dtype == pl.Float64:
        return pa.float64()
    if dtype == pl.Int64:
        return pa.int64()
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp("us", tz="UTC")
    raise TypeError(f"no Arrow mapping for snapshot dtype {dtype}")


def arrow_schema(schema: dict[str, pl.DataType]) -> pa.Schema:
    """The Arrow schema of a snapshot schema."""
    return pa.schema([pa.field(name, _arrow_type(dtype)) for name, dtype in schema.items()])


ARROW_SCHEMA = arrow_schema(SNAPSHOT_SCHEMA)


def _shard_function(as_ofs: Sequence[datetime], horizon: timedelta,
                    consent_default: bool, feature_set: FeatureSet) -> Any:
    """The per-shard function: (events, users) Arrow tables -> snapshot rows as an Arrow table.

    The feature set travels with the function (pickled), so every worker computes the driver's
    definitions whatever configs/ the worker machine has."""
    target = arrow_schema(snapshot_schema(feature_set))

    def run(events: pa.Table, users: pa.Table) -> pa.Table:
        frame = build_snapshots_at(pl.from_arrow(events).drop(_SHARD),  # type: ignore[union-attr]
                                   pl.from_arrow(users).drop(_SHARD),  # type: ignore[union-attr]
                                   as_ofs, horizon, consent_default=consent_default, feature_set=feature_set)
        return frame.to_arrow().cast(target)

    return run


class SparkEngine(FeatureEngine):
    """Spark (``master``, e.g. ``local[2]`` or a cluster URL) running the Polars code per user shard."""

    name = "spark"

    def __init__(self, master: str = "local[2]", shards: int = 8, driver_memory: str = "2g") -> None:
        self.master = master
        self.shards = shards
        self.driver_memory = driver_memory
        self._session: Any = None

    @property
    def session(self) -> Any:
        """The Spark session, started on first use (UTC session time zone, Arrow enabled)."""
        if self._session is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark.sql import SparkSession

            self._session = (
                SparkSession.builder.master(self.master).appName("propensity-features")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.driver.memory", self.driver_memory)
                .config("spark.sql.shuffle.partitions", str(self.shards))
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.ui.enabled", "false")
                .getOrCreate()
            )
            self._session.sparkContext.setLogLevel("ERROR")
        return self._session

    def build(self, events: pl.DataFrame, users: pl.DataFrame | None, as_ofs: Sequence[datetime],
              horizon: timedelta, *, consent_default: bool = True,
              exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None) -> pl.DataFrame:
        from pyspark.sql import functions as F

        fs = feature_set or active_feature_set()
        schema = snapshot_schema(fs)
        ev, crm = conformed_inputs(events, users, exclude_users)
        spark = self.session
        with tempfile.TemporaryDirectory(prefix="propensity-spark-") as tmp:
            ev_path, users_path = Path(tmp) / "events.parquet", Path(tmp) / "users.parquet"
            ev.sink_parquet(ev_path)
            crm.sink_parquet(users_path)
            shard = F.pmod(F.xxhash64("user_id"), F.lit(self.shards)).alias(_SHARD)
            left = spark.read.parquet(str(ev_path)).select("*", shard).groupBy(_SHARD)
            right = spark.read.parquet(str(users_path)).select("*", shard).groupBy(_SHARD)
            result = left.cogroup(right).applyInArrow(
                _shard_function(list(as_ofs), horizon, consent_default, fs), schema=_spark_schema(schema))
            table = result.toArrow()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.select([pl.col(c).cast(t) for c, t in schema.items()]).sort("as_of", "user_id")

    def close(self) -> None:
        if self._session is not None:
            self._session.stop()
            self._session = None


def _spark_schema(schema: dict[str, pl.DataType]) -> Any:
    from pyspark.sql import types as T

    spark_types = {pa.string(): T.StringType(), pa.float64(): T.DoubleType(), pa.int64(): T.LongType(),
                   pa.timestamp("us", tz="UTC"): T.TimestampType()}
    return T.StructType([T.StructField(f.name, spark_types[f.type], True) for f in arrow_schema(schema)])
