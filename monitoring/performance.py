"""Realised and estimated performance of one window of predictions: pure functions.

Realised (labels known): conversion rate, ROC AUC, log loss, reliability curve and expected
calibration error. Estimated (labels not known yet, confidence-based performance estimation as in
NannyML's CBPE): if the probabilities are calibrated, each label is a Bernoulli draw with the
predicted probability, so the AUC the labels will give has a known distribution. We draw ``samples``
label vectors from the probabilities and take the mean AUC as the estimate and the central
``interval`` of the draws as its uncertainty: the band in which the realised AUC should fall. The
estimate is only as good as the calibration: a concept shift (same inputs, other outcomes) is
invisible to it, which is why realised metrics are reported as soon as the horizon has passed.

The interval is a prediction interval for the realised AUC with two sources of error: the label
draws (given the probabilities), and the error of the recalibration map the labels are drawn from,
which is itself fitted on finite labelled data (the reference's validation rows): each draw also
takes its map's parameters from their sampling law (:func:`recalibration_cov`) and adds the move of
the expected AUC that this causes (:func:`calibration_shifts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import log_loss, roc_auc_score

EPS = 1e-12
DRAW_BUDGET = 20_000_000  # label draws per window (rows x samples) before the samples are reduced
SHIFT_ROWS = 20_000  # rows of a window the calibration shifts are computed on (at most)


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


def estimate(p: np.ndarray, samples: int = 200, interval: float = 0.95, seed: int = 0,
             truth: np.ndarray | None = None, shifts: np.ndarray | None = None) -> Estimate:
    """The AUC the labels will give the scores ``p`` if the labels follow ``truth`` (the calibrated
    probabilities; default ``p`` itself): mean and central ``interval`` over ``samples`` label draws,
    draws with a single class left out; ``shifts`` (one per draw, :func:`calibration_shifts`) are
    added to the draws. Also the expected log loss of ``p``. Windows too large for ``samples``
    explicit draws (``DRAW_BUDGET``) draw from the normal limit instead (:func:`_clt_draws`)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    q = p if truth is None else np.clip(np.asarray(truth, dtype=np.float64), EPS, 1 - EPS)
    entropy = float(-np.mean(q * np.log(p) + (1 - q) * np.log(1 - p))) if len(p) else math.nan
    if len(p) < 2:
        return Estimate(math.nan, math.nan, math.nan, entropy)
    rng = np.random.default_rng(seed)
    ranks = rankdata(p)  # ties get average ranks, as roc_auc_score counts them half
    draws = (_explicit_draws(ranks, q, samples, rng) if len(p) * samples <= DRAW_BUDGET
             else _clt_draws(ranks, q, samples, rng))
    if shifts is not None:
        draws = draws + shifts[:len(draws)]
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return Estimate(math.nan, math.nan, math.nan, entropy)
    tail = (1 - interval) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Estimate(float(draws.mean()), float(low), float(high), entropy)


def _explicit_draws(ranks: np.ndarray, q: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """AUCs of ``samples`` label vectors drawn as Bernoulli(``q``)."""
    aucs = []
    for start in range(0, samples, 25):  # chunks bound the (rows, samples) label matrix
        k = min(25, samples - start)
        labels = (rng.random((len(q), k)) < q[:, None]).astype(np.float64)
        aucs.append(_auc_from_ranks(ranks, labels))
    return np.concatenate(aucs)


def _clt_draws(ranks: np.ndarray, q: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """AUCs from the normal limit of the label draws: the AUC is a function of two sums over the
    rows, the positives ``n1 = sum(y)`` and their rank sum ``S = sum(r * y)``; with independent
    Bernoulli(q) labels (n1, S) has mean ``(sum q, sum r q)`` and covariance ``sum v [[1, r], [r, r^2]]``
    (``v = q (1 - q)``), and on a large window it is normal to a fraction of its spread. So the pairs
    are drawn from that normal law: O(rows) once, then O(samples)."""
    v = q * (1 - q)
    mean = np.array([q.sum(), ranks @ q])
    cov = np.array([[v.sum(), ranks @ v], [ranks @ v, (ranks * ranks) @ v]])
    n1, s = rng.multivariate_normal(mean, cov, size=samples, method="cholesky").T
    n0 = len(q) - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), (s - n1 * (n1 + 1) / 2) / (n1 * n0), np.nan)


