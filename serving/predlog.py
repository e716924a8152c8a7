"""The prediction log writer: every answer of ``/predict`` and ``/predict_batch``, off the request path.

The request path only appends the answer's scalars to one list per log column
(:func:`queue_answer`) and its feature vector (a dict of plain values, or None outside the
sample) to one more list (:meth:`PredictionLog.append`, about a microsecond): the cyclic collector
tracks none of these values, so queued records do not lengthen the service's collection rounds
(serving/gc_policy.py), and the flush turns each column into a Polars Series in a few large
steps instead of reading one object per record. A background
thread takes what waits every ``flush_every_s`` seconds or as soon as ``flush_rows`` records
wait, and one typed frame (the schema of :mod:`monitoring.log`) is built from it and written:

- with ``writer="process"``, in a child process (:mod:`serving.predlog_writer`): the thread only
  pickles the queued lists (a few holds of the interpreter lock) and sends them; building the
  frame there costs the request thread no waits (in the worker, every Polars call gives the lock
  back and takes it again from the busy request thread: ~30 short waits per 5,000 records);
- by default (``writer="thread"``), in this process: reading the queued Python objects holds the
  interpreter lock, so it runs in steps of about 0.1 ms; in a service worker the event loop takes
  those steps itself, one per turn between requests (:meth:`PredictionLog.attach_loop`), since
  each hand-over of the lock from the busy request thread to the flush thread and back stalls the
  running request (~30 per 5,000 records); elsewhere the flush thread takes them, with a pause
  between two. Building the frame from those parts and encoding it runs in Polars in the flush
  thread, without the lock.

Then the frame goes to a sink:

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

import asyncio
import atexit
import io
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import polars as pl

from monitoring.log import LOG_SCHEMA
from serving.predlog_writer import WriterProcess

logger = logging.getLogger("propensity.predlog")
Vector = Mapping[str, Any] | None
Columns = tuple[list[Any], ...]  # one list per _RECORD_COLUMNS entry
_RECORD_COLUMNS = ("time", "user_id", "model_name", "model_version", "variant", "probability", "segment",
                   "journey_stage", "decision", "source")  # the order of queue_answer
SLICE_ROWS = 2048  # values of one column turned into a Series per hold of the interpreter lock (~0.05 ms)
VECTOR_ROWS = 32  # feature vectors read per hold (~0.1 ms)
STREAM_ROWS = 128  # Redis stream entries sent per hold
PAUSE_S = 0.0005  # pause between holds: a waiting request thread takes the lock in it
LOOP_POLL_S = 0.1  # how often a flush waiting for the event loop's reading checks the loop is still there
LOOP_WAIT_S = 10.0  # a loop that has not finished the reading by then (blocked): the flush thread reads


def new_columns() -> Columns:
    """Empty queue columns for :func:`queue_answer`."""
    return tuple([] for _ in _RECORD_COLUMNS)


def queue_answer(columns: Columns, time_us: int, answer: Mapping[str, Any]) -> None:
    """Append one answer's logged scalars to ``columns``, column by column in ``_RECORD_COLUMNS``
    order: the last column's length is the number of complete records (a reader in another thread
    takes that many from every column). The lists hold plain values only, which the cyclic
    collector never tracks: queued answers cost its rounds nothing."""
    model, get = answer["model"], answer.get
    when, user, name, version, variant, probability, segment, stage, decision, source = columns
    when.append(time_us)
    user.append(get("user_id"))
    name.append(model["name"])
    version.append(model["version"])
    variant.append(get("variant"))
    probability.append(get("probability"))
    segment.append(get("segment"))
    stage.append(get("journey_stage"))
    decision.append(get("decision"))
    source.append(get("source"))


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
        self._pid = 0
        self._tag = ""
        self._seq = 0

    def write(self, frame: pl.DataFrame) -> None:
        now = datetime.now(UTC)
        day = self.folder / now.strftime("%Y-%m-%d")
        day.mkdir(parents=True, exist_ok=True)
        if self._pid != os.getpid():  # names unique per writing process (a restarted writer included)
            self._pid, self._tag, self._seq = os.getpid(), f"{os.getpid()}-{uuid.uuid4().hex[:8]}", 0
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
        self.url, self.key, self.max_len = url, key, max_len
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (it travels to the writer process): the connection is opened where it is used."""
        return {**self.__dict__, "_client": None}

    @property
    def _r(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=10.0)
        return self._client

    def write(self, frame: pl.DataFrame) -> None:
        lines = frame.write_ndjson().splitlines()
        for start in range(0, len(lines), STREAM_ROWS):  # slices: the lock is free between them
            if start:
                time.sleep(PAUSE_S)
            pipe = self._r.pipeline(transaction=False)
            for line in lines[start:start + STREAM_ROWS]:
                pipe.xadd(self.key, {"record": line}, maxlen=self.max_len, approximate=True)
            pipe.execute()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def feature_schema(kinds: Mapping[str, str]) -> dict[str, pl.DataType]:
    """Parquet types of the logged feature columns: Float64 for numeric, String for categorical
    (names the log already has as answer columns, such as ``segment``, are left out)."""
    return {name: (pl.Float64() if kind == "numeric" else pl.String())
            for name, kind in kinds.items() if name not in LOG_SCHEMA}


