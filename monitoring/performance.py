"""Realised and estimated performance of one window of predictions: pure functions.

Realised (labels known): conversion rate, ROC AUC, log loss, reliability curve and expected
calibration error. Estimated (labels not known yet, confidence-based performance estimation as in
NannyML's CBPE): if the probabilities are calibrated, each label is a Bernoulli draw with the
predicted probability, so the AUC the labels will give has a known distribution. We draw ``samples``
label vectors from the probabilities and take the mean AUC as the estimate and the central
``interval`` of the draws as its uncertainty: the band in which the realised AUC should fall. The
estimate is only as good as the calibration: a concept shift (same inputs, other outcomes) is
invisible to it, which is why realised metrics are reported as soon as the horizon has passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import log_loss, roc_auc_score

EPS = 1e-12
DRAW_BUDGET = 20_000_000  # label draws per window (rows x samples) before the samples are reduced


@dataclass(frozen=True)
class Estimate:
    auc: float
    low: float
    high: float
    log_loss: float  # expected log loss under the probabilities (their mean entropy)


def realized(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, object]:
    """Conversion rate, AUC (NaN with one class), log loss, ECE and the reliability curve
    (quantile bins: mean probability, realised rate, rows)."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    two = len(np.unique(y)) == 2
    curve = reliability(y, p, bins)
    n = max(len(y), 1)
    ece = sum(b["rows"] * abs(b["mean_probability"] - b["realized_rate"]) for b in curve) / n
    return {"realized_rate": float(y.mean()) if len(y) else math.nan,
            "realized_auc": float(roc_auc_score(y, p)) if two else math.nan,
            "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else math.nan,
            "ece": float(ece), "reliability": curve}


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Rows split into ``bins`` equal-count groups by probability: mean probability vs realised rate."""
    order = np.argsort(p, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))) if len(order) else []:
        out.append({"mean_probability": float(p[part].mean()), "realized_rate": float(y[part].mean()),
                    "rows": int(len(part))})
    return out


def _auc_from_ranks(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUC per column of a (rows, samples) 0/1 label matrix from the score ranks (Mann-Whitney U)."""
    n1 = labels.sum(axis=0).astype(np.float64)
    n0 = labels.shape[0] - n1
    u = ranks @ labels - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def estimate(p: np.ndarray, samples: int = 200, interval: float = 0.95, seed: int = 0) -> Estimate:
    """The AUC the labels of probabilities ``p`` will give if ``p`` is calibrated: mean and central
    ``interval`` over ``samples`` label draws (fewer on very large windows, see ``DRAW_BUDGET``),
    draws with a single class left out. Also the expected log loss."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    entropy = float(-np.mean(p * np.log(p) + (1 - p) * np.log(1 - p))) if len(p) else math.nan
    if len(p) < 2:
        return Estimate(math.nan, math.nan, math.nan, entropy)
    rng = np.random.default_rng(seed)
    ranks = rankdata(p)  # ties get average ranks, as roc_auc_score counts them half
    total = max(10, min(samples, DRAW_BUDGET // len(p)))
    aucs = []
    for start in range(0, total, 25):  # chunks bound the (rows, samples) label matrix
        k = min(25, total - start)
        labels = (rng.random((len(p), k)) < p[:, None]).astype(np.float64)
        aucs.append(_auc_from_ranks(ranks, labels))
    draws = np.concatenate(aucs)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return Estimate(math.nan, math.nan, math.nan, entropy)
    tail = (1 - interval) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(float(draws.mean()), float(low), float(high), entropy)
