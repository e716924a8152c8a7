"""Scaled-out backends on the local PostgreSQL: MLflow tracking and an Optuna study shared by workers."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import optuna
import polars as pl
import psycopg2
import pytest
from mlflow.tracking import MlflowClient
from train_support import synthetic_snapshots

from training.config import load_train_config
from training.train import train

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synthetic_snapshots(n_users=400, n_snapshots=3, seed=4)


def second_database(url: str) -> str:
    """A second fresh database next to the fixture's (MLflow and Optuna both keep alembic_version)."""
    name = url.rsplit("/", 1)[1] + "_optuna"
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def test_mlflow_tracking_and_registry_on_postgresql(postgres_url: str, tmp_path: Path,
                                                    frame: pl.DataFrame) -> None:
    cfg = load_train_config(overrides={
        "search": {"n_trials": 2, "families": ["logistic_regression"], "threads": 1},
        "tracking": {"uri": postgres_url, "artifact_location": (tmp_path / "art").as_uri(), "plots": False},
    })
    result = train(frame, cfg)
    assert result.tracking_uri == postgres_url
    client = MlflowClient(postgres_url)
    assert client.get_run(result.run_id).data.metrics["auc"] == pytest.approx(result.metrics["auc"])
    assert str(client.get_model_version_by_alias("propensity-conversion", "challenger").version) == "1"
    mlflow.set_tracking_uri(postgres_url)
    predictions = mlflow.pyfunc.load_model(result.model_uri).predict(frame.to_pandas())
    np.testing.assert_allclose(predictions, result.model.predict_proba(frame))


def test_two_worker_processes_share_one_study_on_postgresql(postgres_url: str, tmp_path: Path,
                                                            frame: pl.DataFrame) -> None:
    storage = second_database(postgres_url)
    try:
        cfg = load_train_config(overrides={
            "search": {"n_trials": 4, "families": ["xgboost", "logistic_regression"], "threads": 1,
                       "workers": 2, "storage": storage, "study_name": "shared"},
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "plots": False,
                         "artifact_location": (tmp_path / "art").as_uri()},
        })
        result = train(frame, cfg)
        study = optuna.load_study(study_name="shared", storage=storage)
        workers = {t.user_attrs["worker"] for t in study.trials}
        assert len(study.trials) == 4 and len(workers) == 2
        best = study.best_trial
        assert result.best_family == best.params["family"]
        assert result.leaderboard[0]["best_auc"] == pytest.approx(best.value)
        client = MlflowClient(result.tracking_uri)
        children = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
        assert len(children) == 4
    finally:
        drop_database(storage)
