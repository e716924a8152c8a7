"""MLflow run plumbing: the experiment runs go to, quiet logging, the UI command, the git commit.

Which store, and registering/loading models, live in :mod:`training.registry`. Default store:
``sqlite:///<work_dir>/mlflow.db`` with artifacts next to it (``mlartifacts``). A PostgreSQL URL
(``postgresql://user@host:5432/db``) in ``tracking.uri`` or ``MLFLOW_TRACKING_URI`` is the scaled-out
backend; its artifacts go where ``tracking.artifact_location`` or ``MLFLOW_DEFAULT_ARTIFACT_ROOT``
says (a location every machine reading the store can reach, never the training machine's disk).
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from training.registry import artifact_location as store_artifact_location
from training.registry import use_store


def quiet_mlflow() -> None:
    """Silence MLflow's and alembic's INFO chatter and common warnings (CLI output stays readable)."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration", "optuna", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Advice about cloudpickled python_model objects and schema inference of string columns.
    for name in ("mlflow.pyfunc", "mlflow.data", "mlflow.models.signature", "mlflow.types.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports from a training job
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*[Tt]ype hints.*", category=UserWarning)


def setup_tracking(uri: str | None, experiment: str,
                   artifact_location: str | None = None) -> tuple[str, str]:
    """Point MLflow at ``uri`` (see :func:`training.registry.tracking_uri`) and ensure ``experiment`` exists.

    Returns (tracking URI, experiment id). New experiments get ``artifact_location`` (default
    :func:`training.registry.artifact_location`), so artifacts never land in the current directory.
    """
    uri = use_store(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return uri, found.experiment_id
    location = store_artifact_location(uri, artifact_location)
    try:
        exp_id = client.create_experiment(experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        found = client.get_experiment_by_name(experiment)  # created concurrently by another worker
        if found is None:
            raise
        exp_id = found.experiment_id
    return uri, exp_id


def ui_command(uri: str) -> str:
    """The shell command that opens the MLflow UI on this store (a password in the URI is masked)."""
    from propensity.redact import redact

    return f"mlflow ui --backend-store-uri {redact(uri)}"


def git_commit() -> str | None:
    """The current git commit of the repository, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None

