"""The gate judges bootstrap intervals: fail beyond the limit, pass within, insufficient_evidence
across it; the intervals agree with Fairlearn's own MetricFrame bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate, true_positive_rate

from fairness.audit import audit_arrays, metric_intervals
from fairness.config import GateConfig
from fairness.gate import evaluate_gate, judge


@pytest.mark.parametrize(("interval", "kind", "verdict"), [
    ((0.60, 0.75), "min", "fail"), ((0.82, 0.95), "min", "pass"),
    ((0.70, 0.90), "min", "insufficient_evidence"),
    ((0.12, 0.20), "max", "fail"), ((0.01, 0.08), "max", "pass"),
    ((0.05, 0.15), "max", "insufficient_evidence"),
])
def test_a_check_is_judged_on_its_interval(interval, kind, verdict) -> None:
    limit = 0.8 if kind == "min" else 0.1
    assert judge(sum(interval) / 2, interval, limit, kind) == verdict


def test_without_an_interval_the_point_value_decides() -> None:
    assert judge(0.7, None, 0.8, "min") == "fail" and judge(0.9, None, 0.8, "min") == "pass"


def selections(n_a: int, sel_a: int, n_b: int, sel_b: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    groups = np.array(["a"] * n_a + ["b"] * n_b, dtype=object)
    y_pred = np.concatenate([np.arange(n_a) < sel_a, np.arange(n_b) < sel_b]).astype(int)
    y_true = (rng.random(n_a + n_b) < 0.3).astype(int)
    return y_true, y_pred, groups


def test_intervals_agree_with_fairlearns_bootstrap() -> None:
    y_true, y_pred, groups = selections(300, 60, 300, 45)
    ours = metric_intervals(y_true, y_pred, groups, ["a", "b"], n_boot=2000, seed=1)
    frame = MetricFrame(metrics={"sel": selection_rate, "tpr": true_positive_rate}, y_true=y_true,
                        y_pred=y_pred,
                        sensitive_features=pd.Series(groups), n_boot=300, ci_quantiles=[0.025, 0.975],
                        random_state=0)
    ratio = frame.ratio_ci(method="between_groups")
    diff = frame.difference_ci(method="between_groups")
    assert ours["demographic_parity_ratio"] == pytest.approx((ratio[0]["sel"], ratio[1]["sel"]), abs=0.04)
    assert ours["equal_opportunity_difference"] == pytest.approx((diff[0]["tpr"], diff[1]["tpr"]), abs=0.04)


def gate_of(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_boot: int) -> str:
    audit = audit_arrays(y_true, y_pred.astype(float), {"g": groups}, y_pred=y_pred, min_group_size=10,
                         n_boot=n_boot)
    return evaluate_gate(audit, GateConfig(equalized_odds_difference_max=None)).verdict


def test_a_small_noisy_gap_is_insufficient_evidence_not_a_failure() -> None:
    data = selections(50, 10, 50, 7)  # selection 0.20 vs 0.14: ratio 0.7 on 100 rows
    assert gate_of(*data, n_boot=0) == "fail"  # the point value alone fails
    assert gate_of(*data, n_boot=500) == "insufficient_evidence"


def test_a_large_clear_gap_still_fails() -> None:
    assert gate_of(*selections(1000, 300, 1000, 100), n_boot=500) == "fail"  # ratio 0.33
    assert gate_of(*selections(1000, 300, 1000, 290), n_boot=500) == "pass"  # ratio 0.97
