"""The fitted segmenter: engagement segment + behavioural cluster of each snapshot row.

Follows the scikit-learn contract: ``__init__`` stores the config only, ``fit`` learns the
attributes ending in ``_`` and returns ``self``, ``transform`` never learns. Training and serving
load the same saved object; :meth:`Segmenter.assign_one` is the single-row path of serving and
gives exactly what :meth:`Segmenter.transform` gives for that row.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin

from features.segments.clusters import (
    ClusterModel,
    cluster_label,
    default_cluster_features,
    fit_cluster_model,
)
from features.segments.config import SegmentsConfig, load_segments_config
from features.segments.engagement import segment_expr, segment_for
from propensity.errors import DataError

SCORE_COLUMN = "engagement_score"


def as_polars(frame: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    """A polars view of a polars or pandas frame."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame)
    raise DataError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def frame_digest(frame: pl.DataFrame) -> str:
    """A content digest of a frame (column names and row hashes; stable for one polars version)."""
    h = hashlib.sha256(",".join(frame.columns).encode())
    if frame.height:
        h.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class Segmenter(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Adds ``segment`` (engagement score thresholds) and ``cluster`` ('0', '1', ..., 'noise').

    Parameters
    ----------
    config:
        The segments configuration; ``None`` reads ``configs/segments.yaml`` at fit time.

    Fitted attributes: ``config_``, ``features_`` (clustered columns), ``missing_features_``
    (configured but absent from the fitted frame), ``cluster_model_``, ``n_clusters_``,
    ``cluster_names_``, ``fitted_on_digest_``, ``n_rows_fit_``.
    """

    def __init__(self, config: SegmentsConfig | None = None) -> None:
        self.config = config

    def fit(self, snapshot: pl.DataFrame | pd.DataFrame, y: Any = None, *,
            digest: str | None = None) -> Segmenter:
        """Learn the cluster preprocessing and model from ``snapshot``.

        ``digest`` identifies the snapshot (e.g. ``features.batch.dataset`` meta "digest"); when absent a
        content digest of the frame is computed.
        """
        frame = as_polars(snapshot)
        cfg = self.config if self.config is not None else load_segments_config()
        requested = cfg.clustering.features or default_cluster_features(frame.columns)
        self.features_ = [name for name in requested if name in frame.columns]
        self.missing_features_ = [name for name in requested if name not in frame.columns]
        self.cluster_model_: ClusterModel = fit_cluster_model(frame, cfg.clustering, self.features_)
        self.n_clusters_ = self.cluster_model_.k
        self.cluster_names_ = [cluster_label(c) for c in range(self.n_clusters_)]
        self.config_ = cfg
        self.fitted_on_digest_ = digest or frame_digest(frame)
        self.n_rows_fit_ = frame.height
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_model_"):
            raise DataError("the segmenter is not fitted: call fit(snapshot) first")

    def cluster_codes(self, snapshot: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """Cluster codes (int, -1 = noise) of each row."""
        self._check_fitted()
        frame = as_polars(snapshot)
        absent = [name for name in self.features_ if name not in frame.columns]
        if absent:
            raise DataError(f"snapshot lacks the clustered column '{absent[0]}' the segmenter was fitted on")
        return self.cluster_model_.assign_frame(frame)

    def transform(self, snapshot: pl.DataFrame | pd.DataFrame) -> Any:
        """``snapshot`` with ``segment`` and ``cluster`` (str) columns added, same frame type back.

        ``segment`` is null when the snapshot has no ``engagement_score`` column.
        """
        frame = as_polars(snapshot)
        codes = self.cluster_codes(frame)
        names = np.array(["noise"] + self.cluster_names_, dtype=object)[codes + 1]
        segment = (segment_expr(pl.col(SCORE_COLUMN), self.config_) if SCORE_COLUMN in frame.columns
                   else pl.lit(None, dtype=pl.String))
        out = frame.with_columns(segment.alias("segment"), pl.Series("cluster", names, dtype=pl.String))
        return out.to_pandas() if isinstance(snapshot, pd.DataFrame) else out

    def assign_one(self, features: Mapping[str, Any]) -> dict[str, str]:
        """``{"segment", "cluster"}`` of one profile (no pandas). Missing keys count as missing values;
        a missing score gets the lowest segment."""
        self._check_fitted()
        model = self.cluster_model_
        x = np.array([[_number(features.get(name)) for name in model.features]], dtype=np.float64)
        code = int(model.assign(model.standardise(x))[0])
        return {"segment": segment_for(_number(features.get(SCORE_COLUMN)), self.config_),
                "cluster": cluster_label(code)}

    def save(self, path: str | Path) -> Path:
        """Write the fitted segmenter (joblib) to ``path``."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Segmenter:
        """Read a segmenter written by :meth:`save`."""
        from propensity.legacy import legacy_module_names

        try:
            with legacy_module_names():  # a segmenter saved before the carve loads too
                obj = joblib.load(Path(path))
        except FileNotFoundError:
            raise DataError(f"{path}: segmenter file not found") from None
        if not isinstance(obj, cls):
            raise DataError(f"{path}: not a saved Segmenter (found {type(obj).__name__})")
        return obj
