"""Benchmark: the training platform's overhead and search throughput.

Measures, in one run on the same synthetic snapshot frame (registry columns, 4 weekly snapshots):
- ``bare``: ``xgboost.DMatrix`` + ``xgboost.train`` on the encoded training matrix with the
  parameters of the first (default) XGBoost trial — the irreducible work;
- ``platform``: :func:`training.train.train` with one XGBoost trial — reading the frame, content
  digest, time split, encoding, the trial with pruning reports, calibration choice, metrics, plots,
  MLflow run with dataset, pyfunc model logging and registration (SQLite store in a temp folder).
  Each is run ``--repeats`` times, alternating; the minimum of each (the least disturbed run on a
  shared machine) is reported with the ratio platform / bare.
- ``single row``: median µs of ``ConversionModel.predict_one`` vs a bare single-thread
  ``inplace_predict`` on a ready numpy row (XGBoost, 300 trees of depth 6).
- ``search``: the default search (all four families, median pruning) for a time budget on the
  same frame; reports completed + pruned trials per minute.

    .venv/bin/python -m bench.bench_training --rows 1000000 --search-seconds 600
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb

from tests.train_support import synthetic_snapshots
from training.config import load_train_config
from training.families import XGBoostFamily
from training.preprocess import FeatureEncoder
from training.train import train


class Clock:
    """Wall and CPU seconds of a block (CPU time of this process, all threads): on a shared machine the
    CPU time of a single-threaded run is the steadier measure of work done."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def bare_xgboost(frame: pl.DataFrame, threads: int, seed: int) -> Clock:
    """DMatrix + xgboost.train on the earlier snapshots (encoding excluded)."""
    cut = frame.get_column("as_of").max()
    train_rows = frame.filter(pl.col("as_of") < cut)
    cfg = load_train_config()
    from training.data import select_features

    numeric, categorical = select_features(frame, cfg.data)
    X = FeatureEncoder(numeric, categorical).fit(train_rows).transform(train_rows)
    y = train_rows.get_column("label").to_numpy()
    params = XGBoostFamily.defaults
    with Clock() as clock:
        dtrain = xgb.DMatrix(X, label=y, nthread=threads)
        xgb.train(XGBoostFamily.booster_params(params, seed, threads), dtrain,
                  num_boost_round=params["n_rounds"])
    return clock


def platform_trial(frame: pl.DataFrame, threads: int, folder: Path) -> Clock:
    """Seconds for a whole `train` with one XGBoost trial (default parameters), tracked in MLflow."""
    cfg = load_train_config(overrides={
        "search": {"n_trials": 1, "families": ["xgboost"], "threads": threads},
        "tracking": {"uri": f"sqlite:///{folder}/mlflow.db", "artifact_location": (folder / "art").as_uri()},
    })
    with Clock() as clock:
        train(frame, cfg)
    return clock


def search_throughput(frame: pl.DataFrame, seconds: float, folder: Path) -> dict[str, float]:
    """Trials per minute of the default search within ``seconds`` (the last trial may overrun)."""
    cfg = load_train_config(overrides={
        "search": {"n_trials": 10_000, "timeout_s": seconds},
        "tracking": {"uri": f"sqlite:///{folder}/search.db", "artifact_location": (folder / "art").as_uri(),
                     "plots": False},
    })
    started = time.perf_counter()
    result = train(frame, cfg, progress=lambda m: print("  " + m, flush=True))
    elapsed = time.perf_counter() - started
    per_minute = result.n_trials / elapsed * 60
    return {"trials": result.n_trials, "seconds": elapsed, "trials_per_minute": per_minute,
            "best_family": result.best_family, "auc": result.metrics["auc"]}  # type: ignore[dict-item]


def single_row_latency(frame: pl.DataFrame, calls: int = 2000) -> dict[str, float]:
    """Median µs per call: ConversionModel.predict_one vs a bare single-thread inplace_predict on a ready row.

    The model is XGBoost with 300 trees of depth 6 (the serving reference of KNOWN.md).
    """
    from training.data import select_features
    from training.model import ConversionModel
    from training.search import fit_candidate, prepare

    small = frame.head(40_000)
    cut = small.get_column("as_of").max()
    numeric, categorical = select_features(small, load_train_config().data)
    data = prepare(small.filter(pl.col("as_of") < cut), small.filter(pl.col("as_of") == cut), numeric,
                   categorical)
    params = {**XGBoostFamily.defaults, "n_rounds": 300, "max_depth": 6}
    enc, booster, _ = fit_candidate(data, "xgboost", params, seed=0, threads=0)
    model = ConversionModel("xgboost", enc, booster)
    rows = small.head(200).to_dicts()
    bare = booster.copy()
    bare.set_param({"nthread": 1})
    ready = [enc.encode_one(r) for r in rows]

    def median_us(fn: object) -> float:
        times = []
        for i in range(calls):
            started = time.perf_counter()
            fn(i % len(rows))  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return float(np.median(times) * 1e6)

    one = median_us(lambda i: model.predict_one(rows[i]))
    base = median_us(lambda i: bare.inplace_predict(ready[i], validate_features=False))
    frame_one = median_us(lambda i: model.predict_proba(small[i : i + 1]))
    return {"predict_one_us": one, "bare_inplace_us": base, "predict_proba_1row_us": frame_one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="snapshot rows (4 snapshots)")
    parser.add_argument("--search-seconds", type=float, default=600.0)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true", help="only the search throughput")
    parser.add_argument("--threads", type=int, default=0, help="threads per fit (0 = all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of bare and platform")
    args = parser.parse_args()
    frame = synthetic_snapshots(n_users=args.rows // 4, n_snapshots=4, seed=0)
    print(f"frame: {frame.height} rows x {frame.width} columns; cores: {os.cpu_count()}")
    out: dict[str, object] = {"rows": frame.height}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROPENSITY_HOME"] = tmp
        bare: list[Clock] = []
        platform: list[Clock] = []
        for i in range(0 if args.skip_overhead else args.repeats):
            bare.append(bare_xgboost(frame, args.threads, 42))
            platform.append(platform_trial(frame, args.threads, Path(tmp)))
            print(f"round {i + 1}: bare {bare[-1].wall:.2f} s (cpu {bare[-1].cpu:.2f}), platform "
                  f"{platform[-1].wall:.2f} s (cpu {platform[-1].cpu:.2f})", flush=True)
        for kind in ("wall", "cpu") if bare else ():
            b = min(getattr(c, kind) for c in bare)
            p = min(getattr(c, kind) for c in platform)
            out[kind] = {"bare_s": b, "platform_s": p, "ratio": p / b}
            print(f"one trial ({kind}): bare xgboost.train {b:.2f} s, platform train {p:.2f} s, "
                  f"ratio {p / b:.2f}x (goal <= 1.25x)")
        if not args.skip_overhead:
            latency = single_row_latency(frame)
            out["single_row"] = latency
            print(f"single row: predict_one {latency['predict_one_us']:.0f} us, bare inplace_predict "
                  f"{latency['bare_inplace_us']:.0f} us, predict_proba(1-row frame) "
                  f"{latency['predict_proba_1row_us']:.0f} us (median)")
        if not args.skip_search:
            search = search_throughput(frame, args.search_seconds, Path(tmp))
            out["search"] = search
            print(f"default search: {search['trials']} trials in {search['seconds']:.0f} s = "
                  f"{search['trials_per_minute']:.2f} trials/min (best {search['best_family']}, "
                  f"AUC {search['auc']:.4f})")
    results = Path("bench/results")
    results.mkdir(parents=True, exist_ok=True)
    (results / f"training-{frame.height}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
