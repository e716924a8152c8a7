"""The Redis Stream consumer against the local Redis: at-least-once delivery, exactly-once effect."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from features.live.redis_store import RedisProfileStore
from serving.consumer import StreamConsumer, StreamSource

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def publish(r: redis.Redis, stream: str, n_users: int, per_user: int, seed: int) -> dict[str, set[str]]:
    """XADD events (JSON entries, a few redelivered twice); returns the expected event ids per user."""
    rng = random.Random(seed)
    expected: dict[str, set[str]] = defaultdict(set)
    events = []
    for u in range(n_users):
        for i in range(per_user):
            ts = T0 + timedelta(seconds=rng.uniform(0, 20 * 86400))
            events.append({"event_id": f"u{u}-{i}", "user_id": f"u{u}",
                           "event": rng.choice(["page_view", "search"]), "timestamp": ts.isoformat()})
            expected[f"u{u}"].add(f"u{u}-{i}")
    events += rng.sample(events, len(events) // 10)  # the producer retried some deliveries
    rng.shuffle(events)
    pipe = r.pipeline(transaction=False)
    for e in events:
        pipe.xadd(stream, {"json": json.dumps(e)})
    pipe.execute()
    return expected


def stored_ids(store: RedisProfileStore, users: list[str]) -> dict[str, list[str]]:
    return {u: sorted(rec.event_id for rec in store.get_profile(u).events) for u in users}


@pytest.fixture
def stream_env(redis_url: str, redis_prefix: str):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisProfileStore(redis_url, redis_prefix)
    yield r, store, f"{redis_prefix}events"
    store.clear()
    store.close()
    r.close()


def test_pending_entries_of_a_dead_consumer_are_reclaimed(stream_env, redis_url: str) -> None:
    r, store, stream = stream_env
    expected = publish(r, stream, n_users=5, per_user=40, seed=1)
    r.xgroup_create(stream, "g", id="0")
    # A consumer reads a batch and dies before writing or acknowledging anything.
    taken = r.xreadgroup("g", "dead", {stream: ">"}, count=50)[0][1]
    assert r.xpending(stream, "g")["pending"] == len(taken) == 50
    source = StreamSource(redis_url, stream, "g", "alive")
    consumer = StreamConsumer(source, store, batch_size=30, block_ms=50, claim_idle_ms=0)
    stats = consumer.run(exit_when_idle_s=0.3)
    consumer.close()
    assert stats.claimed >= 50
    assert r.xpending(stream, "g")["pending"] == 0
    assert stored_ids(store, list(expected)) == {u: sorted(ids) for u, ids in expected.items()}


def test_invalid_entries_go_to_the_dead_letter_stream(stream_env, redis_url: str) -> None:
    r, store, stream = stream_env
    r.xadd(stream, {"event_id": "ok", "user_id": "u", "event": "page_view",
                    "timestamp": "2026-03-01T00:00:00Z"})
    r.xadd(stream, {"event_id": "bad", "user_id": "u", "event": "page_view", "timestamp": "not a time"})
    consumer = StreamConsumer(StreamSource(redis_url, stream, "g", "c"), store, block_ms=50)
    stats = consumer.run(exit_when_idle_s=0.2)
    consumer.close()
    assert (stats.applied, stats.dead_letters) == (1, 1)
    dead = r.xrange(f"{stream}:dead")
    assert len(dead) == 1 and "timestamp" in dead[0][1]["reason"]


def _consumer_cmd(redis_url: str, prefix: str, stream: str, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "propensity.cli", "consume", "--stream",
            f"{redis_url}?stream={stream}&group=g",
            "--key-prefix", prefix, "--consumer", name, "--batch-size", "25", *extra]


def test_killing_a_consumer_mid_stream_loses_and_doubles_nothing(stream_env, redis_url: str,
                                                                 redis_prefix: str) -> None:
    r, store, stream = stream_env
    expected = publish(r, stream, n_users=30, per_user=100, seed=2)
    total = r.xlen(stream)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(_consumer_cmd(redis_url, redis_prefix, stream, "first"), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = r.xinfo_groups(stream) if r.exists(stream) else []
            if groups and (groups[0].get("entries-read") or 0) >= total // 3:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the first consumer made no progress")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    read_before = r.xinfo_groups(stream)[0]["entries-read"]
    assert read_before < total, "the kill must land mid-stream"
    second = subprocess.run(_consumer_cmd(redis_url, redis_prefix, stream, "second", "--claim-idle-ms", "200",
                                          "--exit-when-idle", "1.0", "--json"),
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert r.xpending(stream, "g")["pending"] == 0
    assert stored_ids(store, list(expected)) == {u: sorted(ids) for u, ids in expected.items()}
