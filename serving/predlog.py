"""The prediction log writer: every answer of ``/predict`` and ``/predict_batch``, off the request path.

The request path only appends one flat tuple of the answer's scalars to a bounded in-memory queue
and its feature vector (a dict of plain values) to a second one in step (:meth:`PredictionLog.append`,
about a microsecond): the cyclic collector stops tracking such a tuple at its first look and never
tracks such a dict (a tuple holding the dict would stay tracked), so queued records do not lengthen
the service's collection rounds (serving/gc_policy.py). A background
thread turns what waits into one typed frame (the schema of :mod:`monitoring.log`) every
``flush_every_s`` seconds or as soon as ``flush_rows`` records wait, in slices of ``CHUNK_ROWS``
records with a pause between them, so the interpreter lock is never held for more than a slice
(the Parquet encoding itself runs without it); then it hands the frame to a sink:

- :class:`ParquetFolderSink`: one Parquet file per flush, ``<folder>/<YYYY-MM-DD>/part-...parquet``
  (so files rotate by size and time), written to a hidden temporary file, fsynced, then renamed:
  a reader never sees half a file and a restart loses nothing already flushed;
- :class:`RedisStreamSink`: ``XADD`` of one JSON record per entry to a Redis stream (approximate
  ``MAXLEN`` trimming), for services whose profile store is Redis.

Nothing is dropped silently: a full queue, a failed write or an append after close are counted
by reason (``counters.log_dropped``, Prometheus ``propensity_prediction_log_dropped_total``), and
what was written by ``counters.log_written``. Pending records are flushed on close (service
shutdown, and at interpreter exit).
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from monitoring.log import LOG_SCHEMA

logger = logging.getLogger("propensity.predlog")
# (time µs UTC, user_id, model_name, model_version, variant, probability, segment, journey_stage,
#  decision, source): see record_of; the feature vector (a dict or None) is queued beside it
Record = tuple[Any, ...]
Vector = Mapping[str, Any] | None
_RECORD_COLUMNS = ("time", "user_id", "model_name", "model_version", "variant", "probability", "segment",
                   "journey_stage", "decision", "source")  # the order of record_of
CHUNK_ROWS = 512  # records per hold of the interpreter lock (~2.5 ms, most of it a fixed cost per frame)
PAUSE_S = 0.0005  # pause between slices: a waiting request thread takes the lock in it


def record_of(time_us: int, answer: Mapping[str, Any]) -> Record:
    """The queued form of one answer: its logged scalars in a flat tuple (plain values only, so the
    collector stops tracking it at its first look; a dict inside would keep it tracked)."""
    model = answer["model"]
    return (time_us, answer.get("user_id"), model["name"], model["version"], answer.get("variant"),
            answer.get("probability"), answer.get("segment"), answer.get("journey_stage"),
            answer.get("decision"), answer.get("source"))


class LogSink(Protocol):
    """Where flushed frames go. ``write`` raises on failure (the frame's records count as dropped)."""

    def write(self, frame: pl.DataFrame) -> None: ...

    def close(self) -> None: ...


class LogCounters(Protocol):
    """What the log reports (serving.metrics.ServiceMetrics implements it)."""

    def log_written(self, n: int) -> None: ...

    def log_dropped(self, reason: str, n: int) -> None: ...


class ParquetFolderSink:
    """One Parquet file per flush in a folder per UTC day, written atomically (temp file + rename)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0

    def write(self, frame: pl.DataFrame) -> None:
        now = datetime.now(UTC)
        day = self.folder / now.strftime("%Y-%m-%d")
        day.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"part-{now:%Y%m%dT%H%M%S}-{self._tag}-{self._seq:06d}.parquet"
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        tmp = day / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, day / name)

    def close(self) -> None:
        return None


class RedisStreamSink:
    """``XADD`` one entry per record (field ``record``: the record as one JSON object) to ``key``."""

    def __init__(self, url: str, key: str, max_len: int) -> None:
        import redis

        self.key, self.max_len = key, max_len
        self._r = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0)

    def write(self, frame: pl.DataFrame) -> None:
        lines = frame.write_ndjson().splitlines()
        for start in range(0, len(lines), CHUNK_ROWS):  # slices: the lock is free between them
            pipe = self._r.pipeline(transaction=False)
            for line in lines[start:start + CHUNK_ROWS]:
                pipe.xadd(self.key, {"record": line}, maxlen=self.max_len, approximate=True)
            pipe.execute()

    def close(self) -> None:
        self._r.close()


def feature_schema(kinds: Mapping[str, str]) -> dict[str, pl.DataType]:
    """Parquet types of the logged feature columns: Float64 for numeric, String for categorical
    (names the log already has as answer columns, such as ``segment``, are left out)."""
    return {name: (pl.Float64() if kind == "numeric" else pl.String())
            for name, kind in kinds.items() if name not in LOG_SCHEMA}


def records_frame(records: list[Record], vectors: list[Vector], features: Mapping[str, pl.DataType],
                  id_prefix: str, first_seq: int, experiment: str | None = None) -> pl.DataFrame:
    """The log rows of ``records`` (:func:`record_of`; request ids ``<id_prefix>-<seq>`` from
    ``first_seq``): answer columns, and the feature vector (``vectors``, one per record; None = not
    in the sample, drawn at append time) as typed columns; NaN is stored as null."""
    return _nan_as_null(_raw_frame(records, vectors, features, id_prefix, first_seq, experiment), features)


def _nan_as_null(frame: pl.DataFrame, features: Mapping[str, pl.DataType]) -> pl.DataFrame:
    numbers = [n for n, dtype in features.items() if dtype == pl.Float64]
    return frame.with_columns(pl.col(numbers).fill_nan(None)) if numbers else frame


_POSITION = "__position"


def _raw_frame(records: list[Record], vectors: list[Vector], features: Mapping[str, pl.DataType],
               id_prefix: str, first_seq: int, experiment: str | None) -> pl.DataFrame:
    n = len(records)
    transposed = zip(*records, strict=True) if n else ([] for _ in _RECORD_COLUMNS)
    columns: dict[str, Any] = dict(zip(_RECORD_COLUMNS, transposed, strict=True))
    columns["request_id"] = [f"{id_prefix}-{first_seq + i}" for i in range(n)]
    columns["time"] = pl.Series(columns["time"], dtype=pl.Int64).cast(LOG_SCHEMA["time"])
    columns["model_version"] = [str(v) for v in columns["model_version"]]
    columns["experiment"] = [experiment if experiment and u else None for u in columns["user_id"]]
    head = pl.DataFrame(columns, schema={c: LOG_SCHEMA[c] for c in columns}, strict=False)
    # Only the sampled vectors are read (the interpreter lock is held while Polars reads dicts);
    # the other records get null features by a join on the record's position, in Polars.
    picked: list[int] = []
    rows: list[Mapping[str, Any]] = []
    for i, vector in enumerate(vectors):
        if vector is not None:
            picked.append(i)
            rows.append(vector)
    try:
        typed = pl.from_dicts(rows, schema=features, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):  # raw request features of odd types
        typed = pl.DataFrame({n: [_typed(row.get(n), dtype) for row in rows]
                              for n, dtype in features.items()}, schema=features)
    if len(picked) < n:
        position = pl.DataFrame({_POSITION: np.arange(n, dtype=np.int64)})
        typed = position.join(typed.with_columns(pl.Series(_POSITION, picked, dtype=pl.Int64)), on=_POSITION,
                              how="left", maintain_order="left").drop(_POSITION)
    return pl.concat([head.select(list(LOG_SCHEMA)), typed], how="horizontal")


def _typed(value: Any, dtype: pl.DataType) -> Any:
    if value is None:
        return None
    if dtype == pl.String:
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class PredictionLog:
    """A bounded queue of answered predictions and the thread that flushes it to a sink."""

    def __init__(self, sink: LogSink, features: Mapping[str, pl.DataType], *, flush_rows: int = 5000,
                 flush_every_s: float = 5.0, max_buffer_rows: int = 100_000, feature_share: float = 1.0,
                 experiment: str | None = None, counters: LogCounters | None = None, seed: int | None = None):
        self.sink, self.features, self.experiment, self.counters = sink, dict(features), experiment, counters
        self.flush_rows, self.flush_every_s, self.max_buffer_rows = flush_rows, flush_every_s, max_buffer_rows
        self.feature_share = feature_share
        self.written = 0
        self.dropped: dict[str, int] = {}
        self._queue: deque[Record] = deque()
        self._vectors: deque[Vector] = deque()  # in step with _queue (appended first, so never shorter)
        self._draw = random.Random(seed).random  # the request path's draws of the vector sample
        self._id_prefix, self._seq = uuid.uuid4().hex[:12], 0
        self._wake, self._stop = threading.Event(), threading.Event()
        self._flush_lock = threading.Lock()
        self._closed = False
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def append(self, answer: Mapping[str, Any], features: Mapping[str, Any] | None) -> None:
        """Queue one answer (request path: no I/O, no copy); counted as dropped when the queue is full."""
        queue = self._queue
        if self._closed:
            self._drop("closed", 1)
        elif len(queue) >= self.max_buffer_rows:
            self._drop("buffer_full", 1)
        else:
            # The sample is drawn here: a vector not logged is not kept alive until the flush.
            share = self.feature_share
            self._vectors.append(features if share >= 1 or self._draw() < share else None)
            queue.append(record_of(time.time_ns() // 1000, answer))
            if len(queue) == self.flush_rows:
                self._wake.set()

    def flush(self) -> int:
        """Write what waits now; returns the number of records written (0 on failure: counted)."""
        with self._flush_lock:
            queue, vectors = self._queue, self._vectors
            n = len(queue)  # the vectors deque is at least this long (see append)
            batch = [queue.popleft() for _ in range(n)]
            batch_vectors = [vectors.popleft() for _ in range(n)]
            if not batch:
                return 0
            first, self._seq = self._seq, self._seq + len(batch)
            try:
                self.sink.write(self._frame(batch, batch_vectors, first))
            except Exception as exc:  # any failure of the target: counted, never raised into serving
                self._drop("write_error", len(batch))
                self._warn(f"prediction log: {len(batch)} records not written ({type(exc).__name__}: {exc})")
                return 0
            self.written += len(batch)
            if self.counters is not None:
                self.counters.log_written(len(batch))
            return len(batch)

    def _frame(self, batch: list[Record], vectors: list[Vector], first: int) -> pl.DataFrame:
        """:func:`records_frame` of ``batch``: the Python objects read slice by slice, pausing between
        slices; what is left (NaN as null, one frame) runs in Polars without the interpreter lock."""
        parts = []
        for start in range(0, len(batch), CHUNK_ROWS):
            if start:
                time.sleep(PAUSE_S)
            end = start + CHUNK_ROWS
            parts.append(_raw_frame(batch[start:end], vectors[start:end], self.features, self._id_prefix,
                                    first + start, self.experiment))
        frame = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
        return _nan_as_null(frame, self.features)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and write what is still queued (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        self.flush()
        try:
            self.sink.close()
        except Exception:  # closing a connection that already failed
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
            self.flush()

    def _drop(self, reason: str, n: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        if self.counters is not None:
            self.counters.log_dropped(reason, n)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:  # one line a minute, not one per flush
            self._last_warning = now
            logger.warning(message)


def open_prediction_log(cfg: Any, kinds: Mapping[str, str], counters: LogCounters | None = None,
                        work: Path | None = None) -> PredictionLog | None:
    """The log configured in ``cfg`` (a :class:`serving.config.ServingConfig`), or None when off.

    ``kinds``: feature name -> ``numeric``/``categorical`` of the features the engine computes.
    """
    log_cfg = cfg.prediction_log
    if not log_cfg.enabled:
        return None
    backend = log_cfg.backend
    if backend == "auto":
        backend = "redis" if cfg.store.backend == "redis" else "file"
    sink: LogSink
    if backend == "redis":
        sink = RedisStreamSink(cfg.store.redis_url, cfg.store.key_prefix + log_cfg.stream,
                               log_cfg.stream_max_len)
    else:
        from propensity.paths import work_dir

        sink = ParquetFolderSink(log_cfg.path or (work or work_dir()) / "predictions")
    experiment = cfg.experiment.name if cfg.experiment.enabled else None
    return PredictionLog(sink, feature_schema(kinds), flush_rows=log_cfg.flush_rows,
                         flush_every_s=log_cfg.flush_every_s, max_buffer_rows=log_cfg.max_buffer_rows,
                         feature_share=log_cfg.feature_share, experiment=experiment, counters=counters)
