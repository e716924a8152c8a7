"""The gate judges intervals: fail beyond the limit, pass within, insufficient_evidence across it.

The intervals (fairness/intervals.py) are checked against independent references: statsmodels'
Wilson and Newcombe intervals, Fairlearn's MetricFrame bootstrap and scipy.stats.bootstrap per
group, and by simulation (coverage, false fails at the limit, the observed value always inside)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate
from scipy.stats import bootstrap
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from fairness.audit import audit_arrays, disparity_metrics, metric_intervals
from fairness.config import GateConfig
from fairness.gate import evaluate_gate, judge
from fairness.intervals import cell_counts, disparity_intervals, wilson


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


def gate_of(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, method: str | None) -> str:
    audit = audit_arrays(y_true, y_pred.astype(float), {"g": groups}, y_pred=y_pred, min_group_size=10,
                         intervals=method)
    return evaluate_gate(audit, GateConfig(equalized_odds_difference_max=None)).verdict


def test_a_small_noisy_gap_is_insufficient_evidence_not_a_failure() -> None:
    data = selections(50, 10, 50, 7)  # selection 0.20 vs 0.14: ratio 0.7 on 100 rows
    assert gate_of(*data, None) == "fail"  # the point value alone fails
    assert gate_of(*data, "wilson") == "insufficient_evidence"


def test_a_large_clear_gap_still_fails() -> None:
    assert gate_of(*selections(1000, 300, 1000, 100), "wilson") == "fail"  # ratio 0.33
    # ratio 0.97: on 2 x 1,000 rows the conservative interval still reaches below 0.8; on 2 x 3,000 it passes
    assert gate_of(*selections(1000, 300, 1000, 290), "wilson") == "insufficient_evidence"
    assert gate_of(*selections(3000, 900, 3000, 870), "wilson") == "pass"


def test_the_wilson_interval_matches_statsmodels() -> None:
    for k, n in ((0, 20), (3, 20), (10, 50), (50, 50), (1, 1), (412, 1300)):
        for level in (0.95, 0.99, 0.9975):
            ref = proportion_confint(k, n, alpha=1 - level, method="wilson")
            ours = np.array(wilson(np.array([k]), np.array([n]), level)).ravel()
            assert ours == pytest.approx(ref, abs=1e-9)
    low, high = wilson(np.array([0]), np.array([0]), 0.95)
    assert np.isnan(low).all() and np.isnan(high).all()


def two_groups(sel_a: int = 60, sel_b: int = 45, n: int = 300) -> tuple[np.ndarray, ...]:
    return selections(n, sel_a, n, sel_b)


def test_a_two_group_interval_is_the_bonferroni_wilson_box_and_contains_newcombes() -> None:
    """Two groups, 95%: each selection rate gets a 97.5% Wilson interval; the difference lies in
    [low_a - high_b, high_a - low_b] and the ratio in [low_b / high_a, high_b / low_a] (closed form,
    from statsmodels), which contains Newcombe's hybrid score interval of the difference."""
    y, pred, groups = two_groups()
    ours = metric_intervals(y, pred, groups, ["a", "b"], level=0.95)
    la, ua = proportion_confint(60, 300, alpha=0.025, method="wilson")
    lb, ub = proportion_confint(45, 300, alpha=0.025, method="wilson")
    assert ours["demographic_parity_difference"] == pytest.approx((max(0.0, la - ub), ua - lb), abs=1e-9)
    assert ours["demographic_parity_ratio"] == pytest.approx((lb / ua, min(1.0, ub / la)), abs=1e-9)
    low, high = confint_proportions_2indep(60, 300, 45, 300, method="newcomb", compare="diff", alpha=0.05)
    dp_low, dp_high = ours["demographic_parity_difference"]
    assert dp_low <= max(0.0, low) and dp_high >= high  # conservative...
    assert dp_high - dp_low < 1.6 * (high - low)  # ...but not absurdly so
    y, pred, groups = two_groups(120, 45)  # a clear gap: both exclude 0
    low, _ = confint_proportions_2indep(120, 300, 45, 300, method="newcomb", compare="diff", alpha=0.05)
    assert 0 < metric_intervals(y, pred, groups, ["a", "b"])["demographic_parity_difference"][0] <= low


def test_the_bootstrap_group_intervals_agree_with_fairlearn_and_scipy() -> None:
    """method="bootstrap": each group's selection rate gets the percentile interval of Fairlearn's
    MetricFrame resampling (rows with replacement) at the Bonferroni quantiles (2 groups, 95%:
    1.25% and 98.75%); scipy.stats.bootstrap within the group agrees to the resampling noise."""
    y, pred, groups = two_groups()
    cells = cell_counts(y, pred, groups, ["a", "b"])
    found = disparity_intervals(cells, 0.95, "bootstrap", n_boot=4000, seed=1)
    low, high = found.groups["demographic_parity_ratio"]["selection_rate"]
    quantiles = [0.0125, 0.9875]
    frame = MetricFrame(metrics={"sel": selection_rate}, y_true=y, y_pred=pred,
                        sensitive_features=pd.Series(groups), n_boot=400, ci_quantiles=quantiles,
                        random_state=0)
    fair_low, fair_high = frame.by_group_ci
    for i, name in enumerate(("a", "b")):
        assert (low[i], high[i]) == pytest.approx((fair_low["sel"][name], fair_high["sel"][name]), abs=0.02)
        ref = bootstrap((pred[groups == name],), np.mean, confidence_level=0.975, method="percentile",
                        n_resamples=4000, rng=np.random.default_rng(0)).confidence_interval
        assert (low[i], high[i]) == pytest.approx((ref.low, ref.high), abs=0.015)


