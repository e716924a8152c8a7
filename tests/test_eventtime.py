"""One timestamp rule for every path: batch ingestion, HTTP /events (in-process engine) and the consumer.

The same values are accepted or refused identically, and accepted ones land on the same microsecond.
Reference instants are written out by hand (UTC), not computed by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import polars as pl
import pytest
import redis

from features.ingest.eventtime import EPOCH_HINT, parse_event_time
from features.ingest.validate import validate_events
from features.live.redis_store import RedisProfileStore
from features.live.store import InProcessProfileStore
from features.segments.config import load_segments_config
from propensity.errors import DataError
from serving.config import ServingConfig
from serving.consumer import StreamConsumer, StreamSource
from serving.engine import LoadedModel, PredictionEngine

T = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)  # 2026-10-01T10:00:00+02:00
T_US = 1_790_841_600_000_000

# (value, expected epoch µs with unit None, with unit "s"); None = refused.
CASES: list[tuple[Any, int | None, int | None]] = [
    ("2026-10-01T10:00:00+02:00", T_US, T_US),
    ("2026-10-01T10:00:00+0200", T_US, T_US),
    ("2026-10-01T08:00:00Z", T_US, T_US),
    ("2026-10-01t08:00z", T_US, T_US),
    ("2026-10-01 08:00:00", T_US, T_US),  # naive means UTC
    (" 2026-10-01T08:00:00.000001Z ", T_US + 1, T_US + 1),
    ("2026-10-01T08:00:00.123456789Z", T_US + 123_456, T_US + 123_456),  # below 1 µs is dropped
    ("2026-10-01", T_US - 8 * 3_600_000_000, T_US - 8 * 3_600_000_000),
    # Forms the online path used to accept and batch quarantined: refused everywhere now.
    ("20261001T080000Z", None, None),
    ("2026-W40-4", None, None),
    ("2026-274", None, None),
    ("2026-10-01T08", None, None),
    ("2026-10-01T24:00:00Z", None, None),
    ("2026-10-01T08:00:60Z", None, None),
    ("2026-02-29T00:00:00Z", None, None),
    ("2026-10-01T08:00:00+24:00", None, None),
    ("yesterday", None, None),
    ("nan", None, None),
    ("１７９０８４１６００", None, None),  # full-width digits are not a number
    # Epoch numbers: only with a unit.
    (1_790_841_600, None, T_US),
    ("1790841600", None, T_US),
    ("1790841600.5", None, T_US + 500_000),
    (1_790_841_600.25, None, T_US + 250_000),
    ("1e400", None, None),
    (10**20, None, None),
]


def _batch(values: list[Any], unit: str | None) -> list[int | None]:
    """Accepted epoch µs per value through batch ingestion (a string column, or a numeric one)."""
    numeric = all(isinstance(v, int | float) for v in values)
    column = pl.Series(values, dtype=pl.Float64 if any(isinstance(v, float) for v in values) else None,
                       strict=False) if numeric else pl.Series([str(v) for v in values], dtype=pl.String)
    raw = pl.DataFrame({"event_id": [str(i) for i in range(len(values))], "user_id": "u",
                        "event": "page_view", "timestamp": column})
    result = validate_events(raw, timestamp_unit=cast(Any, unit))
    got = dict(zip(result.clean["event_id"], result.clean["timestamp"].dt.epoch("us"), strict=True))
    return [got.get(str(i)) for i in range(len(values))]


def _engine(unit: str | None) -> PredictionEngine:
    cfg = ServingConfig.model_validate({"ingest": {"timestamp_unit": unit}})
    # /events only validates and writes to the store: no model is needed to ingest (no model means
    # the configured feature set).
    return PredictionEngine(cfg, InProcessProfileStore(), LoadedModel(None, "none", "0"),
                            load_segments_config())


def _http(value: Any, unit: str | None) -> int | None:
    engine = _engine(unit)
    try:
        engine.ingest([{"event_id": "e", "user_id": "u", "event": "page_view", "timestamp": value}])
    except DataError:
        return None
    return engine.store.get_profile("u").events[0].ts


@pytest.mark.parametrize("unit", [None, "s"])
def test_parse_event_time_follows_the_rule(unit: str | None) -> None:
    for value, no_unit, seconds in CASES:
        expected = no_unit if unit is None else seconds
        try:
            got: int | None = parse_event_time(value, cast(Any, unit))
        except DataError:
            got = None
        assert got == expected, value


@pytest.mark.parametrize("unit", [None, "s"])
def test_batch_and_http_accept_and_refuse_the_same_timestamps(unit: str | None) -> None:
    expected = [no_unit if unit is None else seconds for _, no_unit, seconds in CASES]
    assert _batch([v for v, _, _ in CASES], unit) == expected
    assert [_http(v, unit) for v, _, _ in CASES] == expected


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_numeric_columns_and_json_numbers_agree_in_every_unit(unit: str) -> None:
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    ints = [1_790_841_600, -86_400, 0]
    floats = [1_790_841_600.5, 0.001, -0.5]
    assert _batch(ints, unit) == [v * factor for v in ints] == [_http(v, unit) for v in ints]
    assert _batch(floats, unit) == [_http(v, unit) for v in floats]
    assert _batch(floats, unit)[1] == (1_000 if unit == "s" else 1 if unit == "ms" else 0)


def test_batch_quarantine_reason_and_http_error_carry_the_unit_hint() -> None:
    result = validate_events(pl.DataFrame({"event_id": ["a"], "user_id": ["u"], "event": ["x"],
                                           "timestamp": [1_790_841_600]}))
    assert result.quarantine["reason"].to_list() == [f"timestamp: {EPOCH_HINT}"]
    with pytest.raises(DataError, match=r"\[0\]\.timestamp: epoch numbers need --timestamp-unit s\|ms\|us"):
        _engine(None).ingest([{"event_id": "e", "user_id": "u", "event": "x", "timestamp": 1_790_841_600}])


def test_a_datetime_column_needs_no_unit() -> None:
    raw = pl.DataFrame({"event_id": ["a"], "user_id": ["u"], "event": ["x"], "timestamp": [T]})
    assert validate_events(raw).clean["timestamp"].to_list() == [T]


@pytest.mark.parametrize("unit", [None, "s"])
def test_the_consumer_applies_and_dead_letters_the_same_timestamps(redis_url: str, redis_prefix: str,
                                                                   unit: str | None) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisProfileStore(redis_url, redis_prefix)
    stream = f"{redis_prefix}events"
    try:
        for i, (value, _, _) in enumerate(CASES):
            event = {"event_id": f"e{i}", "user_id": f"u{i}", "event": "page_view", "timestamp": value}
            if isinstance(value, int | float):  # a JSON entry keeps numbers as numbers
                r.xadd(stream, {"json": json.dumps(event)})
            else:  # a flat entry: every field is a string
                r.xadd(stream, {k: str(v) for k, v in event.items()})
        consumer = StreamConsumer(StreamSource(redis_url, stream, "g", "c"), store, block_ms=50,
                                  timestamp_unit=cast(Any, unit))
        consumer.run(exit_when_idle_s=0.2)
        consumer.close()
        got = []
        for i in range(len(CASES)):
            events = store.get_profile(f"u{i}").events
            got.append(events[0].ts if events else None)
        assert got == [no_unit if unit is None else seconds for _, no_unit, seconds in CASES]
        dead = r.xrange(f"{stream}:dead")
        assert len(dead) == sum(1 for g in got if g is None)
        if unit is None:
            assert any(EPOCH_HINT in entry["reason"] for _, entry in dead)
    finally:
        store.clear()
        store.close()
        r.close()


def test_consume_timestamp_unit_flag_reads_epoch_seconds(redis_url: str, redis_prefix: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from propensity.cli.main import main

    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisProfileStore(redis_url, redis_prefix)
    stream = f"{redis_prefix}events"
    try:
        r.xadd(stream, {"event_id": "e1", "user_id": "u1", "event": "page_view", "timestamp": "1790841600"})
        main(["consume", "--stream", f"{redis_url}?stream={stream}&group=g", "--redis-url", redis_url,
              "--key-prefix", redis_prefix, "--timestamp-unit", "s", "--exit-when-idle", "0.2", "--json"])
        assert json.loads(capsys.readouterr().out)["applied"] == 1
        assert [e.ts for e in store.get_profile("u1").events] == [T_US]
    finally:
        store.clear()
        store.close()
        r.close()
