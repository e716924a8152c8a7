"""The event stream consumer: Redis Stream (consumer group) -> live profile store.

At-least-once delivery made exactly-once in effect: entries are read with ``XREADGROUP``, written
to the profile store (idempotent by ``event_id``) and only then acknowledged with ``XACK``. A
consumer that dies between the write and the acknowledgement leaves its entries pending; any
consumer of the group takes them over with ``XAUTOCLAIM`` once they have been idle for
``claim_idle_ms``, and the store's deduplication makes the redelivery harmless.

An entry is either one field ``json`` holding the event object, or the event's columns as fields.
An entry that is not a valid event is acknowledged and copied, with a ``reason``, to the
dead-letter stream ``<stream>:dead`` (never silently dropped, never blocking the group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis

from features.errors import ConfigError, DataError
from features.eventtime import TimestampUnit
from features.online import EventRecord, normalize_event
from features.profile_store import ProfileStore


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
            raise ConfigError(f"--stream: expected a redis:// URL, got '{url}'")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - {"stream", "group", "consumer"})
        if unknown:
            raise ConfigError(f"--stream: unknown URL parameter '{unknown[0]}' (stream, group, consumer)")
        if not query.get("stream"):
            raise ConfigError("--stream: the URL needs ?stream=<key>")
        name = consumer or query.get("consumer")
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
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
    claimed: int = 0
    seconds: float = 0.0


def _entry_event(fields: dict[str, str]) -> dict[str, Any]:
    if "json" in fields:
        data = json.loads(fields["json"])
        if not isinstance(data, dict):
            raise DataError("json: expected an event object")
        return data
    return dict(fields)


class StreamConsumer:
    """Applies a stream's events to a :class:`ProfileStore` (see the module docstring)."""

    def __init__(self, source: StreamSource, store: ProfileStore, batch_size: int = 200,
                 block_ms: int = 500, claim_idle_ms: int = 30_000,
                 timestamp_unit: TimestampUnit | None = None) -> None:
        self.source = source
        self.timestamp_unit = timestamp_unit  # unit of epoch-number timestamps (None: refused)
        self.store = store
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.stats = ConsumeStats()
        # Any: redis-py's stubs type stream replies as bytes-or-str unions; decode_responses makes them str.
        self._r: Any = redis.Redis.from_url(source.redis_url, decode_responses=True)
        self._stop = False
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self._r.xgroup_create(self.source.stream, self.source.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Finish the current batch, then return from :meth:`run`."""
        self._stop = True

    def _process(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        good: list[tuple[str, EventRecord]] = []
        dead: list[tuple[str, dict[str, str], str]] = []
        for entry_id, fields in entries:
            if not fields:  # an entry deleted from the stream while pending
                continue
            try:
                good.append(normalize_event(_entry_event(fields), self.timestamp_unit))
            except (DataError, ValueError) as exc:
                dead.append((entry_id, fields, str(exc)))
        if good:
            result = self.store.add_events(good)
            self.stats.applied += result.applied
            self.stats.duplicates += result.duplicates
            self.stats.dropped_deleted += result.dropped_deleted
        if dead:
            pipe = self._r.pipeline(transaction=False)
            for entry_id, fields, reason in dead:
                pipe.xadd(f"{self.source.stream}:dead", {**fields, "entry_id": entry_id, "reason": reason})
            pipe.execute()
            self.stats.dead_letters += len(dead)
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            self._r.xack(self.source.stream, self.source.group, *ids)
        self.stats.read += len(entries)

    def claim_pending(self) -> int:
        """Take over entries idle for ``claim_idle_ms`` in any consumer of the group; returns how many."""
        start, total = "0-0", 0
        while True:
            reply = self._r.xautoclaim(self.source.stream, self.source.group, self.source.consumer,
                                       self.claim_idle_ms, start_id=start, count=self.batch_size)
            start, entries = reply[0], reply[1]
            if entries:
                self._process(entries)
                total += len(entries)
            if start in ("0-0", b"0-0"):
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

    def run(self, max_events: int | None = None, exit_when_idle_s: float | None = None,
            on_batch: Callable[[ConsumeStats], None] | None = None) -> ConsumeStats:
        """Consume until :meth:`stop`, ``max_events`` entries, or ``exit_when_idle_s`` without entries."""
        t0 = time.monotonic()
        self._own_pending()
        self.claim_pending()
        last_entry = last_claim = time.monotonic()
        while not self._stop and (max_events is None or self.stats.read < max_events):
            reply = self._r.xreadgroup(self.source.group, self.source.consumer, {self.source.stream: ">"},
                                       count=self.batch_size, block=self.block_ms)
            entries = reply[0][1] if reply else []
            now = time.monotonic()
            if entries:
                self._process(entries)
                last_entry = now
                if on_batch is not None:
                    on_batch(self.stats)
            if now - last_claim > self.claim_idle_ms / 1000:
                if self.claim_pending():
                    last_entry = now
                last_claim = now
            if exit_when_idle_s is not None and not entries and now - last_entry >= exit_when_idle_s:
                if self.claim_pending() == 0 and self._pending_count() == 0:
                    break
                last_entry = now
        self.stats.seconds = time.monotonic() - t0
        return self.stats

    def _pending_count(self) -> int:
        info = self._r.xpending(self.source.stream, self.source.group)
        return int(info["pending"])

    def close(self) -> None:
        self._r.close()


def consume(source: StreamSource, store: ProfileStore, *, batch_size: int = 200, claim_idle_ms: int = 30_000,
            max_events: int | None = None, exit_when_idle_s: float | None = None,
            timestamp_unit: TimestampUnit | None = None) -> ConsumeStats:
    """Run a :class:`StreamConsumer` until SIGINT/SIGTERM (or the limits); returns its counts."""
    consumer = StreamConsumer(source, store, batch_size=batch_size, claim_idle_ms=claim_idle_ms,
                              timestamp_unit=timestamp_unit)
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
    from features.profile_store import make_profile_store
    from serving.config import load_serving_config

    cfg = load_serving_config(config_path)
    kwargs.setdefault("timestamp_unit", cfg.ingest.timestamp_unit)
    store_cfg = cfg.store
    url = redis_url or (store_cfg.redis_url if store_cfg.backend == "redis" else source.redis_url)
    store_cfg = store_cfg.model_copy(update={"backend": "redis", "redis_url": url,
                                             "key_prefix": key_prefix or store_cfg.key_prefix})
    store = make_profile_store(store_cfg)
    try:
        return consume(source, store, **kwargs)
    finally:
        store.close()
