"""Recency weighting of the training snapshots (``data.recency_half_life_days``; the retrain
challenger's ``retrain.recency_half_life_days``): the pure weights, and that they reach every
family's fit (an old snapshot teaching one link, a recent one the opposite)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from training.config import ALL_FAMILIES, load_train_config
from training.data import recency_weights
from training.retrain import challenger_config
from training.search import fit_candidate, prepare


def test_weights_halve_every_half_life_and_average_one() -> None:
    day = date(2026, 9, 1)
    as_of = pl.Series([day, day, day + timedelta(days=7), day + timedelta(days=14)])
    w = recency_weights(as_of, 7.0)
    assert w is not None
    raw = np.array([0.25, 0.25, 0.5, 1.0])  # ages 14, 14, 7, 0 days
    np.testing.assert_allclose(w, raw / raw.mean())
    assert recency_weights(as_of, None) is None
    np.testing.assert_allclose(recency_weights(as_of.cast(pl.String), 7.0), w)  # ISO strings too


def _snapshot(as_of: date, n: int, sign: float, rng: np.random.Generator) -> pl.DataFrame:
    """``x`` decides the label: positive x converts when ``sign`` > 0, negative x when < 0."""
    x = rng.standard_normal(n)
    label = (sign * x + 0.3 * rng.standard_normal(n) > 0).astype(np.int64)
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(n)], "as_of": [as_of] * n, "x": x,
                         "label": label})


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_weights_reach_the_fit_of_every_family(family: str) -> None:
    rng = np.random.default_rng(0)
    day = date(2026, 9, 1)
    old = _snapshot(day, 1200, 1.0, rng)  # the old link, three times as many rows
    recent = _snapshot(day + timedelta(days=14), 400, -1.0, rng)  # the link after a concept shift
    valid = _snapshot(day + timedelta(days=21), 400, -1.0, rng)
    train = pl.concat([old, recent])
    params = {"xgboost": {"max_depth": 2, "learning_rate": 0.3, "n_rounds": 20, "min_child_weight": 1.0,
                          "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0},
              "hist_gradient_boosting": {"learning_rate": 0.3, "max_iter": 20, "max_leaf_nodes": 4,
                                         "min_samples_leaf": 5, "l2_regularization": 0.0},
              "random_forest": {"n_estimators": 20, "max_depth": 3, "min_samples_leaf": 5,
                                "max_features": 1.0, "max_samples": 0.5},
              "logistic_regression": {"C": 1.0}}[family]
    aucs = {}
    for half_life in (None, 2.0):  # 14 days old at a 2-day half-life: the old rows weigh 1/128
        data = prepare(train, valid, ["x"], [], recency_weights(train.get_column("as_of"), half_life))
        aucs[half_life] = fit_candidate(data, family, params, seed=0, threads=1)[2]
    assert aucs[None] < 0.5 < 0.9 < aucs[2.0]  # equal weights learn the old link, recent ones the new
    y = valid.get_column("label").to_numpy()
    assert aucs[2.0] <= roc_auc_score(y, -valid.get_column("x").to_numpy()) + 0.02  # x itself is the best


def test_prepare_refuses_weights_of_another_length() -> None:
    frame = _snapshot(date(2026, 9, 1), 10, 1.0, np.random.default_rng(1))
    with pytest.raises(ValueError, match="9 sample weights for 10"):
        prepare(frame, frame, ["x"], [], np.ones(9))


def test_the_challenger_takes_the_retrain_half_life() -> None:
    cfg = load_train_config(overrides={"retrain": {"recency_half_life_days": 5.0}})
    assert cfg.data.recency_half_life_days is None  # `propensity train` weighs rows equally by default
    challenger = challenger_config(cfg)
    assert challenger.data.recency_half_life_days == 5.0 and challenger.tracking.alias is None
    assert cfg.tracking.alias == "challenger"  # the given config is not changed
    default = challenger_config(load_train_config())  # configs/train.yaml: equal weights, refit on
    assert default.data.recency_half_life_days is None and default.data.refit_with_validation is True
