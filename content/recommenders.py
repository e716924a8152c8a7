"""Product recommenders with one contract: ``fit(interactions, catalogue)`` then ``scores(history)``.

``interactions`` and ``history`` are sparse users x products matrices of implicit-feedback weights
(views, carts, purchases weighted by configs/recommend.yaml). ``scores`` returns a dense score per
history row and product, higher is better; :func:`top_k` turns scores into ranked product indices
(ties broken by popularity, so a user without history gets the popular products). Because every
recommender scores from a history row, not from a stored user id, serving can score the live profile
(what a visitor viewed a second ago) with the same fitted object.

* :class:`Popularity`: total interaction weight per product (the baseline).
* :class:`ItemKNN`: item-to-item cosine neighbours from ``implicit`` (``CosineRecommender``).
* :class:`ALS`: implicit-feedback matrix factorisation (``implicit.als``); a history's user factors
  are recomputed from the history at scoring time.
* :class:`ContentBased`: category shares and a log-normal price fit of the user's own history, times
  the product's popularity within its category.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class CatalogueArrays:
    """Per product index: category index and price (EUR)."""

    category: np.ndarray
    price: np.ndarray


class Recommender(Protocol):
    name: str

    def fit(self, interactions: sp.csr_matrix, catalogue: CatalogueArrays) -> Recommender: ...

    def scores(self, history: sp.csr_matrix) -> np.ndarray: ...


def _popularity(interactions: sp.csr_matrix) -> np.ndarray:
    return np.asarray(interactions.sum(axis=0)).ravel()


@dataclass
class Popularity:
    """Everyone gets the products with the most interaction weight in training."""

    name: str = "popularity"
    popularity_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, interactions: sp.csr_matrix, catalogue: CatalogueArrays) -> Popularity:
        self.popularity_ = _popularity(interactions)
        return self

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (history.shape[0], len(self.popularity_))).copy()


@dataclass
class ItemKNN:
    """Item-to-item cosine similarity over users (``neighbours`` kept per item); a history's score for a
    product is the similarity-weighted sum of the history's products."""

    neighbours: int = 50
    name: str = "item_knn"
    similarity_: Any = None

    def fit(self, interactions: sp.csr_matrix, catalogue: CatalogueArrays) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=self.neighbours, num_threads=1)
        with warnings.catch_warnings():  # implicit converts its own transposed copy and says so
            warnings.simplefilter("ignore")
            model.fit(sp.csr_matrix(interactions), show_progress=False)
        self.similarity_ = model.similarity.tocsr()
        return self

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((history @ self.similarity_).todense())


@dataclass
class ALS:
    """Alternating least squares on implicit feedback (Hu, Koren and Volinsky 2008) via ``implicit``."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 2.0
    seed: int = 0
    name: str = "als"
    model_: Any = None

    def fit(self, interactions: sp.csr_matrix, catalogue: CatalogueArrays) -> ALS:
        from implicit.als import AlternatingLeastSquares

        self.model_ = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                              iterations=self.iterations, alpha=self.alpha,
                                              random_state=self.seed, num_threads=1)
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads slow it
            self.model_.fit(sp.csr_matrix(interactions, dtype=np.float32), show_progress=False)
        return self

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        if history.shape[0] == 0:
            return np.zeros((0, self.model_.item_factors.shape[0]))
        users = self.model_.recalculate_user(np.arange(history.shape[0]),
                                             sp.csr_matrix(history, dtype=np.float32))
        out: np.ndarray = np.asarray(users).reshape(history.shape[0], -1) @ self.model_.item_factors.T
        return out


@dataclass
class ContentBased:
    """Category and price affinity from the user's own history: score = P(category | history, smoothed)
    x exp(-(log price - user's mean log price)^2 / 2 price_sd^2) x popularity share within category."""

    price_sd: float = 0.6  # log-price spread of a user's taste (natural log units)
    smoothing: float = 0.5  # pseudo-weight per category
    name: str = "content"
    category_: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    log_price_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    within_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, interactions: sp.csr_matrix, catalogue: CatalogueArrays) -> ContentBased:
        self.category_ = np.asarray(catalogue.category, dtype=np.int64)
        self.log_price_ = np.log(np.asarray(catalogue.price, dtype=float))
        pop = _popularity(interactions) + 1.0
        self.within_ = pop / np.bincount(self.category_, weights=pop)[self.category_]
        return self

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        n_cat = int(self.category_.max()) + 1
        n = len(self.category_)
        onehot = sp.csr_matrix((np.ones(n), (np.arange(n), self.category_)), shape=(n, n_cat))
        per_cat = np.asarray((history @ onehot).todense()) + self.smoothing
        share = per_cat / per_cat.sum(axis=1, keepdims=True)
        total = np.asarray(history.sum(axis=1)).ravel()
        mean_log = np.where(total > 0, (history @ self.log_price_) / np.maximum(total, 1e-12),
                            float(np.median(self.log_price_)))
        price_fit = np.exp(-0.5 * ((self.log_price_[None, :] - mean_log[:, None]) / self.price_sd) ** 2)
        out: np.ndarray = share[:, self.category_] * price_fit * self.within_[None, :]
        return out


def top_k(scores: np.ndarray, k: int, popularity: np.ndarray,
          exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the ``k`` best products per row, best first; ties (and empty histories) broken by
    ``popularity``; products with a non-zero entry in ``exclude`` (e.g. already bought) never shown."""
    tie = popularity / (popularity.max() + 1.0) * 1e-9 * (np.abs(scores).max(axis=1, keepdims=True) + 1.0)
    ranked = scores + tie
    if exclude is not None:
        ranked[exclude.nonzero()] = -np.inf
    k = min(k, ranked.shape[1])
    part = np.argpartition(-ranked, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(ranked, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def make_recommender(name: str, params: dict[str, Any]) -> Recommender:
    """A recommender by name (popularity, item_knn, als, content) with its parameters."""
    kinds: dict[str, type] = {"popularity": Popularity, "item_knn": ItemKNN, "als": ALS,
                              "content": ContentBased}
    if name not in kinds:
        raise KeyError(name)
    recommender: Recommender = kinds[name](**params)
    return recommender
