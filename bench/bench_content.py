"""Content benchmark: rendering a component and suggesting products, next to a /predict engine call.

    .venv/bin/python -m bench.bench_content [--users 300] [--rounds 5] [--seconds 8] [--json out.json]

In one process, interleaved in ``--rounds`` rounds so machine load hits every measurement alike:
1. ``PredictionEngine.predict`` (in-process, prediction cache off, the 300-tree XGBoost model of
   bench_serving, profile, features, engagement, journey, Saabas reasons and decision included);
2. ``ComponentLibrary.render`` of every component of configs/content.yaml with 8 products;
3. ``recommend_for`` with the item-to-item recommender on the full 2,000-product catalogue;
4. fitting item-to-item on 1M random interaction rows (Zipf-skewed products, so about 0.76M distinct
   user-product pairs): our ``ItemKNN.fit`` against ``implicit``'s own ``CosineRecommender.fit`` on
   the same matrix.
Reports median microseconds per call and each cost as a share of the engine call (target: a render
<= 10% of /predict's engine time).

5. over HTTP (``--seconds`` > 0): one `propensity serve` (1 worker, in-process store, prediction
   cache off, content on with the item-to-item recommender and a 2,000-product catalogue), the
   bench shop's users and events plus 10 product views each; then ``wrk`` (16 connections) on
   ``/predict`` and on ``/content`` (slots hero + carousel: the prediction, the decision rule, 8
   suggestions from the live profile, two renders and two exposure lines), alternating for
   ``--rounds`` rounds. Target: /content p99 <= 1.5x /predict p99 at the same load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.support import emit, ingest, serve, shop, stop, train, wait_ready, wrk


def _predict_all(engine: Any, users: list[str]) -> list[dict[str, Any]]:
    return [engine.predict({"user_id": u}) for u in users]


def _per_call_us(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _engine(workdir: Path, users: int) -> tuple[Any, list[str], str]:
    from serving.loader import build_engine

    events = shop(users)
    model_path = workdir / "model.pkl"
    train(events, model_path)
    config = workdir / "serving.yaml"
    config.write_text(json.dumps({"cache": {"enabled": False}}))
    engine = build_engine({"config_path": str(config), "model_uri": str(model_path)})
    for i in range(0, len(events[0]), 500):
        engine.ingest(list(events[0][i:i + 500]))
    return engine, sorted({e["user_id"] for e in events[0]}), str(model_path)


def _recommender() -> Any:
    from content.model import RecommenderModel
    from content.recommenders import CatalogueArrays, ItemKNN

    rng = np.random.default_rng(0)
    users, items, nnz = 20_000, 2_000, 600_000
    rank = rng.zipf(1.3, nnz) % items
    train = sp.csr_matrix((np.ones(nnz), (rng.integers(0, users, nnz), rank)), shape=(users, items))
    cat = CatalogueArrays(np.arange(items) % 8, np.full(items, 20.0))
    products = [f"p{i:04d}" for i in range(items)]
    knn = ItemKNN(neighbours=100).fit(train, cat)
    return RecommenderModel(knn, products, np.asarray(train.sum(axis=0)).ravel(), {"product_view": 1.0})


def _fit_ratio(rounds: int) -> dict[str, float]:
    from implicit.nearest_neighbours import CosineRecommender

    from content.recommenders import CatalogueArrays, ItemKNN

    rng = np.random.default_rng(1)
    users, items, nnz = 100_000, 2_000, 1_000_000
    matrix = sp.csr_matrix((np.ones(nnz), (rng.integers(0, users, nnz), rng.zipf(1.3, nnz) % items)),
                           shape=(users, items))
    cat = CatalogueArrays(np.arange(items) % 8, np.full(items, 20.0))
    ours, theirs = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ItemKNN(neighbours=100).fit(matrix, cat)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        CosineRecommender(K=100, num_threads=1).fit(matrix, show_progress=False)
        theirs.append(time.perf_counter() - t0)
    return {"ours_s": statistics.median(ours), "implicit_s": statistics.median(theirs),
            "ratio": statistics.median(ours) / statistics.median(theirs), "distinct_pairs": float(matrix.nnz)}


def _content_server(workdir: Path, model: Any) -> tuple[subprocess.Popen, str]:
    """`propensity serve` with content on (the item-to-item recommender, a 2,000-product catalogue)."""
    import polars as pl

    model.save(workdir / "item_knn.joblib")
    ids = model.products
    pl.DataFrame({"product_id": ids, "name": [f"Item {p}" for p in ids], "category": ["shoes"] * len(ids),
                  "price": [19.5 + i % 100 for i in range(len(ids))],
                  "image_url": [f"https://img.example.com/{p}.jpg" for p in ids]}
                 ).write_parquet(workdir / "catalogue.parquet")
    config = workdir / "serving-content.yaml"
    config.write_text(json.dumps({
        "cache": {"enabled": False}, "access_log": False,
        "content": {"enabled": True, "recommenders": {"item_knn": str(workdir / "item_knn.joblib")},
                    "catalogue": str(workdir / "catalogue.parquet"),
                    "exposure_log": str(workdir / "content_exposures.jsonl")}}))
    return serve(workdir / "model.pkl", workdir, config, workers=1)


def _http(workdir: Path, model: Any, users: int, seconds: int, rounds: int) -> dict[str, Any]:
    """/predict and /content p99 at the same wrk load, alternating rounds (section 5 of the docstring)."""
    raw_events, raw_users = shop(users)
    rng = np.random.default_rng(2)
    known = sorted({e["user_id"] for e in raw_events})
    now = datetime.now(UTC)
    views = [{"event_id": f"bench-view-{u}-{i}", "user_id": u, "event": "product_view",
              "timestamp": (now - timedelta(minutes=30 - i)).isoformat(),
              "product_id": model.products[int(rng.zipf(1.3)) % len(model.products)]}
             for u in known for i in range(10)]
    proc, url = _content_server(workdir, model)
    try:
        wait_ready(url, proc)
        ingest(url, raw_users, raw_events + views)
        samples: dict[str, list[dict[str, float]]] = {"predict": [], "content": []}
        for _ in range(rounds):
            samples["predict"].append(wrk(url, known, seconds, workdir))
            samples["content"].append(wrk(url, known, seconds, workdir, "/content",
                                          ', "slots": ["hero", "carousel"]'))
    finally:
        stop(proc)
    out: dict[str, Any] = {route: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                           for route, runs in samples.items()}
    out["rounds"] = rounds
    out["p99_ratio_content_to_predict"] = out["content"]["p99_ms"] / out["predict"]["p99_ms"]
    out["throughput_ratio_content_to_predict"] = (out["content"]["requests_per_s"]
                                                  / out["predict"]["requests_per_s"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from content.components import load_components, render_variables
    from content.serve import recommend_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--seconds", type=int, default=8, help="wrk seconds per HTTP round; 0 = no HTTP part")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-content-"))
    engine, users, _ = _engine(workdir, args.users)
    library = load_components()
    model = _recommender()
    products = [{"product_id": f"p{i:04d}", "name": f"Item {i}", "category": "shoes", "price": 19.5 + i,
                 "image_url": f"/i/p{i:04d}.jpg", "score": 0.1} for i in range(8)]
    answer = engine.predict({"user_id": users[0]})
    variables = render_variables({"journey_stage": "decision", "purchases_total": 2.0}, answer["probability"],
                                 {"device": "mobile"}, products, users[0])
    views = [{"event": "product_view", "product_id": f"p{i:04d}"} for i in range(0, 40, 4)]
    samples: dict[str, list[float]] = {}
    for r in range(args.rounds):
        samples.setdefault("predict_engine", []).append(
            _per_call_us(partial(_predict_all, engine, users[r::args.rounds][:40]), 1)
            / len(users[r::args.rounds][:40]))
        for name in library.components:
            samples.setdefault(f"render:{name}", []).append(
                _per_call_us(partial(library.render, name, variables), 300))
        samples.setdefault("recommend_for:item_knn", []).append(
            _per_call_us(lambda: recommend_for(model, views, 10), 50))
    median = {k: statistics.median(v) for k, v in samples.items()}
    base = median["predict_engine"]
    results: dict[str, Any] = {
        "rounds": args.rounds, "us_per_call": median,
        "share_of_predict": {k: v / base for k, v in median.items() if k != "predict_engine"},
        "render_failures": dict(library.failures), "fit_1m": _fit_ratio(max(1, args.rounds // 2))}
    if args.seconds > 0:
        results["http"] = _http(workdir, model, args.users, args.seconds, max(2, args.rounds // 2))
    return emit(results, args.json_path)


if __name__ == "__main__":
    main()
