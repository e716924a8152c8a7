"""`propensity audit` and `propensity promote` on a real MLflow store: --json, exit codes, one-line errors."""

from __future__ import annotations

import json

import mlflow
import pytest
from fairness_support import register_model, small_frame, xgb_model

from propensity.cli.main import main


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "t", artifact_location=(tmp_path / "artifacts").as_uri()))
    (tmp_path / "fairness.yaml").write_text("sensitive_features: [gender]\nmin_group_size: 30\n")
    snapshot = tmp_path / "snapshot.parquet"
    small_frame(3000, seed=2, disparity=0.6).write_parquet(snapshot)
    model_uri = register_model(xgb_model(small_frame(3000, seed=1, disparity=0.6)))
    base = ["--model", model_uri, "--features", str(snapshot), "--config", str(tmp_path / "fairness.yaml"),
            "--tracking-uri", uri, "--out", str(tmp_path / "report")]
    return base, uri


def test_audit_json_and_gate_exit_code(setup, capsys) -> None:
    base, _ = setup
    main(["audit", *base, "--json", "--mitigation", "never"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "fail" and doc["failing"][0]["feature"] == "gender"
    with pytest.raises(SystemExit) as exc:
        main(["audit", *base, "--mitigation", "never", "--fail-on-gate"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "verdict: fail" in err and "FAIL demographic_parity_ratio on gender" in err


def test_promote_refuses_with_one_line_then_forced(setup, capsys) -> None:
    base, uri = setup
    main(["audit", *base, "--json", "--mitigation", "never"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--model", "propensity-conversion", "--version", "1", "--tracking-uri", uri])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing to promote") and "\n" not in err
    main(["promote", "--model", "propensity-conversion", "--version", "1", "--tracking-uri", uri, "--force",
          "--reason", "approved", "--json"])
    assert json.loads(capsys.readouterr().out)["forced"] is True


def test_audit_of_a_missing_model_is_one_line(setup, capsys) -> None:
    base, _ = setup
    base[1] = "models:/propensity-conversion/99"
    with pytest.raises(SystemExit) as exc:
        main(["audit", *base])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model: cannot resolve 'models:/propensity-conversion/99' in the MLflow")
    assert "\n" not in err.rstrip("\n")
