"""Fault injection: the profile store's Redis is killed under load and restarted.

A private redis-server (its own port, a password, append-only with fsync always) backs a two-worker
`propensity serve` and a `propensity consume`. The service starts while Redis is still down and
answers 503 until it is up; then HTTP clients and a stream producer send events while Redis is
SIGKILLed and restarted. Expected: 503s (with Retry-After) while it is down, never a 500, every
event stored exactly once (clients retry on 503 with the same event ids), the consumer reconnects
and catches up, and the password never appears in a log.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from server_support import ROOT, Process, free_port, start_redis, start_server, tls_certificate, wait_until
from test_serving_helpers import clean_frames, make_shop, train_model

from features.live.redis_store import RedisProfileStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]
PASSWORD = "s3cret-hunter2"
PREFIX = "fault:"
N_USERS = 12
NOW = datetime.now(UTC)


class Load:
    """HTTP clients posting event batches (retrying a batch on 503 / connection errors) and a stream
    producer; records every status code and every event id sent per user."""

    def __init__(self, url: str, redis_url: str, stream: str) -> None:
        self.url, self.redis_url, self.stream = url, redis_url, stream
        self.codes: Counter[int] = Counter()
        self.retry_after: set[str] = set()
        self.sent: dict[str, set[str]] = defaultdict(set)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _batch(self, tag: str, n: int, rng: random.Random) -> list[dict]:
        return [{"event_id": f"{tag}-{i}", "user_id": f"u{rng.randrange(N_USERS)}", "event": "page_view",
                 "timestamp": (NOW - timedelta(minutes=rng.uniform(1, 600))).isoformat()} for i in range(n)]

    def http_client(self, worker: int, batches: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for b in range(batches):
                batch = self._batch(f"h{worker}-{b}", 10, rng)
                while True:
                    try:
                        r = client.post("/events", json=batch)
                        code = r.status_code
                        if code == 503:
                            with self.lock:
                                self.retry_after.add(r.headers.get("retry-after", ""))
                    except httpx.TransportError:
                        code = -1
                    with self.lock:
                        self.codes[code] += 1
                    if code == 200:
                        break
                    if code not in (503, -1):
                        return  # a bug: the assertion on codes reports it
                    time.sleep(0.2)
                with self.lock:
                    for e in batch:
                        self.sent[e["user_id"]].add(e["event_id"])
                # paced, so the load spans the outage (Redis is killed after 2 s, back after 6 s)
                # however fast the service answers: 60 batches take at least 9 s
                time.sleep(0.15)

    def producer(self, entries: int) -> None:
        rng = random.Random(99)
        r = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        for i in range(entries):
            event = self._batch(f"s{i}", 1, rng)[0]
            while True:
                try:
                    r.xadd(self.stream, {"json": json.dumps(event)})
                    break
                except redis.RedisError:
                    time.sleep(0.2)  # a lost reply may duplicate the entry: the store dedups it
            with self.lock:
                self.sent[event["user_id"]].add(event["event_id"])
            time.sleep(0.015)


def _ready(url: str) -> bool:
    return httpx.get(f"{url}/readyz", timeout=5).status_code == 200


def test_redis_killed_under_load_gives_503s_loses_and_doubles_nothing(tmp_path: Path) -> None:
    raw_events, raw_users = make_shop(n_users=30, seed=5)
    train_model(*clean_frames(raw_events, raw_users), tmp_path / "model.pkl")
    port = free_port()
    redis_url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    stream = f"{PREFIX}events"

    # 1. The service starts while its store is down: alive, not ready, 503 with Retry-After.
    args = ["--model", str(tmp_path / "model.pkl"), "--workers", "2", "--store", "redis",
            "--redis-url", redis_url, "--key-prefix", PREFIX]
    server, url = start_server(tmp_path, args, wait_ready=False)
    redis_proc = consumer = None
    try:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
        down = httpx.post(f"{url}/predict", json={"user_id": "u1"}, timeout=10)
        assert down.status_code == 503 and down.headers["retry-after"] == "2"
        assert down.json()["field"] == "store" and down.json()["retry_after_s"] == 2

        # 2. Redis comes up: the service recovers without a restart.
        redis_proc, _ = start_redis(tmp_path, port, password=PASSWORD)
        wait_until(lambda: _ready(url), "ready after Redis started", server, timeout=60)
        consumer = Process([sys.executable, "-m", "propensity.cli", "consume", "--stream",
                            f"{redis_url}?stream={stream}&group=g", "--redis-url", redis_url,
                            "--key-prefix", PREFIX, "--consumer", "c1", "--batch-size", "50",
                            "--claim-idle-ms", "2000", "--json"],
                           tmp_path / "consumer.log",
                           env={**os.environ, "PYTHONPATH": str(ROOT), "PROPENSITY_HOME": str(tmp_path)})

        # 3. Load, and Redis is SIGKILLed in the middle of it, then restarted on the same data.
        load = Load(url, redis_url, stream)
        threads = [threading.Thread(target=load.http_client, args=(w, 60)) for w in range(4)]
        threads.append(threading.Thread(target=load.producer, args=(600,)))
        for t in threads:
            t.start()
        time.sleep(2.0)
        redis_proc.stop(signal.SIGKILL)
        time.sleep(4.0)
        redis_proc, _ = start_redis(tmp_path, port, password=PASSWORD)
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)

        # 4. The consumer catches up; every event is stored exactly once.
        store = RedisProfileStore(redis_url, PREFIX)
        expected = {u: sorted(ids) for u, ids in load.sent.items()}

        def caught_up() -> bool:
            return all(len(store.get_profile(u).events) >= len(ids) for u, ids in expected.items())

        wait_until(caught_up, "consumer caught up", consumer, timeout=120)
        stored = {u: sorted(r.event_id for r in store.get_profile(u).events) for u in expected}
        store.close()
    finally:
        if consumer is not None:
            consumer.stop(signal.SIGTERM)
        server.stop()
        if redis_proc is not None:
            redis_proc.stop()
    print(f"fault injection: answers {dict(load.codes)}, events {sum(map(len, expected.values()))}")
    assert load.codes[500] == 0 and set(load.codes) <= {200, 503, -1}, load.codes
    assert load.codes[503] > 0, load.codes  # the outage was seen, as 503s
    assert load.retry_after == {"2"}
    assert stored == expected  # 0 lost, 0 applied twice
    assert sum(len(ids) for ids in expected.values()) == 4 * 60 * 10 + 600
    for log in (server.log, consumer.log):
        text = log.read_text(errors="replace")
        assert PASSWORD not in text, log
        assert "Traceback" not in text, text[-3000:]
    assert "retrying in" in consumer.log.read_text()  # it saw the outage and reconnected


def test_a_password_protected_tls_redis_works_for_the_store_and_the_consumer(tmp_path: Path) -> None:
    from serving.consumer import StreamConsumer, StreamSource

    cert, key = tls_certificate(tmp_path)
    proc, port = start_redis(tmp_path, password=PASSWORD, tls=(cert, key))
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        store = RedisProfileStore(url, PREFIX)
        assert store.ping()
        r = redis.Redis.from_url(url)
        event = {"event_id": "tls-1", "user_id": "t", "event": "page_view",
                 "timestamp": (NOW - timedelta(hours=1)).isoformat()}
        r.xadd("s", {"json": json.dumps(event)})
        source = StreamSource.from_url(f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?stream=s&ssl_ca_certs={cert}")
        consumer = StreamConsumer(source, store, block_ms=50)
        stats = consumer.run(exit_when_idle_s=0.2)
        consumer.close()
        assert stats.applied == 1 and [e.event_id for e in store.get_profile("t").events] == ["tls-1"]
        plain = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2)
        with pytest.raises(redis.ConnectionError):
            plain.ping()  # the server really speaks TLS only
        store.close()
        r.close()
    finally:
        proc.stop()