def random_cells(rng: np.random.Generator) -> np.ndarray:
    """Counts of 2-7 groups of 3-400 rows, rates anywhere in [0, 1] (extremes included)."""
    k = int(rng.integers(2, 8))
    n = rng.integers(3, 400, size=k)
    base = rng.choice([0.0, 0.05, 0.15, 0.5, 1.0], size=k)
    tpr, fpr = rng.choice([0.0, 0.3, 0.6, 1.0], size=k), rng.choice([0.0, 0.1, 0.2, 1.0], size=k)
    cells = np.zeros((k, 2, 2), dtype=int)
    for g in range(k):
        pos = rng.binomial(n[g], base[g])
        hit, false = rng.binomial(pos, tpr[g]), rng.binomial(n[g] - pos, fpr[g])
        cells[g] = [[n[g] - pos - false, false], [pos - hit, hit]]
    return cells


def point_metrics(cells: np.ndarray) -> dict[str, float]:
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = [{"selection_rate": c[:, 1].sum() / c.sum(), "tpr": c[1, 1] / c[1].sum(),
                  "fpr": c[0, 1] / c[0].sum()} for c in cells.astype(float)]
    return disparity_metrics(rates)


@pytest.mark.parametrize("method", ["wilson", "bootstrap"])
def test_the_observed_value_always_lies_inside_its_interval(method: str) -> None:
    """The defect this replaces: a naive bootstrap of a max-min spread put equalized odds 0.047
    outside its own interval 0.049..0.185. Here, over 150 random tables (tiny groups, rates of 0
    and 1), every computable metric lies inside its interval."""
    rng = np.random.default_rng(7)
    for i in range(150):
        cells = random_cells(rng)
        found = disparity_intervals(cells, 0.95, method, n_boot=500, seed=i).metrics
        for metric, value in point_metrics(cells).items():
            low, high = found[metric]
            if np.isnan(value):
                continue
            assert low - 1e-12 <= value <= high + 1e-12, (metric, value, low, high, cells.tolist())


def simulate(rng: np.random.Generator, sizes: np.ndarray, base: float, tpr: np.ndarray,
             fpr: np.ndarray) -> np.ndarray:
    pos = rng.binomial(sizes, base)
    hit, false = rng.binomial(pos, tpr), rng.binomial(sizes - pos, fpr)
    return np.stack([np.stack([sizes - pos - false, false], -1), np.stack([pos - hit, hit], -1)], 1)


def test_intervals_cover_the_true_disparity_and_a_disparity_at_the_limit_rarely_fails() -> None:
    """Six groups of 60-400 rows (a small shop's age bands), equalized odds exactly at the 0.10
    limit and demographic parity ratio exactly at 0.8: each interval covers its true value in at
    least 95% of 400 simulated audits, and the gate says `fail` in at most 2.5% of them."""
    rng = np.random.default_rng(11)
    sizes = np.array([400, 300, 200, 150, 100, 60])
    base = 0.15
    tpr = np.array([0.50, 0.45, 0.48, 0.42, 0.40, 0.46])  # spread 0.10
    fpr = np.array([0.17, 0.15, 0.16, 0.13, 0.12, 0.14])
    selection = base * tpr + (1 - base) * fpr
    truth = {"equalized_odds_difference": max(np.ptp(tpr), np.ptp(fpr)),
             "demographic_parity_ratio": selection.min() / selection.max()}
    covered = {m: 0 for m in truth}
    fails = {m: 0 for m in truth}
    runs = 400
    for _ in range(runs):
        found = disparity_intervals(simulate(rng, sizes, base, tpr, fpr), 0.95).metrics
        for metric, true in truth.items():
            low, high = found[metric]
            covered[metric] += low <= true <= high
        eo, dp = found["equalized_odds_difference"], found["demographic_parity_ratio"]
        fails["equalized_odds_difference"] += judge(0, eo, 0.10, "max") == "fail"
        fails["demographic_parity_ratio"] += judge(0, dp, truth["demographic_parity_ratio"], "min") == "fail"
    assert truth["equalized_odds_difference"] == pytest.approx(0.10)
    assert all(covered[m] / runs >= 0.95 for m in truth), covered
    assert all(fails[m] / runs <= 0.025 for m in truth), fails


def test_a_planted_gap_among_six_small_groups_still_fails() -> None:
    """One group of 600 selected at about half the others' rate (ratio ~0.4; its true positive rate
    0.1 against 0.6) fails both checks with confidence."""
    rng = np.random.default_rng(5)
    sizes = np.array([900, 700, 500, 600, 300, 200])
    tpr = np.array([0.6, 0.6, 0.6, 0.1, 0.6, 0.6])
    fpr = np.array([0.18, 0.18, 0.18, 0.09, 0.18, 0.18])
    found = disparity_intervals(simulate(rng, sizes, 0.15, tpr, fpr), 0.95).metrics
    assert judge(0, found["demographic_parity_ratio"], 0.8, "min") == "fail"
    assert judge(0, found["equalized_odds_difference"], 0.10, "max") == "fail"
