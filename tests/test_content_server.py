"""POST /content and GET /recommendations on a real `propensity serve` (BentoML), spoken to over HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from server_support import start_server
from test_serving_helpers import clean_frames, make_shop, train_model

from content.model import RecommenderModel
from content.recommenders import CatalogueArrays, ItemKNN, Popularity
from serving.auth import hash_key
from serving.content_models import ContentResponse, RecommendationsResponse

pytestmark = pytest.mark.slow
PRODUCTS = [f"p{i:04d}" for i in range(6)]
WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
SALT = "rec-test"


def _variant(user_id: str) -> str:
    """The expected split, computed here from its definition: sha256(salt:user) -> [0, 1), halves."""
    u = int.from_bytes(hashlib.sha256(f"{SALT}:{user_id}".encode()).digest()[:8], "big") / 2**64
    return "item_knn" if u < 0.5 else "popularity"


def _recommenders(workdir: Path) -> dict[str, str]:
    # products 0-2 are bought together, 3-5 together; 5 is the most popular
    rows = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7]
    cols = [0, 1, 2, 0, 1, 1, 2, 3, 4, 5, 4, 5, 5, 5, 5]
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(8, 6))
    cat = CatalogueArrays(np.zeros(6, dtype=np.int64), np.full(6, 20.0))
    pop = np.asarray(train.sum(axis=0)).ravel()
    paths = {}
    for name, rec in (("item_knn", ItemKNN(neighbours=5)), ("popularity", Popularity())):
        paths[name] = str(workdir / f"{name}.joblib")
        RecommenderModel(rec.fit(train, cat), PRODUCTS, pop, WEIGHTS).save(Path(paths[name]))
    return paths


APP_KEY, FEED_KEY = "app-secret-0123456789abcdef", "feed-secret-0123456789abcdef"


class Content:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.exposures = workdir / "content.jsonl"

    def client(self, key: str = APP_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Content]:
    workdir = tmp_path_factory.mktemp("content-serve")
    events, users = clean_frames(*make_shop(n_users=40, seed=3))
    train_model(events, users, workdir / "model.pkl")
    pl.DataFrame({"product_id": PRODUCTS, "name": [f"Item {p}" for p in PRODUCTS],
                  "category": ["shoes"] * 6, "price": [10.0 + i for i in range(6)],
                  "image_url": [f"https://img.example.com/{p}.jpg" for p in PRODUCTS]}
                 ).write_parquet(workdir / "catalogue.parquet")
    config = {"cache": {"enabled": False}, "access_log": False,
              "content": {"enabled": True, "recommenders": _recommenders(workdir), "salt": SALT,
                          "catalogue": str(workdir / "catalogue.parquet"),
                          "exposure_log": str(workdir / "content.jsonl"), "max_k": 20}}
    (workdir / "serving.yaml").write_text(json.dumps(config))
    keys = f"app:predict+ingest:{hash_key(APP_KEY)},feed:ingest:{hash_key(FEED_KEY)}"
    proc, url = start_server(workdir, ["--model", str(workdir / "model.pkl"), "--config",
                                       str(workdir / "serving.yaml")], env={"PROPENSITY_API_KEYS": keys})
    try:
        yield Content(url, workdir)
    finally:
        proc.stop()


def _users(variant: str, n: int = 1, prefix: str = "visitor") -> list[str]:
    return [u for u in (f"{prefix}{i}" for i in range(200)) if _variant(u) == variant][:n]


def _event(user: str, n: int, kind: str, product: str) -> dict:
    ts = (datetime.now(UTC) - timedelta(minutes=10 - n)).isoformat()
    return {"event_id": f"{user}-{n}", "user_id": user, "timestamp": ts, "event": kind, "product_id": product}


def _exposures(server: Content, user: str) -> list[dict]:
    lines = server.exposures.read_text().splitlines() if server.exposures.exists() else []
    return [r for r in map(json.loads, lines) if r["user_id"] == user]


def test_a_product_just_viewed_counts_at_once_and_bought_ones_are_excluded(server: Content) -> None:
    user = _users("item_knn", prefix="knn")[0]
    with server.client() as c:
        before = c.get("/recommendations", params={"user_id": user, "k": 2})
        assert before.status_code == 200, before.text
        assert before.json()["variant"] == "item_knn"
        assert [p["product_id"] for p in before.json()["products"]][0] == "p0005"  # popular, no history
        assert c.post("/events", json=[_event(user, 1, "product_view", "p0000")]).status_code == 200
        after = RecommendationsResponse.model_validate(c.get("/recommendations",
                                                             params={"user_id": user, "k": 3}).json())
        assert {p.product_id for p in after.products} == {"p0000", "p0001", "p0002"}
        assert all(p.name == f"Item {p.product_id}" and p.image_url for p in after.products)
        assert c.post("/events", json=[_event(user, 2, "purchase", "p0001")]).status_code == 200
        bought = c.get("/recommendations", params={"user_id": user, "k": 3}).json()
    assert "p0001" not in [p["product_id"] for p in bought["products"]]
    logged = _exposures(server, user)
    assert [r["slot"] for r in logged] == ["recommendations"] * 3
    assert logged[-1]["products"] == [p["product_id"] for p in bought["products"]]
    assert {r["variant"] for r in logged} == {"item_knn"} and logged[0]["experiment"] == "recommenders"


def test_users_are_split_by_the_hash_of_their_id(server: Content) -> None:
    with server.client() as c:
        for user in [f"split{i}" for i in range(12)]:
            answer = c.get("/recommendations", params={"user_id": user}).json()
            assert answer["variant"] == _variant(user)
            assert len(answer["products"]) == 6  # k = 10 by default, 6 products exist


def test_content_renders_the_decided_component_and_the_slots(server: Content) -> None:
    user = _users("popularity", prefix="page")[0]
    with server.client() as c:
        c.post("/events", json=[_event(user, 1, "product_view", "p0003")])
        predicted = c.post("/predict", json={"user_id": user, "context": {"device": "mobile"}}).json()
        r = c.post("/content", json={"user_id": user, "context": {"device": "mobile"},
                                     "slots": ["hero", "carousel", "sidebar"]})
    assert r.status_code == 200, r.text
    answer = ContentResponse.model_validate(r.json())
    hero, carousel, sidebar = answer.slots
    assert hero.slot == "hero" and hero.component == predicted["decision"]
    assert carousel.component == "recommended_products" and sidebar.component == "educational_content"
    assert {s.variant for s in answer.slots} == {"popularity"}
    shown = [p.product_id for p in carousel.products]
    assert shown[0] == "p0005" and all(f'href="/p/{p}"' in carousel.html for p in shown)
    assert sidebar.products == [] and "<aside" in sidebar.html
    logged = _exposures(server, user)
    assert [r["slot"] for r in logged] == ["hero", "carousel", "sidebar"]
    assert logged[1]["products"] == shown


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("post", "/content", {"user_id": "u1", "slots": ["hero", "footer"]}, 422, "slots[1]"),
    ("post", "/content", {"user_id": "u1", "slots": ["hero"] * 11}, 422, "slots"),
    ("post", "/content", {"slots": ["hero"]}, 400, "user_id"),  # BentoML validation: 400
    ("post", "/content", {"user_id": "u1", "context": {"device": ["x"]}}, 422, "context.device"),
    ("post", "/content", {"user_id": "x" * 300}, 422, "user_id"),
    ("get", "/recommendations?user_id=u1&k=0", None, 422, "k"),
    ("get", "/recommendations?user_id=u1&k=21", None, 422, "k"),
    ("get", "/recommendations", None, 422, "user_id"),
])
def test_bad_requests_get_the_one_error_shape(server: Content, method: str, path: str, body: dict | None,
                                              status: int, field: str) -> None:
    with server.client() as c:
        r = c.post(path, json=body) if method == "post" else c.get(path)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["error"]


def test_both_routes_need_the_predict_scope(server: Content) -> None:
    with server.client(FEED_KEY) as c:
        content = c.post("/content", json={"user_id": "u1"})
        recs = c.get("/recommendations", params={"user_id": "u1"})
    with server.client("wrong") as c:
        anonymous = c.get("/recommendations", params={"user_id": "u1"})
    assert content.status_code == recs.status_code == 403 and recs.json()["field"] == "authorization"
    assert anonymous.status_code == 401


def _schema(doc: dict, ref: dict) -> dict:
    return doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]] if "$ref" in ref else ref


def test_openapi_shows_the_content_models(server: Content) -> None:
    with server.client() as c:
        doc = c.get("/docs.json").json()
    content = doc["paths"]["/content"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(_schema(doc, content)["properties"]) == {"user_id", "slots"}
    recs = [p for p in doc["paths"] if p.rstrip("/") == "/recommendations"]
    assert recs, sorted(doc["paths"])
    answer = doc["paths"][recs[0]]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(_schema(doc, answer)["properties"]) == {"user_id", "products", "variant"}
    assert "SlotAnswer" in json.dumps(doc)


def test_the_content_config_is_checked_on_load(tmp_path) -> None:
    from content.online import load_content_setup
    from content.online_config import ContentServingConfig
    from propensity.config import load_config
    from propensity.errors import ConfigError

    assert load_content_setup(ContentServingConfig()) is None  # off by default
    bad = {"shares": {"item_knn": 0.5, "other": 0.5}}
    path = tmp_path / "content.yaml"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="shares"):
        load_config(ContentServingConfig, path)
    on = ContentServingConfig(enabled=True, recommenders={"a": str(tmp_path / "missing.joblib")},
                              slots={"carousel": "no_such_component"})
    with pytest.raises(ConfigError, match="content.slots.carousel: unknown component"):
        load_content_setup(on)
    on.slots = {"carousel": "recommended_products"}
    with pytest.raises(ConfigError, match="content.recommenders"):
        load_content_setup(on)
