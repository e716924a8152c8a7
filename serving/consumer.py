"""The event stream consumer: Redis Stream (consumer group) -> live profile store.

At-least-once delivery made exactly-once in effect: entries are read with ``XREADGROUP``, written
to the profile store (idempotent by ``event_id``) and only then acknowledged with ``XACK``. A
consumer that dies between the write and the acknowledgement leaves its entries pending; any
consumer of the group takes them over with ``XAUTOCLAIM`` once they have been idle for
``claim_idle_ms``, and the store's deduplication makes the redelivery harmless.

An entry is either one field ``json`` holding the event object, or the event's columns as fields.
An entry that is not a valid event (bytes that are not UTF-8, JSON that does not parse or nests too
deep, a bad field, a timestamp later than now + ``ingest.max_future_skew``) is acknowledged and
copied, raw, with a ``reason``, to the dead-letter stream ``<stream>:dead``: never silently
dropped, never blocking the group. Entries are read as bytes and decoded here, entry by entry, so
one poison entry cannot stop the reader.

When Redis drops, the consumer waits and reconnects with exponential back-off (0.5 s doubling up
to 10 s); entries it had read but not acknowledged are re-read from its pending list and applied
idempotently.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import redis

from features.ingest.eventtime import TimestampUnit
from features.live.profile import EventRecord, normalize_event
from features.live.store import ProfileStore
from propensity.errors import ConfigError, DataError
from propensity.redact import redact
from serving.guards import BodyError, FutureEvent, Limits, check_not_future, parse_json

_CONNECTION_PARAMS = frozenset({"socket_timeout", "socket_connect_timeout", "health_check_interval",
                                "client_name", "db", "username", "password"})
_BACKOFF_S = (0.5, 10.0)  # first wait and cap of the reconnection back-off, seconds
_OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass(frozen=True)
class StreamSource:
    """Where to read: a Redis URL, the stream key, the consumer group and this consumer's name."""

    redis_url: str
    stream: str
    group: str = "propensity"
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_url(cls, url: str, consumer: str | None = None) -> StreamSource:
        """Parse ``redis://host:port/db?stream=events&group=propensity[&consumer=name]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"--stream: expected a redis:// URL, got '{redact(url)}'")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        # TLS and timeout options belong to the Redis connection (rediss://...?ssl_ca_certs=...).
        passed = {k: v for k, v in query.items() if k.startswith("ssl_") or k in _CONNECTION_PARAMS}
        unknown = sorted(set(query) - {"stream", "group", "consumer"} - set(passed))
        if unknown:
            raise ConfigError(f"--stream: unknown URL parameter '{unknown[0]}' "
                              "(stream, group, consumer, ssl_*, socket_timeout, ...)")
        if not query.get("stream"):
            raise ConfigError("--stream: the URL needs ?stream=<key>")
        name = consumer or query.get("consumer")
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(passed), ""))
        kwargs: dict[str, Any] = {"redis_url": base, "stream": query["stream"],
                                  "group": query.get("group", "propensity")}
        if name:
            kwargs["consumer"] = name
        return cls(**kwargs)


@dataclass
class ConsumeStats:
    """Counts of one consumer run: entries read, events applied / duplicate / dropped, dead letters."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dropped_deleted: int = 0
    dead_letters: int = 0
    future_dated: int = 0
    claimed: int = 0
    reconnects: int = 0
    seconds: float = 0.0


