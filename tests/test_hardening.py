"""Issue 11, without a server: privacy that holds, clock sanity, poison entries, body bounds, redaction.

Each test names the finding it reproduces (the numbers of issue 11).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from features.batch.config import FeaturesConfig, PrivacyConfig
from features.batch.pipeline import build_features
from features.live.redis_store import RedisProfileStore
from features.live.store import ForgottenUser, InProcessProfileStore, ProfileStoreConfig
from features.privacy import (
    FileLedger,
    RedisLedger,
    forget_user,
    forgotten_users,
    open_ledger,
    resolve_ledger,
)
from features.segments.config import load_segments_config
from propensity.errors import ConfigError, DataError
from propensity.redact import redact, redact_obj
from serving.auth import Authenticator, hash_key, load_keys, new_key, parse_key, scope_for
from serving.config import ServingConfig
from serving.consumer import StreamConsumer, StreamSource
from serving.engine import LoadedModel, PredictionEngine
from serving.guards import BodyError, Limits, check_body, parse_json
from serving.protection import ProtectionMiddleware, metrics_template
from serving.runner import check_exposure

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)


def _engine(store: InProcessProfileStore | None = None) -> PredictionEngine:
    """An engine without a model: enough for the write paths (events, users, deletion)."""
    return PredictionEngine(ServingConfig(), store or InProcessProfileStore(retention_days=40),
                            LoadedModel(None, "none", "0"), load_segments_config())


def _event(i: int, user: str, ts: datetime, kind: str = "page_view") -> dict:
    return {"event_id": f"{user}-{i}", "user_id": user, "event": kind, "timestamp": ts.isoformat()}


# -- 1. forgotten users come back ------------------------------------------------------------------


def test_finding1_deleted_user_is_not_brought_back_by_an_upsert_or_events(tmp_path: Path) -> None:
    engine, ledger = _engine(), FileLedger(tmp_path / "ledger.jsonl")
    engine.put_user("u1", {"loyalty_tier": "silver"})
    engine.delete_user("u1", ledger)
    with pytest.raises(ForgottenUser):
        engine.put_user("u1", {"loyalty_tier": "gold"}, ledger)
    result = engine.ingest([_event(1, "u1", NOW - timedelta(hours=1))])
    assert (result["applied"], result["dropped_deleted"]) == (0, 1)
    profile = engine.get_user("u1")
    assert profile["deleted"] and profile["attributes"] == {} and profile["events_retained"] == 0
    assert ledger.forgotten() == {"u1"}


def test_finding1_reconsent_is_explicit_and_recorded(tmp_path: Path) -> None:
    engine, ledger = _engine(), FileLedger(tmp_path / "ledger.jsonl")
    engine.delete_user("u1", ledger)
    with pytest.raises(DataError, match="consent"):
        engine.put_user("u1", {"consent": False, "reconsent_reason": "asked"}, ledger)
    answer = engine.put_user("u1", {"consent": True, "loyalty_tier": "gold",
                                    "reconsent_reason": "ticket 42: user opted in again"}, ledger)
    assert answer["attributes"] == {"consent": True, "loyalty_tier": "gold"}
    assert ledger.forgotten() == set()
    lines = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert lines[-1]["action"] == "reconsent" and "ticket 42" in lines[-1]["reason"]
    assert engine.ingest([_event(1, "u1", NOW - timedelta(hours=1))])["applied"] == 1


def test_finding1_a_forget_from_another_process_reaches_a_running_in_process_store(tmp_path: Path) -> None:
    from features.privacy import LedgerSync

    store, ledger_path = InProcessProfileStore(), tmp_path / "ledger.jsonl"
    engine, sync = _engine(store), LedgerSync(FileLedger(ledger_path))
    engine.put_user("u1", {"loyalty_tier": "gold"})
    assert sync.sync(store) == 0
    forget_user("u1", ledger_path)  # `propensity forget u1` while the service runs
    assert sync.sync(store) == 1 and sync.sync(store) == 0
    with pytest.raises(ForgottenUser):
        engine.put_user("u1", {"loyalty_tier": "gold"})
    assert engine.get_user("u1")["deleted"] is True


def test_finding1_the_ledger_location_does_not_depend_on_the_working_folder(tmp_path: Path) -> None:
    env = {**os.environ, "PROPENSITY_HOME": "relative-home", "PYTHONPATH": str(ROOT)}
    code = ("from features.privacy import resolve_ledger; from features.live.store import "
            "ProfileStoreConfig; print(resolve_ledger(store_cfg=ProfileStoreConfig()))")
    seen = set()
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        (folder / "relative-home").mkdir()
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert Path(out).is_absolute()
        seen.add(out)
    # A relative PROPENSITY_HOME is relative to each caller: what matters is that every process
    # turns its settings into an absolute path once (the runner hands it to the workers).
    assert len(seen) == 2 and all(p.endswith("relative-home/privacy/forget_ledger.jsonl") for p in seen)
    cfg = FeaturesConfig(privacy=PrivacyConfig(ledger_path="rel/ledger.jsonl"))
    assert Path(resolve_ledger(cfg, ProfileStoreConfig())).is_absolute()


@pytest.mark.redis
def test_finding1_with_a_redis_store_the_ledger_lives_in_redis(redis_url: str, redis_prefix: str) -> None:
    store_cfg = ProfileStoreConfig(backend="redis", redis_url=redis_url, key_prefix=redis_prefix)
    spec = resolve_ledger(FeaturesConfig(), store_cfg)
    assert spec == f"{redis_url}#{redis_prefix}"
    ledger = open_ledger(spec)
    assert isinstance(ledger, RedisLedger)
    try:
        forget_user("alice", spec)
        forget_user("bob", spec)
        ledger.reconsent("bob", "support ticket 7")
        assert forgotten_users(spec) == {"alice"}  # what any batch build on any machine reads
        assert ledger.is_forgotten("alice") and not ledger.is_forgotten("bob")
    finally:
        r = redis.Redis.from_url(redis_url)
        r.delete(f"{redis_prefix}forgotten", f"{redis_prefix}ledger")
        ledger.close()


@pytest.mark.redis
def test_finding1_forget_then_preload_keeps_the_user_deleted(redis_url: str, redis_prefix: str,
                                                            tmp_path: Path) -> None:
    from serving.loader import preload_users

    users = tmp_path / "users.jsonl"
    users.write_text("".join(json.dumps({"user_id": u, "loyalty_tier": "gold", "consent": True}) + "\n"
                             for u in ("u1", "u2")))
    serving = tmp_path / "serving.yaml"
    serving.write_text(f"store:\n  backend: redis\n  redis_url: {redis_url}\n"
                       f"  key_prefix: '{redis_prefix}'\n")
    store = RedisProfileStore(redis_url, redis_prefix)
    env = {**os.environ, "PROPENSITY_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    try:
        store.upsert_user("u1", {"loyalty_tier": "silver"})
        subprocess.run([sys.executable, "-m", "propensity.cli", "forget", "u1", "--serving-config",
                       str(serving)],
                       env=env, cwd=tmp_path, check=True, capture_output=True)
        spec = resolve_ledger(FeaturesConfig(), ProfileStoreConfig(backend="redis", redis_url=redis_url,
                                                                   key_prefix=redis_prefix))
        assert preload_users(store, str(users), forgotten=forgotten_users(spec)) == 1
        assert store.get_profile("u1").deleted
        assert store.get_profile("u2").attributes["loyalty_tier"] == "gold"
        undo = subprocess.run([sys.executable, "-m", "propensity.cli", "forget", "--undo", "u1", "--reason",
                               "user asked", "--serving-config", str(serving), "--json"],
                              env=env, cwd=tmp_path, check=True, capture_output=True, text=True)
        assert json.loads(undo.stdout)["action"] == "reconsent"
        assert not store.get_profile("u1").deleted and forgotten_users(spec) == set()
        refused = subprocess.run([sys.executable, "-m", "propensity.cli", "forget", "--undo", "u1"],
                                 env=env, cwd=tmp_path, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stderr.startswith("error: --reason")
    finally:
        store.clear()
        store.close()


def test_finding1_quarantine_files_leave_forgotten_users_out(tmp_path: Path) -> None:
    as_of = datetime(2024, 3, 10, tzinfo=UTC)
    events = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(6)],
        "user_id": ["alice", "carol", "alice", "carol", "bob", "carol"],
        "timestamp": [(as_of - timedelta(hours=h)).isoformat() for h in (1, 2, 3, 4, 5, 6)],
        "event": ["page_view", "page_view", "purchase", "purchase", "page_view", "page_view"],
        "value": [None, None, -1.0, -2.0, None, None],  # negative values: quarantined rows
    })
    events.write_parquet(tmp_path / "events.parquet")
    ledger = tmp_path / "ledger.jsonl"
    forget_user("carol", ledger)
    cfg = FeaturesConfig(privacy=PrivacyConfig(ledger_path=str(ledger)))
    cfg.ingest.max_bad_share = 0.5
    result = build_features(tmp_path / "events.parquet", None, as_of, None, None, None,
                            tmp_path / "f.parquet", cfg)
    assert result.quarantine_path is not None
    quarantined = pl.read_parquet(result.quarantine_path)
    assert quarantined["user_id"].to_list() == ["alice"]


# -- 2. one bad stream entry stops the consumer group --------------------------------------------


@pytest.mark.redis
def test_finding2_poison_entries_go_to_the_dead_letter_stream(redis_url: str, redis_prefix: str) -> None:
    r = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}events"
    store = RedisProfileStore(redis_url, redis_prefix)
    ok = _event(0, "u", NOW - timedelta(hours=1)) | {"event_id": "ok"}
    try:
        r.xadd(stream, {b"json": b"\xff\xfe"})
        r.xadd(stream, {b"event_id": b"\xff\xfe", b"user_id": b"u"})
        r.xadd(stream, {"json": "[" * 100_000 + "]" * 100_000})
        r.xadd(stream, {"json": '{"event_id": "n", "user_id": "u", "event": "x", "timestamp": NaN}'})
        r.xadd(stream, {"json": json.dumps(ok | {"event_id": "future", "timestamp": "9999-12-31T23:59:59Z"})})
        r.xadd(stream, {"json": json.dumps(ok)})
        for _ in range(2):  # a restart (or another consumer) meets no poison left behind
            consumer = StreamConsumer(StreamSource(redis_url, stream, "g", "c"), store, block_ms=50)
            stats = consumer.run(exit_when_idle_s=0.2)
            consumer.close()
            if stats.read:
                assert (stats.applied, stats.dead_letters, stats.future_dated) == (1, 5, 1)
        dead = r.xrange(f"{stream}:dead")
        reasons = [fields[b"reason"].decode() for _, fields in dead]
        assert len(dead) == 5 and r.xpending(stream, "g")["pending"] == 0
        assert "not UTF-8" in reasons[0] and "not UTF-8" in reasons[1]
        assert "nested deeper" in reasons[2] and "NaN" in reasons[3] and "in the future" in reasons[4]
        assert dead[0][1][b"json"] == b"\xff\xfe"  # the raw entry is kept for inspection
        assert [rec.event_id for rec in store.get_profile("u").events] == ["ok"]
    finally:
        store.clear()
        store.close()
        r.delete(stream, f"{stream}:dead")


# -- 4. one future-dated event wipes a user's history ------------------------------------------


def test_finding4_a_future_dated_event_is_refused_and_history_stays() -> None:
    engine = _engine()
    history = [_event(i, "u", NOW - timedelta(days=i % 30, hours=1)) for i in range(20)]
    engine.ingest(history)
    before = engine.get_user("u")
    for ts in ("9999-12-31T23:59:59Z", (NOW + timedelta(days=400)).isoformat(),
               (NOW + timedelta(days=2)).isoformat()):
        with pytest.raises(DataError, match=r"\[1\]\.timestamp: .* is in the future"):
            engine.ingest([_event(100, "u", NOW), {**_event(101, "u", NOW), "timestamp": ts}])
    after = engine.get_user("u")
    assert after["events_retained"] == before["events_retained"] == 20
    assert after["events_compacted"] == 0
    assert after["features"]["page_view_7d"] == before["features"]["page_view_7d"]
    assert engine.ingest([_event(102, "u", NOW + timedelta(hours=1))])["applied"] == 1  # within the skew


# -- 3. authentication ----------------------------------------------------------------------------


def test_finding3_keys_are_hashed_scoped_and_configured_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret, key = new_key("engine", "predict,ingest")
    assert secret not in key.entry() and key.entry().endswith(hash_key(secret))
    assert parse_key(key.entry()) == key
    with pytest.raises(ConfigError, match="SHA-256") as exc:
        parse_key(f"engine:predict:{secret}")
    assert secret not in str(exc.value)
    with pytest.raises(ConfigError, match="unknown scope"):
        parse_key(f"x:root:{hash_key('a')}")
    monkeypatch.setenv("PROPENSITY_API_KEYS", key.entry())
    assert load_keys([f"other:admin:{hash_key('b')}"]) == [key]  # the environment replaces the config
    auth = Authenticator([key])
    bearer = f"Bearer {secret}"
    assert auth.check("/predict", bearer, "10.0.0.9").client == "engine"
    assert auth.check("/events", bearer, "10.0.0.9").client == "engine"
    assert auth.check("/users/u1", bearer, "10.0.0.9").status == 403
    assert auth.check("/predict", None, "127.0.0.1").status == 401
    assert auth.check("/predict", "Bearer wrong", "127.0.0.1").status == 401
    assert auth.check("/readyz", None, "10.0.0.9").client is not None
    assert [scope_for(p) for p in ("/predict_batch", "/events", "/users/x", "/metrics")] == [
        "predict", "ingest", "admin", None]


def test_finding3_without_keys_only_loopback_is_served() -> None:
    auth = Authenticator([])
    assert auth.check("/users/u1", None, "127.0.0.1").client == "127.0.0.1"
    assert auth.check("/users/u1", None, "192.168.1.7").status == 403
    assert Authenticator([], insecure=True).check("/users/u1", None, "192.168.1.7").client
    with pytest.raises(ConfigError, match="loopback"):
        check_exposure("0.0.0.0", has_keys=False, insecure=False)
    check_exposure("0.0.0.0", has_keys=False, insecure=True)
    check_exposure("0.0.0.0", has_keys=True, insecure=False)
    check_exposure("::1", has_keys=False, insecure=False)


@pytest.mark.redis
def test_finding3_the_rate_limit_is_shared_by_all_workers_through_redis(redis_url: str,
                                                                       redis_prefix: str) -> None:
    import asyncio

    from serving.protection import RedisTokenBuckets

    async def takes() -> list[float]:
        workers = [RedisTokenBuckets(redis_url, redis_prefix, rate_per_s=0.5, burst=4) for _ in range(2)]
        waits = [await workers[i % 2].take_async("engine") for i in range(6)]
        waits.append(await workers[0].take_async("other-client"))
        for w in workers:
            await w._r.aclose()
        return waits

    waits = asyncio.run(takes())
    assert waits[:4] == [0.0] * 4  # the burst is shared: 4 requests over both workers, not 4 each
    assert all(w > 0 for w in waits[4:6]) and waits[6] == 0.0
    redis.Redis.from_url(redis_url).delete(f"{redis_prefix}rl:engine", f"{redis_prefix}rl:other-client")


# -- 5. and 6. bad input and unbounded work ---------------------------------------------------------


def _echo(**options: object) -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = Starlette(routes=[Route(p, echo, methods=["POST", "PUT"]) for p in
                            ("/predict", "/predict_batch", "/events", "/users/{user_id}")])
    app.add_middleware(ProtectionMiddleware, **options)  # type: ignore[arg-type]
    return TestClient(app)


@pytest.mark.parametrize("path, body, status, field", [
    ("/events", b"x", 400, "body"),
    ("/events", b"\x00", 400, "body"),
    ("/predict_batch", b"x", 400, "body"),
    ("/predict", b'{"user_id": "u", "features": {"age": 1e400}}', 400, "body"),
    ("/predict", b'{"features": {"engagement_score": Infinity}}', 400, "body"),
    ("/users/u1", b'{"age": NaN}', 400, "body"),
    ("/predict", b'{"features": {"events_30d": "many"}}', 422, "features.events_30d"),
    ("/predict", b'{"features": {"events_30d": {"a": 1}}}', 422, "features.events_30d"),
    ("/predict", b'{"features": {"events_30d": [1]}}', 422, "features.events_30d"),
    ("/events", b"[" * 1000 + b"]" * 1000, 400, "body"),
    ("/predict_batch", b"[" * 1000 + b"]" * 1000, 400, "body"),
    ("/events", b'{"event_id": "e"}', 422, "body"),
    ("/events", json.dumps([{"event_id": "e" * 257}]).encode(), 422, "[0].event_id"),
    ("/predict", json.dumps({"user_id": "u" * 257}).encode(), 422, "user_id"),
    ("/predict_batch", json.dumps([{"user_id": "u"}] * 1001).encode(), 413, "body"),
])
def test_findings5_6_bad_bodies_get_one_4xx_shape_before_any_work(path: str, body: bytes, status: int,
                                                                  field: str) -> None:
    r = _echo(max_batch=1000).post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and isinstance(r.json()["error"], str)


def test_finding5_other_media_types_and_chunked_bodies_over_the_limit() -> None:
    client = _echo(max_request_bytes=2048)
    r = client.post("/events", files={"f": ("a.txt", b"x")})
    assert r.status_code == 415 and r.json()["field"] == "content-type"

    def chunks():
        yield b"["
        for _ in range(10):
            yield b'{"event_id": "' + b"x" * 300 + b'"},'
        yield b"{}]"

    r = client.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_finding6_metric_labels_use_route_templates() -> None:
    assert metrics_template("/users/u-123") == "/users/{user_id}"
    assert metrics_template("/predict") == "/predict"


def test_depth_limit_allows_the_deepest_legitimate_body() -> None:
    body = json.dumps([{"user_id": "u", "features": {"age": 30}, "context": {"device": "mobile"}}]).encode()
    check_body("/predict_batch", parse_json(body, Limits()), Limits())
    with pytest.raises(BodyError):
        parse_json(b'{"a":' * 9 + b"1" + b"}" * 9, Limits())


# -- 8. secrets in output -------------------------------------------------------------------------


def test_finding8_secrets_are_redacted_everywhere() -> None:
    assert redact("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact("error at rediss://app:hunter2@cache:6380/1 and postgresql://u:pw@db/x") == \
        "error at rediss://app:***@cache:6380/1 and postgresql://u:***@db/x"
    assert redact("https://h/x?password=hunter2&a=1") == "https://h/x?password=***&a=1"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    nested = redact_obj({"search": {"storage": "postgresql://u:hunter2@db/optuna"}, "n": 3})
    assert "hunter2" not in json.dumps(nested) and nested["n"] == 3
    from training.tracking import ui_command

    assert "hunter2" not in ui_command("postgresql://u:hunter2@db/mlflow")


def test_finding8_an_unreachable_redis_is_reported_without_its_password(tmp_path: Path) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": "u1"}\n')
    model = tmp_path / "model.pkl"
    model.write_bytes(b"")
    env = {**os.environ, "PROPENSITY_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "propensity.cli", "serve", "--model", str(model), "--users",
                          str(users), "--store", "redis", "--redis-url", "redis://:hunter2@127.0.0.1:1/0"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "hunter2" not in out.stderr + out.stdout and "does not answer" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_finding8_keys_create_prints_the_key_once_and_only_its_hash_as_entry() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "propensity.cli", "keys", "create", "--name", "engine",
                         "--scopes",
                          "predict,ingest", "--json"], env=env, capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["entry"] == f"engine:predict+ingest:{hash_key(doc['key'])}"
    assert doc["key"] not in doc["entry"]

