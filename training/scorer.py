"""What every servable model promises: the :class:`Scorer` protocol, and the row-wise reasons.

Serving only gathers requests into batches and calls these methods; the model decides how to score
(one ``inplace_predict`` on a single-threaded booster for XGBoost, the family's own predictor
otherwise, a Fairlearn rule on top for a mitigated model) and how to explain (XGBoost
``pred_contribs``, exact TreeSHAP or the faster Saabas path attribution; SHAP through
:class:`fairness.explain.Explainer` for the other families). :class:`training.model.ConversionModel`
and :class:`fairness.mitigation.MitigatedModel` implement it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numba
import numpy as np

from training.preprocess import Frame

Reason = dict[str, Any]  # {"feature": raw feature name, "contribution": log-odds}


@runtime_checkable
class Scorer(Protocol):
    """P(convert) for many rows, for one row, and the reasons of rows."""

    def predict_proba(self, frame: Frame) -> np.ndarray:
        """P(convert) per row of a snapshot frame (1-D float64)."""
        ...

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(convert) per profile given as mappings (missing keys are missing values), one batch."""
        ...

    def predict_one(self, features: Mapping[str, Any]) -> float:
        """P(convert) of one profile; equals ``predict_rows([features])[0]``."""
        ...

    def reasons_rows(self, rows: Sequence[Mapping[str, Any]], top_k: int,
                     approximate: bool = False) -> list[list[Reason]]:
        """The ``top_k`` raw features with the largest absolute contribution (log-odds) per row."""
        ...

    def score_rows(self, rows: Sequence[Mapping[str, Any]], top_k: int,
                   approximate: bool = False) -> tuple[np.ndarray, list[list[Reason]]]:
        """``predict_rows`` and ``reasons_rows`` of the same rows in one pass (what serving calls)."""
        ...


def booster_reasons(model: Any, X: np.ndarray, top_k: int, approximate: bool) -> list[list[Reason]]:
    """Reasons of the rows of an encoded matrix from an XGBoost model's ``pred_contribs``; one-hot
    columns (``name=value``) and missing indicators are summed back to their raw feature."""
    import xgboost as xgb

    calls = model.booster_calls()
    if calls is not None:  # the same C calls without the wrapper's ~0.3 ms (training.booster_calls)
        out = calls.contributions(X, approximate)
    else:  # one thread: on a busy 2-core box OpenMP start-up dominates a few rows by far
        out = model._single_booster().predict(xgb.DMatrix(X, nthread=1), pred_contribs=True,
                                              approx_contribs=approximate, validate_features=False)
    return contribution_reasons(model, out, top_k)


def contribution_reasons(model: Any, contributions: np.ndarray, top_k: int) -> list[list[Reason]]:
    """Reasons of rows of encoded-column contributions (the last column the bias, left out)."""
    names, column_raw = _raw_groups(model)
    return _reasons(names, *_rank(np.asarray(contributions, dtype=np.float64), column_raw, len(names), top_k))


def tree_reasons(model: Any, arrays: Any, X: np.ndarray, top_k: int) -> tuple[np.ndarray, list[list[Reason]]]:
    """(uncalibrated probabilities, reasons) of the rows of ``X`` by the model's
    :class:`training.tree_arrays.TreeArrays`: Saabas contributions ranked in the same compiled
    call, the numbers of ``predict_with_contributions`` then :func:`contribution_reasons`."""
    names, column_raw = _raw_groups(model)
    probabilities, ranked, values, counts = arrays.predict_ranked(X, column_raw, len(names), top_k)
    return probabilities, _reasons(names, ranked, values, counts)


def _reasons(names: list[str], ranked: np.ndarray, values: np.ndarray,
             counts: np.ndarray) -> list[list[Reason]]:
    return [[{"feature": names[i], "contribution": v} for i, v in zip(idx[:c], vals[:c], strict=True)]
            for idx, vals, c in zip(ranked.tolist(), values.tolist(), counts.tolist(), strict=True)]


@numba.njit(nogil=True)
def _rank(contributions: np.ndarray, column_raw: np.ndarray, n_raw: int,
          top_k: int) -> tuple:  # pragma: no cover - compiled; tested through contribution_reasons
    """Per row: the columns' contributions summed into their raw features (in column order), then
    the ``top_k`` raw features by |total|, largest first, ties in raw order, zeros left out:
    (raw indices, totals, how many) per row."""
    n = contributions.shape[0]
    ranked = np.zeros((n, max(top_k, 1)), np.intp)
    values = np.zeros((n, max(top_k, 1)), np.float64)
    counts = np.zeros(n, np.intp)
    totals = np.zeros(n_raw, np.float64)
    for r in range(n):
        totals[:] = 0.0
        for j in range(column_raw.shape[0]):
            totals[column_raw[j]] += contributions[r, j]
        for s in range(top_k):
            best, best_abs = -1, 0.0
            for i in range(n_raw):
                a = abs(totals[i])
                if a > best_abs:  # strictly: ties keep the lower raw index, zeros are never taken
                    best, best_abs = i, a
            if best < 0:
                break
            ranked[r, s], values[r, s] = best, totals[best]
            counts[r] += 1
            totals[best] = 0.0  # taken
    return ranked, values, counts


def explainer_reasons(model: Any, rows: Sequence[Mapping[str, Any]], top_k: int,
                      approximate: bool) -> list[list[Reason]]:
    """Reasons through SHAP (:class:`fairness.explain.Explainer`, cached on the model), row by row."""
    explainer = model.__dict__.get("_explainer")
    if explainer is None:
        from fairness.explain import Explainer

        explainer = model.__dict__["_explainer"] = Explainer.for_model(model)
    return [[{"feature": r["feature"], "contribution": r["contribution"]}
             for r in explainer.reasons_one(row, top_k, approximate)] for row in rows]


def _raw_groups(model: Any) -> tuple[list[str], np.ndarray]:
    """Raw feature names, and the raw feature (index into the names) of every encoded column, so
    a row's column contributions sum into its raw features' totals (cached on the model)."""
    cached = model.__dict__.get("_raw_groups")
    if cached is None:
        raw = [n.split("=", 1)[0].removesuffix("__missing") for n in model.transformed_feature_names]
        names = list(dict.fromkeys(raw))
        column_raw = np.asarray([names.index(n) for n in raw], dtype=np.intp)
        cached = model.__dict__["_raw_groups"] = (names, column_raw)
    return cached
