"""The prediction log writer (serving/predlog.py) and its readers, in process: rows and types,
feature sampling, atomic files, bounded memory, counted drops, the Redis stream, and the exposure
view that `propensity ab analyze` reads."""

from __future__ import annotations

import asyncio
import gc
import math
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis
from conftest import REDIS_HOST, REDIS_PORT, _require

from experiments.exposure import first_exposures
from experiments.pipeline import read_exposures
from monitoring.log import LOG_SCHEMA, scan_prediction_log
from propensity.errors import DataError
from serving.predlog import (
    SLICE_ROWS,
    ParquetFolderSink,
    PredictionLog,
    RedisStreamSink,
    feature_schema,
    new_columns,
    queue_answer,
    records_frame,
)
from serving.predlog_writer import WriterProcess

KINDS = {"events_30d": "numeric", "days_since_last_event": "numeric", "country": "categorical",
         "segment": "categorical", "engagement_score": "numeric"}


def _answer(i: int, variant: str = "champion", user: str | None = None) -> dict:
    return {"user_id": user if user is not None else f"u{i}", "probability": i / 100,
            "segment": "hot" if i % 2 else None, "journey_stage": "browse", "decision": "default",
            "variant": variant, "source": "profile", "model": {"name": "m", "version": "3"}}


def _features(i: int) -> dict:
    return {"events_30d": float(i), "days_since_last_event": math.nan, "country": "fr", "segment": "hot",
            "engagement_score": 0.5, "not_a_feature": 1}


def _columns(*timed: tuple[int, dict]) -> tuple[list, ...]:
    columns = new_columns()
    for time_us, answer in timed:
        queue_answer(columns, time_us, answer)
    return columns


class Counts:
    def __init__(self) -> None:
        self.written = 0
        self.dropped: dict[str, int] = {}

    def log_written(self, n: int) -> None:
        self.written += n

    def log_dropped(self, reason: str, n: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def test_records_carry_the_answer_and_a_typed_feature_vector() -> None:
    records = _columns(*[(1_700_000_000_000_000 + i, _answer(i)) for i in range(4)],
                       (1_700_000_000_000_009, _answer(9, user="")))  # raw features, cache-less
    vectors = [_features(i) for i in range(4)] + [None]
    frame = records_frame(records, vectors, feature_schema(KINDS), "p", 10, "exp")
    assert frame.columns[:len(LOG_SCHEMA)] == list(LOG_SCHEMA)
    assert {c: frame.schema[c] for c in LOG_SCHEMA} == LOG_SCHEMA
    assert frame["request_id"].to_list() == ["p-10", "p-11", "p-12", "p-13", "p-14"]
    assert frame["time"][0].timestamp() == pytest.approx(1_700_000_000.0)
    assert frame["model_version"].to_list() == ["3"] * 5
    assert frame["experiment"].to_list() == ["exp"] * 4 + [None]  # no user: no enrolment
    assert frame["segment"].to_list() == [None, "hot", None, "hot", "hot"]  # the answer's, not the vector's
    assert frame["events_30d"].to_list() == [0.0, 1.0, 2.0, 3.0, None]
    assert frame["days_since_last_event"].null_count() == 5  # NaN is stored as null
    assert frame.schema["country"] == pl.String and "not_a_feature" not in frame.columns


def test_features_of_odd_types_are_coerced_not_lost() -> None:
    odd = {"events_30d": "7", "country": 3, "days_since_last_event": "soon"}
    frame = records_frame(_columns((0, _answer(0))), [odd], feature_schema(KINDS), "p", 0)
    got = frame.row(0, named=True)
    assert (got["events_30d"], got["country"], got["days_since_last_event"]) == (7.0, "3", None)


def test_records_without_a_vector_keep_their_row_with_null_features() -> None:
    records = _columns(*[(i, _answer(i)) for i in range(6)])
    vectors = [_features(i) if i % 3 == 0 else None for i in range(6)]
    frame = records_frame(records, vectors, feature_schema(KINDS), "p", 0)
    assert frame["request_id"].to_list() == [f"p-{i}" for i in range(6)]  # every record, in order
    assert frame["events_30d"].to_list() == [0.0, None, None, 3.0, None, None]


def test_the_log_draws_its_vector_sample_when_an_answer_is_queued(tmp_path: Path) -> None:
    """A quarter of the records carry their vector; the others are queued without it (not kept
    alive until the flush), every record is written."""
    log = PredictionLog(ParquetFolderSink(tmp_path / "log"), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60, feature_share=0.25, seed=3)
    for i in range(4000):
        log.append(_answer(i), _features(i))
    kept = sum(v is not None for v in log._vectors)
    log.close()
    frame = scan_prediction_log(tmp_path / "log").collect()
    share = frame["events_30d"].is_not_null().mean()
    assert frame.height == 4000 and frame["events_30d"].is_not_null().sum() == kept
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000)


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_every_appended_answer_is_in_the_folder_after_close(tmp_path: Path, writer: str) -> None:
    counts = Counts()
    log = PredictionLog(ParquetFolderSink(tmp_path / "log"), feature_schema(KINDS), flush_rows=40,
                        flush_every_s=60, counters=counts, writer=writer)  # type: ignore[arg-type]
    for i in range(40):
        log.append(_answer(i), _features(i))
    deadline = time.monotonic() + 20
    while log.written < 40 and time.monotonic() < deadline:  # the size trigger, long before the timer
        time.sleep(0.05)
    assert log.written == 40
    for i in range(40, 100):
        log.append(_answer(i), _features(i))
    log.close()
    files = sorted((tmp_path / "log").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    assert len([f for f in files if f.suffix == ".parquet"]) == 2
    frame = scan_prediction_log(tmp_path / "log").collect().sort("probability")
    assert frame.height == 100 and frame["request_id"].n_unique() == 100
    assert frame["user_id"].to_list() == [f"u{i}" for i in range(100)]
    assert (log.written, counts.written, counts.dropped) == (100, 100, {})
    log.append(_answer(0), None)  # after close: counted, not written
    assert counts.dropped == {"closed": 1}


def test_a_flush_larger_than_a_slice_keeps_every_record_in_order(tmp_path: Path) -> None:
    n = 2 * SLICE_ROWS + 7  # three slices of each column
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10 * n,
                        flush_every_s=60)
    for i in range(n):
        log.append(_answer(i), _features(i))
    log.close()
    frame = scan_prediction_log(tmp_path).collect()
    prefix = frame["request_id"][0].rsplit("-", 1)[0]
    assert frame["request_id"].to_list() == [f"{prefix}-{i}" for i in range(n)]
    assert frame["user_id"].to_list() == [f"u{i}" for i in range(n)]
    assert frame["events_30d"].to_list() == [float(i) for i in range(n)]


