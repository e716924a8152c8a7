"""Loading YAML configuration into typed pydantic models.

Every stage has a pydantic model (``extra="forbid"``) for its config file in ``configs/``. An
unknown or mistyped key is a :class:`ConfigError` that names the key and the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from propensity.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def config_dir() -> Path:
    """The folder holding the default YAML files: ``$PROPENSITY_CONFIG_DIR``, else the checkout's
    ``configs/`` (or a bento's), else the copy an installed package ships in
    ``<prefix>/share/propensity/configs``."""
    env = os.environ.get("PROPENSITY_CONFIG_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parent.parent / "configs"
    if beside.is_dir():
        return beside
    return Path(sys.prefix) / "share" / "propensity" / "configs"


def default_config_path(name: str) -> Path:
    """Path of a default config file, e.g. ``default_config_path("train.yaml")``."""
    return config_dir() / name


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{where}'"
    return f"{path}: invalid value for '{where}': {first['msg']}"


def load_config(model: type[M], path: str | Path | None = None, default_name: str | None = None,
                overrides: dict[str, Any] | None = None) -> M:
    """Read ``path`` (or the default file ``default_name`` in :func:`config_dir`) into ``model``.

    ``overrides`` are top-level keys applied on top of the file (CLI flags). Raises
    :class:`ConfigError` naming the file and the key on any problem.
    """
    if path is None:
        if default_name is None:
            raise ValueError("load_config needs a path or a default_name")
        path = default_config_path(default_name)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
