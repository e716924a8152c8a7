"""ConversionModel: encoding, the single-row fast path equals batch scoring, pickling, pre-transforms."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest
from train_support import synthetic_snapshots

from training.calibration import fit_calibrator
from training.model import ConversionModel
from training.preprocess import FeatureEncoder
from training.search import fit_candidate, prepare

SMALL_PARAMS = {
    "xgboost": {"max_depth": 3, "learning_rate": 0.2, "n_rounds": 20, "min_child_weight": 1.0,
                "subsample": 0.9, "colsample_bytree": 0.9, "reg_lambda": 1.0},
    "hist_gradient_boosting": {"learning_rate": 0.2, "max_iter": 20, "max_leaf_nodes": 8,
                               "min_samples_leaf": 10, "l2_regularization": 0.01},
    "random_forest": {"n_estimators": 20, "max_depth": 5, "min_samples_leaf": 5, "max_features": 0.5,
                      "max_samples": 0.5},
    "logistic_regression": {"C": 1.0},
}
NUMERIC = ["add_to_cart_7d", "product_view_30d", "days_since_last_event", "tenure_days"]
CATEGORICAL = ["loyalty_tier"]


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synthetic_snapshots(n_users=300, n_snapshots=2, seed=3)


def fitted(frame: pl.DataFrame, family: str, calibrated: bool = False) -> ConversionModel:
    cut = frame.get_column("as_of").max()
    train, valid = frame.filter(pl.col("as_of") < cut), frame.filter(pl.col("as_of") == cut)
    data = prepare(train, valid, NUMERIC, CATEGORICAL)
    enc, est, _ = fit_candidate(data, family, SMALL_PARAMS[family], seed=0, threads=1)
    model = ConversionModel(family, enc, est)
    if calibrated:
        model.calibrator = fit_calibrator("sigmoid", model.predict_proba(data.valid), data.y_valid)
    return model


def test_one_hot_encoding_gives_unknown_and_missing_categories_all_zeros() -> None:
    train = pl.DataFrame({"x": [1.0, None, 3.0], "tier": ["gold", "silver", "gold"]})
    enc = FeatureEncoder(["x"], ["tier"]).fit(train)
    assert enc.feature_names_out == ["x", "tier=gold", "tier=silver"]
    out = enc.transform(pl.DataFrame({"x": [2.0, 5.0], "tier": ["platinum", None]}))
    np.testing.assert_array_equal(out[:, 1:], np.zeros((2, 2)))
    assert np.isnan(enc.transform(train)[1, 0])  # trees see missing values as NaN


def test_scaling_imputes_median_standardises_and_flags_missing() -> None:
    train = pl.DataFrame({"x": [1.0, 2.0, None, 4.0, 10.0]})
    enc = FeatureEncoder(["x"], [], scale=True).fit(train)
    filled = np.array([1.0, 2.0, 3.0, 4.0, 10.0])  # median of the observed values is 3.0
    expected = (filled - filled.mean()) / filled.std()
    out = enc.transform(train)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 1], [0, 0, 1, 0, 0])
    assert enc.feature_names_out == ["x", "x__missing"]


@pytest.mark.parametrize("scale", [False, True])
def test_encoding_mappings_equals_encoding_the_frame(scale: bool) -> None:
    """The serving path (rows as mappings: complete ones read at once, incomplete or odd ones value by
    value) encodes exactly as the batch path encodes the same rows as a frame."""
    train = pl.DataFrame({"x": [1.0, 2.0, None, 4.0], "y": [0.5, None, 7.0, 1.0], "z": [1, 2, 3, 4],
                          "tier": ["gold", "silver", None, "gold"]})
    enc = FeatureEncoder(["x", "y", "z"], ["tier"], scale=scale).fit(train)
    complete = [{"x": 3.5, "y": None, "z": 2, "tier": "gold"},
                {"x": True, "y": 1e-3, "z": -1, "tier": "bronze"}]
    expected = enc.transform(pl.DataFrame(complete, schema={"x": pl.Float64, "y": pl.Float64, "z": pl.Float64,
                                                            "tier": pl.String}))
    np.testing.assert_array_equal(enc.encode_rows(complete), expected)
    absent = [{"x": 3.5, "z": 2, "tier": "gold"}]  # "y" absent: missing, as a None would be
    np.testing.assert_array_equal(enc.encode_rows(absent), expected[:1])
    numeric_text = [{"x": "3.5", "y": None, "z": "2", "tier": "gold"}]
    np.testing.assert_array_equal(enc.encode_rows(numeric_text), expected[:1])
    with pytest.raises(ValueError, match="abc"):  # what float() says, whichever path ran
        enc.encode_rows([{"x": "abc", "y": 1.0, "z": 1, "tier": None}])
    with pytest.raises(TypeError):
        enc.encode_rows([{"x": [1.0], "y": 1.0, "z": 1, "tier": None}])
    assert "_numeric_getter" not in pickle.loads(pickle.dumps(enc)).__dict__  # artefacts stay as trained


def test_absent_columns_count_as_missing(frame: pl.DataFrame) -> None:
    model = fitted(frame, "xgboost")
    without = frame.drop("tenure_days")
    with_nan = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("tenure_days"))
    np.testing.assert_allclose(model.predict_proba(without), model.predict_proba(with_nan))


@pytest.mark.parametrize("family", list(SMALL_PARAMS))
@pytest.mark.parametrize("calibrated", [False, True])
def test_predict_one_equals_predict_proba(frame: pl.DataFrame, family: str, calibrated: bool) -> None:
    model = fitted(frame, family, calibrated)
    rows = frame.head(40)
    batch = model.predict_proba(rows)
    one = np.array([model.predict_one(r) for r in rows.to_dicts()])
    np.testing.assert_allclose(one, batch, atol=1e-6)
    assert ((batch > 0) & (batch < 1)).all()


@pytest.mark.parametrize("family", list(SMALL_PARAMS))
def test_margin_is_the_log_odds_of_the_uncalibrated_probability(frame: pl.DataFrame, family: str) -> None:
    model = fitted(frame, family)
    rows = frame.head(20)
    margin = model.margin(rows)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), model.predict_proba(rows), atol=1e-6)
    np.testing.assert_allclose([model.margin_one(r) for r in rows.to_dicts()], margin, atol=1e-5)


def test_booster_only_for_xgboost_and_transform_matches_names(frame: pl.DataFrame) -> None:
    xgb_model, lr_model = fitted(frame, "xgboost"), fitted(frame, "logistic_regression")
    assert xgb_model.booster is not None and lr_model.booster is None
    X = xgb_model.transform(frame.head(5))
    assert X.shape == (5, len(xgb_model.transformed_feature_names))
    assert xgb_model.feature_names == NUMERIC + CATEGORICAL


def test_pickle_round_trip_keeps_predictions(frame: pl.DataFrame) -> None:
    model = fitted(frame, "xgboost", calibrated=True)
    model.predict_one(frame.row(0, named=True))  # builds the cached single-thread booster
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(frame), model.predict_proba(frame))
    assert again.predict_one(frame.row(0, named=True)) == model.predict_one(frame.row(0, named=True))


class _Doubler:
    """A pre-transform adding a column, with the same result in batch and per row."""

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns((pl.col("add_to_cart_7d") * 2).alias("tenure_days"))

    def assign_one(self, features: dict) -> dict:
        return {"tenure_days": features["add_to_cart_7d"] * 2}


def test_pre_transform_runs_in_batch_and_single_row_paths(frame: pl.DataFrame) -> None:
    model = fitted(frame, "xgboost")
    model.pre_transform = _Doubler()
    rows = frame.head(10)
    expected = ConversionModel(model.family, model.encoder, model.estimator).predict_proba(
        _Doubler().transform(rows))
    np.testing.assert_allclose(model.predict_proba(rows), expected)
    np.testing.assert_allclose([model.predict_one(r) for r in rows.to_dicts()], expected, atol=1e-6)


def test_a_trial_running_past_the_search_budget_is_cut_once_a_model_exists(frame: pl.DataFrame) -> None:
    import optuna

    from training.config import load_train_config
    from training.search import Objective

    cfg = load_train_config(overrides={"search": {"families": ["xgboost"], "timeout_s": 60.0, "threads": 1}})
    cut = frame.get_column("as_of").max()
    data = prepare(frame.filter(pl.col("as_of") < cut), frame.filter(pl.col("as_of") == cut), NUMERIC,
                   CATEGORICAL)
    objective = Objective(data, cfg, tracking=None)
    objective.deadline = 0.0  # the budget is already spent
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE  # no model yet: never cut
    assert objective.best is not None
    study.optimize(objective, n_trials=1)
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED
