"""The synthetic shop's catalogue and tastes: long tail, sampling matches the exact oracle, files written."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.shop.catalogue import N_PRODUCTS, ORACLE_TOP, POPULARITY_EXPONENT, THEME_SIZE, Catalogue, Tastes
from features.shop.config import load_generate_config
from features.shop.generate import generate
from features.shop.model import CATEGORIES


def test_popularity_is_zipf_long_tailed() -> None:
    pop = np.sort(Catalogue.draw(7, len(CATEGORIES)).popularity)[::-1]
    # Zipf(s): the top 10% hold H(200, s) / H(2000, s) of the mass (generalised harmonic numbers).
    harmonic = np.cumsum(np.arange(1, N_PRODUCTS + 1) ** -POPULARITY_EXPONENT)
    assert pop[: N_PRODUCTS // 10].sum() == pytest.approx(harmonic[N_PRODUCTS // 10 - 1] / harmonic[-1])
    assert pop[: N_PRODUCTS // 10].sum() > 0.5  # long tail: a tenth of the products, half the demand


def test_themes_partition_the_catalogue_and_cross_categories() -> None:
    cat = Catalogue.draw(7, len(CATEGORIES))
    assert set(np.bincount(cat.theme)) == {THEME_SIZE}
    categories_per_theme = [len(set(cat.category[cat.theme == t])) for t in range(5)]
    assert min(categories_per_theme) >= 3


def test_sampled_products_follow_the_exact_next_purchase_probability() -> None:
    tastes = Tastes.draw(3, 40, len(CATEGORIES))
    users = np.repeat(np.arange(40), 25_000)
    chosen = tastes.choose(users, 3)
    counts = np.zeros((40, N_PRODUCTS))
    np.add.at(counts, (users, chosen), 1)
    exact = tastes.next_purchase_probability(np.arange(40))
    np.testing.assert_allclose(exact.sum(axis=1), 1.0)
    # total variation distance per user; sampling noise alone gives about 0.06 at 25k draws here
    tv = 0.5 * np.abs(counts / 25_000 - exact).sum(axis=1)
    assert tv.max() < 0.1


def test_users_differ_in_taste() -> None:
    exact = Tastes.draw(3, 200, len(CATEGORIES)).next_purchase_probability(np.arange(200))
    top = np.argsort(-exact, axis=1)[:, :10]
    overlap = np.mean([len(set(top[i]) & set(top[i + 1])) for i in range(199)])
    assert overlap < 3  # neighbours share few of their top-10 products


@pytest.mark.slow
def test_generated_purchases_follow_the_product_oracle(tmp_path) -> None:
    cfg = load_generate_config(None, users=3000, days=30, seed=11)
    generate(tmp_path, cfg)
    catalogue = pl.read_parquet(tmp_path / "catalogue.parquet")
    oracle = pl.read_parquet(tmp_path / "product_oracle.parquet")
    events = pl.read_parquet(tmp_path / "events.parquet").filter(pl.col("user_id").is_not_null())
    assert catalogue.height == N_PRODUCTS and catalogue["price"].min() > 0
    assert oracle.group_by("user_id").len()["len"].to_list() == [ORACLE_TOP] * 3000
    buys = events.filter(pl.col("event") == "purchase").unique("event_id")
    assert buys["product_id"].null_count() == 0
    # category of every product event agrees with the catalogue
    joined = events.filter(pl.col("product_id").is_not_null()).join(catalogue, on="product_id")
    assert (joined["category"] == joined["category_right"]).all()
    top10 = oracle.filter(pl.col("rank") <= 10)
    hits = buys.join(top10, on=["user_id", "product_id"], how="semi").height / buys.height
    expected = top10.join(buys.select("user_id"), on="user_id")["p_next"].sum() / buys.height
    assert hits == pytest.approx(expected, abs=0.04)
