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
    names, groups = _raw_groups(model)
    totals = np.asarray(contributions, dtype=np.float64)[:, :-1] @ groups  # rows x raw features
    # The top_k raw features by |total| per row (ties keep the raw order; zeros left out), all
    # rows ranked in one numpy call.
    order = np.argsort(-np.abs(totals), axis=1, kind="stable")[:, :top_k]
    values = np.take_along_axis(totals, order, axis=1)
    return [[{"feature": names[i], "contribution": v} for i, v in zip(idx, vals, strict=True) if v != 0.0]
            for idx, vals in zip(order.tolist(), values.tolist(), strict=True)]


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
    """Raw feature names, and the 0/1 matrix (encoded columns x raw features) that sums a row's
    column contributions into its raw features' totals (cached on the model)."""
    cached = model.__dict__.get("_raw_groups")
    if cached is None:
        raw = [n.split("=", 1)[0].removesuffix("__missing") for n in model.transformed_feature_names]
        names = list(dict.fromkeys(raw))
        groups = np.zeros((len(raw), len(names)))
        groups[np.arange(len(raw)), [names.index(n) for n in raw]] = 1.0
        cached = model.__dict__["_raw_groups"] = (names, groups)
    return cached
