"""Probability calibration (isotonic or sigmoid/Platt) as a small fitted object with a scalar fast path.

The choice among none / isotonic / sigmoid is made by validation log loss with two-fold
cross-fitting over users of the validation snapshot, so the score that chooses the method is not
measured on the rows the calibrator was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


@dataclass
class Calibrator:
    """A monotone map from raw model probability to calibrated probability."""

    method: str  # "isotonic" or "sigmoid"
    x: np.ndarray  # isotonic: thresholds; sigmoid: [a, b]
    y: np.ndarray

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw probabilities ``p`` (any shape)."""
        p = np.asarray(p, dtype=np.float64)
        if self.method == "isotonic":
            return np.clip(np.interp(p, self.x, self.y), EPS, 1 - EPS)
        a, b = self.x
        return 1.0 / (1.0 + np.exp(-(a * _logit(p) + b)))


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit ``method`` ("isotonic" or "sigmoid") mapping raw probabilities ``p`` to labels ``y``."""
    p = np.asarray(p, dtype=np.float64)
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return Calibrator("isotonic", iso.X_thresholds_.copy(), iso.y_thresholds_.copy())
    if method == "sigmoid":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p).reshape(-1, 1), y)
        return Calibrator("sigmoid", np.array([lr.coef_[0, 0], lr.intercept_[0]]), np.zeros(0))
    raise ValueError(f"unknown calibration method {method!r}")


def cross_fitted(method: str, p: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities calibrated out of fold (two folds): each half by a calibrator fitted on the other."""
    if method == "none":
        return np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(p)) % 2
    out = np.empty(len(p), dtype=np.float64)
    for k in (0, 1):
        fit_rows, apply_rows = fold != k, fold == k
        if len(np.unique(y[fit_rows])) < 2:
            out[apply_rows] = p[apply_rows]
            continue
        out[apply_rows] = fit_calibrator(method, p[fit_rows], y[fit_rows]).apply(p[apply_rows])
    return out


def choose_calibration(p: np.ndarray, y: np.ndarray, setting: str, seed: int
                       ) -> tuple[str, Calibrator | None, dict[str, float]]:
    """Pick the calibration by cross-fitted validation log loss (or take ``setting`` when fixed).

    Returns the method, the calibrator fitted on all of ``p``/``y`` (None for "none") and the
    cross-fitted log loss of every candidate.
    """
    candidates = ["none", "isotonic", "sigmoid"] if setting == "auto" else [setting]
    losses = {m: float(log_loss(y, np.clip(cross_fitted(m, p, y, seed), EPS, 1 - EPS), labels=[0, 1]))
              for m in candidates}
    best = min(candidates, key=lambda m: (losses[m], candidates.index(m)))
    calibrator = None if best == "none" else fit_calibrator(best, p, y)
    return best, calibrator, losses
