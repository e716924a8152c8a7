"""Monitoring statistics pinned against independent reference values (hand computations, R)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from monitoring.drift import (
    EPSILON,
    bin_counts,
    categorical_bins,
    chi2_p_value,
    ks_p_value,
    numeric_bins,
    psi_from_counts,
)
from monitoring.log import with_outcomes
from monitoring.performance import estimate, realized


def test_psi_of_two_bins_matches_the_hand_computation() -> None:
    # shares (0.5, 0.5) -> (0.25, 0.75): (0.25-0.5)ln(0.25/0.5) + (0.75-0.5)ln(0.75/0.5)
    #   = 0.25 ln 2 + 0.25 ln 1.5 = 0.173287 + 0.101366 = 0.274653
    assert psi_from_counts(np.array([50, 50]), np.array([25, 75])) == pytest.approx(0.274653, abs=1e-6)
    assert psi_from_counts(np.array([10, 30]), np.array([20, 60])) == pytest.approx(0.0)


def test_psi_floors_an_empty_bin_at_epsilon() -> None:
    # (0.5, 0.5, 0) -> (0.5, 0.4, 0.1): the empty reference bin counts as share EPSILON
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - EPSILON) * math.log(0.1 / EPSILON)
    assert psi_from_counts(np.array([5, 5, 0]), np.array([5, 4, 1])) == pytest.approx(expected)


def test_numeric_bins_are_reference_quantiles_and_missing_is_its_own_bin() -> None:
    spec = numeric_bins(np.arange(1.0, 101.0), bins=4)  # cut points at the quartiles
    assert spec.edges is not None and list(spec.edges) == pytest.approx([25.75, 50.5, 75.25])
    counts = bin_counts(np.array([1.0, 30.0, 60.0, 99.0, 25.75, np.nan, np.nan]), spec)
    assert list(counts) == [2, 1, 1, 1, 2]  # (-inf, 25.75] holds 25.75 itself; two missing
    cats = categorical_bins(np.array(["a", "b", None], dtype=object))
    assert list(bin_counts(np.array(["a", "c", None, "b", "a"], dtype=object), cats)) == [2, 1, 1, 1]


def test_ks_p_value_matches_r() -> None:
    # R: ks.test(1:3, 4:6) -> D = 1, p-value = 0.1 (exact: 2 / choose(6, 3))
    assert ks_p_value(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    # missing values are left out of the test
    assert ks_p_value(np.array([1.0, 2, 3, np.nan]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    assert math.isnan(ks_p_value(np.array([np.nan]), np.array([1.0])))


def test_chi_square_p_value_matches_r() -> None:
    # R: chisq.test(matrix(c(10, 20, 20, 10), 2), correct = FALSE) -> X-squared = 6.6667, p = 0.009823
    assert chi2_p_value(np.array([10, 20]), np.array([20, 10])) == pytest.approx(0.009823, abs=1e-6)
    # a bin empty on both sides is dropped, not a division by zero
    assert chi2_p_value(np.array([10, 20, 0]), np.array([20, 10, 0])) == pytest.approx(0.009823, abs=1e-6)


def test_estimated_auc_of_two_rows_matches_the_hand_computation() -> None:
    # p = (0.1, 0.9): labels (0,1) with prob 0.9*0.9 = 0.81 give AUC 1, (1,0) with 0.1*0.1 = 0.01
    # give 0; draws with one class have no AUC. E[AUC | both classes] = 0.81 / 0.82 = 0.98780
    est = estimate(np.array([0.1, 0.9]), samples=4000, seed=1)
    assert est.auc == pytest.approx(0.81 / 0.82, abs=0.01)
    # expected log loss = entropy of the probabilities: -(0.1 ln 0.1 + 0.9 ln 0.9) = 0.325083
    assert est.log_loss == pytest.approx(0.325083, abs=1e-6)


def test_realised_auc_falls_in_the_estimates_interval_when_labels_follow_the_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(1.5, 10, 5000)
    inside = 0
    for k in range(20):
        y = (np.random.default_rng(100 + k).random(len(p)) < p).astype(int)
        est = estimate(p, samples=200, seed=k)
        real = realized(y, p)
        assert real["realized_auc"] == pytest.approx(roc_auc_score(y, p))
        inside += est.low <= real["realized_auc"] <= est.high
    assert inside >= 17  # a 95% interval: 19 of 20 expected


def test_outcomes_are_purchases_within_the_horizon_after_each_prediction() -> None:
    t = datetime(2026, 10, 1, tzinfo=UTC)
    log = pl.DataFrame({"user_id": ["a", "a", "b", "c", "d"],
                        "time": [t, t + timedelta(days=3), t, t, t + timedelta(days=5)]}).with_columns(
        pl.col("time").cast(pl.Datetime("us", "UTC")))
    bought = [t + timedelta(days=2), t - timedelta(hours=1), t + timedelta(days=7)]
    purchases = pl.DataFrame({"user_id": ["a", "b", "c"], "timestamp": bought}).with_columns(
        pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    out = with_outcomes(log.lazy(), purchases.lazy(), timedelta(days=7), t + timedelta(days=10)).collect()
    labels = {(r["user_id"], r["time"]): r["label"] for r in out.iter_rows(named=True)}
    assert labels[("a", t)] == 1  # bought 2 days later
    assert labels[("a", t + timedelta(days=3))] == 0  # the purchase was before this prediction
    assert labels[("b", t)] == 0  # bought before
    assert labels[("c", t)] == 0  # exactly at the horizon's end: outside [t, t + 7d)
    assert labels[("d", t + timedelta(days=5))] is None  # t + 5d + 7d is after the data's end


def test_the_monitor_config_is_validated_on_load(tmp_path) -> None:
    from monitoring.config import load_monitor_config
    from propensity.errors import ConfigError

    cfg = load_monitor_config()
    assert cfg.every == timedelta(days=1) and cfg.drift.compare == "weekday"
    bad = tmp_path / "monitor.yaml"
    bad.write_text("drift: {psi_treshold: 0.1}\n")
    with pytest.raises(ConfigError, match="psi_treshold"):
        load_monitor_config(bad)


def test_ks_statistic_matches_the_hand_computation_with_ties() -> None:
    from monitoring.drift import SortedSample, ks_statistic

    # ECDFs of (1, 2, 3) and (2, 3, 4) at 1, 2, 3, 4: gaps 1/3, 1/3, 1/3, 0
    assert ks_statistic(np.array([1.0, 2, 3]), np.array([2.0, 3, 4])) == pytest.approx(1 / 3)
    # ties: (1, 2, 2, 3) vs (2, 5): at 1: .25 - 0; at 2: .75 - .5; at 3: 1 - .5; at 5: 0 -> 0.5
    x = SortedSample.of(np.array([2.0, 1, 2, 3, np.nan]))
    assert list(x.values) == [1, 2, 2, 3] and list(x.at_or_below) == [1, 3, 3, 4]
    assert ks_statistic(x, np.array([2.0, 5])) == pytest.approx(0.5)


def test_the_normal_limit_estimate_agrees_with_explicit_label_draws() -> None:
    from monitoring import performance

    p = np.random.default_rng(3).beta(1.2, 10, 30_000)
    explicit = estimate(p, samples=200, seed=1)
    budget = performance.DRAW_BUDGET
    try:
        performance.DRAW_BUDGET = 0  # every window takes the normal limit
        limit = estimate(p, samples=200, seed=1)
    finally:
        performance.DRAW_BUDGET = budget
    assert limit.auc == pytest.approx(explicit.auc, abs=0.002)
    assert limit.low == pytest.approx(explicit.low, abs=0.003)
    assert limit.high == pytest.approx(explicit.high, abs=0.003)


def test_recalibration_recovers_an_overconfident_model() -> None:
    from monitoring.performance import recalibrated, recalibration

    rng = np.random.default_rng(4)
    truth = rng.beta(1.5, 8, 200_000)
    logit = np.log(truth / (1 - truth))
    scores = 1 / (1 + np.exp(-(2 * logit + 0.3)))  # twice the true log-odds, shifted
    y = (rng.random(truth.size) < truth).astype(int)
    a, b = recalibration(scores, y)
    assert b == pytest.approx(0.5, abs=0.02) and a == pytest.approx(-0.15, abs=0.03)
    assert np.abs(recalibrated(scores, (a, b)) - truth).max() < 0.02


def test_estimates_are_shifted_by_the_gap_of_windows_already_labelled() -> None:
    from monitoring.windows import Window, correct_estimates

    day = timedelta(days=1)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)

    def window(k: int, real: float | None) -> Window:
        return Window(t0 + k * day, t0 + (k + 1) * day, "1", 1000, 0.1, real is not None,
                      {"realized_auc": real} if real is not None else {},
                      {"auc": 0.70, "low": 0.68, "high": 0.72, "log_loss": 0.3})

    windows = [window(0, 0.66), window(1, 0.68), window(2, None), window(3, None)]
    correct_estimates(windows, horizon=2 * day, keep=7)
    # window 2 closes at day 3: only window 0 (closed day 1 + 2 days) was labelled by then
    assert windows[0].estimated["auc"] == 0.70 and windows[1].estimated["auc"] == 0.70
    assert windows[2].estimated["auc"] == pytest.approx(0.66)
    assert windows[2].estimated["low"] == pytest.approx(0.66 - 0.02 * math.sqrt(2))
    assert windows[3].estimated["auc"] == pytest.approx(0.67)  # mean gap of windows 0 and 1
    assert windows[3].estimated["high"] == pytest.approx(0.67 + 0.02 * math.sqrt(1.5))


def test_auc_from_ranks_matches_sklearn_per_label_column_with_ties() -> None:
    from scipy.stats import rankdata

    from monitoring.performance import _auc_from_ranks

    rng = np.random.default_rng(5)
    p = np.round(rng.beta(1.5, 8, 700), 2)  # rounded: many ties
    labels = (rng.random((700, 6)) < p[:, None]).astype(np.float64)
    got = _auc_from_ranks(rankdata(p), labels)
    assert got == pytest.approx([roc_auc_score(labels[:, k], p) for k in range(6)], abs=1e-12)


def test_expected_auc_matches_the_mean_auc_of_label_draws() -> None:
    from scipy.stats import rankdata

    from monitoring.performance import expected_auc

    rng = np.random.default_rng(6)
    p = rng.beta(1.5, 8, 2000)
    q = np.clip(1.2 * p, 0, 1)  # the labels follow another law than the scores
    draws = [roc_auc_score((rng.random(p.size) < q).astype(int), p) for _ in range(400)]
    # 400 draws of an AUC with sd ~0.015: the mean is known to ~0.001
    assert expected_auc(rankdata(p), q)[0] == pytest.approx(np.mean(draws), abs=0.003)


def _overconfident(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores with 1.3 times the true log-odds (shifted) and labels drawn from the truth."""
    truth = rng.beta(1.5, 8, rows)
    scores = 1 / (1 + np.exp(-(1.3 * np.log(truth / (1 - truth)) + 0.1)))
    return scores, (rng.random(rows) < truth).astype(int)


