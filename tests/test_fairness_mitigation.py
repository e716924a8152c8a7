"""Fairlearn mitigation as a ConversionModel: fairness on unseen rows, single-row path, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from fairness_support import small_frame, xgb_model

from fairness.audit import audit_arrays
from fairness.mitigation import MitigatedModel, mitigate
from training.model import ConversionModel


@pytest.fixture(scope="module")
def data():
    train = small_frame(3000, seed=1, disparity=0.6)
    return xgb_model(train), train, small_frame(3000, seed=2, disparity=0.6)


def _rates(p: np.ndarray, gender: np.ndarray) -> dict[str, float]:
    return {g: float(p[gender == g].mean()) for g in ("F", "M")}


def test_threshold_optimizer_equalises_expected_selection_rates(data) -> None:
    model, train, test = data
    mitigated = mitigate(model, train, train["label"].to_numpy(), "gender")
    gender = test["gender"].to_numpy()
    before = audit_arrays(test["label"].to_numpy(), model.predict_proba(test), {"gender": gender})
    assert before.features["gender"].metrics["demographic_parity_ratio"] < 0.5  # the planted disparity
    rates = _rates(mitigated.predict_proba(test), gender)  # P(selected) by group, on unseen rows
    assert rates["F"] / rates["M"] == pytest.approx(1.0, abs=0.1)
    decided = _rates(mitigated.decide(test, random_state=1).astype(float), gender)
    assert decided["F"] / decided["M"] > 0.8


def test_mitigated_model_is_a_conversion_model_with_the_same_single_row_answers(data) -> None:
    model, train, test = data
    mitigated = mitigate(model, train, train["label"].to_numpy(), "gender")
    assert isinstance(mitigated, ConversionModel) and mitigated.booster is None
    assert "gender" in mitigated.feature_names
    rows = [test.row(i, named=True) for i in range(20)]
    np.testing.assert_allclose([mitigated.predict_one(r) for r in rows], mitigated.predict_proba(test[:20]))
    restored = pickle.loads(pickle.dumps(mitigated))
    assert isinstance(restored, MitigatedModel)
    np.testing.assert_allclose(restored.predict_proba(test[:50]), mitigated.predict_proba(test[:50]))


def test_exponentiated_gradient_meets_the_constraint_on_its_training_rows(data) -> None:
    model, train, _ = data
    mitigated = mitigate(model, train, train["label"].to_numpy(), "gender", method="exponentiated_gradient",
                         max_iter=15)
    rates = _rates(mitigated.predict_proba(train), train["gender"].to_numpy())
    assert abs(rates["F"] - rates["M"]) < 0.03  # eps = 0.01 on the moments plus fitting slack
    row = train.row(0, named=True)
    assert mitigated.predict_one(row) == pytest.approx(float(mitigated.predict_proba(train[:1])[0]))


def test_a_mitigated_model_is_explained_through_its_base_model(data) -> None:
    from fairness.explain import Explainer

    model, train, test = data
    mitigated = mitigate(model, train, train["label"].to_numpy(), "gender")
    row = test.row(3, named=True)
    explainer = Explainer.for_model(mitigated)
    assert explainer.kind == "xgboost"
    assert explainer.reasons_one(row, 3) == Explainer.for_model(model).reasons_one(row, 3)