def records_frame(columns: Columns, vectors: list[Vector], features: Mapping[str, pl.DataType],
                  id_prefix: str, first_seq: int, experiment: str | None = None,
                  pause_s: float = 0.0) -> pl.DataFrame:
    """The log rows of the queued ``columns`` (:func:`queue_answer`; request ids
    ``<id_prefix>-<seq>`` from ``first_seq``): answer columns, and the feature vector (``vectors``,
    one per record; None = not in the sample, drawn at append time) as typed columns; NaN is stored
    as null.

    Reading Python objects holds the interpreter lock, so it runs in small steps
    (:func:`frame_parts`) with a sleep of ``pause_s`` between them, in which a request thread takes
    the lock; the rest is one Polars query, which runs without it."""
    parts = _read_here(frame_parts(columns, vectors, features), pause_s)
    return assemble(parts, features, id_prefix, first_seq, experiment)


def _read_here(steps: Generator[None, None, FrameParts], pause_s: float) -> FrameParts:
    """Every step of ``steps`` in this thread, with a sleep of ``pause_s`` between two."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            parts: FrameParts = done.value
            return parts
        if pause_s:
            time.sleep(pause_s)


# answer columns (in slices), the sampled vectors (in slices), the vector row of each record
FrameParts = tuple[dict[str, list[pl.Series]], list[pl.DataFrame], pl.Series]


def frame_parts(columns: Columns, vectors: list[Vector],
                features: Mapping[str, pl.DataType]) -> Generator[None, None, FrameParts]:
    """The Python objects of a flush read into Polars, one step (``SLICE_ROWS`` values of a column,
    ``VECTOR_ROWS`` vectors: each under ~0.1 ms, holding the interpreter lock) per ``next``; the
    generator returns the parts :func:`assemble` takes (joining slices is Polars' work, left to it)."""
    head: dict[str, list[pl.Series]] = {}
    for name, values in zip(_RECORD_COLUMNS, columns, strict=True):
        head[name] = []
        for start in range(0, max(len(values), 1), SLICE_ROWS):
            chunk = values[start:start + SLICE_ROWS]
            if name == "model_version":
                chunk = [str(v) for v in chunk]
            head[name].append(pl.Series(name, chunk, dtype=_RAW_SCHEMA[name], strict=False))
            yield
    picked = [i for i, vector in enumerate(vectors) if vector is not None]
    rows = [vector for vector in vectors if vector is not None]
    sampled = [pl.DataFrame(schema=features)]
    for start in range(0, len(rows), VECTOR_ROWS):
        yield
        sampled.append(_vectors_slice(rows[start:start + VECTOR_ROWS], features))
    yield
    # Row i of the log takes row where[i] of the sampled vectors; null (not in the sample): no vector.
    where: list[int | None] = [None] * len(vectors)
    for k, i in enumerate(picked):
        where[i] = k
    return head, sampled, pl.Series(where, dtype=pl.UInt32)


class LoopSteps:
    """:func:`frame_parts` driven on an event loop, one step per turn of the loop, so the request
    thread reads the queued objects itself between requests: no hand-over of the interpreter lock
    to the flush thread and back per step (each hand-over stalls the running request). The flush
    thread waits for :attr:`done`, or calls :meth:`finish`, which takes the rest of the steps over
    (the loop stopped, or is blocked in the service's shutdown): every step runs exactly once."""

    def __init__(self, steps: Generator[None, None, FrameParts]) -> None:
        self._steps = steps
        self._lock = threading.Lock()
        self._taken = False
        self._parts: FrameParts | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.done = threading.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the steps on ``loop`` (from any thread)."""
        self._loop = loop
        loop.call_soon_threadsafe(self._turn)

    def _turn(self) -> None:
        # A bound method, not a closure that schedules itself: such a closure is a reference cycle,
        # which the service's collection rounds freeze while a flush runs and never free after
        # (serving/gc_policy.py), with the parts it holds (~11 MB a minute under load).
        with self._lock:
            more = not self._taken and self._advance()
        if more and self._loop is not None:
            self._loop.call_soon(self._turn)  # behind the requests already waiting

    def _advance(self) -> bool:
        """One step (the caller holds the lock); False once finished."""
        if self.done.is_set():
            return False
        try:
            next(self._steps)
            return True
        except StopIteration as end:
            self._parts = end.value
        except Exception as exc:  # handed to the flush thread, which counts the records as dropped
            self._error = exc
        self.done.set()
        return False

    def finish(self) -> FrameParts:
        """The parts, reading here what the loop has not read yet; raises what a step raised."""
        with self._lock:
            self._taken = True  # the loop's next turn stops; one step at a time from here
        while True:
            with self._lock:
                if not self._advance():
                    break
        # handed over, not kept: nothing here may outlive the flush (see _turn)
        parts, error, self._parts, self._error = self._parts, self._error, None, None
        if error is not None:
            raise error
        if parts is None:
            raise RuntimeError("the reading of the queued records was interrupted")
        return parts


# The answer columns as queued (time as integer µs; the rest as logged)
_RAW_SCHEMA: dict[str, pl.DataType] = {c: (pl.Int64() if c == "time" else LOG_SCHEMA[c])
                                       for c in _RECORD_COLUMNS}


def _vectors_slice(rows: list[Mapping[str, Any]], features: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The feature vectors ``rows`` as typed columns (values of other types: converted, else null)."""
    try:
        return pl.from_dicts(rows, schema=features, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):  # raw request features of odd types
        return pl.DataFrame({n: [_typed(row.get(n), dtype) for row in rows] for n, dtype in features.items()},
                            schema=features)


def assemble(parts: FrameParts, features: Mapping[str, pl.DataType], id_prefix: str, first_seq: int,
             experiment: str | None) -> pl.DataFrame:
    """The log frame from the answer columns and the typed vectors (row ``where[i]`` for record
    ``i``; null: none), in Polars only (it runs without the interpreter lock): request ids, the
    experiment of identified users, times as datetimes, NaN as null, the columns in log order."""
    slices, sampled_slices, where = parts
    head = pl.DataFrame({name: pl.concat(series) for name, series in slices.items()})
    sampled = pl.concat(sampled_slices)
    user = pl.col("user_id")
    numbers = [n for n, dtype in features.items() if dtype == pl.Float64]
    vectors = sampled.select(pl.all().gather(where))
    return (pl.concat([head, vectors], how="horizontal").lazy()
            .with_columns(pl.concat_str(pl.lit(f"{id_prefix}-"),
                                        pl.int_range(first_seq, first_seq + head.height, dtype=pl.Int64)
                                        .cast(pl.String)).alias("request_id"),
                          pl.col("time").cast(LOG_SCHEMA["time"]),
                          (pl.when(user.is_not_null() & (user != "")).then(pl.lit(experiment, pl.String))
                           .otherwise(pl.lit(None, pl.String)).alias("experiment")),
                          *([pl.col(numbers).fill_nan(None)] if numbers else []))
            .select(*LOG_SCHEMA, *features).collect())


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
                 experiment: str | None = None, counters: LogCounters | None = None, seed: int | None = None,
                 writer: Literal["process", "thread"] = "thread"):
        self.sink, self.features, self.experiment, self.counters = sink, dict(features), experiment, counters
        self.flush_rows, self.flush_every_s, self.max_buffer_rows = flush_rows, flush_every_s, max_buffer_rows
        self.feature_share = feature_share
        self.written = 0
        self.dropped: dict[str, int] = {}
        self._columns = new_columns()
        self._vectors: list[Vector] = []  # in step with _columns (appended first, so never shorter)
        self._draw = random.Random(seed).random  # the request path's draws of the vector sample
        self._id_prefix, self._seq = uuid.uuid4().hex[:12], 0
        # process: frames built and written by a child (serving/predlog_writer.py), off this
        # process's interpreter lock; thread: here, in the flush thread
        self._writer = (WriterProcess(sink, self.features, self._id_prefix, experiment)
                        if writer == "process" else None)
        self._loop: asyncio.AbstractEventLoop | None = None  # see attach_loop
        self._wake, self._stop = threading.Event(), threading.Event()
        self._flush_lock = threading.Lock()
        self._closed = False
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the queued objects of each flush on ``loop`` (the thread that appends: a service
        worker's event loop), a step per turn between requests (:class:`LoopSteps`), instead of
        in the flush thread; building and writing the frame stays in the flush thread. Only the
        in-process writer reads (the writer process gets the lists pickled)."""
        self._loop = loop

    def append(self, answer: Mapping[str, Any], features: Mapping[str, Any] | None) -> None:
        """Queue one answer (request path: no I/O, no copy); counted as dropped when the queue is full."""
        columns = self._columns
        queued = len(columns[-1])
        if self._closed:
            self._drop("closed", 1)
        elif queued >= self.max_buffer_rows:
            self._drop("buffer_full", 1)
        else:
            # The sample is drawn here: a vector not logged is not kept alive until the flush.
            share = self.feature_share
            self._vectors.append(features if share >= 1 or self._draw() < share else None)
            queue_answer(columns, time.time_ns() // 1000, answer)
            if queued + 1 == self.flush_rows:
                self._wake.set()

    def flush(self) -> int:
        """Write what waits now; returns the number of records written (0 on failure: counted)."""
        with self._flush_lock:
            n = len(self._columns[-1])  # complete records (see queue_answer); vectors: at least n
            if not n:
                return 0
            columns = tuple(self._take(values, n) for values in self._columns)
            vectors = self._take(self._vectors, n)
            first, self._seq = self._seq, self._seq + n
            try:
                if self._writer is not None:
                    self._writer.write(first, columns, vectors)
                else:
                    self.sink.write(assemble(self._read(columns, vectors), self.features, self._id_prefix,
                                             first, self.experiment))
            except Exception as exc:  # any failure of the target: counted, never raised into serving
                self._drop("write_error", n)
                self._warn(f"prediction log: {n} records not written ({type(exc).__name__}: {exc})")
                return 0
            self.written += n
            if self.counters is not None:
                self.counters.log_written(n)
            return n

    def _read(self, columns: Columns, vectors: list[Vector]) -> FrameParts:
        """The queued objects read into Polars: on the attached event loop when it runs (and this
        is not its thread), else here, pausing between steps."""
        steps = frame_parts(columns, vectors, self.features)
        loop = self._loop
        on_loop = loop is not None and _running_loop() is loop  # closing on the loop: no pauses
        if loop is None or on_loop or not loop.is_running():
            return _read_here(steps, 0.0 if on_loop else PAUSE_S)
        stepped = LoopSteps(steps)
        try:
            stepped.start(loop)
        except RuntimeError:  # the loop closed meanwhile: read here
            return stepped.finish()
        waited = 0.0
        while (not stepped.done.wait(LOOP_POLL_S) and self._loop is loop and loop.is_running()
               and waited < LOOP_WAIT_S):
            waited += LOOP_POLL_S
        return stepped.finish()

    @staticmethod
    def _take(values: list[Any], n: int) -> list[Any]:
        """The first ``n`` values, removed (request threads append at the end meanwhile)."""
        taken = values[:n]
        del values[:n]
        return taken

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and write what is still queued (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loop = None  # a flush waiting for the loop (maybe blocked in this call) reads the rest itself
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        self.flush()
        if self._writer is not None:  # the child closes its sink
            self._writer.close(timeout_s)
            return
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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
                         feature_share=log_cfg.feature_share, experiment=experiment, counters=counters,
                         writer=log_cfg.writer)
