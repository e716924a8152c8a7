"""Probability calibration (isotonic or sigmoid/Platt) as a small fitted object with a scalar fast path.

The choice among none / isotonic / sigmoid is made by validation log loss with two-fold
cross-fitting over users of the validation snapshot, so the score that chooses the method is not
measured on the rows the calibrator was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
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
        return np.asarray(expit(a * _logit(p) + b), dtype=np.float64)


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit ``method`` ("isotonic" or "sigmoid") mapping raw probabilities ``p`` to labels ``y``."""
    p = np.asarray(p, dtype=np.float64)
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return Calibrator("isotonic", iso.X_thresholds_.copy(), iso.y_thresholds_.copy())
    if method == "sigmoid":
        return Calibrator("sigmoid", platt(_logit(p), np.asarray(y, dtype=np.float64)), np.zeros(0))
    raise ValueError(f"unknown calibration method {method!r}")


def platt(z: np.ndarray, y: np.ndarray, iterations: int = 50) -> np.ndarray:
    """[a, b] maximising the likelihood of y ~ Bernoulli(sigmoid(a·z + b)), by Newton's method.

    Two parameters, so each step solves a 2×2 system; a tiny ridge keeps separable data finite.
    """
    X = np.column_stack([z, np.ones_like(z)])

    def loss(w: np.ndarray) -> float:  # negative log-likelihood + ridge, computed without overflow
        m = X @ w
        return float(np.sum(np.logaddexp(0.0, m) - y * m) + 0.5e-6 * w @ w)

    w = np.array([1.0, 0.0])
    current = loss(w)
    for _ in range(iterations):
        q = expit(X @ w)
        grad = X.T @ (q - y) + 1e-6 * w
        hess = (X * (q * (1 - q))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while loss(w - scale * step) > current and scale > 1e-6:  # damped Newton: never go uphill
            scale /= 2
        w = w - scale * step
        previous, current = current, loss(w)
        if previous - current < 1e-12 * max(1.0, abs(current)):
            break
    return w


def cross_fitted(method: str, p: np.ndarray, y: np.ndarray, seed: int, folds: int = 2) -> np.ndarray:
    """Probabilities calibrated out of fold: each of ``folds`` random parts (default two halves) by a
    calibrator fitted on the others."""
    if method == "none":
        return np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(p)) % folds
    out = np.empty(len(p), dtype=np.float64)
    for k in range(folds):
        fit_rows, apply_rows = fold != k, fold == k
        if len(np.unique(y[fit_rows])) < 2:
            out[apply_rows] = p[apply_rows]
            continue
        out[apply_rows] = fit_calibrator(method, p[fit_rows], y[fit_rows]).apply(p[apply_rows])
    return out


@dataclass
class CalibrationChoice:
    """The chosen method, its calibrator (fitted on all rows; None for "none"), the cross-fitted
    log loss of every candidate and the chosen method's cross-fitted probabilities."""

    method: str
    calibrator: Calibrator | None
    losses: dict[str, float]
    crossed: np.ndarray


def choose_calibration(p: np.ndarray, y: np.ndarray, setting: str, seed: int) -> CalibrationChoice:
    """Pick the calibration by cross-fitted validation log loss (or take ``setting`` when fixed)."""
    candidates = ["none", "isotonic", "sigmoid"] if setting == "auto" else [setting]
    crossed = {m: cross_fitted(m, p, y, seed) for m in candidates}
    losses = {m: float(log_loss(y, np.clip(crossed[m], EPS, 1 - EPS), labels=[0, 1])) for m in candidates}
    best = min(candidates, key=lambda m: (losses[m], candidates.index(m)))
    calibrator = None if best == "none" else fit_calibrator(best, p, y)
    return CalibrationChoice(best, calibrator, losses, crossed[best])
