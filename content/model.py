"""A fitted recommender with its product index: what MLflow stores and serving loads.

:meth:`RecommenderModel.recommend` scores a history given as ``{product_id: weight}`` (the live
profile's recent views, carts and purchases), so what a visitor viewed a second ago counts at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel

from content.recommenders import Recommender, top_k
from training.model import silent_warnings


@dataclass
class RecommenderModel:
    """A fitted recommender, the product ids of its columns and their training popularity."""

    recommender: Recommender
    products: list[str]
    popularity: np.ndarray
    weights: dict[str, float]  # event type -> implicit-feedback weight used in training

    @property
    def name(self) -> str:
        return self.recommender.name

    def history_matrix(self, histories: Iterable[Mapping[str, float]]) -> sp.csr_matrix:
        """One row per history; unknown product ids are ignored."""
        index = self._index()
        rows, cols, vals = [], [], []
        n = 0
        for n, history in enumerate(histories, start=1):
            for product, weight in history.items():
                col = index.get(product)
                if col is not None and weight > 0:
                    rows.append(n - 1)
                    cols.append(col)
                    vals.append(float(weight))
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, len(self.products)))

    def _index(self) -> dict[str, int]:
        """product_id -> column, built once per loaded model (a request must not rebuild it)."""
        index: dict[str, int] | None = self.__dict__.get("_product_index")
        if index is None:
            index = self.__dict__["_product_index"] = {p: i for i, p in enumerate(self.products)}
        return index

    def recommend(self, history: Mapping[str, float], k: int,
                  exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` best (product_id, score) for one history, never a product of ``exclude``."""
        matrix = self.history_matrix([history])
        excluded = self.history_matrix([{p: 1.0 for p in exclude}]) if exclude else None
        scores = self.recommender.scores(matrix)
        best = top_k(scores, k, self.popularity, excluded if excluded is not None and excluded.nnz else None
                     )[0]
        return [(self.products[i], float(scores[0, i])) for i in best if np.isfinite(scores[0, i])]

    def save(self, path: Path) -> None:
        joblib.dump(self, path)

    @staticmethod
    def load(path: Path | str) -> RecommenderModel:
        model = joblib.load(path)
        if not isinstance(model, RecommenderModel):
            raise TypeError(f"{path} is not a propensity recommender")
        return model


with silent_warnings():  # predict is untyped on purpose: MLflow's type-hint advice is noise here

    class RecommenderPyfunc(PythonModel):
        """MLflow pyfunc: rows (history_id, product_id, weight) -> (history_id, rank, product_id, score)."""

        ARTIFACT = "recommender"
        K = 10

        def load_context(self, context: Any) -> None:
            self.model = RecommenderModel.load(context.artifacts[self.ARTIFACT])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            frame = pd.DataFrame(model_input)
            k = int((params or {}).get("k", self.K))
            out = []
            for history_id, rows in frame.groupby("history_id", sort=False):
                history = dict(zip(rows["product_id"], rows["weight"].astype(float), strict=True))
                for rank, (product, score) in enumerate(self.model.recommend(history, k), start=1):
                    out.append({"history_id": history_id, "rank": rank, "product_id": product,
                                "score": score})
            return pd.DataFrame(out, columns=["history_id", "rank", "product_id", "score"])


def load_recommender(model_uri: str) -> RecommenderModel:
    """The :class:`RecommenderModel` behind an MLflow URI (``models:/propensity-recommender@item_knn``)."""
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(wrapper, RecommenderPyfunc):
        raise TypeError(f"{model_uri} is not a propensity recommender")
    return wrapper.model
