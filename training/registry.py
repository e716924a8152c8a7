"""The MLflow model registry in one place: which store, which model version, load, register, tag, alias.

Training registers, the audit tags and promotes, serving and ``propensity build`` resolve and load;
all of them go through these functions, so the precedence rules hold everywhere:

- the store: a command-line flag > ``MLFLOW_TRACKING_URI`` > the config file > the default
  ``sqlite:///<work_dir>/mlflow.db`` (config loaders put the environment over the file, see
  :func:`env_over_config`; :func:`tracking_uri` fills in the rest);
- the model: ``--model`` > ``PROPENSITY_MODEL`` > ``model:`` of ``configs/serving.yaml``.

Errors are :class:`ConfigError` lines that name the store looked in, with any password removed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from propensity.errors import ConfigError
from propensity.paths import work_dir

if TYPE_CHECKING:
    from training.model import ConversionModel

TRACKING_ENV = "MLFLOW_TRACKING_URI"
MODEL_ENV = "PROPENSITY_MODEL"
ARTIFACT_ROOT_ENV = "MLFLOW_DEFAULT_ARTIFACT_ROOT"  # as `mlflow server --default-artifact-root` reads it
_MODEL_URI = re.compile(r"models:/([^/@]+)(?:/(\d+|latest)|@([\w-]+))?")
# The project's top-level packages a pickled model may reference (copied next to the model).
_ROOT = Path(__file__).resolve().parent.parent
_NOT_CODE = {"tests", "bench", "cli", "docs", "configs"}


def default_tracking_uri() -> str:
    """``sqlite:///<absolute work_dir>/mlflow.db``."""
    return f"sqlite:///{(work_dir() / 'mlflow.db').resolve()}"


def env_over_config(configured: str | None) -> str | None:
    """The store a config file names, unless ``MLFLOW_TRACKING_URI`` is set (the environment wins)."""
    return os.environ.get(TRACKING_ENV) or configured


def tracking_uri(configured: str | None = None) -> str:
    """The store to use: ``configured`` (flag or config), else the environment, else the default."""
    return configured or os.environ.get(TRACKING_ENV) or default_tracking_uri()


def store_label(uri: str) -> str:
    """``uri`` without a password, for messages (``postgresql://user:***@host/db``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def use_store(uri: str | None = None) -> str:
    """Point MLflow's tracking and registry clients at :func:`tracking_uri` of ``uri``; returns it."""
    import mlflow

    from training.tracking import quiet_mlflow

    quiet_mlflow()
    resolved = tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


def artifact_location(uri: str, configured: str | None = None) -> str | None:
    """Where a new experiment keeps its artifacts, never the current folder nor a folder of the
    machine that happens to train:

    1. ``configured`` (``tracking.artifact_location``), else ``MLFLOW_DEFAULT_ARTIFACT_ROOT``;
    2. a file store (SQLite): next to it, ``<folder of mlflow.db>/mlartifacts``, so they travel together;
    3. a tracking server (``http(s)://``, ``databricks``): None, the server's own (proxied) default;
    4. any other shared store (PostgreSQL, MySQL): a ConfigError asking for a location every machine
       that reads the store can reach (``s3://...``, ``gs://...``, a shared mount).
    """
    chosen = configured or os.environ.get(ARTIFACT_ROOT_ENV)
    if chosen:
        return chosen
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    raise ConfigError(f"tracking.artifact_location: the store {store_label(uri)} is shared, so its artifacts "
                      f"need a location every machine can read (s3://..., gs://..., a shared mount); set "
                      f"tracking.artifact_location or {ARTIFACT_ROOT_ENV}")


