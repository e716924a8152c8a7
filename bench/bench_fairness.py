"""Benchmark: SHAP reason codes for one row (serving fast path) and global SHAP for many rows.

Model: XGBoost, ``--trees`` trees of depth 6, on the registry's model features (synthetic
snapshots from ``tests/train_support.py``; one-hot categoricals included). In the same run:
- ``reasons_one``: median µs of :meth:`fairness.explain.Explainer.reasons_one` (encode the mapping,
  one-row ``pred_contribs`` exact TreeSHAP, sum per raw feature, top-k), next to the baseline
  ``ConversionModel.predict_one`` (encode + ``inplace_predict``) on the same rows;
- ``global``: seconds of :meth:`Explainer.contributions` for ``--rows`` rows (all cores) next to
  plain batch prediction of the same matrix, plus the global mean |SHAP| ranking.

    .venv/bin/python -m bench.bench_fairness --rows 100000 --trees 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import xgboost as xgb

from fairness.explain import Explainer, global_importance
from tests.train_support import synthetic_snapshots
from training.model import ConversionModel
from training.preprocess import FeatureEncoder


def build_model(frame: pl.DataFrame, trees: int, threads: int) -> ConversionModel:
    from features import registry

    names = registry.model_features(columns=frame.columns)
    numeric = [n for n in names if n in frame.columns and registry.BY_NAME[n].kind == "numeric"]
    categorical = [n for n in names if n in frame.columns and registry.BY_NAME[n].kind == "categorical"]
    encoder = FeatureEncoder(numeric, categorical).fit(frame)
    X = encoder.transform(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": threads,
                         "tree_method": "hist", "verbosity": 0, "seed": 0},
                        xgb.DMatrix(X, label=frame["label"].to_numpy()), num_boost_round=trees)
    return ConversionModel("xgboost", encoder, booster)


def per_call_us(fn, rows: Sequence[Any], repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        for row in rows:
            t = time.perf_counter()
            fn(row)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows for global SHAP")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--single-rows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for training and global SHAP (0 = all)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/fairness.json"))
    args = parser.parse_args()

    train = synthetic_snapshots(n_users=args.train_rows // 2, n_snapshots=2, seed=1)
    started = time.perf_counter()
    model = build_model(train, args.trees, args.threads)
    fit_s = time.perf_counter() - started
    explainer = Explainer.for_model(model)
    rows = train.head(args.single_rows).to_dicts()
    for row in rows[:20]:  # warm-up: booster copies, lazy imports
        explainer.reasons_one(row, 3)
        model.predict_one(row)
    reasons_us = per_call_us(lambda r: explainer.reasons_one(r, 3), rows, 3)
    saabas_us = per_call_us(lambda r: explainer.reasons_one(r, 3, approximate=True), rows, 3)
    predict_us = per_call_us(model.predict_one, rows, 3)
    one = model.booster.copy() if model.booster is not None else None
    assert one is not None
    one.set_param({"nthread": 1})
    ready = [model.encoder.encode_one(r) for r in rows]
    bare_us = per_call_us(lambda x: one.predict(xgb.DMatrix(x, nthread=1), pred_contribs=True), ready, 3)

    big = synthetic_snapshots(n_users=args.rows, n_snapshots=1, seed=2)
    X = model.transform(big)
    booster = model.booster
    assert booster is not None
    booster.set_param({"nthread": args.threads})
    t = time.perf_counter()
    booster.inplace_predict(X, validate_features=False)
    predict_s = time.perf_counter() - t
    t = time.perf_counter()
    contributions = explainer.contributions(X)
    shap_s = time.perf_counter() - t
    ranking = global_importance(explainer, contributions)

    result = {
        "model": {"trees": args.trees, "depth": 6, "columns": len(model.transformed_feature_names),
                  "raw_features": len(explainer.raw_names), "fit_seconds": round(fit_s, 2)},
        "reasons_one_us_median": round(reasons_us, 1), "predict_one_us_median": round(predict_us, 1),
        "reasons_over_predict": round(reasons_us / predict_us, 2),
        "bare_pred_contribs_us_median": round(bare_us, 1), "reasons_saabas_us_median": round(saabas_us, 1),
        "global_rows": len(X), "global_shap_seconds": round(shap_s, 2),
        "batch_predict_seconds": round(predict_s, 3), "shap_over_predict": round(shap_s / predict_s, 1),
        "top_features": ranking[:5],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