def _entry_event(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The event of a raw entry; DataError with the reason for anything that is not one."""
    try:
        text = {k.decode("utf-8"): v.decode("utf-8") for k, v in fields.items()}
    except UnicodeDecodeError:
        raise DataError("entry: not UTF-8 text") from None
    if "json" in text:
        try:
            data = parse_json(fields[b"json"], Limits())
        except BodyError as exc:
            raise DataError(f"json: {exc.message.removeprefix('body: ')}") from None
        if not isinstance(data, dict):
            raise DataError("json: expected an event object")
        return data
    return text


def _entry_id(entry_id: bytes | str) -> str:
    return entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id


class StreamConsumer:
    """Applies a stream's events to a :class:`ProfileStore` (see the module docstring)."""

    def __init__(self, source: StreamSource, store: ProfileStore, batch_size: int = 200,
                 block_ms: int = 500, claim_idle_ms: int = 30_000,
                 max_future_skew_s: float = 86_400.0,
                 timestamp_unit: TimestampUnit | None = None) -> None:
        self.source = source
        self.timestamp_unit = timestamp_unit  # unit of epoch-number timestamps (None: refused)
        self.store = store
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_future_skew_us = int(max_future_skew_s * 1_000_000)
        self.stats = ConsumeStats()
        # Raw bytes: an entry that is not UTF-8 must become a dead letter, not crash the reader.
        self._r: Any = redis.Redis.from_url(source.redis_url, decode_responses=False,
                                            socket_connect_timeout=2.0,
                                            socket_timeout=max(5.0, block_ms / 1000 + 5.0))
        self._stop = False
        self._until_connected(self._ensure_group)

    def _ensure_group(self) -> None:
        try:
            self._r.xgroup_create(self.source.stream, self.source.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Finish the current batch, then return from :meth:`run`."""
        self._stop = True

    def _until_connected(self, step: Callable[[], Any]) -> Any:
        """Run ``step``; while Redis is unreachable, wait with exponential back-off and retry."""
        wait = _BACKOFF_S[0]
        while True:
            try:
                return step()
            except _OUTAGE as exc:
                if self._stop:
                    raise
                self.stats.reconnects += 1
                print(f"consume: Redis unreachable ({redact(str(exc))[:120]}); retrying in {wait:.1f} s",
                      file=sys.stderr, flush=True)
                time.sleep(wait)
                wait = min(wait * 2, _BACKOFF_S[1])

    def _process(self, entries: list[tuple[Any, dict[bytes, bytes]]]) -> None:
        good: list[tuple[str, EventRecord]] = []
        dead: list[tuple[str, dict[bytes, bytes], str]] = []
        latest_us = time.time_ns() // 1000 + self.max_future_skew_us
        for raw_id, fields in entries:
            entry_id = _entry_id(raw_id)
            if not fields:  # an entry deleted from the stream while pending
                continue
            try:
                event = normalize_event(_entry_event(fields), self.timestamp_unit)
                good.append(check_not_future(event, latest_us))
            except DataError as exc:
                self.stats.future_dated += isinstance(exc, FutureEvent)
                dead.append((entry_id, fields, str(exc)[:500]))
            except (ValueError, TypeError, RecursionError) as exc:
                dead.append((entry_id, fields, f"entry: {type(exc).__name__}: {str(exc)[:200]}"))
        if good:
            result = self.store.add_events(good)
            self.stats.applied += result.applied
            self.stats.duplicates += result.duplicates
            self.stats.dropped_deleted += result.dropped_deleted
        if dead:
            pipe = self._r.pipeline(transaction=False)
            for entry_id, fields, reason in dead:
                pipe.xadd(f"{self.source.stream}:dead", {**fields, b"entry_id": entry_id, b"reason": reason})
            pipe.execute()
            self.stats.dead_letters += len(dead)
        ids = [_entry_id(entry_id) for entry_id, _ in entries]
        if ids:
            self._r.xack(self.source.stream, self.source.group, *ids)
        self.stats.read += len(entries)

    def claim_pending(self) -> int:
        """Take over entries idle for ``claim_idle_ms`` in any consumer of the group; returns how many."""
        start, total = "0-0", 0
        while True:
            reply = self._r.xautoclaim(self.source.stream, self.source.group, self.source.consumer,
                                       self.claim_idle_ms, start_id=start, count=self.batch_size)
            start, entries = _entry_id(reply[0]), reply[1]
            if entries:
                self._process(entries)
                total += len(entries)
            if start == "0-0":
                break
        self.stats.claimed += total
        return total

    def _own_pending(self) -> None:
        # Entries this consumer name read before a restart and never acknowledged.
        while True:
            reply = self._r.xreadgroup(self.source.group, self.source.consumer, {self.source.stream: "0"},
                                       count=self.batch_size)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            self._process(entries)

    def _recover(self) -> None:
        """After a start or a reconnection: the group exists, own and abandoned pending entries are done."""
        self._ensure_group()
        self._own_pending()
        self.claim_pending()

    def run(self, max_events: int | None = None, exit_when_idle_s: float | None = None,
            on_batch: Callable[[ConsumeStats], None] | None = None) -> ConsumeStats:
        """Consume until :meth:`stop`, ``max_events`` entries, or ``exit_when_idle_s`` without entries.

        A Redis outage (stream or profile store) pauses the loop with back-off, never ends it.
        """
        t0 = time.monotonic()
        self._until_connected(self._recover)
        last_entry = last_claim = time.monotonic()
        while not self._stop and (max_events is None or self.stats.read < max_events):
            try:
                entries = self._read_batch()
            except _OUTAGE:
                self._until_connected(self._recover)
                continue
            now = time.monotonic()
            if entries and on_batch is not None:
                on_batch(self.stats)
            last_entry = now if entries else last_entry
            try:
                if now - last_claim > self.claim_idle_ms / 1000:
                    if self.claim_pending():
                        last_entry = now
                    last_claim = now
                if exit_when_idle_s is not None and not entries and now - last_entry >= exit_when_idle_s:
                    if self.claim_pending() == 0 and self._pending_count() == 0:
                        break
                    last_entry = now
            except _OUTAGE:
                self._until_connected(self._recover)
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    def _read_batch(self) -> list[tuple[Any, dict[bytes, bytes]]]:
        reply = self._r.xreadgroup(self.source.group, self.source.consumer, {self.source.stream: ">"},
                                   count=self.batch_size, block=self.block_ms)
        entries: list[tuple[Any, dict[bytes, bytes]]] = reply[0][1] if reply else []
        if entries:
            self._process(entries)
        return entries

    def _pending_count(self) -> int:
        info = self._r.xpending(self.source.stream, self.source.group)
        return int(info["pending"])

    def close(self) -> None:
        self._r.close()


def consume(source: StreamSource, store: ProfileStore, *, batch_size: int = 200, claim_idle_ms: int = 30_000,
            max_events: int | None = None, exit_when_idle_s: float | None = None,
            max_future_skew_s: float = 86_400.0,
            timestamp_unit: TimestampUnit | None = None) -> ConsumeStats:
    """Run a :class:`StreamConsumer` until SIGINT/SIGTERM (or the limits); returns its counts."""
    consumer = StreamConsumer(source, store, batch_size=batch_size, claim_idle_ms=claim_idle_ms,
                              max_future_skew_s=max_future_skew_s, timestamp_unit=timestamp_unit)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: consumer.stop())
    try:
        return consumer.run(max_events=max_events, exit_when_idle_s=exit_when_idle_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        consumer.close()


def consume_from_config(source: StreamSource, config_path: str | None = None, *, redis_url: str | None = None,
                        key_prefix: str | None = None, **kwargs: Any) -> ConsumeStats:
    """:func:`consume` into the Redis profile store of the serving config (flags override it).

    The in-process store is private to one process, so the consumer always writes to Redis: the
    config's ``store.redis_url``, or the stream's own server when the config names no Redis store.
    """
    from features.live.store import make_profile_store
    from serving.config import load_serving_config

    serving_cfg = load_serving_config(config_path)
    store_cfg = serving_cfg.store
    kwargs.setdefault("max_future_skew_s", serving_cfg.ingest.max_future_skew.total_seconds())
    kwargs.setdefault("timestamp_unit", serving_cfg.ingest.timestamp_unit)
    url = redis_url or (store_cfg.redis_url if store_cfg.backend == "redis" else source.redis_url)
    store_cfg = store_cfg.model_copy(update={"backend": "redis", "redis_url": url,
                                             "key_prefix": key_prefix or store_cfg.key_prefix})
    store = make_profile_store(store_cfg)
    try:
        return consume(source, store, **kwargs)
    finally:
        store.close()
