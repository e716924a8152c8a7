"""The Spark engine gives exactly the local engine's snapshots (same Polars code per user shard)."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from features.engine import LocalEngine
from features.ingest import EVENT_SCHEMA, USER_SCHEMA
from features.schema import DEVICES, EVENT_TYPES, SOURCES
from features.snapshot import snapshot_times

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


def _events(n: int, n_users: int, seed: int) -> pl.DataFrame:
    """Random clean events over 60 days before and 7 days after AS_OF, skewed user activity."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    user = rng.choice(n_users, n, p=activity / activity.sum())
    start = AS_OF - timedelta(days=60)
    offsets = rng.integers(0, 67 * 86_400_000_000, n)
    return pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "user_id": user.astype(str),
        "timestamp": [start + timedelta(microseconds=int(o)) for o in offsets],
        "event": rng.choice([*EVENT_TYPES, "custom"], n),
        "session_id": [f"{u}-{o // 14_400_000_000}" for u, o in zip(user, offsets, strict=True)],
        "page_type": rng.choice(["home", "product", "cart"], n),
        "product_id": None,
        "category": None,
        "value": np.round(rng.gamma(2.0, 30.0, n), 2),
        "duration_s": np.where(rng.random(n) < 0.2, np.nan, np.round(rng.exponential(40.0, n), 1)),
        "scroll_depth": np.round(rng.random(n), 3),
        "device": rng.choice([*DEVICES, "tv"], n),
        "source": rng.choice(SOURCES, n),
    }, schema=EVENT_SCHEMA).with_columns(pl.col("duration_s").fill_nan(None))


def _users(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "user_id": [str(i) for i in range(n)],
        "age": rng.integers(16, 80, n),
        "gender": rng.choice(["female", "male", "diverse"], n),
        "country": rng.choice(["de", "fr", "es"], n),
        "loyalty_tier": rng.choice(["none", "silver", "gold"], n),
        "signup_date": [date(2023, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 450, n)],
        "consent": rng.random(n) > 0.05,
    }, schema=USER_SCHEMA)


def test_spark_and_local_engines_give_identical_snapshots() -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java on PATH")
    from features.spark_engine import SparkEngine

    events = _events(40_000, 1_500, seed=11)
    users = _users(1_200, seed=11)  # the last 300 users have events but no CRM row
    as_ofs = snapshot_times(AS_OF, 2, timedelta(days=7))
    kwargs = {"consent_default": True, "exclude_users": {"3", "17"}}
    local = LocalEngine().build(events, users, as_ofs, timedelta(days=7), **kwargs)
    with SparkEngine(master="local[2]", shards=4) as spark:
        distributed = spark.build(events, users, as_ofs, timedelta(days=7), **kwargs)
    assert local.height > 2_000
    assert distributed.schema == local.schema
    assert distributed.equals(local)
