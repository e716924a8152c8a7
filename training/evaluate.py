"""Validation metrics of conversion scores, as pure functions of labels and probabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

EPS = 1e-15


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins on [0, 1]: Σ_b (n_b / n) · |mean(y_b) − mean(p_b)|.

    A probability of exactly 1.0 falls in the last bin.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() / len(p) * abs(y[mask].mean() - p[mask].mean())
    return float(total)


def top_share(y: np.ndarray, p: np.ndarray, share: float = 0.10) -> tuple[float, float]:
    """(lift, capture) of the top ``share`` of rows by score (ties broken by row order).

    lift = conversion rate in the top share / overall rate; capture = share of all converters in it.
    """
    y = np.asarray(y, dtype=np.float64)
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")[:k]
    base = y.mean()
    if base == 0:
        return float("nan"), float("nan")
    return float(y[top].mean() / base), float(y[top].sum() / y.sum())


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """auc, pr_auc, log_loss, brier, ece, lift/capture at top 10%, base_rate, n of ``p`` vs 0/1 ``y``."""
    y = np.asarray(y).astype(np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    lift, capture = top_share(y, p, 0.10)
    two = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top10": lift,
        "capture_top10": capture,
        "base_rate": float(y.mean()),
        "n": float(len(y)),
    }


def rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties get their average rank), equal to
    :func:`sklearn.metrics.roc_auc_score` without its input checks: permutation importance calls it
    hundreds of times on the same labels. ``y`` holds 0/1 with both classes present."""
    from scipy.stats import rankdata

    positive = np.asarray(y) == 1
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = rankdata(p)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class _Scored:
    """The estimator handed to scikit-learn's permutation_importance: the scorer does the predicting."""

    def fit(self, *_: Any) -> _Scored:
        return self


def permutation_importance(score: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                           groups: dict[str, list[int]], seed: int, n_repeats: int = 5,
                           max_rows: int = 2000) -> dict[str, dict[str, float]]:
    """Drop in ROC AUC when each input column's block of ``X`` is shuffled (rows permuted jointly),
    ``n_repeats`` times, on at most ``max_rows`` rows (:func:`sklearn.inspection.permutation_importance`).

    ``groups`` maps an input column to its positions in ``X`` (a one-hot block moves as one):
    scikit-learn shuffles one column of row indices per group, and the scorer moves that group's
    block by those indices. Returns ``{column: {"mean", "std", "min", "max"}}`` of the AUC drops
    (AUC points, 0..1); a mean within about two standard deviations of 0 is noise, not importance.
    """
    from sklearn.inspection import permutation_importance as sklearn_permutation_importance

    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    if len(X) > max_rows:
        rows = np.sort(rng.choice(len(X), size=max_rows, replace=False))
        X, y = X[rows], y[rows]
    names = list(groups)
    if len(np.unique(y)) < 2:
        return {name: {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0} for name in names}
    order = np.arange(len(X))

    def auc(_est: Any, index: np.ndarray, y_: np.ndarray) -> float:
        moved = X.copy()
        for j, name in enumerate(names):
            if not np.array_equal(index[:, j], order):
                moved[:, groups[name]] = X[index[:, j]][:, groups[name]]
        return rank_auc(y_, score(moved))

    index = np.tile(order[:, None], (1, len(names)))
    drops = sklearn_permutation_importance(_Scored(), index, y, scoring=auc, n_repeats=n_repeats,
                                           random_state=seed).importances
    return {name: {"mean": float(drops[i].mean()), "std": float(drops[i].std()),
                   "min": float(drops[i].min()), "max": float(drops[i].max())}
            for i, name in enumerate(names)}
