"""Small models and populations for the fairness and SHAP tests (no training search, seconds to build)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

from training.model import ConversionModel
from training.preprocess import FeatureEncoder

NUMERIC = ["visits", "cart_value", "recency"]
CATEGORICAL = ["device"]


def small_frame(n: int = 2000, seed: int = 0, disparity: float = 0.0) -> pl.DataFrame:
    """A snapshot-like frame: three numeric features (with NaN), one categorical, gender, label.

    ``disparity`` > 0 lowers group "F"'s visits (the model's main signal) without changing its
    conversion odds given the true propensity, so a model trained on the frame selects fewer F users.
    """
    rng = np.random.default_rng(seed)
    gender = rng.choice(["F", "M"], n)
    propensity = rng.normal(size=n)
    visits = np.exp(0.6 * propensity + rng.normal(0, 0.3, n)) * 5
    visits = np.where(gender == "F", visits * (1 - disparity), visits)
    cart = np.where(rng.random(n) < 0.2, np.nan, rng.gamma(2, 20, n) + 10 * propensity.clip(0))
    recency = rng.exponential(5, n)
    device = rng.choice(["mobile", "desktop", "tablet"], n, p=[0.6, 0.3, 0.1])
    logit = -1.5 + 1.5 * propensity - 0.05 * recency + 0.3 * (device == "desktop")
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    as_of = datetime(2026, 11, 1, tzinfo=UTC)
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(n)], "as_of": [as_of] * n, "visits": visits,
                         "cart_value": cart,
                         "recency": recency, "device": device, "gender": gender, "label": label})


def xgb_model(frame: pl.DataFrame, rounds: int = 30, depth: int = 3) -> ConversionModel:
    encoder = FeatureEncoder(NUMERIC, CATEGORICAL).fit(frame)
    X = encoder.transform(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1,
                         "verbosity": 0, "seed": 0},
                        xgb.DMatrix(X, label=frame["label"].to_numpy()), num_boost_round=rounds)
    return ConversionModel("xgboost", encoder, booster)


def logistic_model(frame: pl.DataFrame) -> ConversionModel:
    encoder = FeatureEncoder(NUMERIC, CATEGORICAL, scale=True).fit(frame)
    est = LogisticRegression(max_iter=500).fit(encoder.transform(frame), frame["label"].to_numpy())
    return ConversionModel("logistic_regression", encoder, est)


def register_model(model: ConversionModel, name: str = "propensity-conversion") -> str:
    """Log ``model`` as the training stage does (pyfunc + pickled artefact) and register it; returns
    ``models:/NAME/VERSION``. Uses the current MLflow tracking URI."""
    import mlflow

    from training.registry import log_conversion_model, register
    from training.tracking import setup_tracking

    # An experiment of its own: MLflow's "Default" one would put artifacts in ./mlruns.
    _, experiment_id = setup_tracking(mlflow.get_tracking_uri(), "tests")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        model.metadata["run_id"] = run.info.run_id
        info = log_conversion_model(model)
    version = register(info.model_uri, name, "challenger", {"family": model.family})
    return f"models:/{name}/{version}"
