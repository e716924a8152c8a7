"""The trained artefact: preprocessing + estimator (+ calibration) as one picklable object.

:class:`ConversionModel` is what serving, the audit and the demo load. Batch scoring
(:meth:`ConversionModel.predict_proba`) and the serving fast path (:meth:`ConversionModel.predict_rows`
and ``predict_one``, no pandas: numpy rows from precomputed column positions, then ``inplace_predict``
on a single-threaded booster copy for XGBoost) compute the same numbers; it implements the
:class:`training.scorer.Scorer` protocol serving relies on. In MLflow it is wrapped as a
pyfunc (:class:`ConversionPyfunc`) whose ``predict`` returns probabilities, not class labels.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
import xgboost as xgb
from mlflow.pyfunc import PythonModel

from training.booster_calls import BoosterCalls, booster_calls
from training.calibration import Calibrator
from training.families import get_family
from training.preprocess import FeatureEncoder, Frame
from training.scorer import Reason, booster_reasons, contribution_reasons, explainer_reasons, tree_reasons
from training.tree_arrays import TreeArrays, tree_arrays

EPS = 1e-12
SMALL_BATCH = 2048  # rows up to which one thread predicts faster than a pool
# Rows up to which the compiled walk (training.tree_arrays) is used: 1.3-6x faster than XGBoost's
# single-threaded calls from 1 to 1,024 rows (bench_walk); /predict_batch holds at most 1,000.
ARRAY_BATCH = 1024
_CACHES = ("_one_booster", "_booster_calls", "_tree_arrays", "_explainer", "_raw_groups")

@dataclass
class ConversionModel:
    """Preprocessing and a fitted estimator of one family, scoring P(convert) from snapshot columns.

    ``pre_transform`` is an optional fitted object with ``transform(frame) -> frame`` adding columns
    (e.g. ``features.segments.segmenter.Segmenter``) and ``assign_one(mapping) -> dict`` for single rows; it
    runs before the encoder in both paths.
    """

    family: str
    encoder: FeatureEncoder
    estimator: Any
    calibrator: Calibrator | None = None
    pre_transform: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """The raw snapshot columns the model consumes (numeric then categorical)."""
        return self.encoder.numeric + self.encoder.categorical

    @property
    def transformed_feature_names(self) -> list[str]:
        """Names of the columns of :meth:`transform` (one-hot columns are ``name=value``)."""
        return self.encoder.feature_names_out

    @property
    def booster(self) -> xgb.Booster | None:
        """The XGBoost booster for the xgboost family, else None."""
        return self.estimator if isinstance(self.estimator, xgb.Booster) else None

    def _prepared(self, frame: Frame) -> Frame:
        if self.pre_transform is None:
            return frame
        snapshot = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
        return self.pre_transform.transform(snapshot)  # pre-transforms get polars, like a snapshot

    def transform(self, frame: Frame) -> np.ndarray:
        """The float32 matrix the estimator sees, one row per frame row."""
        return self.encoder.transform(self._prepared(frame))

    def _raw_proba(self, X: np.ndarray) -> np.ndarray:
        arrays = self.tree_arrays() if len(X) <= ARRAY_BATCH else None
        if arrays is not None:
            return arrays.predict(X)
        if self.booster is not None and len(X) <= SMALL_BATCH:
            calls = self.booster_calls()
            p = calls.predict(X) if calls is not None else \
                self._single_booster().inplace_predict(X, validate_features=False)
            return np.asarray(p, dtype=np.float64)
        return get_family(self.family).predict(self.estimator, X)

    def predict_proba(self, frame: Frame) -> np.ndarray:
        """P(convert) per row (1-D float64); extra columns are ignored, absent ones count as missing."""
        return self.predict_matrix(self.transform(frame))

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """P(convert) per row of an already transformed matrix (see :meth:`transform`)."""
        p = self._raw_proba(X)
        return self.calibrator.apply(p) if self.calibrator is not None else p

    def margin(self, frame: Frame) -> np.ndarray:
        """The uncalibrated log-odds per row (XGBoost's margin; logit of P for other families)."""
        X = self.transform(frame)
        if self.booster is not None:
            return np.asarray(self.booster.inplace_predict(X, predict_type="margin", validate_features=False),
                              dtype=np.float64)
        p = np.clip(self._raw_proba(X), EPS, 1 - EPS)
        return np.log(p / (1 - p))

    def _row(self, features: Mapping[str, Any]) -> np.ndarray:
        if self.pre_transform is not None:
            features = {**features, **self.pre_transform.assign_one(features)}
        return self.encoder.encode_one(features)

    def _single_booster(self) -> xgb.Booster:
        one = self.__dict__.get("_one_booster")
        if one is None:
            one = self.estimator.copy()
            one.set_param({"nthread": 1})
            self.__dict__["_one_booster"] = one
        return one

    def booster_calls(self) -> BoosterCalls | None:
        """The single-threaded booster's C calls without the wrapper's per-call cost (None: not an
        XGBoost model, or a library whose numbers differ; then the public API serves)."""
        if "_booster_calls" not in self.__dict__:
            self.__dict__["_booster_calls"] = (booster_calls(self._single_booster(), self.encoder.n_columns_)
                                               if self.booster is not None else None)
        calls: BoosterCalls | None = self.__dict__["_booster_calls"]
        return calls

    def tree_arrays(self) -> TreeArrays | None:
        """The booster as numpy node arrays for small batches (None: not an XGBoost model, or one
        :func:`training.tree_arrays.tree_arrays` cannot reproduce exactly)."""
        if "_tree_arrays" not in self.__dict__:
            booster = self._single_booster() if self.booster is not None else None
            self.__dict__["_tree_arrays"] = tree_arrays(booster) if booster is not None else None
        arrays: TreeArrays | None = self.__dict__["_tree_arrays"]
        return arrays

    def prepare_serving(self) -> None:
        """Build the serving caches now (at start-up, before the heap is frozen), not on the first request."""
        if self.booster is not None:
            self.booster_calls()
            arrays = self.tree_arrays()
            # the reasons' compiled kernels too: a first call compiles them (~2 s on a busy machine)
            contribution_reasons(self, np.zeros((1, len(self.transformed_feature_names) + 1)), 1)
            if arrays is not None:
                tree_reasons(self, arrays, np.zeros((1, arrays.n_columns), np.float32), 1)

    def predict_one(self, features: Mapping[str, Any]) -> float:
        """P(convert) of one profile given as a mapping (missing keys are missing values)."""
        return float(self.predict_rows([features])[0])

    def _rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if self.pre_transform is not None:
            rows = [{**f, **self.pre_transform.assign_one(f)} for f in rows]
        return self.encoder.encode_rows(rows)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(convert) of profiles given as mappings, scored as one batch (equals :meth:`predict_one`)."""
        return self.predict_matrix(self._rows(rows))

    def reasons_rows(self, rows: Sequence[Mapping[str, Any]], top_k: int,
                     approximate: bool = False) -> list[list[Reason]]:
        """Top ``top_k`` raw features by |contribution| (log-odds) per profile: XGBoost TreeSHAP, or
        Saabas path attribution when ``approximate``; SHAP (fairness.explain) for other families."""
        return self.score_rows(rows, top_k, approximate)[1]

    def score_rows(self, rows: Sequence[Mapping[str, Any]], top_k: int,
                   approximate: bool = False) -> tuple[np.ndarray, list[list[Reason]]]:
        """:meth:`predict_rows` and :meth:`reasons_rows` of the same rows, encoding them once."""
        if not rows:
            return np.empty(0), []
        if self.booster is None:
            probs = self.predict_rows(rows)
            reasons = explainer_reasons(self, rows, top_k, approximate) if top_k > 0 else [[] for _ in rows]
            return probs, reasons
        X = self._rows(rows)
        arrays = self.tree_arrays() if approximate and top_k > 0 and len(X) <= ARRAY_BATCH else None
        if arrays is not None:  # probabilities and ranked Saabas contributions in one compiled call
            p, reasons = tree_reasons(self, arrays, X, top_k)
            probs = self.calibrator.apply(p) if self.calibrator is not None else p
            return probs, reasons
        reasons = booster_reasons(self, X, top_k, approximate) if top_k > 0 else [[] for _ in rows]
        return self.predict_matrix(X), reasons

    def margin_one(self, features: Mapping[str, Any]) -> float:
        """The uncalibrated log-odds of one profile (see :meth:`margin`)."""
        row = self._row(features)
        if self.booster is not None:
            m = self._single_booster().inplace_predict(row, predict_type="margin", validate_features=False)
            return float(m[0])
        p = min(max(float(self._raw_proba(row)[0]), EPS), 1 - EPS)
        return float(np.log(p / (1 - p)))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for cache in _CACHES:  # rebuilt on first use
            state.pop(cache, None)
        return state

    def save(self, path: str) -> None:
        """Pickle the model to ``path``."""
        with open(path, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def load(path: str) -> ConversionModel:
        """Unpickle a model written by :meth:`save`."""
        from propensity.legacy import legacy_module_names

        with open(path, "rb") as fh, legacy_module_names():  # a model saved before the carve loads too
            model = pickle.load(fh)
        if not isinstance(model, ConversionModel):
            raise TypeError(f"{path} does not hold a ConversionModel")
        return model


@contextlib.contextmanager
def silent_warnings() -> Iterator[None]:
    """Drop warnings shown inside (MLflow forces its "add type hints" advice with a "once" filter)."""
    shown = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        yield
    finally:
        warnings.showwarning = shown


with silent_warnings():  # predict has no type hints on purpose: the model signature validates inputs

    class ConversionPyfunc(PythonModel):
        """MLflow pyfunc wrapper: ``predict`` returns P(convert) per row of a snapshot frame."""

        ARTIFACT = "conversion_model"

        def load_context(self, context: Any) -> None:
            self.model = ConversionModel.load(context.artifacts[self.ARTIFACT])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            if not isinstance(model_input, (pd.DataFrame, pl.DataFrame)):
                model_input = pd.DataFrame(model_input)
            return self.model.predict_proba(model_input)


def load_conversion_model(model_uri: str) -> ConversionModel:
    """The :class:`ConversionModel` behind an MLflow URI (``models:/NAME@alias``, ``models:/NAME/V``, ...).

    Uses the current MLflow tracking/registry URI (``mlflow.set_tracking_uri``).
    """
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    wrapper = pyfunc.unwrap_python_model()
    if not isinstance(wrapper, ConversionPyfunc):
        raise TypeError(f"{model_uri} is not a propensity conversion model")
    return wrapper.model
