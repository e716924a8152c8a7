"""The demo's content stage: render content for a shop user, and an A/B of two recommenders on the shop.

:func:`recommender_ab` fits the two recommenders on the shop's events before the recommenders' cut-off
(``configs/recommend.yaml``: the last ``test_days`` are held out), scores them against the product
oracle's ideal ranking (recall@10 on the held-out purchases), then shows a carousel of ``k`` products
to ``visitors`` shop users split by the serving hash (:func:`content.serve.recommender_variant`),
logs every exposure with :class:`content.serve.ContentExposureLog`, lets the visitors respond by their
true tastes (:mod:`experiments.visitor_sim`) and analyses the log with the A/B pipeline
(:func:`experiments.pipeline.analyze_file`: click-through, conversion and revenue per user).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from content.components import load_components
from content.evaluate import RecSplit, oracle_top, ranking_metrics, read_shop_events, time_split
from content.model import RecommenderModel
from content.online import read_catalogue
from content.recommend_train import RecommendConfig, catalogue_arrays, load_recommend_config
from content.recommenders import make_recommender, top_k
from content.serve import ContentExposureLog, ContentSetup, recommender_variant, render_slots
from experiments.config import ExperimentsConfig, RecommenderDemo, load_experiments_config
from experiments.visitor_sim import VisitorModel, respond, response_events

EXPERIMENT = "demo_recommenders"
SALT = "demo-recommenders"
_CHUNK = 2000
RECALL_USERS = 3000


@dataclass
class ShopRecommenders:
    """Recommenders fitted on a shop's events before the recommenders' cut-off."""

    shop_dir: Path
    events: pl.DataFrame
    split: RecSplit
    price: np.ndarray
    models: dict[str, RecommenderModel]
    k: int


def fit_on_shop(shop_dir: Path, names: list[str], rec_cfg: RecommendConfig | None = None) -> ShopRecommenders:
    """Fit recommenders ``names`` (parameters from ``configs/recommend.yaml``) on the time split."""
    rec_cfg = rec_cfg or load_recommend_config()
    products, arrays = catalogue_arrays(shop_dir)
    events = read_shop_events(shop_dir)
    split = time_split(events, products, rec_cfg.weights, rec_cfg.test_days)
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    models = {name: RecommenderModel(make_recommender(name, rec_cfg.recommenders.get(name, {}))
                                     .fit(split.train, arrays), products, popularity, dict(rec_cfg.weights))
              for name in names}
    return ShopRecommenders(shop_dir, events, split, arrays.price, models, rec_cfg.k)


@dataclass
class RecommenderAB:
    """What the content stage wrote and found."""

    recall: dict[str, float]  # recall@10 on held-out purchases: both recommenders, popularity, oracle
    per_variant: dict[str, dict[str, float]]  # variant -> visitors, click-through, conversion, revenue/user
    verdicts: list[str]
    files: dict[str, str] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)


def _bought_before(events: pl.DataFrame, split: RecSplit) -> sp.csr_matrix:
    user_index = {u: i for i, u in enumerate(split.users)}
    product_index = {p: i for i, p in enumerate(split.products)}
    bought = events.filter((pl.col("event") == "purchase") & (pl.col("timestamp") < split.cutoff))
    rows = [user_index[u] for u in bought["user_id"].to_list()]
    cols = [product_index[p] for p in bought["product_id"].to_list()]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=split.train.shape)


def _ranked(model: RecommenderModel, history: sp.csr_matrix, k: int,
            exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Top-k product indices per history row, in chunks (dense scores of 2,000 rows at a time)."""
    out = np.zeros((history.shape[0], k), dtype=np.int64)
    for lo in range(0, history.shape[0], _CHUNK):
        rows = slice(lo, lo + _CHUNK)
        scores = model.recommender.scores(history[rows])
        out[rows] = top_k(scores, k, model.popularity, exclude[rows] if exclude is not None else None)
    return out


def _recall_vs_oracle(shop: ShopRecommenders) -> dict[str, float]:
    """recall@k on the held-out purchases (of at most ``RECALL_USERS`` buyers) of every fitted
    recommender and of the oracle's ideal ranking."""
    split = shop.split
    rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
    if len(rows) > RECALL_USERS:  # a fixed sample keeps the stage fast; `recommend train` uses them all
        rows = np.sort(np.random.default_rng(0).choice(rows, RECALL_USERS, replace=False))
    out = {name: ranking_metrics(_ranked(m, split.train[rows], shop.k), split.test[rows],
                                 len(split.products))["recall"] for name, m in shop.models.items()}
    top = oracle_top(pl.read_parquet(shop.shop_dir / "product_oracle.parquet"),
                     [split.users[r] for r in rows], split.products, shop.k)
    out["oracle"] = ranking_metrics(top, split.test[rows], len(split.products))["recall"]
    return out


def _p_shown(shop_dir: Path, users: np.ndarray, products: np.ndarray) -> np.ndarray:
    """True next-purchase probability of each shown product (0 outside the oracle's top 50)."""
    k = products.shape[1]
    shown = pl.DataFrame({"user_id": np.repeat(users, k), "product_id": products.ravel(),
                          "i": np.arange(products.size)})
    oracle = pl.read_parquet(shop_dir / "product_oracle.parquet", columns=["user_id", "product_id", "p_next"])
    p = shown.join(oracle, on=["user_id", "product_id"], how="left").sort("i")["p_next"].fill_null(0.0)
    return p.to_numpy().reshape(products.shape)


