"""Recommenders: metrics against hand-computed values, and `propensity recommend train` on a generated
shop with a real MLflow store (quality target: item-to-item >= 2x popularity's recall@10)."""

from __future__ import annotations

import contextlib
import io
import json

import mlflow
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from mlflow.tracking import MlflowClient

from content.evaluate import ranking_metrics
from content.model import load_recommender
from content.recommenders import CatalogueArrays, ContentBased, ItemKNN, Popularity, top_k
from features.shop.config import load_generate_config
from features.shop.generate import generate
from propensity.cli.main import main


def test_ranking_metrics_match_hand_computed_values() -> None:
    top = np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]])
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0, 0, 0, 0, 0],   # 1 hit of 2, at position 1
                                       [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],   # 1 hit of 1, at position 2
                                       [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])) # no purchase: skipped
    m = ranking_metrics(top, relevant, n_products=10)
    assert m["recall"] == pytest.approx((0.5 + 1.0) / 2)
    ndcg_1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    ndcg_2 = (1 / np.log2(4)) / 1.0
    assert m["ndcg"] == pytest.approx((ndcg_1 + ndcg_2) / 2)
    assert m["coverage"] == pytest.approx(6 / 10)  # products 0..5 shown to users who bought
    assert m["users"] == 2


def test_top_k_breaks_ties_by_popularity_and_excludes() -> None:
    scores = np.zeros((1, 4))
    popularity = np.array([1.0, 5.0, 3.0, 4.0])
    assert top_k(scores, 3, popularity).tolist() == [[1, 3, 2]]
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0]]))
    assert top_k(scores, 3, popularity, exclude).tolist() == [[3, 2, 0]]


def test_item_knn_recommends_what_was_bought_together() -> None:
    # users 0-2 take products {0, 1}; users 3-6 take {2, 3}: a history with 0 gets {0, 1}, not 2 or 3
    rows = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    cols = [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 3]
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(7, 4))
    cat = CatalogueArrays(np.array([0, 1, 0, 1]), np.array([10.0, 10.0, 10.0, 10.0]))
    knn = ItemKNN(neighbours=3).fit(train, cat)
    history = sp.csr_matrix(np.array([[1.0, 0, 0, 0]]))
    assert set(top_k(knn.scores(history), 2, np.asarray(train.sum(axis=0)).ravel())[0]) == {0, 1}
    assert top_k(Popularity().fit(train, cat).scores(history), 1, np.ones(4)).tolist() == [[3]]


def test_content_based_follows_the_history_category_and_price() -> None:
    cat = CatalogueArrays(np.array([0, 0, 1, 1]), np.array([10.0, 200.0, 10.0, 200.0]))
    train = sp.csr_matrix(np.ones((3, 4)))
    cheap_category_1 = sp.csr_matrix(np.array([[0, 0, 3.0, 0]]))
    price_blind = ContentBased(price_sd=100.0).fit(train, cat)
    assert top_k(price_blind.scores(cheap_category_1), 2, np.ones(4)).tolist() == [[2, 3]]
    # a tight price taste puts the cheap product of the other category before the expensive one
    price_tight = ContentBased(price_sd=0.5).fit(train, cat)
    assert top_k(price_tight.scores(cheap_category_1), 2, np.ones(4)).tolist() == [[2, 0]]


@pytest.mark.slow
def test_recommend_train_tracks_registers_and_beats_popularity(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    shop = tmp_path / "shop"
    generate(shop, load_generate_config(None, users=6000, days=45, seed=5))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "recommend.yaml"
    config.write_text("recommenders: {popularity: {}, item_knn: {neighbours: 100}, content: {}}\n"
                      f"tracking: {{uri: '{uri}', experiment: rec-test, "
                      f"artifact_location: '{(tmp_path / 'artifacts').as_uri()}'}}\n")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["recommend", "train", "--shop", str(shop), "--config", str(config), "--json"])
    result = json.loads(buffer.getvalue())
    recall = {r["name"]: r["metrics"]["recall"] for r in result["recommenders"]}
    assert recall["item_knn"] >= 2 * recall["popularity"]
    assert result["oracle"]["recall"] >= max(recall.values())
    client = MlflowClient(uri)
    for name in recall:
        version = client.get_model_version_by_alias("propensity-recommender", name)
        run = client.get_run(version.run_id)
        assert run.data.metrics["recall_at_10"] == pytest.approx(recall[name])
        assert run.data.metrics["oracle_recall_at_10"] == pytest.approx(result["oracle"]["recall"])
        assert {"ndcg_at_10", "coverage_at_10"} <= set(run.data.metrics)
    champion = client.get_model_version_by_alias("propensity-recommender", "champion")
    assert champion.tags["recommender"] == max(recall, key=lambda n: recall[n])
    mlflow.set_tracking_uri(uri)
    model = load_recommender("models:/propensity-recommender@item_knn")
    catalogue = pl.read_parquet(shop / "catalogue.parquet")
    theme = catalogue.filter(pl.col("theme") == catalogue["theme"][0])["product_id"].to_list()
    shown = [p for p, _ in model.recommend({theme[0]: 3.0, theme[1]: 1.0}, 5, exclude=[theme[1]])]
    assert theme[1] not in shown and len(set(shown) & set(theme)) >= 3  # bought-together products first
