"""The prediction engine in-process: MLflow loading, champion/challenger split, cache, protection."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from test_serving_helpers import AS_OF, clean_frames, make_shop, train_model

from propensity.errors import DataError
from serving.auth import Authenticator, new_key
from serving.config import ServingConfig
from serving.loader import build_engine, load_model
from serving.protection import ProtectionMiddleware, TokenBuckets
from serving.scoring import variant_for
from training.model import ConversionPyfunc
from training.registry import register
from training.tracking import setup_tracking


@pytest.fixture(scope="module")
def shop_model(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("engine")
    raw_events, raw_users = make_shop(n_users=40, seed=5)
    events, users = clean_frames(raw_events, raw_users)
    model = train_model(events, users, tmp / "model.pkl")
    return tmp, model, raw_events, raw_users


def _engine(tmp: Path, **cfg: object):
    config = tmp / f"serving-{len(list(tmp.glob('serving-*')))}.yaml"
    config.write_text(json.dumps(cfg))  # JSON is YAML
    return build_engine({"config_path": str(config), "model_uri": str(tmp / "model.pkl")})


def test_model_loads_from_the_registry_by_alias(shop_model, tmp_path: Path) -> None:
    tmp, model, _, _ = shop_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, experiment_id = setup_tracking(uri, "serving-test", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=ConversionPyfunc(),
                                       artifacts={ConversionPyfunc.ARTIFACT: str(tmp / "model.pkl")})
    register(info.model_uri, "conv", "champion", {})
    register(info.model_uri, "conv", "champion", {})  # version 2 now holds the alias
    loaded = load_model("models:/conv@champion", ServingConfig(tracking_uri=uri))
    assert (loaded.name, loaded.version) == ("conv", "2")
    row = {"events_30d": 12.0, "purchases_total": 1.0, "loyalty_tier": "gold"}
    assert loaded.model.predict_one(row) == pytest.approx(model.predict_one(row), abs=1e-12)


def test_challenger_split_is_deterministic_and_logged(shop_model, tmp_path: Path) -> None:
    tmp, _, _, _ = shop_model
    log = tmp_path / "exposures.jsonl"
    engine = _engine(tmp, experiment={"enabled": True, "name": "exp1", "salt": "s1", "challenger_share": 0.3,
                                      "challenger_model": str(tmp / "model.pkl"), "exposure_log": str(log)},
                     cache={"enabled": False})
    users = [f"v{i}" for i in range(600)]
    variants = {u: engine.predict({"user_id": u, "as_of": AS_OF.isoformat()})["variant"] for u in users}
    again = {u: engine.predict({"user_id": u, "as_of": AS_OF.isoformat()})["variant"] for u in users[:50]}
    assert all(variants[u] == v for u, v in again.items())
    share = sum(v == "challenger" for v in variants.values()) / len(users)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(users))  # binomial, 4 standard errors
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 650
    assert set(records[0]) == {"user_id", "experiment", "variant", "model_name", "model_version", "time"}
    assert all(r["variant"] == variants[r["user_id"]] and r["experiment"] == "exp1" for r in records)


def test_variant_depends_on_the_salt() -> None:
    a = [variant_for("salt-a", f"u{i}", 0.5) for i in range(200)]
    b = [variant_for("salt-b", f"u{i}", 0.5) for i in range(200)]
    assert a != b
    assert variant_for("salt-a", "u1", 0.0) == "champion" and variant_for("x", "u1", 1.0) == "challenger"


def test_as_of_answers_are_cached_until_a_new_event(shop_model) -> None:
    tmp, _, raw_events, raw_users = shop_model
    engine = _engine(tmp)
    user = raw_users[3]["user_id"]
    engine.ingest([e for e in raw_events if e["user_id"] == user])
    first = engine.predict({"user_id": user, "as_of": AS_OF.isoformat(), "debug": True})
    assert engine.predict({"user_id": user, "as_of": AS_OF.isoformat(), "debug": True}) is first
    engine.ingest([{"event_id": "late-1", "user_id": user, "event": "purchase", "value": 5.0,
                    "timestamp": "2026-02-01T00:00:00Z"}])
    second = engine.predict({"user_id": user, "as_of": AS_OF.isoformat(), "debug": True})
    assert second["features"]["purchases_total"] == first["features"]["purchases_total"] + 1


def test_raw_features_are_scored_directly(shop_model) -> None:
    tmp, model, _, _ = shop_model
    engine = _engine(tmp)
    features = {"events_30d": 30.0, "add_to_cart_7d": 2.0, "cart_open": 1.0, "loyalty_tier": "silver"}
    answer = engine.predict({"features": features})
    assert answer["probability"] == pytest.approx(model.predict_one(features), abs=1e-12)
    assert answer["source"] == "features" and len(answer["reasons"]) == 3


def _echo_app(**options: object) -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = Starlette(routes=[Route("/predict", echo, methods=["POST"]), Route("/livez", echo)])
    app.add_middleware(ProtectionMiddleware, **options)  # type: ignore[arg-type]
    return TestClient(app)


def test_rate_limit_answers_429_with_retry_after_per_authenticated_client() -> None:
    keys = {name: new_key(name, "predict") for name in ("engine", "other")}
    auth = Authenticator([key for _, key in keys.values()])
    client = _echo_app(rate_limit=True, rate_per_s=0.5, burst=3, authenticator=auth)
    engine = {"authorization": f"Bearer {keys['engine'][0]}"}
    codes = [client.post("/predict", json={}, headers=engine).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.post("/predict", json={}, headers={**engine, "x-client-id": "rotated"})
    assert refused.status_code == 429  # a header the client chooses does not lift the limit
    assert refused.headers["retry-after"] == "2"  # 1 token at 0.5 tokens/s
    assert refused.json()["field"] is None and refused.json()["retry_after_s"] > 0
    other = {"authorization": f"Bearer {keys['other'][0]}"}
    assert client.post("/predict", json={}, headers=other).status_code == 200
    assert client.get("/livez").status_code == 200  # probes are never limited


def test_token_bucket_refills_at_the_configured_rate() -> None:
    buckets = TokenBuckets(rate_per_s=10, burst=2)
    assert [buckets.take("c", now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    assert buckets.take("c", now=0.1) == 0.0  # one token back after 0.1 s


def test_bodies_over_the_limit_get_413_even_without_content_length() -> None:
    client = _echo_app(max_request_bytes=1024)

    def chunks():
        for _ in range(10):
            yield b'{"user_id": "' + b"x" * 500 + b'"}'

    body = b'{"user_id": "u", "context": {"pad": "' + b"x" * 900 + b'"}}'
    assert client.post("/predict", content=body).status_code == 200
    assert client.post("/predict", content=b"x" * 2000).status_code == 413
    r = client.post("/predict", content=chunks())
    assert r.status_code == 413 and r.json()["field"] == "body"




def test_forget_removes_the_user_from_the_shared_store(redis_url: str, redis_prefix: str,
                                                     tmp_path: Path) -> None:
    from features.live.redis_store import RedisProfileStore
    from serving.loader import forget_online_user

    config = tmp_path / "serving.yaml"
    config.write_text(json.dumps({"store": {"backend": "redis", "redis_url": redis_url,
                                            "key_prefix": redis_prefix}}))
    store = RedisProfileStore(redis_url, redis_prefix)
    store.upsert_user("gone", {"age": 33})
    try:
        assert forget_online_user("gone", str(config)) is True
        assert store.get_profile("gone").deleted
        assert forget_online_user("never", str(config)) is False
    finally:
        store.clear()
        store.close()


def test_batched_scoring_answers_exactly_like_single_rows(shop_model) -> None:
    tmp, _, raw_events, raw_users = shop_model
    engine = _engine(tmp, cache={"enabled": False})
    for i in range(0, len(raw_events), 500):
        engine.ingest(raw_events[i:i + 500])
    requests = [{"user_id": u["user_id"], "as_of": AS_OF.isoformat()} for u in raw_users]
    requests.append({"features": {"events_30d": 3.0, "loyalty_tier": "gold"}})
    single = [engine.predict(r) for r in requests]
    batched = asyncio.run(engine.predict_batch_async(requests))
    assert engine.batcher.batches == 1 and engine.batcher.rows == len(requests)
    for a, b in zip(single, batched, strict=True):
        assert a["probability"] == b["probability"] and a["source"] == b["source"]
        assert [r["feature"] for r in a["reasons"]] == [r["feature"] for r in b["reasons"]]
        assert all(abs(x["contribution"] - y["contribution"]) < 1e-6
                   for x, y in zip(a["reasons"], b["reasons"], strict=True))


def test_requests_score_at_once_by_default_and_together_with_batch_requests(shop_model) -> None:
    tmp, _, raw_events, raw_users = shop_model
    engines = {"at_once": _engine(tmp, cache={"enabled": False}),
               "together": _engine(tmp, cache={"enabled": False}, batch_requests=True)}
    requests = [{"user_id": u["user_id"], "as_of": AS_OF.isoformat()} for u in raw_users[:40]]

    async def concurrently(engine) -> list[dict]:
        return list(await asyncio.gather(*(engine.predict_async(r) for r in requests)))

    answers = {}
    for name, engine in engines.items():
        for i in range(0, len(raw_events), 500):
            engine.ingest(raw_events[i:i + 500])
        answers[name] = asyncio.run(concurrently(engine))
    # at once: one model call per request, none waits for another; together: the 40 ready at once
    assert (engines["at_once"].batcher.batches, engines["at_once"].batcher.rows) == (40, 40)
    assert (engines["together"].batcher.batches, engines["together"].batcher.rows) == (1, 40)
    assert answers["at_once"] == answers["together"]
    assert ServingConfig().batch_requests is False
    assert _engine(tmp, batch_wait_ms=2).batch_requests is True  # a wait means batching


def test_a_bad_item_of_a_batch_is_named_before_any_item_is_served(shop_model) -> None:
    from prometheus_client import CollectorRegistry

    from serving.metrics import ServiceMetrics

    tmp, _, _, raw_users = shop_model
    engine = _engine(tmp)  # the prediction cache on: item 0 below is a cache hit
    registry = CollectorRegistry()
    engine.metrics = ServiceMetrics(registry)
    first = {"user_id": raw_users[0]["user_id"]}
    engine.predict(first)
    requests = [first, {"user_id": raw_users[1]["user_id"]},
                {"user_id": raw_users[2]["user_id"], "as_of": "later"}]
    with pytest.raises(DataError, match=r"^\[2\]\.as_of"):
        asyncio.run(engine.predict_batch_async(requests))
    engine.metrics.publish()
    # only the first, single predict was served: the failed batch scored, counted and cached nothing
    assert registry.get_sample_value("propensity_cache_hits_total") in (None, 0.0)
    assert sum(s.value for m in registry.collect() if m.name == "propensity_predictions"
               for s in m.samples if s.name == "propensity_predictions_total") == 1
    assert engine.batcher.batches == 0  # engine.predict scores outside the batcher; the failed batch nothing


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model.pkl"], "neither an MLflow URI nor a model file"),
    (["--model", "models:/absent@champion"], "cannot resolve 'models:/absent@champion'"),
    (["--workers", "2", "--store", "inprocess"], "--workers: several workers need a shared profile store"),
])
def test_serve_refuses_bad_settings_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    env = {**os.environ, "PROPENSITY_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "propensity.cli", "serve", *args], capture_output=True,
                            text=True, env=env, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr


def test_clusters_come_from_the_fitted_segmenter_as_in_batch(shop_model, tmp_path: Path) -> None:
    import polars as pl
    from test_serving_helpers import clean_frames as clean

    from features.batch.snapshot import build_snapshot
    from features.segments.engagement import engagement_scores
    from features.segments.segmenter import Segmenter

    tmp, _, raw_events, raw_users = shop_model
    events, users = clean(raw_events, raw_users)
    snapshot = build_snapshot(events, users, AS_OF, timedelta(days=7)).join(
        engagement_scores(events, AS_OF), on="user_id", how="left")
    segmenter = Segmenter().fit(snapshot)
    segmenter.save(tmp_path / "segmenter.joblib")
    expected = dict(segmenter.transform(snapshot).select("user_id", "cluster").iter_rows())
    engine = _engine(tmp, segmenter=str(tmp_path / "segmenter.joblib"), cache={"enabled": False})
    for i in range(0, len(raw_events), 500):
        engine.ingest(raw_events[i:i + 500])
    for user_id in snapshot["user_id"]:
        answer = engine.predict({"user_id": user_id, "as_of": AS_OF.isoformat()})
        assert answer["cluster"] == expected[user_id], user_id
    assert pl.Series(list(expected.values())).n_unique() > 1
