"""The registry plumbing (training/registry.py): which store, which model, errors that name the store."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from fairness.config import load_fairness_config
from propensity.errors import ConfigError
from serving import gc_policy
from serving.config import load_serving_config
from serving.loader import resolve_config
from training.config import load_train_config
from training.registry import (
    artifact_location,
    choose_model_uri,
    resolve_version,
    store_label,
    tracking_uri,
    use_store,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PROPENSITY_MODEL", raising=False)
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    return monkeypatch


def test_store_precedence_is_flag_then_environment_then_config_then_default(clean_env, tmp_path) -> None:
    default = tracking_uri()
    assert default == f"sqlite:///{(tmp_path / 'work' / 'mlflow.db').resolve()}"
    config = tmp_path / "serving.yaml"
    config.write_text("tracking_uri: sqlite:///from-config.db\n")
    assert load_serving_config(config).tracking_uri == "sqlite:///from-config.db"
    clean_env.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert load_serving_config(config).tracking_uri == "sqlite:///from-env.db"
    assert resolve_config(str(config), tracking_uri="sqlite:///flag.db").tracking_uri == "sqlite:///flag.db"
    assert tracking_uri(None) == "sqlite:///from-env.db"
    assert load_train_config().tracking.uri == "sqlite:///from-env.db"
    assert load_train_config(overrides={"tracking": {"uri": "sqlite:///flag.db"}}).tracking.uri == "sqlite:///flag.db"
    assert load_fairness_config().tracking.uri == "sqlite:///from-env.db"


def test_model_precedence_is_flag_then_environment_then_config(clean_env, tmp_path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("model: models:/from-config@champion\n")
    assert load_serving_config(config).model == "models:/from-config@champion"
    clean_env.setenv("PROPENSITY_MODEL", "models:/from-env/3")
    assert load_serving_config(config).model == "models:/from-env/3"
    assert resolve_config(str(config), "models:/flag/1").model == "models:/flag/1"
    assert choose_model_uri(None, "models:/c@champion") == "models:/from-env/3"


def test_store_label_hides_the_password() -> None:
    assert store_label("postgresql://ml:s3cret@db:5432/mlflow") == "postgresql://ml:***@db:5432/mlflow"
    assert store_label("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"


def test_a_missing_model_is_an_error_naming_the_store(clean_env, tmp_path) -> None:
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    use_store(store)
    with pytest.raises(ConfigError) as err:
        resolve_version("models:/nothing@champion")
    assert store in str(err.value) and "nothing" in str(err.value)


def test_artifacts_live_next_to_a_file_store_or_where_the_user_says(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", raising=False)
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert artifact_location(store) == (tmp_path / "store" / "mlartifacts").as_uri()
    assert artifact_location(store, "s3://bucket/artifacts") == "s3://bucket/artifacts"
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", "gs://shared/mlflow")
    assert artifact_location(store) == "gs://shared/mlflow"
    assert artifact_location(store, "s3://bucket/artifacts") == "s3://bucket/artifacts"


def test_a_shared_store_never_defaults_to_the_training_machines_disk(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", raising=False)
    assert artifact_location("http://mlflow.internal:5000") is None  # the server's proxied default
    with pytest.raises(ConfigError) as err:
        artifact_location("postgresql://ml:s3cret@db:5432/mlflow")
    assert "tracking.artifact_location" in str(err.value) and "MLFLOW_DEFAULT_ARTIFACT_ROOT" in str(err.value)
    assert "s3cret" not in str(err.value)
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", "s3://bucket/mlflow")
    assert artifact_location("postgresql://ml:s3cret@db:5432/mlflow") == "s3://bucket/mlflow"


def test_gc_policy_collects_cycles_between_requests_with_the_collector_off() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    try:
        gc_policy.freeze_startup_heap()
        assert not gc.isenabled()
        for _ in range(100):
            Node()  # cyclic garbage the automatic collector would have found
        before = gc_policy.STATS.rounds

        async def run() -> None:
            gc_policy.schedule_collection(0.01)
            await asyncio.sleep(0.2)

        asyncio.run(run())
        assert gc_policy.STATS.rounds > before
        assert gc_policy.STATS.collected >= 100
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