def test_queued_records_leave_the_cyclic_collector_after_one_look(tmp_path: Path) -> None:
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=100, flush_every_s=60)
    features = {"events_30d": 1.0, "country": "fr", "engagement_score": None}
    assert not gc.is_tracked(features)  # a dict of plain values is never tracked
    log.append(_answer(1), features)
    gc.collect()
    # so queued records cost the service's collection rounds nothing
    assert not any(gc.is_tracked(item) for column in (*log._columns, log._vectors) for item in column)
    log.close()
    assert scan_prediction_log(tmp_path).collect()["events_30d"].to_list() == [1.0]


def test_the_queue_is_bounded_and_the_overflow_counted(tmp_path: Path) -> None:
    counts = Counts()
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=1000,
                        flush_every_s=60, max_buffer_rows=5, counters=counts)
    for i in range(8):
        log.append(_answer(i), None)
    log.close()
    assert counts.dropped == {"buffer_full": 3} and counts.written == 5
    assert scan_prediction_log(tmp_path).collect().height == 5


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_an_unwritable_target_counts_its_records_as_dropped(tmp_path: Path, writer: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    counts = Counts()
    log = PredictionLog(ParquetFolderSink(blocker / "log"), feature_schema(KINDS), flush_every_s=60,
                        counters=counts, writer=writer)  # type: ignore[arg-type]
    for i in range(7):
        log.append(_answer(i), _features(i))
    assert log.flush() == 0
    log.close()
    assert counts.dropped == {"write_error": 7} and counts.written == 0


def test_the_redis_stream_holds_the_records(tmp_path: Path) -> None:
    _require("Redis", REDIS_HOST, REDIS_PORT)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    key = f"test:{uuid.uuid4().hex[:10]}:predictions"
    log = PredictionLog(RedisStreamSink(url, key, 10_000), feature_schema(KINDS), flush_rows=30,
                        flush_every_s=60)
    try:
        for i in range(50):
            log.append(_answer(i), _features(i))
        log.close()
        frame = scan_prediction_log(f"{url}#{key}").collect().sort("probability")
        assert frame.height == 50 and frame["user_id"].to_list() == [f"u{i}" for i in range(50)]
        assert frame.schema["time"] == LOG_SCHEMA["time"] and frame["events_30d"].to_list() == list(
            map(float, range(50)))
    finally:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT).delete(key)


