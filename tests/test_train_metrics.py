"""Metrics, calibration, time split, feature selection and config of the training stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import log_loss
from train_support import synthetic_snapshots

from features import registry
from propensity.errors import ConfigError, DataError
from training.calibration import choose_calibration, cross_fitted
from training.config import DataConfig, load_train_config
from training.data import load_training_data, select_features, time_split
from training.evaluate import classification_metrics, expected_calibration_error, top_share


def test_ece_matches_hand_computation() -> None:
    # Bins of width 0.1: {0.05, 0.05} mean p 0.05, mean y 0.5 -> |0.45| * 2/5;
    # {0.95, 0.95, 1.0} -> mean p 0.9667, mean y 2/3 -> |0.3| * 3/5. ECE = 0.18 + 0.18 = 0.36.
    y = np.array([0, 1, 1, 1, 0])
    p = np.array([0.05, 0.05, 0.95, 0.95, 1.0])
    assert expected_calibration_error(y, p) == pytest.approx(0.36)


def test_lift_and_capture_at_top_ten_percent_match_hand_computation() -> None:
    # 20 rows, 4 converters; the top 2 by score are converters -> rate 1.0 vs base 0.2: lift 5, capture 2/4.
    y = np.array([1, 1, 1, 1] + [0] * 16)
    p = np.array([0.9, 0.8, 0.1, 0.1] + [0.5] * 16)
    lift, capture = top_share(y, p, 0.10)
    assert lift == pytest.approx(5.0) and capture == pytest.approx(0.5)


def test_metrics_of_a_perfect_ranking() -> None:
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert m["auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)


def test_calibration_repairs_distorted_probabilities() -> None:
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.02, 0.6, 6000)
    y = (rng.random(6000) < p_true).astype(int)
    distorted = p_true ** 2.5  # same ranking, badly under-confident
    choice = choose_calibration(distorted, y, "auto", seed=1)
    assert choice.method in ("isotonic", "sigmoid") and choice.calibrator is not None
    assert choice.losses[choice.method] < choice.losses["none"] - 0.02
    assert log_loss(y, choice.calibrator.apply(distorted)) < log_loss(y, distorted)


def test_platt_scaling_matches_unpenalised_logistic_regression() -> None:
    # Reference: scikit-learn's LogisticRegression without penalty on the same one-feature problem.
    from sklearn.linear_model import LogisticRegression

    from training.calibration import platt

    rng = np.random.default_rng(0)
    z = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(0.7 * z - 0.4)))).astype(float)
    ref = LogisticRegression(C=np.inf).fit(z[:, None], y)
    np.testing.assert_allclose(platt(z, y), [ref.coef_[0, 0], ref.intercept_[0]], atol=1e-3)


def test_cross_fitting_never_scores_a_row_with_its_own_calibrator() -> None:
    # With a single informative row pattern, out-of-fold isotonic cannot memorise the labels.
    rng = np.random.default_rng(2)
    p = rng.uniform(size=400)
    y = rng.integers(0, 2, 400)  # labels unrelated to p
    crossed = cross_fitted("isotonic", p, y, seed=0)
    assert log_loss(y, np.clip(crossed, 1e-6, 1 - 1e-6)) > 0.69


def test_time_split_validates_on_the_latest_snapshot() -> None:
    frame = synthetic_snapshots(n_users=50, n_snapshots=3)
    split = time_split(frame, DataConfig(), seed=0)
    assert split.kind == "time"
    assert split.train.get_column("as_of").max() < split.valid.get_column("as_of").min()
    assert split.valid.get_column("as_of").n_unique() == 1 and split.train.height == 100


def test_single_snapshot_is_an_error_unless_user_holdout_is_configured() -> None:
    frame = synthetic_snapshots(n_users=200, n_snapshots=1)
    with pytest.raises(DataError, match="snapshot"):
        time_split(frame, DataConfig(), seed=0)
    split = time_split(frame, DataConfig(single_snapshot="user_holdout"), seed=0)
    train_users = set(split.train.get_column("user_id").to_list())
    assert split.kind == "user_holdout" and not train_users & set(split.valid.get_column("user_id").to_list())


def test_sensitive_attributes_excluded_by_default_and_segment_columns_added_when_present() -> None:
    frame = synthetic_snapshots(n_users=20, n_snapshots=2).with_columns(
        pl.lit(1.5).alias("engagement_score"), pl.lit("decision").alias("journey_stage"))
    numeric, categorical = select_features(frame, DataConfig())
    chosen = set(numeric + categorical)
    assert not chosen & set(registry.SENSITIVE_FEATURES)
    assert "engagement_score" in numeric and "journey_stage" in categorical
    numeric, categorical = select_features(frame, DataConfig(include_sensitive=True))
    assert set(registry.SENSITIVE_FEATURES) <= set(numeric + categorical)


def test_model_inputs_follow_the_snapshots_own_feature_specs_not_the_active_config() -> None:
    from features.feature_set import active_feature_set

    frame = synthetic_snapshots(n_users=20, n_snapshots=2).with_columns(pl.lit(2.0).alias("shoe_views_14d"))
    specs = [*active_feature_set().to_dicts(), {"name": "shoe_views_14d", "events": ["product_view"],
                                                 "where": {"category": ["shoes"]}, "aggregate": "count",
                                                 "window": "14d"}]
    numeric, _ = select_features(frame, DataConfig())
    assert "shoe_views_14d" not in numeric and "product_view_1d" in numeric  # the active configuration
    numeric, _ = select_features(frame, DataConfig(), {"feature_specs": specs})
    assert "shoe_views_14d" in numeric
    dropped = [s for s in specs if s.get("name") != "product_view_1d"]
    numeric, _ = select_features(frame, DataConfig(), {"feature_specs": dropped})
    assert "product_view_1d" not in numeric and "shoe_views_14d" in numeric


def test_missing_label_and_missing_file_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="label"):
        load_training_data(synthetic_snapshots(n_users=10, n_snapshots=2).drop("label"))
    with pytest.raises(DataError, match="not found"):
        load_training_data(tmp_path / "nope.parquet")


def test_profile_merges_over_the_file_and_overrides_win() -> None:
    cfg = load_train_config(profile="demo", overrides={"search": {"n_trials": 3, "timeout_s": None}})
    assert cfg.search.n_trials == 3 and "random_forest" not in cfg.search.families
    assert cfg.tracking.registered_model == "propensity-conversion"


def test_unknown_profile_and_bad_override_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_train_config(profile="nope")
    with pytest.raises(ConfigError, match="search.pruner"):
        load_train_config(overrides={"search": {"pruner": "sometimes"}})


def test_permutation_importance_ranks_the_informative_column_first() -> None:
    from training.evaluate import permutation_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=3000) > 0).astype(int)

    def score(M: np.ndarray) -> np.ndarray:  # reads only column 0
        return 1 / (1 + np.exp(-M[:, 0]))

    drop = permutation_importance(score, X, y, {"signal": [0], "noise": [1, 2]}, seed=0, n_repeats=4)
    assert drop["signal"]["mean"] > 0.3 and drop["signal"]["std"] > 0  # repeats differ: a spread
    assert drop["signal"]["min"] <= drop["signal"]["mean"] <= drop["signal"]["max"]
    assert drop["noise"] == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}


def test_permutation_importance_moves_a_one_hot_block_as_one() -> None:
    from training.evaluate import permutation_importance

    rng = np.random.default_rng(1)
    country = rng.integers(0, 2, 2000)
    X = np.column_stack([country == 0, country == 1]).astype(np.float32)  # one-hot block
    y = country

    def score(M: np.ndarray) -> np.ndarray:  # needs both columns to agree
        return M[:, 1] - M[:, 0]

    drop = permutation_importance(score, X, y, {"country": [0, 1]}, seed=0, n_repeats=3)
    # Shuffling the block jointly keeps every row a valid one-hot: AUC falls from 1 to about 0.5.
    assert drop["country"]["mean"] == pytest.approx(0.5, abs=0.05)


def test_oracle_auc_joins_on_user_and_as_of(tmp_path: Path) -> None:
    from training.train import oracle_auc

    valid = synthetic_snapshots(n_users=200, n_snapshots=1, seed=7)
    # A perfect oracle (p_true = label) has AUC 1.0 by definition, a reversed one 0.0.
    oracle = valid.select("user_id", "as_of", pl.col("label").cast(pl.Float64).alias("p_true"))
    oracle.write_parquet(tmp_path / "oracle.parquet")
    assert oracle_auc(valid, tmp_path / "oracle.parquet") == 1.0
    oracle.with_columns((1 - pl.col("p_true")).alias("p_true")).write_parquet(tmp_path / "reversed.parquet")
    assert oracle_auc(valid, tmp_path / "reversed.parquet") == 0.0
    oracle.head(10).write_parquet(tmp_path / "partial.parquet")
    with pytest.raises(DataError, match="covers only"):
        oracle_auc(valid, tmp_path / "partial.parquet")


def test_columns_without_any_value_in_the_training_rows_are_left_out() -> None:
    from training.data import without_empty

    frame = synthetic_snapshots(n_users=50, n_snapshots=2).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("tenure_days"), pl.lit(float("nan")).alias("cart_open"),
        pl.lit(None, dtype=pl.String).alias("loyalty_tier"))
    numeric, categorical = select_features(frame, DataConfig())
    kept_numeric, kept_categorical, empty = without_empty(frame, numeric, categorical)
    assert set(empty) == {"tenure_days", "cart_open", "loyalty_tier"}
    assert "add_to_cart_7d" in kept_numeric and not set(empty) & set(kept_numeric + kept_categorical)


def test_rank_auc_equals_scikit_learns_roc_auc_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from training.evaluate import rank_auc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 2)  # rounded: many tied scores
    assert rank_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
