"""`propensity monitor` end to end on a prediction log: windows, outcomes, drift alerts at a planted
shift and none before it, the JSON shape, the report and the MLflow monitoring run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from fairness_support import register_model, small_frame, xgb_model
from mlflow.tracking import MlflowClient

from monitoring.config import load_monitor_config
from monitoring.stage import monitor
from propensity.cli.main import cli

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS, ONSET = 21, 14


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", (tmp_path / "art").as_uri()))
    return load_monitor_config(overrides={"tracking": {"uri": uri, "log_to_mlflow": True}})


def prediction_log(model, tmp_path, shift: float = 3.0) -> tuple[str, str]:
    """One small_frame population a day; from day ONSET ``visits`` is multiplied by ``shift``.
    Purchases are drawn from the frame's labels, a day after each prediction."""
    days, buys = [], []
    for k in range(DAYS):
        frame = small_frame(1500, seed=100 + k)
        if k >= ONSET:
            frame = frame.with_columns(pl.col("visits") * shift)
        t = START + timedelta(days=k, hours=9)
        days.append(frame.with_columns(
            pl.lit(t).cast(pl.Datetime("us", "UTC")).alias("time"),
            (pl.col("user_id") + f"-{k}").alias("user_id"),
            pl.Series("probability", model.predict_proba(frame)),
            pl.lit("propensity-conversion").alias("model_name"), pl.lit("1").alias("model_version")))
        bought = days[-1].filter(pl.col("label") == 1)
        buys.append(bought.select("user_id", (pl.col("time") + timedelta(days=1)).alias("timestamp")))
    log = pl.concat(days).drop("label", "as_of").with_columns(
        pl.concat_str([pl.col("user_id"), pl.lit("r")]).alias("request_id"))
    log.write_parquet(tmp_path / "log.parquet")
    events = pl.concat(buys).with_columns(pl.lit("purchase").alias("event"),
                                          pl.int_range(pl.len()).cast(pl.String).alias("event_id"))
    events.write_parquet(tmp_path / "events.parquet")
    return str(tmp_path / "log.parquet"), str(tmp_path / "events.parquet")


def test_a_planted_shift_alerts_at_its_onset_and_not_before(store, tmp_path) -> None:
    model = xgb_model(small_frame(3000, seed=1))
    uri = register_model(model)
    reference = small_frame(3000, seed=2)
    log, events = prediction_log(model, tmp_path)
    result = monitor(uri, predictions=log, events=events, reference=reference, cfg=store,
                     out_dir=tmp_path / "mon")
    doc = result.to_json()
    assert len(doc["windows"]) == DAYS and {w["predictions"] for w in doc["windows"]} == {1500}
    first = doc["windows"][0]
    for key in ("start", "end", "model_version", "predictions", "mean_probability", "realized_rate",
                "realized_auc", "log_loss", "estimated_auc", "estimated_auc_low", "estimated_auc_high",
                "drift"):
        assert key in first
    assert set(first["drift"]["visits"]) == {"psi", "p_value"} and "prediction" in first["drift"]
    # labelled until the last purchase day minus the horizon; later windows wait for their labels
    labelled = [w for w in doc["windows"] if w["realized_auc"] is not None]
    assert 0 < len(labelled) < DAYS and all(w["log_loss"] is not None for w in labelled)
    assert all(w["realized_rate"] is None for w in doc["windows"][len(labelled):])
    drift = [a for a in doc["alerts"] if a["kind"] == "drift"]
    onset = (START + timedelta(days=ONSET)).isoformat()
    assert {a["subject"] for a in drift if a["window_start"] == onset} >= {"visits", "prediction"}
    assert not [a for a in drift if a["window_start"] < onset]
    assert json.loads(result.json_path.read_text())["alerts"] == json.loads(json.dumps(doc["alerts"]))
    page = result.report.read_text()
    assert "data:image/png;base64" in page and "PSI" in page
    # the monitoring run holds the daily metrics and is tagged on the model version
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags["model_version"] == "1"
    history = client.get_metric_history(result.run_id, "predictions")
    assert len(history) == DAYS
    assert client.get_model_version("propensity-conversion", "1").tags["monitoring_run"] == result.run_id


def test_estimated_auc_tracks_the_realised_one_on_stable_windows(store, tmp_path) -> None:
    model = xgb_model(small_frame(3000, seed=1))
    uri = register_model(model)
    log, events = prediction_log(model, tmp_path, shift=1.0)
    result = monitor(uri, predictions=log, events=events, reference=small_frame(3000, seed=2), cfg=store,
                     out_dir=tmp_path / "mon", record=False)
    labelled = [w.to_json() for w in result.windows if w.labelled]
    gaps = [abs(w["estimated_auc"] - w["realized_auc"]) for w in labelled]
    assert np.mean(gaps) < 0.03
    assert not [a for a in result.alerts if a["kind"] in ("drift", "volume")]


def test_cli_bad_input_is_one_line(store, tmp_path) -> None:
    uri = register_model(xgb_model(small_frame(500, seed=1)))
    config = tmp_path / "monitor.yaml"
    config.write_text(f"tracking: {{uri: '{store.tracking.uri}', log_to_mlflow: false}}\n")
    runner = CliRunner()
    missing = runner.invoke(cli, ["monitor", "--model", uri, "--predictions", str(tmp_path / "nope"),
                                  "--reference", str(tmp_path / "nope.parquet"), "--config", str(config)])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    small_frame(500, seed=2).write_parquet(tmp_path / "ref.parquet")
    no_mode = runner.invoke(cli, ["monitor", "--model", uri, "--reference", str(tmp_path / "ref.parquet"),
                                  "--config", str(config)])
    assert no_mode.exit_code != 0 and "--predictions" in str(no_mode.exception or no_mode.output)
