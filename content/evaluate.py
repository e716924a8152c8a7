"""Interactions from a shop's events, the time split, and ranking metrics (pure functions).

Metrics over the users who bought at least once in the test window, with ``R`` the set of products a
user bought there and ``top`` the recommender's first ``k`` products:

* ``recall@k`` = |top ∩ R| / |R|, averaged over users;
* ``ndcg@k`` = sum over hits at 0-based position i of 1 / log2(i + 2), divided by the same sum for a
  perfect list (min(|R|, k) hits first), averaged over users;
* ``coverage@k`` = share of the catalogue that appears in at least one user's top k.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from propensity.errors import DataError


@dataclass(frozen=True)
class RecSplit:
    """Training interactions (users x products weights before ``cutoff``) and test purchases after it."""

    users: list[str]
    products: list[str]
    train: sp.csr_matrix
    test: sp.csr_matrix  # 1 where the user bought the product in [cutoff, cutoff + test_days)
    cutoff: datetime
    n_interactions: int


def read_shop_events(shop_dir: Path) -> pl.DataFrame:
    """Clean product events of a generated shop: one row per event_id, user, time and product set."""
    path = shop_dir / "events.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run `propensity generate` first")
    return (pl.read_parquet(path, columns=["event_id", "user_id", "timestamp", "event", "product_id"])
            .drop_nulls(["event_id", "user_id", "timestamp", "product_id"]).unique("event_id", keep="first"))


def time_split(events: pl.DataFrame, products: list[str], weights: dict[str, float],
               test_days: int) -> RecSplit:
    """Weights of ``weights``' event types before the cut-off (midnight ``test_days`` before the last
    event's day ends); purchases in the ``test_days`` after it."""
    if events.height == 0:
        raise DataError("no product events in the shop")
    last: datetime = events["timestamp"].max()  # type: ignore[assignment]
    cutoff = datetime(last.year, last.month, last.day, tzinfo=last.tzinfo) + timedelta(days=1 - test_days)
    users = sorted(events["user_id"].unique().to_list())
    user_enum, product_enum = pl.Enum(users), pl.Enum(products)
    weighted = events.filter(pl.col("event").is_in(list(weights))).with_columns(
        pl.col("event").replace_strict(weights, return_dtype=pl.Float64).alias("w"))
    train = weighted.filter(pl.col("timestamp") < cutoff)
    test = events.filter((pl.col("timestamp") >= cutoff) & (pl.col("event") == "purchase"))

    def matrix(frame: pl.DataFrame, values: np.ndarray) -> sp.csr_matrix:
        # Enum codes are the positions in ``users`` / ``products`` (an unknown product is an error)
        rows = frame["user_id"].cast(user_enum).to_physical().to_numpy().astype(np.int64)
        cols = frame["product_id"].cast(product_enum).to_physical().to_numpy().astype(np.int64)
        m = sp.csr_matrix((values, (rows, cols)), shape=(len(users), len(products)))
        m.sum_duplicates()
        return m

    test_m = matrix(test, np.ones(test.height))
    test_m.data[:] = 1.0
    return RecSplit(users, products, matrix(train, train["w"].to_numpy()), test_m, cutoff, train.height)


def ranking_metrics(top: np.ndarray, relevant: sp.csr_matrix, n_products: int) -> dict[str, float]:
    """recall, ndcg and coverage of ranked product indices ``top`` (users x k) against ``relevant``
    (users x products, non-zero = relevant); users without a relevant product are skipped."""
    k = top.shape[1]
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    recalls, ndcgs = [], []
    for row in range(top.shape[0]):
        wanted = relevant.indices[relevant.indptr[row]:relevant.indptr[row + 1]]
        if len(wanted) == 0:
            continue
        hit = np.isin(top[row], wanted)
        recalls.append(hit.sum() / len(wanted))
        ndcgs.append((hit * discount).sum() / discount[: min(len(wanted), k)].sum())
    shown = np.unique(top[np.diff(relevant.indptr) > 0])
    return {"recall": float(np.mean(recalls)) if recalls else float("nan"),
            "ndcg": float(np.mean(ndcgs)) if ndcgs else float("nan"),
            "coverage": len(shown) / n_products, "users": float(len(recalls))}


def oracle_top(oracle: pl.DataFrame, users: list[str], products: list[str], k: int) -> np.ndarray:
    """The oracle's ideal top-k product indices per user (from product_oracle.parquet)."""
    product_index = {p: i for i, p in enumerate(products)}
    best = (oracle.filter(pl.col("rank") <= k).sort(["user_id", "rank"])
            .group_by("user_id", maintain_order=True).agg(pl.col("product_id")))
    by_user = dict(zip(best["user_id"].to_list(), best["product_id"].to_list(), strict=True))
    out = np.zeros((len(users), k), dtype=np.int64)
    for row, user in enumerate(users):
        ids = by_user.get(user)
        if ids is None or len(ids) < k:
            raise DataError(f"product oracle has fewer than {k} products for user {user}")
        out[row] = [product_index[p] for p in ids]
    return out
