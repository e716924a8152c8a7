"""MLflow plumbing: where runs go, the experiment, quiet logging, registration with tags and alias.

Default store: ``sqlite:///<work_dir>/mlflow.db`` with artifacts under ``<work_dir>/mlartifacts``.
A PostgreSQL URL (``postgresql://user@host:5432/db``) in ``tracking.uri`` is the scaled-out backend;
nothing else changes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from features.paths import work_dir


def default_tracking_uri() -> str:
    """``sqlite:///<absolute work_dir>/mlflow.db``."""
    return f"sqlite:///{(work_dir() / 'mlflow.db').resolve()}"


def default_artifact_location() -> str:
    """``file://<absolute work_dir>/mlartifacts``."""
    return (work_dir() / "mlartifacts").resolve().as_uri()


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


def setup_tracking(uri: str | None, experiment: str, artifact_location: str | None = None) -> tuple[str, str]:
    """Point MLflow at ``uri`` (default store when None) and ensure ``experiment`` exists.

    Returns (tracking URI, experiment id). New experiments get ``artifact_location`` (default
    :func:`default_artifact_location`), so artifacts never land in the current directory.
    """
    quiet_mlflow()
    uri = uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return uri, found.experiment_id
    location = artifact_location or default_artifact_location()
    try:
        exp_id = client.create_experiment(experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        found = client.get_experiment_by_name(experiment)  # created concurrently by another worker
        if found is None:
            raise
        exp_id = found.experiment_id
    return uri, exp_id


def ui_command(uri: str) -> str:
    """The shell command that opens the MLflow UI on this store."""
    return f"mlflow ui --backend-store-uri {uri}"


def git_commit() -> str | None:
    """The current git commit of the repository, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def register(model_uri: str, name: str, alias: str, tags: dict[str, Any],
             description: str | None = None) -> str:
    """Register ``model_uri`` under ``name`` with ``tags`` and point ``alias`` at it; returns the version.
    ``description`` becomes the model version's description in the registry."""
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." lines
        version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    if description:
        MlflowClient().update_model_version(name, version.version, description=description)
    MlflowClient().set_registered_model_alias(name, alias, version.version)
    return str(version.version)
