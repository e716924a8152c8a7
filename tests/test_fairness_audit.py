"""Audit metrics and the gate against hand computations and Fairlearn's own between-group functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)

from fairness.audit import INSUFFICIENT, audit_arrays, selection_threshold
from fairness.config import GateConfig
from fairness.gate import evaluate_gate

# Tiny population, group A (6 rows) and B (4 rows). Every expected number below is computed by hand:
# top_share 0.3 -> k = ceil(3.0) = 3 highest scores 0.9, 0.8, 0.7 -> threshold 0.7.
# A selected {0.9, 0.8}: rate 2/6; B selected {0.7}: rate 1/4 -> DP difference 1/12, ratio 0.75.
# TPR: A positives {0.9 sel, 0.4} = 1/2; B positives {0.7 sel, 0.35} = 1/2.
# FPR: A negatives {0.8 sel, 0.3, 0.2, 0.1} = 1/4; B negatives {0.25, 0.05} = 0 -> EOD 0.25.
# Precision: A 1/2, B 1/1. AUC: A 7 of 8 positive/negative pairs ordered = 0.875; B 4/4 = 1.
# Calibration: A mean score 2.7/6 = 0.45 vs observed 2/6; B 1.35/4 = 0.3375 vs observed 2/4.
SCORES = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1, 0.7, 0.35, 0.25, 0.05])
LABELS = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0, 0])
GROUPS = np.array(["A"] * 6 + ["B"] * 4)


def _hand_audit(min_group_size: int = 1):
    return audit_arrays(LABELS, SCORES, {"g": GROUPS}, top_share=0.3, min_group_size=min_group_size)


def test_top_share_threshold_is_the_kth_highest_score() -> None:
    assert selection_threshold(SCORES, top_share=0.3) == 0.7
    assert selection_threshold(SCORES, top_share=0.3, probability=0.5) == 0.5


def test_per_group_rates_match_the_hand_computation() -> None:
    rows = {r["group"]: r for r in _hand_audit().features["g"].groups}
    expected = {
        "A": {"count": 6, "selection_rate": 2 / 6, "tpr": 0.5, "fpr": 0.25, "precision": 0.5, "auc": 0.875,
              "mean_predicted": 0.45, "observed_rate": 2 / 6},
        "B": {"count": 4, "selection_rate": 0.25, "tpr": 0.5, "fpr": 0.0, "precision": 1.0, "auc": 1.0,
              "mean_predicted": 0.3375, "observed_rate": 0.5},
    }
    for group, values in expected.items():
        for key, value in values.items():
            assert rows[group][key] == pytest.approx(value), (group, key)


def test_disparity_metrics_match_the_hand_computation() -> None:
    metrics = _hand_audit().features["g"].metrics
    assert metrics["demographic_parity_difference"] == pytest.approx(1 / 12)
    assert metrics["demographic_parity_ratio"] == pytest.approx(0.75)
    assert metrics["equal_opportunity_difference"] == pytest.approx(0.0)
    assert metrics["equalized_odds_difference"] == pytest.approx(0.25)


def test_disparity_metrics_agree_with_fairlearn_functions_on_random_data() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    groups = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    score = rng.random(n) + (groups == "z") * 0.2
    y = (rng.random(n) < score / 1.5).astype(int)
    audit = audit_arrays(y, score, {"g": groups}, top_share=0.2, min_group_size=1)
    y_pred = (score >= audit.threshold).astype(int)
    assert y_pred.sum() == 600  # continuous scores: exactly the top 20%
    m = audit.features["g"].metrics
    kw = {"sensitive_features": groups}
    assert m["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(y, y_pred, **kw))
    assert m["demographic_parity_ratio"] == pytest.approx(demographic_parity_ratio(y, y_pred, **kw))
    assert m["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y, y_pred, **kw))
    assert m["equal_opportunity_difference"] == pytest.approx(equal_opportunity_difference(y, y_pred, **kw))
    # and each group's TPR by plain numpy
    for row in audit.features["g"].groups:
        mask = (groups == row["group"]) & (y == 1)
        assert row["tpr"] == pytest.approx(y_pred[mask].mean())


def test_small_groups_are_insufficient_data_and_not_judged() -> None:
    audit = _hand_audit(min_group_size=5)
    rows = {r["group"]: r for r in audit.features["g"].groups}
    assert rows["B"]["status"] == INSUFFICIENT and rows["A"]["status"] == "ok"
    assert all(math.isnan(v) for v in audit.features["g"].metrics.values())
    assert evaluate_gate(audit, GateConfig()).verdict == "pass"


def test_intersectional_groups_combine_features() -> None:
    sex = np.array(["F", "M"] * 5)
    audit = audit_arrays(LABELS, SCORES, {"g": GROUPS, "sex": sex}, top_share=0.3, min_group_size=1,
                         intersections=[["g", "sex"]])
    rows = {r["group"]: r["count"] for r in audit.features["g*sex"].groups}
    assert rows == {"A|F": 3, "A|M": 3, "B|F": 2, "B|M": 2}


def test_missing_sensitive_values_form_an_unknown_group() -> None:
    groups = np.array(["A"] * 6 + [None] * 4, dtype=object)
    audit = audit_arrays(LABELS, SCORES, {"g": groups}, top_share=0.3, min_group_size=1)
    assert {r["group"] for r in audit.features["g"].groups} == {"A", "unknown"}


def test_gate_fails_naming_metric_feature_and_groups() -> None:
    verdict = evaluate_gate(_hand_audit(), GateConfig())
    assert verdict.verdict == "fail"
    by_metric = {f["metric"]: f for f in verdict.failing}
    assert set(by_metric) == {"demographic_parity_ratio", "equalized_odds_difference"}
    dp = by_metric["demographic_parity_ratio"]
    assert (dp["feature"], dp["limit"], dp["groups"]) == ("g", 0.8, ["B", "A"])
    assert dp["value"] == pytest.approx(0.75)
    assert by_metric["equalized_odds_difference"]["groups"] == ["B", "A"]  # FPR 0 vs 0.25


def test_gate_passes_within_limits() -> None:
    cfg = GateConfig(demographic_parity_ratio_min=0.7, equalized_odds_difference_max=0.3)
    assert evaluate_gate(_hand_audit(), cfg).verdict == "pass"