def test_first_exposure_is_the_first_answer_per_user_and_variant(tmp_path: Path) -> None:
    log = PredictionLog(ParquetFolderSink(tmp_path / "log"), feature_schema(KINDS), experiment="exp1",
                        flush_every_s=60)
    for i in range(6):  # u0..u2, each answered twice; anonymous answers are not exposures
        log.append(_answer(i, "challenger" if i % 3 == 1 else "champion", user=f"u{i % 3}"), None)
        log.append(_answer(i, user=""), None)
    log.close()
    times = scan_prediction_log(tmp_path / "log").collect().filter(pl.col("user_id") != "")
    expected = times.group_by("user_id").agg(pl.col("time").min()).sort("user_id")
    exposures = read_exposures(tmp_path / "log").sort("user_id")
    assert exposures["user_id"].to_list() == ["u0", "u1", "u2"]
    assert exposures["variant"].to_list() == ["champion", "challenger", "champion"]
    assert exposures["experiment"].to_list() == ["exp1"] * 3
    assert exposures["first_exposure"].to_list() == expected["time"].to_list()


def test_the_jsonl_exposure_log_and_first_exposure_tables_are_still_read(tmp_path: Path) -> None:
    jsonl = tmp_path / "exposures.jsonl"
    line = '{"user_id": "a", "experiment": "e", "variant": "champion", "time": "2026-01-0%dT00:00:00Z"}\n'
    jsonl.write_text(line % 2 + line % 1)
    got = read_exposures(jsonl)
    assert got.height == 1 and str(got["first_exposure"][0])[:10] == "2026-01-01"
    table = pl.DataFrame({"user_id": ["a"], "variant": ["B"], "first_exposure": ["2026-01-01T00:00:00Z"]})
    assert first_exposures(table) is table
    with pytest.raises(DataError, match="inside an experiment"):
        first_exposures(pl.DataFrame({"user_id": ["a"], "variant": ["champion"], "experiment": [None],
                                      "time": ["2026-01-01T00:00:00Z"]}))


def test_both_writers_write_the_same_rows(tmp_path: Path) -> None:
    """The child process builds the frame the in-process writer builds (request ids aside)."""
    frames = []
    for writer in ("process", "thread"):
        log = PredictionLog(ParquetFolderSink(tmp_path / writer), feature_schema(KINDS), flush_rows=10**6,
                            flush_every_s=60, feature_share=0.5, seed=7, writer=writer)  # type: ignore[arg-type]
        for i in range(300):
            log.append({**_answer(i), "user_id": None if i % 50 == 0 else f"u{i}"}, _features(i))
        log.close()
        frames.append(scan_prediction_log(tmp_path / writer).collect().drop("request_id", "time"))
    assert frames[0].height == 300 and frames[0].equals(frames[1])


def test_a_dead_writer_process_is_replaced_and_a_batch_in_flight_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts()
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60, counters=counts, writer="process")
    log.append(_answer(0), None)
    assert log.flush() == 1
    first = log._writer._proc  # type: ignore[union-attr]
    assert first is not None and first.poll() is None
    first.kill()  # found dead before the next batch: a new writer takes it, nothing lost
    first.wait()
    log.append(_answer(1), None)
    assert log.flush() == 1
    second = log._writer._proc  # type: ignore[union-attr]
    assert second is not None and second.pid != first.pid
    started = WriterProcess._started

    def dies_on_receipt(self: WriterProcess) -> Any:
        proc = started(self)
        proc.kill()  # dies with the batch in flight
        proc.wait()
        return proc

    monkeypatch.setattr(WriterProcess, "_started", dies_on_receipt)
    for i in range(2, 5):
        log.append(_answer(i), None)
    assert log.flush() == 0 and counts.dropped == {"write_error": 3}
    monkeypatch.undo()
    log.append(_answer(5), None)
    assert log.flush() == 1  # healed
    last = log._writer._proc  # type: ignore[union-attr]
    log.close()
    assert last is not None and last.poll() == 0  # the writer exits on close, cleanly
    assert sorted(scan_prediction_log(tmp_path).collect()["user_id"].to_list()) == ["u0", "u1", "u5"]
    assert counts.written == 3


