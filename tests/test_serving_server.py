"""The real server: `propensity serve` as a subprocess (2 workers, shared Redis store), spoken to over HTTP.

The no-skew test replays a generated shop through the HTTP API (attributes by PUT, events shuffled
in batches by POST /events, some delivered twice, some after as_of) and checks that /predict at
as_of returns the batch pipeline's feature vector (features.batch.snapshot.build_snapshot), engagement
score and journey stage (features.segments.engagement / features.segments.journey), and the model's batch
probability (ConversionModel.predict_proba), to 1e-6.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from conftest import REDIS_HOST, REDIS_PORT, _require
from server_support import start_server
from test_serving_helpers import AS_OF, clean_frames, make_shop, train_model

from features.batch.snapshot import build_snapshot
from features.privacy import forgotten_users
from features.registry import FEATURE_NAMES
from features.segments.engagement import engagement_scores
from features.segments.journey import journey_stages

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Server:
    def __init__(self, url: str, workdir: Path, model, events, users) -> None:
        self.url, self.workdir, self.model, self.events, self.users = url, workdir, model, events, users
        self.prefix = ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _require("Redis", REDIS_HOST, REDIS_PORT)
    workdir = tmp_path_factory.mktemp("serve")
    raw_events, raw_users = make_shop(n_users=120, seed=7)
    events, users = clean_frames(raw_events, raw_users)
    model = train_model(events, users, workdir / "model.pkl")
    (workdir / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in raw_users[:5]))
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    proc, url = start_server(workdir, ["--model", str(workdir / "model.pkl"), "--users",
                                       str(workdir / "users.jsonl"), "--workers", "2", "--store", "redis",
                                       "--redis-url", f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                                       "--key-prefix", prefix])
    try:
        served = Server(url, workdir, model, (raw_events, events), (raw_users, users))
        served.prefix = prefix
        yield served
    finally:
        proc.stop()
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            r.delete(key)


def _close(got: object, want: object) -> bool:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    if isinstance(want, str):
        return got == want
    return got is not None and abs(float(got) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))


def test_probes_and_metrics(server: Server) -> None:
    with server.client() as c:
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 200
        c.post("/predict", json={"user_id": "nobody"})
        assert "bentoml_service_request" in c.get("/metrics").text


def test_no_skew_between_http_replay_and_batch_pipeline(server: Server) -> None:
    raw_events, events = server.events
    raw_users, users = server.users
    rng = random.Random(3)
    shuffled = raw_events + rng.sample(raw_events, len(raw_events) // 8)  # redeliveries
    rng.shuffle(shuffled)
    with server.client() as c:
        for row in raw_users:
            attrs = {k: v for k, v in row.items() if k != "user_id"}
            assert c.put(f"/users/{row['user_id']}", json=attrs).status_code == 200
        for i in range(0, len(shuffled), 250):
            r = c.post("/events", json=shuffled[i:i + 250])
            assert r.status_code == 200, r.text
        users_ids = [u["user_id"] for u in raw_users]
        answers = c.post("/predict_batch", json=[{"user_id": u, "as_of": AS_OF.isoformat(), "debug": True}
                                                 for u in users_ids]).json()
        profile = c.get(f"/users/{users_ids[1]}", params={"as_of": AS_OF.isoformat()}).json()
    assert profile["features"] == answers[1]["features"]
    snapshot = build_snapshot(events, users, AS_OF, timedelta(days=7))
    expected_p = dict(zip(snapshot["user_id"], server.model.predict_proba(snapshot), strict=True))
    scores = dict(engagement_scores(events, AS_OF).iter_rows())
    stages = dict(journey_stages(events, AS_OF).iter_rows())
    by_user = {a["user_id"]: a for a in answers}
    assert [a["user_id"] for a in answers] == users_ids
    assert snapshot.height > 60
    for row in snapshot.iter_rows(named=True):
        answer = by_user[row["user_id"]]
        assert answer["personalized"] is True
        bad = [n for n in FEATURE_NAMES if not _close(answer["features"][n], row[n])]
        assert not bad, (row["user_id"], {n: (answer["features"][n], row[n]) for n in bad})
        assert abs(answer["probability"] - expected_p[row["user_id"]]) <= 1e-6
        assert abs(answer["engagement_score"] - scores[row["user_id"]]) <= 1e-6
        assert answer["journey_stage"] == stages[row["user_id"]]
    refused = [u["user_id"] for u in raw_users if u["consent"] is False]
    assert refused and all(by_user[u]["personalized"] is False and by_user[u]["source"] == "no_consent"
                           for u in refused)


def test_two_workers_see_each_others_writes(server: Server) -> None:
    pids: set[int] = set()
    for i in range(48):  # until both workers have answered (new connections spread over them)
        event = {"event_id": f"w{i}", "user_id": "shared", "event": "add_to_cart", "value": 10.0,
                 "timestamp": (AS_OF - timedelta(minutes=1 + i)).isoformat()}
        with server.client() as c:
            assert c.post("/events", json=[event]).json()["applied"] == 1
        with server.client() as c:
            answer = c.post("/predict", json={"user_id": "shared", "as_of": AS_OF.isoformat(),
                                              "debug": True}).json()
        assert answer["features"]["add_to_cart_1d"] == i + 1
        pids.add(answer["worker_pid"])
        if len(pids) == 2 and i >= 8:
            break
    assert len(pids) == 2


def test_unknown_user_gets_a_cold_start_answer(server: Server) -> None:
    with server.client() as c:
        answer = c.post("/predict", json={"user_id": "never-seen", "context": {"device": "mobile"}}).json()
    assert answer["source"] == "cold_start" and answer["personalized"] is False
    assert 0.0 < answer["probability"] < 1.0 and answer["reasons"] == []


def test_users_preloaded_from_file_and_deletion(server: Server) -> None:
    uid = server.users[0][0]["user_id"]
    with server.client() as c:
        assert c.get(f"/users/{uid}").json()["attributes"]["country"] is not None
        assert c.delete(f"/users/{uid}").status_code == 200
        profile = c.get(f"/users/{uid}").json()
        answer = c.post("/predict", json={"user_id": uid}).json()
    assert profile["deleted"] is True and profile["attributes"] == {}
    assert answer["source"] == "deleted" and answer["personalized"] is False
    # With a Redis store the forget ledger lives in that Redis (every machine and build sees it).
    assert uid in forgotten_users(f"redis://{REDIS_HOST}:{REDIS_PORT}/0#{server.prefix}")


def test_a_new_event_invalidates_the_cached_prediction(server: Server) -> None:
    with server.client() as c:
        first = c.post("/predict", json={"user_id": "cache-user", "debug": True}).json()
        c.post("/events", json=[{"event_id": "cache-1", "user_id": "cache-user", "event": "purchase",
                                 "value": 99.0, "timestamp": "2026-11-01T00:00:00Z"}])
        second = c.post("/predict", json={"user_id": "cache-user", "debug": True}).json()
    assert first["features"]["purchases_total"] == 0.0
    assert second["features"]["purchases_total"] == 1.0


@pytest.mark.parametrize("method, path, body, status, field", [
    ("POST", "/predict", {"user_id": "u", "as_of": "yesterday"}, 400, "as_of"),
    ("POST", "/predict", {}, 422, "user_id"),
    ("POST", "/events", [{"event_id": "e", "user_id": "u", "event": "purchase", "value": -3,
                          "timestamp": "2026-01-01T00:00:00Z"}], 400, "value"),
    ("POST", "/events", [{"event_id": "e", "user_id": "u", "event": "view", "timestamp": "soon"}], 422,
     "timestamp"),
    ("POST", "/predict_batch", [{"user_id": "u"}, {"user_id": "u", "colour": "red"}], 400, "colour"),
    ("PUT", "/users/u9", {"age": "old"}, 422, "age"),
    ("PUT", "/users/u9", {"consent": True, "shoe_size": 44}, 422, "shoe_size"),
])
def test_invalid_requests_get_4xx_naming_the_field(server: Server, method: str, path: str, body: object,
                                                   status: int, field: str) -> None:
    with server.client() as c:
        r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert field in r.text


def test_oversized_requests_are_refused(server: Server) -> None:
    with server.client() as c:
        r = c.post("/events", content=b"[" + b" " * 2_000_000 + b"]",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["field"]
