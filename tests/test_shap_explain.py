"""SHAP explanations: additivity, the linear explainer against shap's, reason codes."""

from __future__ import annotations

import numpy as np
import pytest
import shap
from fairness_support import logistic_model, small_frame, xgb_model
from sklearn.ensemble import HistGradientBoostingClassifier

from fairness.explain import Explainer, global_importance
from training.model import ConversionModel
from training.preprocess import FeatureEncoder


@pytest.fixture(scope="module")
def frame():
    return small_frame(1500)


def test_xgboost_contributions_add_up_to_the_margin(frame) -> None:
    model = xgb_model(frame)
    c = Explainer.for_model(model).contributions(model.transform(frame))
    np.testing.assert_allclose(c.values.sum(axis=1) + c.base, model.margin(frame), atol=1e-4)


def test_logistic_contributions_add_up_to_the_margin(frame) -> None:
    model = logistic_model(frame)
    X = model.transform(frame)
    c = Explainer.for_model(model, background=frame).contributions(X)
    np.testing.assert_allclose(c.values.sum(axis=1) + c.base, model.estimator.decision_function(X), atol=1e-6)
    # ConversionModel.margin is logit(P): the same up to float rounding of P near 0 or 1
    np.testing.assert_allclose(c.values.sum(axis=1) + c.base, model.margin(frame), atol=1e-4)


def test_linear_values_equal_shaps_linear_explainer(frame) -> None:
    # Independent reference: shap.LinearExplainer with an independent masker over the same background.
    model = logistic_model(frame)
    X = model.transform(frame)
    ours = Explainer.for_model(model, background=frame).contributions(X[:50])
    reference = shap.LinearExplainer(model.estimator, shap.maskers.Independent(X, max_samples=len(X)))
    np.testing.assert_allclose(ours.values, reference.shap_values(X[:50]), atol=1e-5)
    assert ours.base == pytest.approx(float(np.atleast_1d(reference.expected_value)[0]), abs=1e-5)


def test_other_tree_models_go_through_shaps_tree_explainer(frame) -> None:
    encoder = FeatureEncoder(["visits", "cart_value", "recency"], ["device"]).fit(frame)
    X = encoder.transform(frame)
    est = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, frame["label"].to_numpy())
    model = ConversionModel("hist_gradient_boosting", encoder, est)
    c = Explainer.for_model(model).contributions(X[:100])
    assert c.units == "log-odds"
    np.testing.assert_allclose(c.values.sum(axis=1) + c.base, est.decision_function(X[:100]), atol=1e-5)


def test_reasons_one_sums_one_hot_columns_and_sorts_by_magnitude(frame) -> None:
    model = xgb_model(frame)
    explainer = Explainer.for_model(model)
    row = frame.row(7, named=True)
    reasons = explainer.reasons_one(row, k=4)
    full = explainer.by_raw_feature(explainer.contributions(model.transform(frame[7:8])).values)[0]
    expected = dict(zip(explainer.raw_names, full, strict=True))
    assert [r["feature"] for r in reasons] == sorted(expected, key=lambda n: -abs(expected[n]))[:len(reasons)]
    for r in reasons:
        assert r["contribution"] == pytest.approx(expected[r["feature"]], abs=1e-5)
        assert r["value"] == row[r["feature"]]
    one_hot = [i for i, c in enumerate(model.transformed_feature_names) if c.startswith("device=")]
    contribs = explainer.contributions(model.transform(frame[7:8])).values[0]
    assert expected["device"] == pytest.approx(contribs[one_hot].sum())
    assert len(explainer.reasons_one(row, k=2)) == 2


def test_batch_reasons_equal_single_row_reasons(frame) -> None:
    explainer = Explainer.for_model(logistic_model(frame), background=frame)
    batch = explainer.reasons(frame[:5], k=3)
    for i in range(5):
        single = explainer.reasons_one(frame.row(i, named=True), k=3)
        assert [r["feature"] for r in single] == [r["feature"] for r in batch[i]]


def test_global_ranking_puts_the_generating_signal_first(frame) -> None:
    model = xgb_model(frame)
    explainer = Explainer.for_model(model)
    ranking = global_importance(explainer, explainer.contributions(model.transform(frame)))
    assert ranking[0]["feature"] == "visits"  # small_frame's label is driven by propensity → visits
    values = [r["mean_abs_shap"] for r in ranking]
    assert values == sorted(values, reverse=True)


def test_random_forest_contributions_add_up_to_the_probability(frame) -> None:
    from sklearn.ensemble import RandomForestClassifier

    encoder = FeatureEncoder(["visits", "recency"], ["device"]).fit(frame)  # no NaN columns
    X = encoder.transform(frame)
    est = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    est.fit(X, frame["label"].to_numpy())
    c = Explainer.for_model(ConversionModel("random_forest", encoder, est)).contributions(X[:50])
    assert c.units == "probability"
    np.testing.assert_allclose(c.values.sum(axis=1) + c.base, est.predict_proba(X[:50])[:, 1], atol=1e-6)
