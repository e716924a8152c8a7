"""The train stage end to end on a real (temporary SQLite) MLflow store: registration, pyfunc, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from train_support import synthetic_snapshots

from features.batch.dataset import write_snapshot
from propensity.cli.main import cli
from propensity.errors import DataError
from training.config import TrainConfig, load_train_config
from training.model import load_conversion_model
from training.train import TrainResult, train


def quick_config(tmp_path: Path, **search: object) -> TrainConfig:
    return load_train_config(overrides={
        "search": {"n_trials": 3, "families": ["xgboost", "logistic_regression"], "threads": 1, **search},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "plots": False,
                     "artifact_location": (tmp_path / "art").as_uri()},
    })


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    return tmp_path


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synthetic_snapshots(n_users=500, n_snapshots=3, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, frame: pl.DataFrame) -> TrainResult:
    tmp = tmp_path_factory.mktemp("train")
    cfg = quick_config(tmp)
    cfg.tracking.plots = True
    return train(frame, cfg)


def test_best_model_is_registered_with_alias_tags_and_dataset(trained: TrainResult) -> None:
    mlflow.set_tracking_uri(trained.tracking_uri)
    client = MlflowClient(trained.tracking_uri)
    version = client.get_model_version_by_alias("propensity-conversion", "challenger")
    assert str(version.version) == trained.registered_version
    assert trained.dataset_digest.startswith("sha256:")
    assert version.tags["dataset_digest"] == trained.dataset_digest
    assert float(version.tags["auc"]) == pytest.approx(trained.metrics["auc"], abs=1e-5)
    run = client.get_run(trained.run_id)
    (logged,) = run.inputs.dataset_inputs
    assert trained.dataset_digest.startswith("sha256:" + logged.dataset.digest)
    assert {t.key: t.value for t in logged.tags}["snapshot_digest"] == trained.dataset_digest
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{trained.run_id}'")
    assert len(children) == trained.n_trials == 3
    artifacts = {a.path for a in client.list_artifacts(trained.run_id, "plots")}
    assert {"plots/roc.png", "plots/precision_recall.png", "plots/calibration.png",
            "plots/feature_importance.png", "plots/optuna_history.png"} <= artifacts


def test_registered_pyfunc_returns_probabilities_with_or_without_label(trained: TrainResult,
                                                                       frame: pl.DataFrame) -> None:
    mlflow.set_tracking_uri(trained.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(trained.model_uri)
    with_label = np.asarray(pyfunc.predict(frame.to_pandas()))
    without = np.asarray(pyfunc.predict(frame.drop("label").to_pandas()))
    assert with_label.shape == (frame.height,)
    assert ((with_label > 0) & (with_label < 1)).all() and len(np.unique(with_label)) > 10
    np.testing.assert_array_equal(with_label, without)
    np.testing.assert_allclose(with_label, trained.model.predict_proba(frame))


def test_load_conversion_model_by_alias_gives_the_trained_model(trained: TrainResult,
                                                                frame: pl.DataFrame) -> None:
    mlflow.set_tracking_uri(trained.tracking_uri)
    model = load_conversion_model("models:/propensity-conversion@challenger")
    assert model.family == trained.best_family
    rows = frame.head(50)
    np.testing.assert_allclose(model.predict_proba(rows), trained.model.predict_proba(rows))


def test_validation_metrics_are_reported(trained: TrainResult) -> None:
    m = trained.metrics
    assert {"auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "capture_top10"} <= set(m)
    assert 0.6 < m["auc"] <= 1.0  # the synthetic label depends on add_to_cart_7d and loyalty tier
    assert trained.leaderboard[0]["best_auc"] >= trained.leaderboard[-1]["best_auc"]


def test_same_seed_data_and_config_give_the_same_best_params_and_metrics(tmp_path: Path,
                                                                         frame: pl.DataFrame) -> None:
    first = train(frame, quick_config(tmp_path / "a"))
    second = train(frame, quick_config(tmp_path / "b"))
    assert (first.best_family, first.best_params) == (second.best_family, second.best_params)
    assert first.metrics == second.metrics


def test_single_snapshot_cannot_be_split_by_time(home: Path) -> None:
    with pytest.raises(DataError, match="validation by time"):
        train(synthetic_snapshots(n_users=100, n_snapshots=1), quick_config(home))


def test_cli_json_has_the_documented_keys(home: Path, frame: pl.DataFrame) -> None:
    path = home / "snap.parquet"
    write_snapshot(frame, path, {"as_of": [], "horizon": "7d"})
    result = CliRunner().invoke(cli, ["train", "--features", str(path), "--trials", "2", "--json",
                                      "--tracking-uri", f"sqlite:///{home}/cli.db"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"tracking_uri", "run_id", "model_uri", "registered_model", "metrics", "best",
                        "seconds"}
    assert doc["seconds"] > 0
    assert set(doc["registered_model"]) == {"name", "version"} and set(doc["best"]) == {"family", "params"}
    assert {"auc", "pr_auc", "log_loss", "brier"} <= set(doc["metrics"])
    assert "trial 2/2" in result.stderr


def test_cli_missing_features_file_is_a_one_line_error(home: Path) -> None:
    from propensity.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--features", str(home / "missing.parquet")])
    assert exc.value.code == 2


class TierSegmenter:
    """A fitted pre-transform in the Segmenter shape: adds a categorical ``segment`` column."""

    features_ = ["add_to_cart_7d"]

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        hot = pl.when(pl.col("add_to_cart_7d") > 1).then(pl.lit("hot")).otherwise(pl.lit("cold"))
        return frame.with_columns(hot.alias("segment"))

    def assign_one(self, features: dict) -> dict:
        return {"segment": "hot" if (features.get("add_to_cart_7d") or 0) > 1 else "cold"}


def test_pre_transform_columns_become_features_and_travel_with_the_model(tmp_path: Path,
                                                                        frame: pl.DataFrame) -> None:
    result = train(frame, quick_config(tmp_path), pre_transform=TierSegmenter())
    assert "segment" in result.model.feature_names
    rows = frame.head(30)  # raw snapshot rows, without the segment column
    batch = result.model.predict_proba(rows)
    np.testing.assert_allclose([result.model.predict_one(r) for r in rows.to_dicts()], batch, atol=1e-6)
    mlflow.set_tracking_uri(result.tracking_uri)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(result.model_uri).predict(rows.to_pandas()), batch)


def test_cli_prints_leaderboard_registered_version_and_ui_command(home: Path, frame: pl.DataFrame) -> None:
    path = home / "snap.parquet"
    write_snapshot(frame, path, {"as_of": [], "horizon": "7d"})
    uri = f"sqlite:///{home}/human.db"
    result = CliRunner().invoke(cli, ["train", "--features", str(path), "--profile", "demo", "--trials", "2",
                                      "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "best AUC" in result.stderr and "xgboost" in result.stderr
    assert "registered: propensity-conversion version 1 (alias challenger)" in result.stderr
    assert f"mlflow ui --backend-store-uri {uri}" in result.stderr
    assert result.stdout == ""
