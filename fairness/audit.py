"""Group fairness metrics of a scored population: pure functions over arrays, no I/O.

Selection: a row is *selected* (targeted by the content engine) when its score is at or above the
selection threshold: the score of the ``top_share``-th highest row, or a fixed probability.
Per group (Fairlearn ``MetricFrame``): count, selection rate, TPR, FPR, precision, ROC AUC and
calibration (mean predicted probability vs observed conversion rate). Groups with fewer than
``min_group_size`` rows are reported with status "insufficient data" and left out of the
between-group metrics (demographic parity difference/ratio, equalized odds difference, equal
opportunity difference), which are computed over the remaining groups only.

With ``intervals`` set ("wilson" or "bootstrap") every between-group metric also gets a confidence
interval that covers it with probability at least ``level`` and always contains the observed value
(:mod:`fairness.intervals`: simultaneous per-group intervals combined conservatively, decisions held
fixed; a plain bootstrap of a max-min spread is biased and was dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import precision_score, roc_auc_score

from fairness.intervals import Intervals, cell_counts, disparity_intervals

MISSING_GROUP = "unknown"
OK, INSUFFICIENT = "ok", "insufficient data"
METRICS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
           "equal_opportunity_difference")


def selection_threshold(y_score: np.ndarray, top_share: float | None = 0.2,
                        probability: float | None = None) -> float:
    """The score at or above which a row is selected.

    ``probability`` (a fixed P(convert)) wins when given; else the score of the
    ``ceil(top_share * n)``-th highest row (ties at the threshold are all selected).
    """
    if probability is not None:
        return float(probability)
    if top_share is None or not 0 < top_share <= 1:
        raise ValueError("top_share must be in (0, 1]")
    scores = np.sort(np.asarray(y_score, dtype=np.float64))[::-1]
    if len(scores) == 0:
        return math.inf
    k = max(1, math.ceil(top_share * len(scores)))
    return float(scores[k - 1])


def _auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else math.nan


def _precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(precision_score(y_true, y_pred, zero_division=np.nan)) if y_pred.any() else math.nan


def _rate(fn: Any) -> Any:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(fn(y_true, y_pred)) if len(y_true) else math.nan
    return metric


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(true_positive_rate(y_true, y_pred)) if (y_true == 1).any() else math.nan


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(false_positive_rate(y_true, y_pred)) if (y_true == 0).any() else math.nan


def group_labels(values: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Group names as strings; null/NaN becomes "unknown"."""
    out = []
    for v in list(values):
        missing = v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
        out.append(MISSING_GROUP if missing else str(v))
    return np.array(out, dtype=object)


