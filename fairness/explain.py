"""SHAP explanations of a :class:`training.model.ConversionModel`, in the model's margin (log-odds).

- XGBoost: the booster's own TreeSHAP (``pred_contribs``; exact, path-dependent), the fast path
  for one row in serving;
- other tree models (hist gradient boosting, random forest): ``shap.TreeExplainer``;
- logistic regression: the linear SHAP values ``w_j · (x_j - mean_j)`` with the background mean
  (the same numbers as ``shap.LinearExplainer`` with an independent masker).

Contributions are per transformed column; reason codes and the global ranking sum them back to
raw snapshot features (one-hot columns ``name=value`` and ``name__missing`` indicators belong to
``name``). Calibration is monotone and applied after the margin, so it is not part of the
explanation: contributions + base value = the uncalibrated margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from training.preprocess import Frame


@dataclass
class Contributions:
    """SHAP values (rows × transformed columns) with the base value, in ``units``."""

    values: np.ndarray
    base: float
    columns: list[str]
    units: str  # "log-odds" or "probability" (scikit-learn random forest)


def raw_feature_groups(model: Any) -> dict[str, list[int]]:
    """Transformed column positions of each raw feature of ``model`` (its encoder's column groups)."""
    groups: dict[str, list[int]] = model.encoder.column_groups()
    return groups


class Explainer:
    """Explains one ConversionModel; build with :meth:`for_model` once, reuse for every row."""

    def __init__(self, model: Any, kind: str, background_mean: np.ndarray | None = None) -> None:
        self.model = model
        self.kind = kind  # "xgboost", "tree" or "linear"
        self.columns = list(model.transformed_feature_names)
        groups = raw_feature_groups(model)
        self.raw_names = list(groups)
        self._owner = np.zeros(len(self.columns), dtype=np.int64)
        for k, name in enumerate(self.raw_names):
            self._owner[groups[name]] = k
        self._background_mean = background_mean
        self._tree: Any = None
        if kind == "xgboost":
            booster: xgb.Booster = model.booster.copy()
            booster.set_param({"nthread": 1})  # one row: OpenMP start-up costs more than the work
            self._booster = booster

    @classmethod
    def for_model(cls, model: Any, background: Frame | None = None) -> Explainer:
        """An explainer of ``model``; ``background`` (a snapshot frame) sets the linear model's mean.

        Without background a linear model's reference point is the training mean of the scaled
        numeric columns (0 by construction) and "no category" for one-hot columns. A mitigated
        model (``fairness.mitigation.MitigatedModel``) is explained through its base model.
        """
        base = getattr(model, "base", None)
        if base is not None:
            model = base
        if getattr(model, "booster", None) is not None:
            return cls(model, "xgboost")
        from sklearn.linear_model import LogisticRegression

        if isinstance(model.estimator, LogisticRegression):
            n = len(model.transformed_feature_names)
            mean = model.transform(background).mean(axis=0) if background is not None else np.zeros(n)
            return cls(model, "linear", np.asarray(mean, dtype=np.float64))
        return cls(model, "tree")

    def contributions(self, X: np.ndarray) -> Contributions:
        """SHAP values of the rows of a transformed matrix ``X`` (see ``ConversionModel.transform``)."""
        X = np.asarray(X, dtype=np.float32)
        if self.kind == "xgboost":
            out = np.asarray(self.model.booster.predict(xgb.DMatrix(X), pred_contribs=True,
                                                        validate_features=False), dtype=np.float64)
            base = float(out[0, -1]) if len(out) else float("nan")
            return Contributions(out[:, :-1], base, self.columns, "log-odds")
        if self.kind == "linear":
            assert self._background_mean is not None
            est = self.model.estimator
            w = np.asarray(est.coef_[0], dtype=np.float64)
            values = (X.astype(np.float64) - self._background_mean) * w
            base = float(self._background_mean @ w + est.intercept_[0])
            return Contributions(values, base, self.columns, "log-odds")
        return self._tree_contributions(X)

    def _tree_contributions(self, X: np.ndarray) -> Contributions:
        import shap
        from sklearn.ensemble import RandomForestClassifier

        if self._tree is None:
            self._tree = shap.TreeExplainer(self.model.estimator)
        values = self._tree.shap_values(X, check_additivity=False)
        expected = np.atleast_1d(self._tree.expected_value)
        if isinstance(values, list) or np.ndim(values) == 3:  # per-class output: keep class 1
            values = values[1] if isinstance(values, list) else values[:, :, 1]
            expected = expected[1:]
        units = "probability" if isinstance(self.model.estimator, RandomForestClassifier) else "log-odds"
        return Contributions(np.asarray(values, dtype=np.float64), float(expected[0]), self.columns, units)

    def by_raw_feature(self, values: np.ndarray) -> np.ndarray:
        """Contributions summed per raw feature (rows × :attr:`raw_names`)."""
        values = np.atleast_2d(values)
        out = np.zeros((values.shape[0], len(self.raw_names)))
        np.add.at(out.T, self._owner, values.T)
        return out

    def reasons_one(self, features: Mapping[str, Any], k: int = 3,
                    approximate: bool = False) -> list[dict[str, Any]]:
        """Top-``k`` raw features of one profile by |contribution|.

        Returns ``[{"feature", "value", "contribution"}]`` sorted by |contribution| descending.

        ``value`` is the raw value from ``features`` (None when absent); ``contribution`` is the
        signed log-odds contribution. For XGBoost this is one ``pred_contribs`` call on one row;
        ``approximate`` uses XGBoost's Saabas path attribution (``approx_contribs``: exact additivity,
        not Shapley values, ~10x faster on deep ensembles).
        """
        features = self._with_pre_transform(features)
        row: np.ndarray = self.model.encoder.encode_one(features)
        if self.kind == "xgboost":
            out = self._booster.predict(xgb.DMatrix(row, nthread=1), pred_contribs=True,
                                        approx_contribs=approximate, validate_features=False)
            values = np.asarray(out[0, :-1], dtype=np.float64)
        else:
            values = self.contributions(row).values[0]
        totals = self.by_raw_feature(values)[0]
        return top_reasons(self.raw_names, totals, features, k)

    def reasons(self, frame: Frame, k: int = 3) -> list[list[dict[str, Any]]]:
        """:meth:`reasons_one` for every row of a snapshot frame."""
        prepared = self.model._prepared(frame)
        totals = self.by_raw_feature(self.contributions(self.model.encoder.transform(prepared)).values)
        rows = prepared.to_dicts() if hasattr(prepared, "to_dicts") else prepared.to_dict("records")
        return [top_reasons(self.raw_names, t, r, k) for t, r in zip(totals, rows, strict=True)]

    def _with_pre_transform(self, features: Mapping[str, Any]) -> Mapping[str, Any]:
        pre = getattr(self.model, "pre_transform", None)
        return {**features, **pre.assign_one(features)} if pre is not None else features


def top_reasons(names: Sequence[str], totals: np.ndarray, features: Mapping[str, Any],
                k: int) -> list[dict[str, Any]]:
    """The ``k`` names with the largest |total|, by |total| descending (zero contributions left out)."""
    order = np.argsort(-np.abs(totals), kind="stable")[:k]
    return [{"feature": names[i], "value": _plain(features.get(names[i])), "contribution": float(totals[i])}
            for i in order if totals[i] != 0.0]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def global_importance(explainer: Explainer, contributions: Contributions) -> list[dict[str, Any]]:
    """Raw features ranked by mean |SHAP| (contributions summed per raw feature first)."""
    per_raw = np.abs(explainer.by_raw_feature(contributions.values)).mean(axis=0)
    order = np.argsort(-per_raw, kind="stable")
    return [{"feature": explainer.raw_names[i], "mean_abs_shap": float(per_raw[i])} for i in order]
