"""The serving fast paths of XGBoost models give XGBoost's own numbers (the library is the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from training.booster_calls import booster_calls
from training.tree_arrays import tree_arrays


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X[:, 3] = rng.integers(0, 5, n)  # ties on thresholds: counts
    X[rng.random(X.shape) < 0.2] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 3]) * 0.5 + rng.normal(size=n)) > 1.5).astype(int)
    return X, y


def _booster(objective: str = "binary:logistic", **params: object) -> xgb.Booster:
    X, y = _data(2000, 0)
    if objective == "multi:softprob":
        y = y + (X[:, 1] > 0)
        params["num_class"] = 3
    return xgb.train({"objective": objective, "max_depth": 5, "eta": 0.3, "nthread": 1, "seed": 0,
                      "verbosity": 0, **params}, xgb.DMatrix(X, label=y), num_boost_round=40)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    return _booster()


def test_probabilities_are_xgboosts_bit_for_bit(booster: xgb.Booster) -> None:
    arrays = tree_arrays(booster)
    assert arrays is not None
    X, _ = _data(500, 7)
    expected = booster.inplace_predict(X, validate_features=False)
    assert np.array_equal(arrays.predict(X).astype(np.float32), expected)
    for i in range(0, 500, 97):  # one row at a time: the same numbers as in a batch
        assert arrays.predict(X[i:i + 1])[0] == arrays.predict(X)[i]


def test_saabas_contributions_match_xgboosts_approx_contribs(booster: xgb.Booster) -> None:
    arrays = tree_arrays(booster)
    assert arrays is not None
    X, _ = _data(300, 8)
    _, contributions = arrays.predict_with_contributions(X)
    expected = booster.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(contributions, expected, atol=1e-5)
    margin = booster.inplace_predict(X, predict_type="margin", validate_features=False)
    np.testing.assert_allclose(contributions.sum(axis=1), margin, atol=1e-5)


def test_ranked_walk_equals_contributions_then_ranking(booster: xgb.Booster) -> None:
    # The serving call (walk and ranking compiled together) against the two steps it fuses; raw
    # features 0-2 and 3-5 share a name here, so the sums across columns are exercised too.
    from training.scorer import _rank

    arrays = tree_arrays(booster)
    assert arrays is not None
    X, _ = _data(200, 10)
    column_raw, n_raw = np.array([0, 0, 0, 1, 1, 1, 2, 3], dtype=np.intp), 4
    probabilities, contributions = arrays.predict_with_contributions(X)
    for top_k in (1, 3, 4):
        got = arrays.predict_ranked(X, column_raw, n_raw, top_k)
        expected = (probabilities, *_rank(contributions, column_raw, n_raw, top_k))
        for a, b in zip(got, expected, strict=True):
            assert np.array_equal(a, b)
        assert got[2][:, 0].any()  # something was ranked


def test_other_models_keep_xgboosts_own_calls() -> None:
    assert tree_arrays(_booster("multi:softprob")) is None
    assert tree_arrays(_booster(booster="dart", rate_drop=0.1)) is None
    assert tree_arrays(_booster("reg:squarederror")) is None


def test_direct_c_calls_equal_the_public_api(booster: xgb.Booster) -> None:
    calls = booster_calls(booster, 8)
    assert calls is not None
    X, _ = _data(50, 9)
    assert np.array_equal(calls.predict(X), booster.inplace_predict(X, validate_features=False))
    for approximate in (True, False):
        expected = booster.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=approximate)
        assert np.array_equal(calls.contributions(X, approximate), expected)