def intersect(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise combined group name of several sensitive columns ("F|25-34")."""
    return np.array(["|".join(parts) for parts in zip(*columns, strict=True)], dtype=object)


@dataclass
class FeatureAudit:
    """The audit of one sensitive feature (or an intersection): a row per group, the disparity metrics."""

    feature: str
    groups: list[dict[str, Any]]
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (low, high)
    # metric -> group -> rate -> [low, high]: the simultaneous per-group intervals behind ``intervals``
    group_intervals: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def judged(self) -> list[dict[str, Any]]:
        """The groups large enough to be judged."""
        return [g for g in self.groups if g["status"] == OK]


@dataclass
class Audit:
    """Fairness audit of one scored population."""

    threshold: float
    top_share: float | None
    n_rows: int
    overall: dict[str, float]
    features: dict[str, FeatureAudit] = field(default_factory=dict)

    def metric_table(self) -> dict[str, dict[str, float]]:
        """``{METRIC: {FEATURE: value}}``."""
        return {m: {f: a.metrics[m] for f, a in self.features.items()} for m in METRICS}


def metric_intervals(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, judged: Sequence[str],
                     n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                     method: str = "wilson") -> dict[str, tuple[float, float]]:
    """Intervals of the between-group metrics over the ``judged`` groups, each covering its metric
    with probability at least ``level`` (:func:`fairness.intervals.disparity_intervals`: simultaneous
    per-group intervals, Wilson or bootstrap percentile, combined conservatively; decisions held
    fixed). ``n_boot`` and ``seed`` matter only for ``method="bootstrap"``. Empty with fewer than two
    judged groups."""
    return _intervals(y_true, y_pred, groups, judged, n_boot, level, seed, method).metrics


def _intervals(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, judged: Sequence[str],
               n_boot: int, level: float, seed: int, method: str) -> Intervals:
    if len(judged) < 2 or not np.isin(groups, list(judged)).any():
        return Intervals()
    cells = cell_counts(y_true, y_pred, np.asarray(groups), list(judged))
    return disparity_intervals(cells, level, method, n_boot, seed)


def feature_audit(name: str, y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray,
                  groups: np.ndarray, min_group_size: int, intervals: str | None = None, level: float = 0.95,
                  n_boot: int = 2000, seed: int = 0) -> FeatureAudit:
    """Per-group table and disparity metrics of one sensitive feature (see the module docstring)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    frame = MetricFrame(
        metrics={"selection_rate": _rate(selection_rate), "tpr": _tpr, "fpr": _fpr, "precision": _precision},
        y_true=y_true, y_pred=y_pred, sensitive_features=pd.Series(groups, name=name))
    scored = MetricFrame(
        metrics={"auc": _auc, "mean_predicted": lambda _y, s: float(np.mean(s)),
                 "observed_rate": lambda y, _s: float(np.mean(y))},
        y_true=y_true, y_pred=y_score, sensitive_features=pd.Series(groups, name=name))
    counts = pd.Series(groups).value_counts()
    by_group = frame.by_group.join(scored.by_group)
    rows: list[dict[str, Any]] = []
    for group, values in by_group.iterrows():
        count = int(counts[group])
        rates = {str(k): float(v) for k, v in values.items()}
        rows.append({"group": str(group), "count": count,
                     "status": OK if count >= min_group_size else INSUFFICIENT, **rates,
                     "calibration_gap": rates["mean_predicted"] - rates["observed_rate"]})
    rows.sort(key=lambda r: -int(r["count"]))
    judged = [r for r in rows if r["status"] == OK]
    names = [r["group"] for r in judged]
    found = (_intervals(y_true, y_pred, np.asarray(groups), names, n_boot, level, seed, intervals)
             if intervals else Intervals())
    boxes = {metric: {group: {rate: [float(low[i]), float(high[i])] for rate, (low, high) in rates.items()}
                      for i, group in enumerate(names)} for metric, rates in found.groups.items()}
    return FeatureAudit(name, rows, disparity_metrics(judged), found.metrics, boxes)


def _spread(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) - min(finite) if len(finite) >= 2 else math.nan


def disparity_metrics(groups: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Between-group metrics from per-group rates (Fairlearn's "between_groups" definitions).

    demographic parity difference = max - min selection rate; ratio = min / max; equal opportunity
    difference = max - min TPR; equalized odds difference = the larger of the TPR and FPR spreads.
    With fewer than two judged groups every metric is NaN (nothing to compare).
    """
    rates = [float(g["selection_rate"]) for g in groups]
    if len(rates) < 2:
        return {m: math.nan for m in METRICS}
    top = max(rates)
    tpr = _spread([float(g["tpr"]) for g in groups])
    fpr = _spread([float(g["fpr"]) for g in groups])
    return {
        "demographic_parity_difference": top - min(rates),
        "demographic_parity_ratio": min(rates) / top if top > 0 else math.nan,
        "equalized_odds_difference": float(np.nanmax([tpr, fpr])) if not (math.isnan(tpr) and math.isnan(fpr))
        else math.nan,
        "equal_opportunity_difference": tpr,
    }


def audit_arrays(y_true: np.ndarray, y_score: np.ndarray, sensitive: Mapping[str, Sequence[Any] | np.ndarray],
                 *, top_share: float | None = 0.2, probability: float | None = None, min_group_size: int = 50,
                 intersections: Sequence[Sequence[str]] = (), y_pred: np.ndarray | None = None,
                 intervals: str | None = None, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> Audit:
    """Audit scores ``y_score`` (P(convert)) against labels ``y_true`` over each sensitive column.

    ``y_pred`` (0/1 decisions, e.g. of a mitigated model) replaces the threshold rule when given.
    ``intersections`` lists combinations of sensitive columns audited as one more feature
    ("gender*age_band", groups "F|25-34"). ``intervals`` ("wilson" or "bootstrap"; None: none) adds
    an interval per disparity metric covering it with probability >= ``level`` (``n_boot`` resamples
    seeded by ``seed`` for the bootstrap).
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_pred is None:
        threshold = selection_threshold(y_score, top_share, probability)
        y_pred = (y_score >= threshold).astype(int)
        share = None if probability is not None else top_share
    else:
        threshold, share = math.nan, None
        y_pred = np.asarray(y_pred).astype(int)
    columns = {name: group_labels(values) for name, values in sensitive.items()}
    for combo in intersections:
        columns["*".join(combo)] = intersect([columns[c] for c in combo])
    overall = {"selection_rate": float(y_pred.mean()) if len(y_pred) else math.nan,
               "auc": _auc(y_true, y_score),
               "accuracy": float((y_pred == y_true).mean()) if len(y_pred) else math.nan,
               "tpr": _tpr(y_true, y_pred), "fpr": _fpr(y_true, y_pred),
               "mean_predicted": float(y_score.mean()) if len(y_score) else math.nan,
               "observed_rate": float(y_true.mean()) if len(y_true) else math.nan}
    audit = Audit(threshold, share, len(y_true), overall)
    for name, groups in columns.items():
        audit.features[name] = feature_audit(name, y_true, y_score, y_pred, groups, min_group_size,
                                             intervals, level, n_boot, seed)
    return audit
