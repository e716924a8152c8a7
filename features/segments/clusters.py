"""Behavioural clusters: standardised features -> K-Means (k by silhouette) or DBSCAN (eps by knee).

Preprocessing learned at fit time: missing values are filled (recency columns in days/hours with
the longest observed value, since "never happened" is the longest possible wait; others with the
median), features that are never negative go through ``log1p`` (counts and money are heavy-tailed),
then each column is standardised to mean 0 and standard deviation 1.

Assignment is one rule for every row, fitted or new: K-Means -> nearest centre; DBSCAN -> the
cluster of the nearest core point when it is within ``eps``, else noise (-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from features.registry import BY_NAME, FEATURES, SEGMENT_FEATURES
from features.segments.config import ClusteringConfig
from propensity.errors import DataError

NOISE = -1
_RECENCY_UNITS = {"days", "hours"}
_CHUNK_ROWS = 200_000


def cluster_label(code: int) -> str:
    """The public name of a cluster code: '0', '1', ... and 'noise' for -1."""
    return "noise" if code == NOISE else str(code)


def default_cluster_features(columns: list[str]) -> list[str]:
    """Numeric, non-sensitive registry columns (segment score included) present in ``columns``."""
    candidates = [f.name for f in FEATURES + SEGMENT_FEATURES if f.kind == "numeric" and not f.sensitive]
    present = set(columns)
    return [name for name in candidates if name in present]


def feature_matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """The columns ``features`` as a float64 matrix (rows x features), nulls as NaN."""
    if not features:
        return np.empty((frame.height, 0))
    return frame.select([pl.col(c).cast(pl.Float64) for c in features]).to_numpy().astype(np.float64)


def choose_k(z: np.ndarray, k_range: tuple[int, int], random_state: int = 0) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` (inclusive) with the best mean silhouette of K-Means on ``z``.

    Returns ``(k, {k: silhouette})``; ks that leave fewer than two distinct clusters are skipped.
    """
    scores: dict[int, float] = {}
    n_distinct = len(np.unique(z, axis=0))
    for k in range(k_range[0], min(k_range[1], n_distinct - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit_predict(z)
        if len(np.unique(labels)) > 1:
            scores[k] = float(silhouette_score(z, labels, random_state=random_state))
    if not scores:
        return 1, scores
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def knee_index(values: np.ndarray) -> int:
    """Index of the knee of an ascending curve: the point farthest below the chord from first to last
    (both axes scaled to [0, 1]), the "kneedle" construction."""
    n = len(values)
    if n < 3 or values[-1] == values[0]:
        return n - 1
    x = np.linspace(0.0, 1.0, n)
    y = (values - values[0]) / (values[-1] - values[0])
    return int(np.argmax(x - y))


def kdistance_eps(z: np.ndarray, min_samples: int) -> float:
    """DBSCAN ``eps`` from the k-distance heuristic: the knee of the sorted distances of every point
    to its ``min_samples``-th nearest neighbour (the point itself counted, as DBSCAN does)."""
    k = min(min_samples, len(z))
    dist, _ = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    kdist = np.sort(dist[:, -1])
    return float(kdist[knee_index(kdist)]) or float(kdist[kdist > 0].min(initial=1.0))


@dataclass
class ClusterModel:
    """Fitted preprocessing and clustering (see the module docstring). Picklable."""

    features: list[str]
    fill: np.ndarray
    log_mask: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    method: str
    k: int
    centers: np.ndarray | None = None
    eps: float | None = None
    core_labels: np.ndarray | None = None
    core_index: NearestNeighbors | None = None
    silhouette: dict[int, float] = field(default_factory=dict)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Raw feature matrix -> standardised matrix (fill, log1p, centre, scale)."""
        x = np.where(np.isnan(x), self.fill, x)
        x = np.where(self.log_mask, np.log1p(np.maximum(x, 0.0)), x)
        return (x - self.mean) / self.scale

    def assign(self, z: np.ndarray) -> np.ndarray:
        """Cluster codes (int64, -1 = noise) of standardised rows."""
        out = np.empty(len(z), dtype=np.int64)
        for start in range(0, len(z), _CHUNK_ROWS):
            out[start:start + _CHUNK_ROWS] = self._assign_chunk(z[start:start + _CHUNK_ROWS])
        return out

    def _assign_chunk(self, z: np.ndarray) -> np.ndarray:
        if self.method == "kmeans":
            assert self.centers is not None
            d2 = ((z[:, None, :] - self.centers[None, :, :]) ** 2).sum(axis=2)
            return d2.argmin(axis=1)
        assert self.core_index is not None and self.core_labels is not None and self.eps is not None
        dist, idx = self.core_index.kneighbors(z, n_neighbors=1)
        return np.where(dist[:, 0] <= self.eps, self.core_labels[idx[:, 0]], NOISE)

    def assign_frame(self, frame: pl.DataFrame) -> np.ndarray:
        return self.assign(self.standardise(feature_matrix(frame, self.features)))


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size=size, replace=False))


def fit_cluster_model(frame: pl.DataFrame, cfg: ClusteringConfig, features: list[str]) -> ClusterModel:
    """Learn preprocessing and clusters from ``frame`` on the columns ``features``.

    Cluster codes are renumbered by size (0 = largest). Raises :class:`DataError` when there is
    nothing to cluster. Runs single-threaded: on samples of this size (``fit_sample``) OpenMP
    start-up and contention cost far more than they save (measured 47x slower on a busy 2-core box).
    """
    with threadpool_limits(limits=1):
        return _fit_cluster_model(frame, cfg, features)


def _fit_cluster_model(frame: pl.DataFrame, cfg: ClusteringConfig, features: list[str]) -> ClusterModel:
    if not features:
        raise DataError("no clustering feature is present in the snapshot")
    if frame.height < 3:
        raise DataError(f"clustering needs at least 3 rows, the snapshot has {frame.height}")
    rng = np.random.default_rng(cfg.random_state)
    fit_rows = _sample(frame.height, cfg.fit_sample, rng)
    x = feature_matrix(frame[fit_rows] if len(fit_rows) < frame.height else frame, features)
    fill = np.zeros(len(features))
    for j, name in enumerate(features):
        col = x[:, j][~np.isnan(x[:, j])]
        if len(col):
            unit = BY_NAME[name].unit if name in BY_NAME else ""
            fill[j] = col.max() if unit in _RECENCY_UNITS else float(np.median(col))
    filled = np.where(np.isnan(x), fill, x)
    log_mask = (filled.min(axis=0) >= 0) if cfg.log_features else np.zeros(len(features), dtype=bool)
    logged = np.where(log_mask, np.log1p(np.maximum(filled, 0.0)), filled)
    mean = logged.mean(axis=0)
    scale = logged.std(axis=0)
    scale[scale == 0] = 1.0
    model = ClusterModel(features, fill, log_mask, mean, scale, cfg.method, k=1)
    z = model.standardise(x)
    if cfg.method == "kmeans":
        k = cfg.k
        if k is None:
            sil_rows = _sample(len(z), cfg.silhouette_sample, rng)
            k, model.silhouette = choose_k(z[sil_rows], cfg.k_range, cfg.random_state)
        k = min(k, len(np.unique(z, axis=0)))
        km = KMeans(n_clusters=k, n_init=4, random_state=cfg.random_state).fit(z)
        model.centers = km.cluster_centers_
    else:
        eps = cfg.eps if cfg.eps is not None else kdistance_eps(z, cfg.min_samples)
        db = DBSCAN(eps=eps, min_samples=cfg.min_samples).fit(z)
        core = db.core_sample_indices_
        if len(core) == 0:
            raise DataError(f"DBSCAN found no core point (eps={eps:.3g}, min_samples={cfg.min_samples}); "
                            "lower clustering.min_samples or raise clustering.eps")
        model.eps = eps
        model.core_labels = db.labels_[core].astype(np.int64)
        model.core_index = NearestNeighbors(n_neighbors=1).fit(z[core])
    _renumber_by_size(model, model.assign(z))
    return model


def _renumber_by_size(model: ClusterModel, codes: np.ndarray) -> None:
    found, counts = np.unique(codes[codes != NOISE], return_counts=True)
    order = found[np.argsort(-counts, kind="stable")]
    if model.method == "kmeans":
        assert model.centers is not None
        unused = [c for c in range(len(model.centers)) if c not in set(order.tolist())]
        model.centers = model.centers[np.concatenate([order, unused]).astype(np.intp)]
        model.k = len(model.centers)
    else:
        assert model.core_labels is not None
        mapping: dict[Any, int] = {int(old): new for new, old in enumerate(order)}
        model.core_labels = np.array([mapping.get(int(c), NOISE) for c in model.core_labels], dtype=np.int64)
        model.k = len(order)
