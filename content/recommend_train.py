"""The ``recommend train`` stage: time split of a shop, fit each recommender, rank metrics next to the
oracle's ideal ranking, an MLflow run per recommender, one registered model with an alias per variant.

Registered as ``tracking.registered_model`` (default ``propensity-recommender``): each recommender
is a version whose alias is its name (``@popularity``, ``@item_knn``, ...); ``champion`` points at
the best ``recall@k``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import polars as pl
from pydantic import Field

from content.evaluate import RecSplit, oracle_top, ranking_metrics, read_shop_events, time_split
from content.model import RecommenderModel, RecommenderPyfunc
from content.recommenders import CatalogueArrays, make_recommender, top_k
from propensity.config import StrictModel, load_config
from propensity.errors import ConfigError, DataError
from training.registry import register
from training.tracking import git_commit, setup_tracking

Progress = Any


class RecTracking(StrictModel):
    uri: str | None = None  # None: sqlite:///<work_dir>/mlflow.db
    artifact_location: str | None = None  # None: <work_dir>/mlartifacts
    experiment: str = "propensity-recommenders"
    registered_model: str = "propensity-recommender"


class RecommendConfig(StrictModel):
    """``configs/recommend.yaml``."""

    k: int = Field(10, ge=1, le=50)
    test_days: int = Field(14, ge=1)
    weights: dict[str, float] = Field(default_factory=lambda: {
        "product_view": 1.0, "add_to_cart": 3.0, "remove_from_cart": 0.5, "purchase": 5.0})
    recommenders: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "popularity": {}, "item_knn": {"neighbours": 100}, "content": {}})
    tracking: RecTracking = RecTracking()


def load_recommend_config(path: str | Path | None = None, **overrides: object) -> RecommendConfig:
    """``configs/recommend.yaml`` (or ``path``) with CLI overrides (None values are ignored)."""
    return load_config(RecommendConfig, path, "recommend.yaml", overrides=dict(overrides))


@dataclass
class RecResult:
    name: str
    metrics: dict[str, float]
    fit_seconds: float
    version: str
    run_id: str


def catalogue_arrays(shop_dir: Path) -> tuple[list[str], CatalogueArrays]:
    path = shop_dir / "catalogue.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: generate the shop again (`propensity generate`) "
                        f"to get a catalogue")
    cat = pl.read_parquet(path)
    codes = {c: i for i, c in enumerate(sorted(cat["category"].unique().to_list()))}
    category = np.array([codes[c] for c in cat["category"].to_list()])
    return cat["product_id"].to_list(), CatalogueArrays(category, cat["price"].to_numpy())


def evaluate_oracle(split: RecSplit, rows: np.ndarray, shop_dir: Path, k: int) -> dict[str, float]:
    """The oracle's ideal ranking (true next-purchase probability) scored like a recommender."""
    path = shop_dir / "product_oracle.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: generate the shop again (`propensity generate`)")
    top = oracle_top(pl.read_parquet(path), [split.users[r] for r in rows], split.products, k)
    return ranking_metrics(top, split.test[rows], len(split.products))


def train_recommenders(shop_dir: Path, cfg: RecommendConfig | None = None,
                       say: Progress = None) -> tuple[dict[str, float], list[RecResult]]:
    """Fit and evaluate every configured recommender; returns (oracle metrics, per-recommender results)."""
    cfg = cfg or load_recommend_config()
    say = say or (lambda _msg: None)
    for name in cfg.recommenders:
        try:
            make_recommender(name, cfg.recommenders[name])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"recommenders.{name}: {exc}") from None
    products, catalogue = catalogue_arrays(shop_dir)
    split = time_split(read_shop_events(shop_dir), products, cfg.weights, cfg.test_days)
    rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if len(rows) == 0:
        raise DataError("no purchases after the cut-off: lower test_days or generate more days")
    say(f"recommend: {split.n_interactions} training interactions before {split.cutoff:%Y-%m-%d}, "
        f"{len(rows)} users bought afterwards")
    oracle = evaluate_oracle(split, rows, shop_dir, cfg.k)
    tracking = cfg.tracking
    uri, experiment_id = setup_tracking(tracking.uri, tracking.experiment, tracking.artifact_location)
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    results = []
    for name, params in cfg.recommenders.items():
        t0 = time.perf_counter()
        recommender = make_recommender(name, params).fit(split.train, catalogue)
        fit_seconds = time.perf_counter() - t0
        top = top_k(recommender.scores(split.train[rows]), cfg.k, popularity)
        metrics = ranking_metrics(top, split.test[rows], len(products))
        model = RecommenderModel(recommender, products, popularity, dict(cfg.weights))
        run_id, version = _track(model, params, metrics, oracle, split, cfg, experiment_id, fit_seconds)
        results.append(RecResult(name, metrics, fit_seconds, version, run_id))
        say(f"recommend: {name}: recall@{cfg.k} {metrics['recall']:.3f} (oracle {oracle['recall']:.3f}), "
            f"ndcg@{cfg.k} {metrics['ndcg']:.3f}, coverage {metrics['coverage']:.3f}, "
            f"fit {fit_seconds:.1f} s")
    best = max(results, key=lambda r: r.metrics["recall"])
    mlflow.tracking.MlflowClient(uri).set_registered_model_alias(cfg.tracking.registered_model, "champion",
                                                                 best.version)
    return oracle, results


def _track(model: RecommenderModel, params: dict[str, Any], metrics: dict[str, float],
           oracle: dict[str, float], split: RecSplit, cfg: RecommendConfig, experiment_id: str,
           fit_seconds: float) -> tuple[str, str]:
    k = cfg.k
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"recommend-{model.name}") as run:
        mlflow.log_params({"recommender": model.name, "k": k, "test_days": cfg.test_days,
                           "cutoff": split.cutoff.isoformat(), **{f"param_{p}": v for p, v in params.items()},
                           **{f"weight_{e}": w for e, w in cfg.weights.items()}})
        mlflow.log_metrics({f"recall_at_{k}": metrics["recall"], f"ndcg_at_{k}": metrics["ndcg"],
                            f"coverage_at_{k}": metrics["coverage"], "eval_users": metrics["users"],
                            f"oracle_recall_at_{k}": oracle["recall"], f"oracle_ndcg_at_{k}": oracle["ndcg"],
                            f"recall_share_of_oracle_at_{k}": metrics["recall"] / oracle["recall"],
                            "fit_seconds": fit_seconds, "train_interactions": float(split.n_interactions)})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "recommender.joblib"
            model.save(path)
            info = mlflow.pyfunc.log_model(name="recommender", python_model=RecommenderPyfunc(),
                                           artifacts={RecommenderPyfunc.ARTIFACT: str(path)},
                                           pip_requirements=["implicit>=0.7.3", "scipy", "numpy", "pandas"])
        tags = {"recommender": model.name, "run_id": run.info.run_id, "git_commit": git_commit() or "unknown",
                f"recall_at_{k}": f"{metrics['recall']:.4f}"}
        version = register(info.model_uri, cfg.tracking.registered_model, model.name, tags)
    return run.info.run_id, version
