"""`propensity build`: a bento that carries its model and runs with no access to the training machine.

The chosen registered version (``--model`` > ``PROPENSITY_MODEL`` > ``model:`` of
``configs/serving.yaml``, from the store ``MLFLOW_TRACKING_URI`` names) is imported into the BentoML
model store as ``propensity-model:<name>-v<version>`` (the pickled :class:`ConversionModel` and its
registry coordinates). With the champion/challenger split on (``experiment.enabled``), the
challenger version (``experiment.challenger_model``) is imported the same way and travels too;
the bento's labels ``champion`` and ``challenger`` name which carried model plays which part. The
bento lists its models, installs the project's runtime requirements pinned with their whole
dependency closure (not the development lock), and its service always serves the models it carries
(:func:`carried_models`), whatever registry the serving machine sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from propensity.errors import ConfigError
from serving.config import load_serving_config
from serving.engine import LoadedModel
from training.registry import choose_model_uri, load_model, resolve_version, store_label, use_store

BENTO_NAME = "propensity"
BENTO_MODEL = "propensity-model"
PICKLE = "conversion_model.pkl"
ROOT = Path(__file__).resolve().parent.parent
# What the bento's service imports, and the configs it reads (found next to the code in the bento).
INCLUDE = ["features/**/*.py", "propensity/*.py", "training/**/*.py", "fairness/**/*.py", "serving/**/*.py",
           "content/**/*.py", "monitoring/**/*.py", "reports/**/*.py", "reports/templates/*",
           "configs/*.yaml", "pyproject.toml"]
PYTHON_VERSION = "3.11"


@dataclass(frozen=True)
class BuildResult:
    """A built bento: its tag, where it is, and the model it carries."""

    bento_tag: str
    path: str
    model_tag: str
    model_uri: str
    model_name: str
    model_version: str
    requirements: int  # pinned distributions the bento installs

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def import_model(model_uri: str | None, config_path: str | None = None,
                 tracking_uri: str | None = None) -> tuple[str, str, str, str]:
    """Copy the chosen registered version into the BentoML model store (reused when already there).

    Returns (bento model tag, model URI, registered name, version). Raises ConfigError naming the
    MLflow store when the model cannot be resolved or loaded.
    """
    import bentoml

    cfg = load_serving_config(config_path)
    uri = choose_model_uri(model_uri, cfg.model)
    store = use_store(tracking_uri or cfg.tracking_uri)
    resolved = resolve_version(uri)
    if resolved is None:
        raise ConfigError(f"model: '{uri}' is not a registered model (models:/NAME/VERSION or @ALIAS)")
    name, version = resolved
    tag = f"{BENTO_MODEL}:{_tag_part(name)}-v{version}"
    try:
        bentoml.models.get(tag)
        return tag, uri, name, version
    except bentoml.exceptions.NotFound:
        pass
    model = load_model(f"models:/{name}/{version}")
    labels = {"registered_model": _tag_part(name), "registered_version": version}
    metadata = {"model_name": name, "model_version": version, "model_uri": uri,
                "mlflow_store": store_label(store), "family": model.family}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as stored:
        model.save(stored.path_of(PICKLE))
    return tag, uri, name, version


def _tag_part(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())


def build_bento(model_uri: str | None = None, config_path: str | None = None,
                tracking_uri: str | None = None) -> BuildResult:
    """Import the model (and the challenger when the split is on, see :func:`import_model`) and
    build the bento that carries them."""
    import bentoml

    from training.requirements import locked_runtime_requirements

    tag, uri, name, version = import_model(model_uri, config_path, tracking_uri)
    labels = {"project": "propensity", "model": f"{_tag_part(name)}-v{version}",
              "champion": _version_part(tag)}
    models: list[Any] = [tag]
    experiment = load_serving_config(config_path).experiment
    if experiment.enabled:
        challenger = import_model(experiment.challenger_model, config_path, tracking_uri)[0]
        labels["challenger"] = _version_part(challenger)
        models += [challenger] if challenger != tag else []
    requirements = locked_runtime_requirements()
    bento = bentoml.bentos.build(
        "serving.service:PropensityService", name=BENTO_NAME, build_ctx=str(ROOT),
        description=_description(), include=INCLUDE, exclude=["tests/", "work/", "bench/", "__pycache__/"],
        labels=labels, models=models,
        # Pinned closure, no re-lock: `bentoml build` would otherwise install uv to lock it.
        python={"packages": requirements, "lock_packages": False},
        docker={"python_version": PYTHON_VERSION},
    )
    return BuildResult(str(bento.tag), str(bento.path), tag, uri, name, version, len(requirements))


def _description() -> str:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return str(metadata("propensity")["Summary"])
    except PackageNotFoundError:
        return "propensity"


def _version_part(tag: str) -> str:
    return tag.split(":", 1)[1]


def carried_model(service: Any) -> LoadedModel | None:
    """The champion a bento carries (None when the service runs from a checkout, not from a bento)."""
    return carried_models(service)[0]


def carried_models(service: Any) -> tuple[LoadedModel | None, LoadedModel | None]:
    """(champion, challenger) a bento carries; None for a part it does not carry (a checkout: both)."""
    bento = getattr(service, "bento", None)
    if bento is None:
        return None, None
    stored = [m.tag for m in bento.info.models if m.tag.name == BENTO_MODEL]
    if not stored:
        return None, None
    labels = bento.info.labels or {}
    by_version = {str(t.version): t for t in stored}
    champion = by_version.get(labels.get("champion", ""), stored[0])  # older bentos: their one model
    challenger = by_version.get(labels["challenger"]) if "challenger" in labels else None
    return _load_carried(champion), _load_carried(challenger) if challenger is not None else None


def _load_carried(tag: Any) -> LoadedModel:
    import bentoml

    from training.model import ConversionModel

    stored = bentoml.models.get(tag)
    meta = stored.info.metadata
    return LoadedModel(ConversionModel.load(stored.path_of(PICKLE)), str(meta["model_name"]),
                       str(meta["model_version"]))


def dockerfile(bento_path: str) -> str:
    """The Dockerfile BentoML generated for a bento (``bentoml containerize`` builds from it)."""
    return (Path(bento_path) / "env" / "docker" / "Dockerfile").read_text()