def recalibration(p: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Logistic recalibration (Platt scaling on the log-odds) of scores ``p`` against labels ``y``:
    ``(a, b)`` with P(y = 1 | p) = sigmoid(a + b logit p); None with a single class."""
    y = np.asarray(y, dtype=np.int64)
    if len(np.unique(y)) < 2:
        return None
    from sklearn.linear_model import LogisticRegression

    x = _logit(np.asarray(p, dtype=np.float64))[:, None]
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


def recalibration_cov(p: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
    """Covariance of the ``(a, b)`` of :func:`recalibration` fitted on the scores ``p`` (its
    large-sample law): the inverse Fisher information of the logistic likelihood at the fit,
    ``(X' W X)^-1`` with ``X = [1, logit p]`` and ``W = q (1 - q)``, ``q`` the recalibrated ``p``."""
    x = _logit(np.asarray(p, dtype=np.float64))
    q = recalibrated(np.asarray(p, dtype=np.float64), calibration)
    design = np.column_stack([np.ones_like(x), x])
    info = design.T @ (design * (q * (1 - q))[:, None])
    return np.asarray(np.linalg.pinv(info), dtype=np.float64)


def expected_auc(ranks: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Expected AUC of scores with ``ranks`` when the labels are independent Bernoulli(``q``), per
    column of ``q`` (rows, k): the expected Mann-Whitney U over the expected number of pairs,
    ``(r.q - E[n1 (n1 + 1) / 2]) / E[n1 n0]`` with ``E[n1^2] = mu^2 + sum q (1 - q)``."""
    q = q if q.ndim == 2 else q[:, None]
    mu, var = q.sum(axis=0), (q * (1 - q)).sum(axis=0)
    u = ranks @ q - (mu * mu + var + mu) / 2
    pairs = mu * len(ranks) - mu * mu - var
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(pairs > 0, u / pairs, np.nan), dtype=np.float64)


def calibration_shifts(p: np.ndarray, calibration: tuple[float, float], cov: np.ndarray, samples: int,
                       rng: np.random.Generator, rows: int = SHIFT_ROWS) -> np.ndarray:
    """How much the expected AUC of the scores ``p`` moves when the recalibration map's ``(a, b)`` is
    drawn from its sampling law ``N(calibration, cov)`` instead of taken at the fit: one value per
    draw (``samples``), to be added to the label draws of :func:`estimate`. Computed on at most
    ``rows`` evenly spaced rows of the window (the expected AUC hardly depends on the row count)."""
    p = np.asarray(p, dtype=np.float64)
    if len(p) < 2:
        return np.zeros(samples)
    part = p[::max(1, len(p) // rows)]
    ranks, x = rankdata(part), _logit(part)
    a, b = calibration
    point = expected_auc(ranks, recalibrated(part, calibration))
    params = rng.multivariate_normal([a, b], cov, size=samples, method="svd")
    out = []
    for start in range(0, samples, 50):  # chunks bound the (rows, 50) probability matrix
        ab = params[start:start + 50]
        q = 1 / (1 + np.exp(-(ab[:, 0] + x[:, None] * ab[:, 1])))
        out.append(expected_auc(ranks, q) - point)
    return np.nan_to_num(np.concatenate(out))


def recalibrated(p: np.ndarray, calibration: tuple[float, float] | None) -> np.ndarray:
    """``p`` through :func:`recalibration`'s map (unchanged when None)."""
    if calibration is None:
        return np.asarray(p, dtype=np.float64)
    a, b = calibration
    return 1 / (1 + np.exp(-(a + b * _logit(np.asarray(p, dtype=np.float64)))))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)