def test_the_writer_process_ends_with_its_input_not_with_a_signal(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM to the process group must not cut a batch: the child outlives them and
    exits, cleanly, when the log closes its input."""
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60, writer="process")
    log.append(_answer(0), None)
    assert log.flush() == 1
    child = log._writer._proc  # type: ignore[union-attr]
    assert child is not None
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert child.poll() is None
    log.append(_answer(1), None)
    assert log.flush() == 1 and log._writer._proc is child  # type: ignore[union-attr]
    log.close()
    assert child.poll() == 0
    assert scan_prediction_log(tmp_path).collect().height == 2


def test_a_hung_writer_process_is_killed_and_its_batch_counted(tmp_path: Path) -> None:
    counts = Counts()
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60, counters=counts, writer="process")
    log.append(_answer(0), None)
    assert log.flush() == 1
    writer = log._writer
    assert writer is not None and writer._proc is not None
    hung = writer._proc
    writer.reply_timeout_s = 0.5
    hung.send_signal(signal.SIGSTOP)  # alive, silent
    for i in range(1, 3):
        log.append(_answer(i), None)
    started = time.monotonic()
    assert log.flush() == 0 and counts.dropped == {"write_error": 2}
    assert time.monotonic() - started < 10 and hung.poll() is not None  # killed, not waited for
    log.append(_answer(3), None)
    assert log.flush() == 1
    log.close()
    assert sorted(scan_prediction_log(tmp_path).collect()["user_id"].to_list()) == ["u0", "u3"]


class LoopThread:
    """An event loop running in a thread of its own, as a service worker's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _step_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of every reading step of every flush from now on."""
    import serving.predlog as predlog

    seen: list[int] = []
    original = predlog.frame_parts

    def recorded(*args: Any) -> Any:
        steps = original(*args)
        while True:
            seen.append(threading.get_ident())
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            yield

    monkeypatch.setattr(predlog, "frame_parts", recorded)
    return seen


def test_a_flush_reads_the_queue_on_the_attached_event_loop(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    n = 2 * SLICE_ROWS + 300  # several steps per column and of vectors
    frames = []
    for attached in (False, True):
        worker = LoopThread()
        steps = _step_threads(monkeypatch)
        log = PredictionLog(ParquetFolderSink(tmp_path / str(attached)), feature_schema(KINDS),
                            flush_rows=10 * n, flush_every_s=60, feature_share=0.5, seed=3)
        if attached:
            log.attach_loop(worker.loop)
        for i in range(n):
            log.append(_answer(i), _features(i))
        assert log.flush() == n  # from this (the flush's) thread
        log.close()
        worker.stop()
        assert len(steps) > 10 and set(steps) == {worker.thread.ident if attached else threading.get_ident()}
        frames.append(scan_prediction_log(tmp_path / str(attached)).collect().drop("request_id", "time"))
    assert frames[1].height == n and frames[0].equals(frames[1])


def test_a_flush_read_on_the_loop_leaves_no_reference_cycle(tmp_path: Path) -> None:
    # A service worker runs with the automatic collector off and freezes what survives its
    # collection rounds (serving/gc_policy.py): a cycle alive during a flush would never be freed,
    # with the Polars parts it holds (this leaked ~11 MB a minute under load).
    from serving.predlog import LoopSteps

    worker = LoopThread()
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60)
    log.attach_loop(worker.loop)
    gc.collect()
    gc.disable()
    try:
        for i in range(3 * SLICE_ROWS):
            log.append(_answer(i), _features(i))
        assert log.flush() == 3 * SLICE_ROWS
        left = [o for o in gc.get_objects() if isinstance(o, LoopSteps)]
        parts = [o for o in gc.get_objects() if isinstance(o, pl.DataFrame) and o.height == 3 * SLICE_ROWS]
    finally:
        gc.enable()
        log.close()
        worker.stop()
    assert left == [] and parts == []


def test_a_flush_whose_event_loop_is_blocked_reads_the_rest_itself(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.predlog as predlog

    monkeypatch.setattr(predlog, "LOOP_WAIT_S", 0.3)
    worker = LoopThread()
    release = threading.Event()
    worker.loop.call_soon_threadsafe(release.wait, 20)  # a request that holds the loop
    steps = _step_threads(monkeypatch)
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=10**6,
                        flush_every_s=60)
    log.attach_loop(worker.loop)
    for i in range(500):
        log.append(_answer(i), _features(i))
    started = time.monotonic()
    assert log.flush() == 500
    assert time.monotonic() - started < 10 and set(steps) == {threading.get_ident()}
    release.set()
    log.close()
    worker.stop()
    assert scan_prediction_log(tmp_path).collect()["user_id"].to_list() == [f"u{i}" for i in range(500)]


def test_closing_on_the_event_loop_while_a_flush_waits_for_it_loses_nothing(tmp_path: Path) -> None:
    # The service closes the log in its shutdown hook, on the loop: the flush thread, waiting for
    # the loop to read, must not wait for it (the loop waits for that thread).
    worker = LoopThread()
    log = PredictionLog(ParquetFolderSink(tmp_path), feature_schema(KINDS), flush_rows=400, flush_every_s=60)
    log.attach_loop(worker.loop)
    closed: dict[str, float] = {}

    def shutdown() -> None:
        time.sleep(0.5)  # the flush thread has started and waits for this loop
        started = time.monotonic()
        log.close()
        closed["s"] = time.monotonic() - started

    for i in range(399):
        log.append(_answer(i), _features(i))
    worker.loop.call_soon_threadsafe(shutdown)
    time.sleep(0.1)  # the loop is in shutdown() before the size trigger wakes the flush thread
    log.append(_answer(399), _features(399))
    deadline = time.monotonic() + 20
    while "s" not in closed and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    assert closed and closed["s"] < 5  # not the loop's wait limit nor the join's timeout
    assert scan_prediction_log(tmp_path).collect()["user_id"].to_list() == [f"u{i}" for i in range(400)]
