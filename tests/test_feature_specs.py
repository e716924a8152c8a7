"""Feature definitions: batch (Polars) == Spark == online for every spec, and the user file validated.

The parity test is a property of the specs: hypothesis draws event streams (any order, nulls,
unknown event types, events after ``as_of``), an ``as_of`` and extra specs a user could write in
configs/features.yaml, and requires every feature of the built-ins plus the drawn specs to agree
between :func:`features.batch.snapshot.build_snapshot`, the Spark engine and
:func:`features.live.profile.online_features`: counts exactly, sums and means to 1e-9 relative.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features.definitions import AGGREGATES, BUILTIN, FeatureSet, FeatureSpec, parse_user_specs
from features.ingest.tables import EVENT_SCHEMA
from features.live.profile import EventRecord, UserProfile, online_features, to_epoch_us
from features.schema import EVENT_TYPES
from propensity.errors import ConfigError

BASE = datetime(2024, 3, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
HORIZON = timedelta(days=7)
USERS = ("u1", "u2", "u3")
STRINGS = {"page_type": ("product", "home", "category"), "category": ("shoes", "hats", "Shoes"),
           "product_id": ("p1", "p2"), "device": ("mobile", "desktop", "tablet"),
           "source": ("direct", "search", "ads", "affiliate"), "session_id": ("s1", "s2", "s3", "s4")}
NUMBERS = {"value": 1000.0, "duration_s": 600.0, "scroll_depth": 1.0}


def _maybe(values: Any) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(values))


def _number(high: float) -> st.SearchStrategy:
    exact = st.integers(0, int(high * 100)).map(lambda c: c / 100)  # cents, like money
    return st.one_of(st.none(), exact, st.floats(0, high, allow_nan=False, allow_infinity=False))


@st.composite
def events(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        row = {"event_id": f"e{i}", "user_id": draw(st.sampled_from(USERS)),
               # 45 days before BASE to 3 days after, microsecond resolution; some on day boundaries
               "ts": to_epoch_us(BASE) + draw(st.one_of(st.integers(-45 * DAY_US, 3 * DAY_US),
                                                         st.integers(-45, 3).map(lambda d: d * DAY_US))),
               "event": draw(st.sampled_from((*EVENT_TYPES, "wishlist")))}
        row.update({name: draw(_maybe(values)) for name, values in STRINGS.items()})
        row.update({name: draw(_number(high)) for name, high in NUMBERS.items()})
        out.append(row)
    return out


@st.composite
def user_entry(draw: st.DrawFn, i: int) -> dict[str, Any]:
    """One entry of configs/features.yaml as a user would write it."""
    aggregate = draw(st.sampled_from(list(AGGREGATES)))
    window = draw(st.one_of(st.just("all"), st.integers(1, 40).map(lambda d: f"{d}d")))
    entry: dict[str, Any] = {"name": f"custom_{i}", "aggregate": aggregate, "window": window}
    if draw(st.booleans()):
        entry["events"] = draw(st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        field = draw(st.sampled_from(["page_type", "category", "device", "source"]))
        entry["where"] = {field: draw(st.lists(st.sampled_from(STRINGS[field]), min_size=1, max_size=2))}
    if aggregate in ("sum", "mean", "min", "max"):
        entry["column"] = draw(st.sampled_from(list(NUMBERS)))
    elif aggregate in ("share", "distinct_count"):
        entry["column"] = draw(st.sampled_from(list(STRINGS)))
        if aggregate == "share":
            entry["value"] = draw(st.sampled_from(STRINGS[entry["column"]]))
    return entry


@st.composite
def feature_sets(draw: st.DrawFn) -> FeatureSet:
    n = draw(st.integers(0, 4))
    return FeatureSet(parse_user_specs([draw(user_entry(i)) for i in range(n)]))


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    data = {name: [r.get(name) for r in rows] for name in EVENT_SCHEMA if name != "timestamp"}
    data["timestamp"] = [r["ts"] for r in rows]
    frame = pl.DataFrame(data, schema_overrides={"timestamp": pl.Int64})
    return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC"))).select(
        [pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])


def _online(rows: list[dict[str, Any]], as_of_us: int, fs: FeatureSet, order: list[int]) -> dict[str, dict]:
    profiles: dict[str, UserProfile] = {}
    for i in order:  # any arrival order
        r = rows[i]
        record = EventRecord(r["ts"], r["event_id"], r["event"], r["session_id"], r["page_type"], r["value"],
                             r["duration_s"], r["scroll_depth"], r["device"], r["source"], r["product_id"],
                             r["category"])
        profiles.setdefault(r["user_id"], UserProfile(r["user_id"])).events.append(record)
    return {u: online_features(p, as_of_us, fs) for u, p in profiles.items()}


def _same(name: str, got: Any, want: Any) -> None:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert got is None or (isinstance(got, float) and math.isnan(got)), (name, got, want)
    elif isinstance(want, str):
        assert got == want, (name, got, want)
    else:
        assert got is not None and not math.isnan(got), (name, got, want)
        if isinstance(want, float) and want.is_integer() and not name.startswith("custom_"):
            assert got == want, (name, got, want)  # counts exactly
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (name, got, want)


def _check(batch: pl.DataFrame, online: dict[str, dict], fs: FeatureSet) -> None:
    assert batch.columns[2:-1] == list(fs.names)
    for row in batch.iter_rows(named=True):
        got = online[row["user_id"]]
        assert list(got) == list(fs.names)
        for name in fs.names:
            _same(name, got[name], row[name])


def _snapshot(rows: list[dict[str, Any]], as_of: datetime, fs: FeatureSet) -> pl.DataFrame:
    from features.batch.snapshot import build_snapshot

    return build_snapshot(_frame(rows), None, as_of, HORIZON, feature_set=fs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=events(), offset=st.integers(-2 * DAY_US, 2 * DAY_US), fs=feature_sets(), data=st.data())
def test_batch_equals_online_for_every_spec(rows: list[dict[str, Any]], offset: int, fs: FeatureSet,
                                            data: st.DataObject) -> None:
    as_of_us = to_epoch_us(BASE) + offset
    as_of = BASE + timedelta(microseconds=offset)
    order = data.draw(st.permutations(list(range(len(rows)))))
    _check(_snapshot(rows, as_of, fs), _online(rows, as_of_us, fs, order), fs)


def test_property_test_covers_every_builtin_spec() -> None:
    """The drawn sets always contain every built-in entry (user specs are added, never swapped)."""
    entries = parse_user_specs([{"name": "x", "aggregate": "count", "window": "3d"}])
    assert set(BUILTIN) <= set(entries)
    assert {e.aggregate for e in BUILTIN if isinstance(e, FeatureSpec)} >= {
        "count", "sum", "mean", "share", "distinct_count", "days_since_last", "days_since_first"}


@pytest.fixture(scope="module")
def spark_engine() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java on PATH")
    from features.batch.spark_engine import SparkEngine

    engine = SparkEngine(master="local[2]", shards=3)
    yield engine
    engine.close()


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None,
          phases=[Phase.generate])  # Spark is slow: a few fresh draws, no shrinking
@given(rows=events(), offset=st.integers(-2 * DAY_US, 2 * DAY_US), fs=feature_sets())
def test_spark_equals_batch_and_online(spark_engine: Any, rows: list[dict[str, Any]], offset: int,
                                       fs: FeatureSet) -> None:
    as_of = BASE + timedelta(microseconds=offset)
    from features.batch.engine import LocalEngine

    spark = spark_engine.build(_frame(rows), None, [as_of], HORIZON, feature_set=fs)
    local = LocalEngine().build(_frame(rows), None, [as_of], HORIZON, feature_set=fs)
    assert spark.equals(local)  # the same function per shard: bit-identical
    _check(spark, _online(rows, to_epoch_us(BASE) + offset, fs, list(range(len(rows)))), fs)


# -- configs/features.yaml entries ----------------------------------------------------------------

@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "aggregate": "count", "events": ["wishlist"]}, "[0] 'x': unknown event 'wishlist'"),
    ({"name": "x", "aggregate": "median", "column": "value"}, "[0] 'x': unknown aggregation 'median'"),
    ({"name": "x", "aggregate": "count", "where": {"colour": "red"}}, "[0] 'x': unknown field 'colour'"),
    ({"name": "x", "aggregate": "sum", "column": "category"}, "[0] 'x': unknown field 'category'"),
    ({"name": "x", "aggregate": "count", "window": "fortnight"}, "[0] 'x': window 'fortnight'"),
    ({"name": "x", "aggregate": "count", "colour": 1}, "[0] 'x': unknown key 'colour'"),
    ({"name": "purchases_total", "aggregate": "count"}, "'purchases_total': reuses a built-in feature name"),
])
def test_a_bad_entry_is_one_line_naming_it(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_user_specs([entry])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_override_replaces_a_builtin_in_place() -> None:
    entries = parse_user_specs([{"name": "purchases_total", "aggregate": "count", "events": ["purchase"],
                                 "window": "365d", "override": True}])
    names = [e.name for e in entries]
    assert names == [e.name for e in BUILTIN]
    replaced = entries[names.index("purchases_total")]
    assert isinstance(replaced, FeatureSpec) and replaced.window_days == 365


def test_config_file_entry_is_validated_on_load(tmp_path: Any) -> None:
    from features.batch.config import load_features_config

    path = tmp_path / "features.yaml"
    path.write_text("features:\n  - {name: shoe_views_14d, events: [product_view], where: {category: shoes},"
                    " aggregate: count, window: 14d}\n  - {name: bad, events: [nope], aggregate: count}\n")
    with pytest.raises(ConfigError, match=r"features\.yaml: features\[1\] 'bad': unknown event 'nope'"):
        load_features_config(path)


def test_specs_round_trip_through_json() -> None:
    entry = {"name": "shoe_views_14d", "events": ["product_view"], "where": {"category": "shoes"},
             "aggregate": "count", "window": "14d"}
    fs = FeatureSet(parse_user_specs([entry]))
    assert FeatureSet.from_dicts(fs.to_dicts()) == fs
