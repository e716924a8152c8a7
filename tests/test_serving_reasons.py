"""Reason codes in serving for every model family, not only XGBoost.

The contributions of all features of one row must add up to the model's own margin minus the
explainer's base value (SHAP's local accuracy), and the batched path must agree with the single one.
"""

from __future__ import annotations

import asyncio
import math
import os

import numpy as np
import pytest
from fairness_support import CATEGORICAL, NUMERIC, logistic_model, small_frame, xgb_model
from sklearn.ensemble import HistGradientBoostingClassifier

from fairness.explain import Explainer
from serving.scoring import ModelBatcher
from training.model import ConversionModel
from training.preprocess import FeatureEncoder


def _hgb_model(frame):
    encoder = FeatureEncoder(NUMERIC, CATEGORICAL).fit(frame)
    est = HistGradientBoostingClassifier(max_iter=40, max_depth=3, random_state=0)
    est.fit(encoder.transform(frame), frame["label"].to_numpy())
    return ConversionModel("hist_gradient_boosting", encoder, est)


@pytest.fixture(scope="module")
def models():
    frame = small_frame(1500, seed=3)
    return {"xgboost": xgb_model(frame), "hist_gradient_boosting": _hgb_model(frame),
            "logistic_regression": logistic_model(frame)}


ROWS = [{"visits": 12.0, "cart_value": 40.0, "recency": 1.5, "device": "desktop"},
        {"visits": 2.0, "cart_value": None, "recency": 20.0, "device": "tablet"},
        {"visits": 5.0, "recency": 3.0}]  # cart_value and device absent: missing


@pytest.mark.parametrize("family", ["xgboost", "hist_gradient_boosting", "logistic_regression"])
def test_reasons_add_up_to_the_margin(models, family: str) -> None:
    model = models[family]
    base = Explainer.for_model(model).contributions(model.encoder.encode_one(ROWS[0])).base
    n_raw = len(NUMERIC) + len(CATEGORICAL)
    for row in ROWS:
        reasons = model.reasons_rows([row], top_k=n_raw)[0]
        assert reasons, family
        assert {r["feature"] for r in reasons} <= set(NUMERIC + CATEGORICAL)
        p = model.predict_one(row)
        margin = math.log(p / (1 - p))
        assert base + sum(r["contribution"] for r in reasons) == pytest.approx(margin, abs=1e-5)
        top = model.reasons_rows([row], top_k=2)[0]
        assert [r["feature"] for r in top] == [r["feature"] for r in reasons[:2]]
        assert abs(top[0]["contribution"]) >= abs(top[-1]["contribution"])


@pytest.mark.parametrize("family", ["xgboost", "hist_gradient_boosting", "logistic_regression"])
def test_batched_scoring_gives_the_same_reasons(models, family: str) -> None:
    model = models[family]
    batcher = ModelBatcher(approximate=False)

    async def all_rows():
        return await asyncio.gather(*(batcher.score(model, row, 3) for row in ROWS))

    for row, (p, reasons) in zip(ROWS, asyncio.run(all_rows()), strict=True):
        assert p == pytest.approx(model.predict_one(row), abs=1e-9)
        single = model.reasons_rows([row], 3)[0]
        assert [r["feature"] for r in reasons] == [r["feature"] for r in single]
        assert np.allclose([r["contribution"] for r in reasons], [r["contribution"] for r in single],
                           atol=1e-6)


def test_batcher_waits_for_rows_up_to_its_limits(models) -> None:
    """With a wait window, rows arriving within it are scored together; a full batch goes at once."""
    model = models["xgboost"]
    rows = ROWS * 3  # 9 rows

    async def burst(batcher: ModelBatcher):
        return await asyncio.gather(*(batcher.score(model, row, 2) for row in rows))

    waiting = ModelBatcher(approximate=True, max_wait_s=0.05, max_rows=4)
    answers = asyncio.run(burst(waiting))
    assert (waiting.batches, waiting.rows) == (3, 9)  # 4 + 4 at once, the last 1 after the window
    eager = ModelBatcher(approximate=True)
    assert asyncio.run(burst(eager)) == answers
    assert (eager.batches, eager.rows) == (1, 9)


def test_contribution_reasons_rank_raw_features_as_a_stable_sort_does() -> None:
    """Columns summed into their raw features, then the top k by |total| (ties in raw order, zeros
    left out): the same ranking as numpy's stable argsort of the summed totals."""
    from types import SimpleNamespace

    from training.scorer import contribution_reasons

    columns = ["a", "b=x", "b=y", "b__missing", "c", "d", "e"]
    model = SimpleNamespace(transformed_feature_names=columns)
    rng = np.random.default_rng(5)
    rows = rng.choice([-1.5, -0.5, 0.0, 0.5, 1.5, 2.0], size=(200, len(columns) + 1))  # ties and zeros
    names = ["a", "b", "c", "d", "e"]
    groups = np.array([[n.split("=")[0].removesuffix("__missing") == raw for raw in names] for n in columns],
                      dtype=float)
    for top_k in (0, 1, 3, 5):
        got = contribution_reasons(model, rows, top_k)
        totals = rows[:, :-1] @ groups
        for row, reasons in zip(totals, got, strict=True):
            order = np.argsort(-np.abs(row), kind="stable")[:top_k]
            expected = [{"feature": names[i], "contribution": float(row[i])} for i in order if row[i] != 0.0]
            assert reasons == expected


def test_prepare_serving_compiles_the_reasons_kernel_before_the_first_request() -> None:
    # A fresh interpreter: the compiled kernel is per process (else another test compiled it already).
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    code = ("from fairness_support import small_frame, xgb_model\n"
            "from training.scorer import _rank\n"
            "from training.tree_arrays import _forest_ranked\n"
            "model = xgb_model(small_frame(300, seed=1))\n"
            "kernels = (_rank, _forest_ranked)\n"
            "before = [len(k.signatures) for k in kernels]\n"
            "model.prepare_serving()\n"
            "assert model.tree_arrays() is not None\n"
            "print(*before, *[len(k.signatures) for k in kernels])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{tests.parent}:{tests}"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "0", "1", "1"]