def test_recalibration_cov_matches_the_spread_of_repeated_fits() -> None:
    from monitoring.performance import recalibration, recalibration_cov

    fits = np.array([recalibration(*_overconfident(np.random.default_rng(k), 1500)) for k in range(100)])
    scores, y = _overconfident(np.random.default_rng(999), 1500)
    cov = recalibration_cov(scores, recalibration(scores, y))  # type: ignore[arg-type]
    # the sd of 100 fits is known to ~7%; the information matrix of one sample to a few %
    assert np.sqrt(np.diag(cov)) == pytest.approx(fits.std(axis=0), rel=0.2)


def test_the_interval_carries_the_error_of_a_map_fitted_on_few_labelled_rows() -> None:
    """The map is fitted on 600 labelled rows, the window has 3,000: the label draws alone give an
    interval that misses the realised AUC in about half the windows; with the map's error it covers."""
    from monitoring.performance import calibration_shifts, recalibrated, recalibration, recalibration_cov

    point = full = 0
    for k in range(80):
        rng = np.random.default_rng(k)
        (sv, yv), (sw, yw) = _overconfident(rng, 600), _overconfident(rng, 3000)
        fit = recalibration(sv, yv)
        assert fit is not None
        real = roc_auc_score(yw, sw)
        alone = estimate(sw, 200, 0.95, k, recalibrated(sw, fit))
        shifts = calibration_shifts(sw, fit, recalibration_cov(sv, fit), 200, np.random.default_rng([k, 1]))
        both = estimate(sw, 200, 0.95, k, recalibrated(sw, fit), shifts)
        point += alone.low <= real <= alone.high
        full += both.low <= real <= both.high
        assert both.high - both.low > alone.high - alone.low
    assert full >= 0.85 * 80  # nominal 95%: 76 of 80 expected, sd ~2
    assert point <= 0.75 * 80


def test_out_of_fold_calibration_shows_what_in_sample_calibration_hides() -> None:
    from monitoring.performance import recalibration
    from training.calibration import cross_fitted, fit_calibrator

    rng = np.random.default_rng(7)
    raw = rng.random(3000)  # scores that know nothing
    y = (rng.random(3000) < 0.2).astype(int)
    in_sample = fit_calibrator("isotonic", raw, y).apply(raw)
    out_of_fold = cross_fitted("isotonic", raw, y, seed=0, folds=10)
    slope_in, slope_out = recalibration(in_sample, y)[1], recalibration(out_of_fold, y)[1]  # type: ignore[index]
    assert slope_in == pytest.approx(1.0, abs=0.05)  # in sample the isotonic fit looks calibrated
    assert abs(slope_out) < 0.3  # out of fold its steps are noise: a flat map
