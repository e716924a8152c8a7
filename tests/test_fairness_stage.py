"""The audit stage end to end on a real MLflow store (tmp SQLite): report, tags, mitigation, promotion."""

from __future__ import annotations

import json

import mlflow
import polars as pl
import pytest
from fairness_support import register_model, small_frame, xgb_model
from mlflow.tracking import MlflowClient

from fairness.config import FairnessConfig
from fairness.mitigation import MitigatedModel
from fairness.promote import promote
from fairness.stage import audit_model, register_mitigated
from propensity.errors import DataError, PropensityError
from training.model import load_conversion_model

CFG = FairnessConfig(sensitive_features=["gender"], min_group_size=30)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    cfg = CFG.model_copy(deep=True)
    cfg.tracking.uri = uri
    return cfg


@pytest.fixture(scope="module")
def disparate():
    return xgb_model(small_frame(3000, seed=1, disparity=0.6)), small_frame(3000, seed=2, disparity=0.6)


def test_disparate_model_fails_names_the_group_and_mitigation_passes(store, disparate, tmp_path) -> None:
    model, snapshot = disparate
    uri = register_model(model)
    result = audit_model(uri, snapshot, cfg=store, out_dir=tmp_path / "report")
    assert result.verdict.verdict == "fail"
    failing = {f["metric"]: f for f in result.verdict.failing}
    assert failing["demographic_parity_ratio"]["feature"] == "gender"
    assert failing["demographic_parity_ratio"]["groups"][0] == "F"  # the under-selected group first
    mitigation = result.document["mitigation"]
    assert mitigation["verdict_before"] == "fail" and mitigation["verdict_after"] == "pass"
    before, after = mitigation["comparison"]
    assert after["demographic_parity_ratio"] >= 0.8 > before["demographic_parity_ratio"]
    assert after["auc"] < before["auc"]  # the cost of fairness, shown side by side
    html = result.html_path.read_text()
    assert "data:image/png;base64," in html and "Mitigation" in html and "<script" not in html
    assert json.loads(result.json_path.read_text())["verdict"] == "fail"
    client = MlflowClient()
    assert client.get_run(result.run_id).data.tags["fairness_gate"] == "fail"
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "fairness")}
    assert artifacts == {"fairness/fairness_report.html", "fairness/fairness_report.json"}
    assert client.get_model_version("propensity-conversion", "1").tags["fairness_gate"] == "fail"


def test_json_document_has_the_documented_shape(store, disparate, tmp_path) -> None:
    uri = register_model(disparate[0])
    result = audit_model(uri, disparate[1], cfg=store, out_dir=tmp_path, explain=False, mitigation="never")
    doc = result.to_json()
    assert set(doc) == {"verdict", "threshold", "groups", "metrics", "failing", "undecided", "checks",
                        "intervals"}
    keys = ("group", "count", "selection_rate", "tpr", "fpr", "auc")
    assert {tuple(g) for g in doc["groups"]["gender"]} == {keys}
    assert set(doc["metrics"]) == {"demographic_parity_difference", "demographic_parity_ratio",
                                   "equalized_odds_difference", "equal_opportunity_difference"}
    assert set(doc["metrics"]["demographic_parity_ratio"]) == {"gender"}
    assert {"metric", "feature", "value", "limit"} <= set(doc["failing"][0])
    # Every enabled check carries its limit, passed or not: the value sits next to its threshold.
    ratio = next(c for c in doc["checks"] if c["metric"] == "demographic_parity_ratio")
    assert ratio["limit"] == store.gate.demographic_parity_ratio_min and ratio["kind"] == "min"
    assert ratio["value"] == doc["metrics"]["demographic_parity_ratio"]["gender"]
    assert ratio["passed"] is (ratio["value"] >= ratio["limit"])


def test_promotion_refuses_a_failed_audit_unless_forced_with_a_reason(store, disparate, tmp_path) -> None:
    uri = register_model(disparate[0])
    audit_model(uri, disparate[1], cfg=store, out_dir=tmp_path, explain=False, mitigation="never")
    with pytest.raises(PropensityError, match="failed its fairness audit"):
        promote("propensity-conversion", 1, tracking_uri=store.tracking.uri)
    with pytest.raises(PropensityError, match="--reason"):
        promote("propensity-conversion", 1, force=True, tracking_uri=store.tracking.uri)
    done = promote("propensity-conversion", 1, force=True, reason="legal sign-off 2026-11",
                   tracking_uri=store.tracking.uri)
    assert done.forced
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("propensity-conversion", "champion").version) == "1"
    tags = client.get_model_version("propensity-conversion", "1").tags
    assert tags["promotion_forced"] == "legal sign-off 2026-11"


def test_unaudited_version_is_refused(store, disparate) -> None:
    register_model(disparate[0])
    with pytest.raises(PropensityError, match="never audited"):
        promote("propensity-conversion", 1, tracking_uri=store.tracking.uri)


def test_fair_model_passes_and_is_promoted(store, tmp_path) -> None:
    uri = register_model(xgb_model(small_frame(4000, seed=3)))
    # 12,000 rows: on 4,000 the gate's conservative intervals still straddle a limit (insufficient_evidence)
    result = audit_model(uri, small_frame(12000, seed=4), cfg=store, out_dir=tmp_path)
    assert result.verdict.verdict == "pass", result.verdict.checks
    assert "mitigation" not in result.document
    assert result.document["shap_importance"][0]["feature"] == "visits"
    assert promote("propensity-conversion", 1, tracking_uri=store.tracking.uri).forced is False


def test_mitigated_model_registers_loads_and_passes_its_own_audit(store, disparate, tmp_path) -> None:
    model, snapshot = disparate
    result = audit_model(register_model(model), snapshot, cfg=store, out_dir=tmp_path / "a", explain=False)
    version = register_mitigated(result)
    loaded = load_conversion_model(f"models:/propensity-conversion/{version}")
    assert isinstance(loaded, MitigatedModel)
    row = snapshot.row(0, named=True)
    assert loaded.predict_one(row) == pytest.approx(float(loaded.predict_proba(snapshot[:1])[0]))
    # 12,000 fresh rows: enough for the gate's intervals to lie within the limits (3,000 straddle them)
    again = audit_model(f"models:/propensity-conversion/{version}", small_frame(12000, seed=5, disparity=0.6),
                        cfg=store, out_dir=tmp_path / "b", explain=False)
    assert again.verdict.verdict == "pass", again.verdict.checks
    assert promote("propensity-conversion", version, tracking_uri=store.tracking.uri).version == version


def test_sensitive_attributes_come_from_the_users_file(store, disparate, tmp_path) -> None:
    model, snapshot = disparate
    uri = register_model(model)
    users = snapshot.select("user_id", "gender").with_columns(pl.lit(40).alias("age"))
    users.write_parquet(tmp_path / "users.parquet")
    cfg = store.model_copy(update={"sensitive_features": ["gender", "age_band"]})
    result = audit_model(uri, snapshot.drop("gender"), tmp_path / "users.parquet", cfg=cfg, out_dir=tmp_path,
                         explain=False, mitigation="never")
    assert [g["group"] for g in result.audit.features["age_band"].groups] == ["35-44"]
    assert result.verdict.failing[0]["feature"] == "gender"
    with pytest.raises(DataError, match="age_band"):
        audit_model(uri, snapshot, cfg=cfg, out_dir=tmp_path, explain=False)
