"""Feature engines: the contract every backend keeps, and Spark equal to local on generated data.

The Spark engine runs the same Polars code per user shard; one Spark session (local[2]) serves
the whole module.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from features.batch.engine import FeatureEngine, LocalEngine
from features.batch.snapshot import snapshot_times
from features.ingest.tables import EVENT_SCHEMA, USER_SCHEMA
from features.schema import DEVICES, EVENT_TYPES, SOURCES

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]
WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def spark_engine() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java on PATH")
    from features.batch.spark_engine import SparkEngine

    engine = SparkEngine(master="local[2]", shards=4)
    yield engine
    engine.close()


@pytest.fixture(params=["local", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])])
def engine(request: pytest.FixtureRequest) -> FeatureEngine:
    if request.param == "spark":
        spark: FeatureEngine = request.getfixturevalue("spark_engine")
        return spark
    return LocalEngine()


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


def _tiny(rows: Sequence[tuple[str, float, str]]) -> pl.DataFrame:
    """Events from (user, hours relative to AS_OF, event)."""
    return pl.DataFrame([{**{c: None for c in EVENT_SCHEMA}, "event_id": f"e{i}", "user_id": u,
                          "timestamp": AS_OF + timedelta(hours=h), "event": e}
                         for i, (u, h, e) in enumerate(rows)], schema=EVENT_SCHEMA)


# --- the contract every engine keeps ---------------------------------------------------------------


def test_engine_rows_are_sorted_users_with_history_in_the_snapshot_schema(engine: FeatureEngine) -> None:
    events = _tiny([("b", -30, "page_view"), ("a", -2, "page_view"), ("c", 5, "page_view"),
                    ("a", -200, "purchase")])
    out = engine.build(events, None, [AS_OF - timedelta(hours=24), AS_OF], WEEK)
    assert out.select("as_of", "user_id").rows() == [
        (AS_OF - timedelta(hours=24), "a"), (AS_OF - timedelta(hours=24), "b"), (AS_OF, "a"), (AS_OF, "b")]
    local = LocalEngine().build(events, None, [AS_OF - timedelta(hours=24), AS_OF], WEEK)
    assert out.schema == local.schema


def test_engine_leaves_out_forgotten_users_and_users_without_consent(engine: FeatureEngine) -> None:
    events = _tiny([(u, -1, "page_view") for u in ("keep", "gone", "no", "unknown", "no_row")])
    users = pl.DataFrame({"user_id": ["keep", "gone", "no", "unknown"], "consent": [True, True, False, None]},
                         schema={"user_id": pl.String, "consent": pl.Boolean})
    out = engine.build(events, users, [AS_OF], WEEK, consent_default=False, exclude_users={"gone"})
    assert out["user_id"].to_list() == ["keep"]


def test_engine_label_uses_the_horizon_and_features_ignore_the_future(engine: FeatureEngine) -> None:
    past = [("a", -3, "add_to_cart"), ("b", -3, "page_view")]
    future = [("a", 1, "purchase"), ("b", 24 * 7, "purchase"), ("a", 2, "add_to_cart")]
    without = engine.build(_tiny(past), None, [AS_OF], WEEK)
    out = engine.build(_tiny(past + future), None, [AS_OF], WEEK)
    assert dict(out.select("user_id", "label").rows()) == {"a": 1, "b": 0}
    assert out.drop("label").equals(without.drop("label"))


# --- Spark equals local on generated data ----------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_spark_and_local_engines_give_identical_snapshots(spark_engine: Any) -> None:
    events = _events(40_000, 1_500, seed=11)
    users = _users(1_200, seed=11)  # the last 300 users have events but no CRM row
    as_ofs = snapshot_times(AS_OF, 2, timedelta(days=7))
    gone = {"3", "17"}
    local = LocalEngine().build(events, users, as_ofs, WEEK, exclude_users=gone)
    distributed = spark_engine.build(events, users, as_ofs, WEEK, exclude_users=gone)
    assert local.height > 2_000
    assert distributed.schema == local.schema
    assert distributed.equals(local)
