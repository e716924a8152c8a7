"""XGBoost's TreeSHAP (our fast path) against brute-force Shapley values written from the tree dump.

Reference (independent of shap and of ``pred_contribs``): for every coalition S of the 4 features,
v(S) = E[f(x) | x_S] with the path-dependent expectation of TreeSHAP (Lundberg, Erion & Lee 2018,
Algorithm 1 "EXPVALUE"): at a split on a feature in S follow x's branch; otherwise average both
branches weighted by their training cover. phi_i = sum over S not containing i of
|S|! (M - |S| - 1)! / M! · (v(S ∪ {i}) - v(S)); the bias is v(∅) plus the base margin.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fairness.explain import Explainer
from training.model import ConversionModel
from training.preprocess import FeatureEncoder

N_FEATURES = 4


def _trees(booster: xgb.Booster) -> list[dict[str, dict]]:
    table: pd.DataFrame = booster.trees_to_dataframe()
    trees = []
    for _, nodes in table.groupby("Tree"):
        trees.append({row.ID: row._asdict() for row in nodes.itertuples(index=False)})
    return trees


def _root(tree: dict[str, dict]) -> dict:
    return next(node for node in tree.values() if node["Node"] == 0)


def _expected(tree: dict[str, dict], node: dict, x: np.ndarray, coalition: frozenset[int]) -> float:
    if node["Feature"] == "Leaf":
        return float(node["Gain"])  # the dump stores a leaf's value in the Gain column
    feature = int(node["Feature"][1:])
    if feature in coalition:
        value = x[feature]
        if np.isnan(value):
            nxt = node["Missing"]
        else:
            nxt = node["Yes"] if np.float32(value) < np.float32(node["Split"]) else node["No"]
        return _expected(tree, tree[nxt], x, coalition)
    yes, no = tree[node["Yes"]], tree[node["No"]]
    return (yes["Cover"] * _expected(tree, yes, x, coalition)
            + no["Cover"] * _expected(tree, no, x, coalition)) / node["Cover"]


def brute_force_shapley(booster: xgb.Booster, x: np.ndarray) -> tuple[np.ndarray, float]:
    """(phi per feature, bias) by enumerating all 2^M coalitions."""
    trees = _trees(booster)

    def v(coalition: frozenset[int]) -> float:
        return sum(_expected(t, _root(t), x, coalition) for t in trees)

    m = len(x)
    subsets = [frozenset(s) for r in range(m + 1) for s in itertools.combinations(range(m), r)]
    values = {s: v(s) for s in subsets}
    phi = np.zeros(m)
    for i in range(m):
        for s, v_s in values.items():
            if i in s:
                continue
            weight = math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
            phi[i] += weight * (values[s | {i}] - v_s)
    leaves_sum = values[frozenset(range(m))]
    margin = float(booster.predict(xgb.DMatrix(x[None, :]), output_margin=True)[0])
    base_margin = margin - leaves_sum  # the booster's base score, in log-odds
    return phi, values[frozenset()] + base_margin


@pytest.fixture(scope="module")
def model_and_rows():
    rng = np.random.default_rng(11)
    n = 600
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random((n, N_FEATURES)) < 0.1] = np.nan  # missing values take the default branch
    Z = np.nan_to_num(X)
    logit = 1.2 * Z[:, 0] - Z[:, 1] * Z[:, 2] + 0.5 * (X[:, 3] > 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.5, "nthread": 1,
                         "verbosity": 0, "seed": 1}, xgb.DMatrix(X, label=y), num_boost_round=5)
    names = [f"x{i}" for i in range(N_FEATURES)]
    encoder = FeatureEncoder(names, []).fit(pd.DataFrame(X, columns=names))
    return ConversionModel("xgboost", encoder, booster), X[:25], names


def test_fast_path_equals_brute_force_shapley_values(model_and_rows) -> None:
    model, rows, _ = model_and_rows
    contributions = Explainer.for_model(model).contributions(rows)
    for r, x in enumerate(rows):
        phi, bias = brute_force_shapley(model.booster, x.astype(np.float64))
        np.testing.assert_allclose(contributions.values[r], phi, atol=1e-5)
        assert contributions.base == pytest.approx(bias, abs=1e-5)


def test_reasons_one_equals_brute_force_ranking(model_and_rows) -> None:
    model, rows, names = model_and_rows
    explainer = Explainer.for_model(model)
    x = rows[3]
    phi, _ = brute_force_shapley(model.booster, x.astype(np.float64))
    reasons = explainer.reasons_one({n: float(v) for n, v in zip(names, x, strict=True)}, k=N_FEATURES)
    expected = [names[i] for i in np.argsort(-np.abs(phi)) if phi[i] != 0]
    assert [r["feature"] for r in reasons] == expected
    for r in reasons:
        assert r["contribution"] == pytest.approx(phi[names.index(r["feature"])], abs=1e-5)