def choose_model_uri(flag: str | None, configured: str) -> str:
    """The model to serve or package: ``--model`` > ``PROPENSITY_MODEL`` > the config's ``model``."""
    return flag or os.environ.get(MODEL_ENV) or configured


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """(name, version, alias) of a ``models:/NAME[/VERSION|@ALIAS]`` URI; None for other URIs."""
    match = _MODEL_URI.fullmatch(uri)
    return None if match is None else (match.group(1), match.group(2), match.group(3))


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def resolve_version(uri: str) -> tuple[str, str] | None:
    """(name, version) of a ``models:/`` URI, aliases and ``latest`` resolved in the current store;
    None for other URIs. A missing model, version or alias is a ConfigError naming the store."""
    parsed = parse_model_uri(uri)
    if parsed is None:
        return None
    from mlflow.exceptions import MlflowException

    name, version, alias = parsed
    client = _client()
    try:
        if alias is not None:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if version is None or version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise MlflowException(f"Registered Model with name={name} not found")
            return name, str(max(int(v.version) for v in versions))
        return name, str(client.get_model_version(name, version).version)
    except MlflowException as exc:
        raise ConfigError(f"model: cannot resolve '{uri}' in the MLflow store {_current_store()} "
                          f"({_first_line(exc)})") from None


def _current_store() -> str:
    import mlflow

    return store_label(mlflow.get_tracking_uri())


def load_model(uri: str) -> ConversionModel:
    """The :class:`ConversionModel` at ``uri`` (``models:/``, ``runs:/`` or a local MLflow model folder)
    from the current store; a ConfigError naming the store when it cannot be loaded."""
    from mlflow.exceptions import MlflowException

    from training.model import load_conversion_model

    try:
        return load_conversion_model(uri)
    except (MlflowException, OSError, TypeError) as exc:
        raise ConfigError(f"model: cannot load '{uri}' from the MLflow store {_current_store()} "
                          f"({_first_line(exc)})") from None


def register(model_uri: str, name: str, alias: str | None, tags: dict[str, Any],
             description: str | None = None) -> str:
    """Register ``model_uri`` under ``name`` with ``tags``, point ``alias`` at it; returns the version.
    ``description`` becomes the model version's description in the registry."""
    import mlflow

    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." lines
        version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    if description:
        _client().update_model_version(name, version.version, description=description)
    if alias:
        set_alias(name, alias, str(version.version))
    return str(version.version)


def version_tags(name: str, version: str) -> dict[str, str]:
    """The tags of a registered version; a ConfigError naming the store when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client().get_model_version(name, version).tags)
    except MlflowException:
        raise ConfigError(f"model {name!r} has no version {version} in the MLflow store "
                          f"{_current_store()}") from None


def tag_version(name: str, version: str, key: str, value: str) -> None:
    """Set the tag ``key`` = ``value`` on a registered version."""
    _client().set_model_version_tag(name, version, key, value)


def set_alias(name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` at ``version``; returns the version that held it before (None: none did)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, version)
    return previous


def code_packages() -> list[str]:
    """Folders of the project's importable packages that travel with a logged model (``code_paths``),
    so the registered model loads where the project is not installed."""
    return sorted(str(p.parent) for p in _ROOT.glob("*/__init__.py") if p.parent.name not in _NOT_CODE)


def log_conversion_model(model: ConversionModel, **kwargs: Any) -> Any:
    """Log ``model`` in the active run as the ``model`` pyfunc (probabilities out) with the project's
    code and pinned runtime requirements; ``kwargs`` go to ``mlflow.pyfunc.log_model`` (signature,
    input_example). Returns MLflow's ModelInfo."""
    import tempfile

    import mlflow

    from training.model import ConversionPyfunc, silent_warnings
    from training.requirements import model_requirements

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "conversion_model.pkl")
        model.save(path)
        with silent_warnings():  # MLflow's advice to add type hints to predict (see training.model)
            return mlflow.pyfunc.log_model(name="model", python_model=ConversionPyfunc(),
                                           artifacts={ConversionPyfunc.ARTIFACT: path},
                                           code_paths=code_packages(),
                                           pip_requirements=model_requirements(), **kwargs)
