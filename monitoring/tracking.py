"""The monitoring run in MLflow: daily metrics (step = window index, timestamp = window start),
the report as artifacts, linked both ways to the model version (run tags and the version tag
``monitoring_run``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from training.registry import artifact_location

if TYPE_CHECKING:
    from monitoring.stage import MonitorResult

EXPERIMENT = "propensity-monitoring"
VERSION_TAG = "monitoring_run"
LOGGED = ("predictions", "mean_probability", "realized_rate", "realized_auc", "log_loss", "estimated_auc",
          "estimated_auc_low", "estimated_auc_high")


def log_monitoring_run(result: MonitorResult) -> str:
    """Log ``result`` to a new run of the monitoring experiment; returns the run id."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    # artifacts beside the work folder's store, never MLflow's default ./mlruns in the current directory
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        EXPERIMENT, artifact_location=artifact_location(mlflow.get_tracking_uri()))
    name, version = result.model
    run = client.create_run(experiment_id, run_name=f"monitor-{name}-{version}", tags={
        "model_uri": result.model_uri, "model_name": name, "model_version": version,
        "alerts": str(len(result.alerts))})
    metrics = []
    for step, window in enumerate(result.windows):
        stamp = int(window.start.timestamp() * 1000)
        doc = window.to_json()
        values = {k: doc[k] for k in LOGGED}
        values["max_psi"] = max((d["psi"] for d in window.drift.values() if not math.isnan(d["psi"])),
                                default=None)
        values["alerts"] = sum(a["window_start"] == doc["start"] for a in result.alerts)
        for key, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                metrics.append(Metric(f"v{window.model_version}.{key}" if window.model_version != version
                                      else key, float(value), stamp, step))
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
    for path in (result.report, result.json_path):
        client.log_artifact(run.info.run_id, str(path), "monitoring")
    client.set_terminated(run.info.run_id)
    if version.isdigit():
        client.set_model_version_tag(name, version, VERSION_TAG, run.info.run_id)
    return str(run.info.run_id)
