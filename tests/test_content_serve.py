"""Content serving functions: recommender split, live suggestions, rendered slots and exposures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from content.components import load_components
from content.model import RecommenderModel
from content.recommenders import CatalogueArrays, ItemKNN, Popularity
from content.serve import ContentExposureLog, ContentSetup, recommend_for, recommender_variant, render_slots
from serving.scoring import variant_for

PRODUCTS = [f"p{i:04d}" for i in range(6)]
WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}


def _models() -> dict[str, RecommenderModel]:
    # products 0-2 go together, 3-5 go together; 5 is the most popular
    rows = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7]
    cols = [0, 1, 2, 0, 1, 1, 2, 3, 4, 5, 4, 5, 5, 5, 5]
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(8, 6))
    cat = CatalogueArrays(np.zeros(6, dtype=np.int64), np.full(6, 20.0))
    pop = np.asarray(train.sum(axis=0)).ravel()
    return {"item_knn": RecommenderModel(ItemKNN(neighbours=5).fit(train, cat), PRODUCTS, pop, WEIGHTS),
            "popularity": RecommenderModel(Popularity().fit(train, cat), PRODUCTS, pop, WEIGHTS)}


def test_variant_split_follows_shares_and_has_its_own_salt() -> None:
    users = [f"u{i}" for i in range(4000)]
    variants = [recommender_variant("rec", u, {"a": 0.3, "b": 0.7}) for u in users]
    share = variants.count("a") / len(users)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(users))
    assert variants == [recommender_variant("rec", u, {"a": 0.3, "b": 0.7}) for u in users]
    # independent of the model split, which hashes with another salt
    models = [variant_for("propensity", u, 0.3) == "challenger" for u in users]
    both = sum(m and v == "a" for m, v in zip(models, variants, strict=True)) / len(users)
    assert abs(both - 0.3 * sum(models) / len(users)) < 0.02


def test_a_product_just_viewed_changes_the_suggestions_and_bought_ones_are_excluded() -> None:
    model = _models()["item_knn"]
    before = [p["product_id"] for p in recommend_for(model, [], 2)]
    assert before[0] == "p0005"  # no history: the popular product
    events = [{"event": "product_view", "product_id": "p0000"}]
    after = [p["product_id"] for p in recommend_for(model, events, 3)]
    assert set(after) == {"p0000", "p0001", "p0002"}
    events.append({"event": "purchase", "product_id": "p0001"})
    assert "p0001" not in [p["product_id"] for p in recommend_for(model, events, 3)]


def test_render_slots_fills_components_and_logs_exposures(tmp_path) -> None:
    log = ContentExposureLog(tmp_path / "content.jsonl")
    catalogue = {p: {"name": f"Item {p}", "category": "shoes", "price": 19.5, "image_url": f"/i/{p}.jpg"}
                 for p in PRODUCTS}
    setup = ContentSetup(load_components(), _models(), catalogue, exposures=log)
    events = [{"event": "product_view", "product_id": "p0003"}]
    answer = render_slots(setup, "u42", ["hero", "carousel"], {"journey_stage": "decision"}, 0.7,
                          {"device": "mobile"}, events,
                          ("cart_reminder_discount", "abandoned_cart", {"discount_percentage": 25}))
    hero, carousel = answer["slots"]
    assert hero["component"] == "cart_reminder_discount" and hero["rule"] == "abandoned_cart"
    assert "25% off" in hero["html"] and len(hero["products"]) == 1
    assert carousel["component"] == "recommended_products" and carousel["rule"] is None
    shown = [p["product_id"] for p in carousel["products"]]
    assert all(f'href="/p/{p}"' in carousel["html"] for p in shown)
    assert hero["variant"] == carousel["variant"] == setup.variant("u42")
    records = [json.loads(line) for line in (tmp_path / "content.jsonl").read_text().splitlines()]
    assert [r["slot"] for r in records] == ["hero", "carousel"]
    assert records[1]["products"] == shown and records[1]["variant"] == setup.variant("u42")
    with pytest.raises(KeyError, match="footer"):
        render_slots(setup, "u42", ["footer"], {}, None, {}, [], ("educational_content", None, {}))
