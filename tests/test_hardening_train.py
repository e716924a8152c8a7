"""Issue 11, finding 8: `train --json`, the printed `mlflow ui` command and the logged
config/train.json never hold the password of the tracking or Optuna storage URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from train_support import synthetic_snapshots

from features.batch.dataset import write_snapshot
from propensity.cli.main import cli

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PASSWORD = "hunter2-secret"


def test_finding8_training_output_and_artifacts_hide_url_passwords(postgres_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    # A shared store needs an artifact location every machine can read (never a local default).
    monkeypatch.setenv("MLFLOW_DEFAULT_ARTIFACT_ROOT", (tmp_path / "artifacts").as_uri())
    # The local server trusts every connection, so a password in the URL is accepted and ignored.
    secret_url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")
    snapshot = tmp_path / "snap.parquet"
    write_snapshot(synthetic_snapshots(n_users=300, n_snapshots=3, seed=2), snapshot,
                   {"as_of": [], "horizon": "7d"})
    args = ["train", "--features", str(snapshot), "--trials", "2", "--tracking-uri", secret_url,
            "--storage", f"sqlite:///{tmp_path}/optuna.db"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["tracking_uri"] == postgres_url.replace("postgres@", "postgres:***@")
    human = CliRunner().invoke(cli, args)
    assert human.exit_code == 0 and "mlflow ui --backend-store-uri" in human.stderr
    assert PASSWORD not in human.stdout + human.stderr
    client = MlflowClient(postgres_url)
    logged = client.download_artifacts(doc["run_id"], "config/train.json", str(tmp_path))
    text = Path(logged).read_text()
    assert PASSWORD not in text and "***" in text
