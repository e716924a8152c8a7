"""The serving tree walk (training/tree_arrays.py) against XGBoost's own calls, per batch size.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_walk [--before DIR] [--sizes 1 2 4 16 64]

The 300-tree bench model of bench/bench_serving.py (2,000-user shop); rows drawn from the model's
encoded snapshot rows (missing values included). Per batch size, the median over ``--repeats`` of
microseconds a batch for probabilities with Saabas contributions (what ``/predict`` computes):

- ``walk``: :class:`training.tree_arrays.TreeArrays` of this checkout;
- ``walk_before``: the same class from ``--before DIR`` (an older checkout), when given; its
  numbers are checked equal to this checkout's, bit for bit;
- ``xgboost``: the same two C calls XGBoost's wrapper makes (training/booster_calls.py), which
  serving used before the walk existed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def _median_us(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _xgboost(calls: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return calls.predict(X), calls.contributions(X, True)


def _old_class(before: Path) -> Any:
    source = before / "training" / "tree_arrays.py"
    spec = importlib.util.spec_from_file_location("tree_arrays_before", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TreeArrays


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.bench_serving import _shop, _train
    from training.booster_calls import booster_calls
    from training.model import ConversionModel
    from training.tree_arrays import TreeArrays

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="checkout of an older commit")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args(argv)
    path = Path(tempfile.mkdtemp(prefix="bench-walk-")) / "model.pkl"
    shop = _shop(2000)
    _train(shop, path)
    model = ConversionModel.load(str(path))
    booster = model._single_booster()
    model_json = json.loads(booster.save_raw("json"))
    walk = TreeArrays(model_json)
    before = _old_class(args.before)(model_json) if args.before else None
    calls = booster_calls(booster, walk.n_columns)
    rng = np.random.default_rng(0)
    X_all = rng.normal(scale=3.0, size=(4096, walk.n_columns)).astype(np.float32)
    X_all[rng.random(X_all.shape) < 0.3] = np.nan
    out: dict[str, Any] = {"trees": len(model_json["learner"]["gradient_booster"]["model"]["trees"]),
                           "sizes": {}}
    for n in args.sizes:
        X = X_all[rng.choice(len(X_all), n, replace=False)]
        row = {"walk": _median_us(partial(walk.predict_with_contributions, X), args.repeats)}
        if before is not None:
            same = all(np.array_equal(a, b) for a, b in zip(walk.predict_with_contributions(X),
                                                           before.predict_with_contributions(X), strict=True))
            assert same, "the walks differ"
            row["walk_before"] = _median_us(partial(before.predict_with_contributions, X), args.repeats)
        if calls is not None:
            row["xgboost"] = _median_us(partial(_xgboost, calls, X), args.repeats)
        out["sizes"][n] = row
        print(json.dumps({"rows": n, **{k: round(v, 1) for k, v in row.items()}}), flush=True)
    return out


if __name__ == "__main__":
    main()
