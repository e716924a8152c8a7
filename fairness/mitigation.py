"""Fairlearn mitigation of a conversion model, packaged as a servable :class:`ConversionModel`.

- ``threshold_optimizer`` (post-processing): group-specific (randomised) thresholds on the base
  model's P(convert), fitted under a demographic-parity or equalized-odds constraint;
- ``exponentiated_gradient`` (reduction): a randomised ensemble of classifiers refitted on the
  model's encoded matrix under the constraint (XGBoost for tree families, logistic regression for
  the linear one).

A :class:`MitigatedModel` *is* a ``ConversionModel`` (same pickling, pyfunc and
``load_conversion_model``), so it is registered and served like any other. Its score is the
probability that the fair decision rule selects the user (not a calibrated conversion
probability); :meth:`MitigatedModel.decide` draws the 0/1 decisions the audit judges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin

from fairness.audit import group_labels
from training.model import ConversionModel
from training.preprocess import Frame, category_column, category_key


class _Scores(ClassifierMixin, BaseEstimator):
    """A prefitted scikit-learn estimator over a one-column matrix of base scores."""

    def __init__(self) -> None:
        self.fitted_ = True

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Scores:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        s = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1 - s, s])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class MitigatedModel(ConversionModel):
    """A base :class:`ConversionModel` with a fitted Fairlearn mitigator (see the module docstring)."""

    method: str = "threshold_optimizer"
    sensitive_feature: str = ""
    mitigator: Any = None
    base: ConversionModel | None = field(default=None, repr=False)

    @property
    def booster(self) -> xgb.Booster | None:
        return None  # the score is not the booster's margin: reasons come from SHAP of the base model

    @property
    def feature_names(self) -> list[str]:
        names = super().feature_names
        return names + [self.sensitive_feature] if self.method == "threshold_optimizer" else names

    def _inputs(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        assert self.base is not None
        if self.method == "threshold_optimizer":
            groups = group_labels(category_column(frame, self.sensitive_feature))
            return self.base.predict_proba(frame)[:, None], groups
        return self.base.transform(frame), np.empty(0)

    def _pmf(self, X: np.ndarray, groups: np.ndarray) -> np.ndarray:
        if self.method == "threshold_optimizer":
            pmf = self.mitigator._pmf_predict(X, sensitive_features=groups)
        else:
            pmf = self.mitigator._pmf_predict(X)
        return np.asarray(pmf[:, 1], dtype=np.float64)

    def predict_proba(self, frame: Frame) -> np.ndarray:
        """Probability that the fair rule selects each row (share 0..1)."""
        return self._pmf(*self._inputs(frame))

    def decide(self, frame: Frame, random_state: int = 0) -> np.ndarray:
        """0/1 decisions of the (randomised) fair rule, reproducible with ``random_state``."""
        X, groups = self._inputs(frame)
        if self.method == "threshold_optimizer":
            out = self.mitigator.predict(X, sensitive_features=groups, random_state=random_state)
        else:
            out = self.mitigator.predict(X, random_state=random_state)
        return np.asarray(out).astype(int)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probability that the fair rule selects each profile (share 0..1), one batch."""
        assert self.base is not None
        if self.method == "threshold_optimizer":
            groups = np.array([category_key(r.get(self.sensitive_feature)) or "unknown" for r in rows],
                              dtype=object)
            return self._pmf(self.base.predict_rows(rows)[:, None], groups)
        return self._pmf(np.vstack([self.base._row(r) for r in rows]), np.empty(0))

    def margin(self, frame: Frame) -> np.ndarray:
        return _logit(self.predict_proba(frame))

    def margin_one(self, features: Mapping[str, Any]) -> float:
        return float(_logit(np.array([self.predict_one(features)]))[0])


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def mitigate(model: ConversionModel, frame: Frame, y: np.ndarray, sensitive_feature: str, *,
             method: str = "threshold_optimizer", constraint: str = "demographic_parity",
             objective: str = "balanced_accuracy_score", seed: int = 0, max_iter: int = 20) -> MitigatedModel:
    """Fit a Fairlearn mitigator for ``model`` on ``frame`` (a snapshot with ``sensitive_feature``) and
    labels ``y``; returns the servable :class:`MitigatedModel`.

    ``constraint``: "demographic_parity" or "equalized_odds". ``objective`` (ThresholdOptimizer):
    a Fairlearn objective name. ``max_iter``: ExponentiatedGradient iterations (refits).
    """
    y = np.asarray(y).astype(int)
    mitigated = MitigatedModel(f"{model.family}+{method}", model.encoder, model.estimator, model.calibrator,
                               model.pre_transform, dict(model.metadata), method=method,
                               sensitive_feature=sensitive_feature, base=model)
    groups = group_labels(category_column(frame, sensitive_feature))
    if method == "threshold_optimizer":
        from fairlearn.postprocessing import ThresholdOptimizer

        optimizer = ThresholdOptimizer(estimator=_Scores(), constraints=constraint, objective=objective,
                                       prefit=True, predict_method="predict_proba")
        optimizer.fit(model.predict_proba(frame)[:, None], y, sensitive_features=groups)
        mitigated.mitigator = optimizer
    elif method == "exponentiated_gradient":
        from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
        from sklearn.linear_model import LogisticRegression

        linear = model.family.startswith("logistic")
        estimator = LogisticRegression(max_iter=500) if linear else xgb.XGBClassifier(
            n_estimators=50, max_depth=4, learning_rate=0.2, n_jobs=1, random_state=seed, verbosity=0)
        moment = DemographicParity() if constraint == "demographic_parity" else EqualizedOdds()
        reduction = ExponentiatedGradient(estimator, moment, max_iter=max_iter)
        reduction.fit(model.transform(frame), y, sensitive_features=groups)
        mitigated.mitigator = reduction
    else:
        raise ValueError(f"unknown mitigation method {method!r}")
    mitigated.metadata.update({"mitigation": method, "constraint": constraint,
                               "sensitive_feature": sensitive_feature})
    return mitigated
