"""Feature engines: where the snapshot computation runs, chosen by ``engine:`` in configs/features.yaml.

Every engine computes exactly :func:`features.batch.snapshot.build_snapshots_at` — the same Polars code —
and must return the same frame for the same input (``tests/test_spark.py`` checks the Spark
engine against the local one):

- :class:`LocalEngine` runs it in-process;
- :class:`features.batch.spark_engine.SparkEngine` shards users by a hash of ``user_id`` and runs it on each
  shard inside Spark (``applyInArrow``), for event logs larger than one machine's memory.

Guarantees of :meth:`FeatureEngine.build`: rows sorted by (as_of, user_id), columns and dtypes of
:data:`features.batch.snapshot.SNAPSHOT_SCHEMA`, users in ``exclude_users`` and users without consent
absent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from types import TracebackType

import polars as pl

from features.batch.config import FeaturesConfig
from features.batch.snapshot import build_snapshots_at
from features.definitions import FeatureSet


class FeatureEngine(ABC):
    """Computes stacked snapshots from clean events and users (see the module docstring)."""

    name: str

    @abstractmethod
    def build(self, events: pl.DataFrame, users: pl.DataFrame | None, as_ofs: Sequence[datetime],
              horizon: timedelta, *, consent_default: bool = True,
              exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None) -> pl.DataFrame:
        """Snapshots at each cut-off of ``as_ofs`` (label window ``horizon``), stacked; the features of
        ``feature_set`` (default: the configured set)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release resources held by the engine (a Spark session); a no-op by default."""

    def __enter__(self) -> FeatureEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LocalEngine(FeatureEngine):
    """Polars in this process (all cores Polars is allowed to use)."""

    name = "local"

    def build(self, events: pl.DataFrame, users: pl.DataFrame | None, as_ofs: Sequence[datetime],
              horizon: timedelta, *, consent_default: bool = True,
              exclude_users: Collection[str] = (), feature_set: FeatureSet | None = None) -> pl.DataFrame:
        return build_snapshots_at(events, users, as_ofs, horizon, consent_default=consent_default,
                                  exclude_users=exclude_users, feature_set=feature_set)


def make_engine(config: FeaturesConfig) -> FeatureEngine:
    """The engine named by ``config.engine``; pyspark is imported only for ``spark``."""
    if config.engine == "spark":
        from features.batch.spark_engine import SparkEngine

        return SparkEngine(master=config.spark.master, shards=config.spark.shards,
                           driver_memory=config.spark.driver_memory)
    return LocalEngine()