def _show(models: dict[str, RecommenderModel], split: RecSplit, bought: sp.csr_matrix, demo: RecommenderDemo,
          log: ContentExposureLog, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick visitors, rank each one's carousel with their variant's recommender, log the exposures.
    Returns (visitor rows, shown product indices visitors x k, shown_at datetime64[us])."""
    active = np.flatnonzero(np.diff(split.train.indptr) > 0)
    rows = np.sort(rng.choice(active, min(demo.visitors, len(active)), replace=False))
    shares = {demo.control: 0.5, demo.treatment: 0.5}
    variants = np.array([recommender_variant(SALT, split.users[r], shares) for r in rows])
    shown = np.zeros((len(rows), demo.k), dtype=np.int64)
    for name, model in models.items():
        mine = variants == name
        shown[mine] = _ranked(model, split.train[rows[mine]], demo.k, bought[rows[mine]])
    start = np.datetime64(split.cutoff.astimezone(dt.UTC).replace(tzinfo=None), "us")
    shown_at = start + (rng.uniform(0, demo.days * 86_400, len(rows)) * 1e6).astype("timedelta64[us]")
    for i, r in enumerate(rows):
        at = shown_at[i].astype(dt.datetime).replace(tzinfo=dt.UTC)
        log.record(split.users[r], EXPERIMENT, str(variants[i]), "carousel", "recommended_products",
                   [split.products[j] for j in shown[i]], at=at)
    return rows, shown, shown_at


def recommender_ab(shop: ShopRecommenders, out_dir: Path, settings: ExperimentsConfig | None = None
                   ) -> RecommenderAB:
    """Run the stage of the module docstring with ``shop``'s recommenders (popularity, the demo's control
    and treatment); writes ``content_exposures.jsonl``, ``events.parquet`` and the A/B report
    (``recommender_report.html`` + ``.md``) into ``out_dir``."""
    from experiments.pipeline import analyze_file

    settings = settings or load_experiments_config()
    demo = settings.recommendations.demo
    out_dir.mkdir(parents=True, exist_ok=True)
    recall = _recall_vs_oracle(shop)
    models = {name: shop.models[name] for name in (demo.control, demo.treatment)}
    rng = np.random.default_rng(demo.seed)
    log_path = out_dir / "content_exposures.jsonl"
    log_path.unlink(missing_ok=True)
    log = ContentExposureLog(log_path)
    try:
        rows, shown, shown_at = _show(models, shop.split, _bought_before(shop.events, shop.split), demo, log,
                                      rng)
    finally:
        log.close()
    users = np.array(shop.split.users)[rows]
    ids = np.array(shop.split.products)[shown]
    model = VisitorModel(demo.click_scale, demo.cart_rate, demo.purchase_rate)
    responses = respond(_p_shown(shop.shop_dir, users, ids), rng, model)
    events_path = out_dir / "events.parquet"
    response_events(users, ids, shop.price[shown], shown_at, responses, rng).write_parquet(events_path)
    result, verdicts, paths = analyze_file(
        None, "variant", demo.control, [], exposures=log_path, events=events_path, experiment=EXPERIMENT,
        report=out_dir / "recommender_report.html",
        name=f"recommenders: {demo.treatment} vs {demo.control} (simulated visitors, true tastes)")
    files = {"content_exposures": str(log_path), "content_events": str(events_path),
             "recommender_report": paths["html"]}
    return RecommenderAB(recall, _per_variant(result), verdicts, files)


def _per_variant(result: Any) -> dict[str, dict[str, float]]:
    """variant -> visitors and the mean of each metric (click-through, conversion, revenue per user)."""
    out: dict[str, dict[str, float]] = {}
    for metric, summary in result.metrics.items():
        for stat in summary.variants:
            out.setdefault(stat.name, {})["visitors"] = float(stat.n)
            out[stat.name][metric] = float(stat.mean)
    return out


def render_sample(shop: ShopRecommenders, user_id: str, out_dir: Path,
                  decision: tuple[str, str | None, dict[str, Any]], features: dict[str, Any],
                  probability: float | None, recommender: str = "item_knn") -> dict[str, Any]:
    """Render the ``hero`` (``decision``: component, rule, params) and ``carousel`` slots for one shop
    user from all their product events (the live profile); writes ``content_sample.html``."""
    model = shop.models[recommender]
    setup = ContentSetup(load_components(), {recommender: model},
                         read_catalogue(shop.shop_dir / "catalogue.parquet"))
    mine = (shop.events.filter(pl.col("user_id") == user_id).sort("timestamp")
            .select("event", "product_id").to_dicts())
    answer = render_slots(setup, user_id, ["hero", "carousel"], features, probability, {"device": "mobile"},
                          mine, decision)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "content_sample.html"
    path.write_text("\n".join(s["html"] for s in answer["slots"]))
    return {"answer": answer, "html": str(path)}
