"""The service's identity: the package version and description in OpenAPI and in BentoML's metrics.

BentoML fills ``info.version`` of the OpenAPI document and the ``service_version`` label of its
metrics from the bento's tag only ("None" / "not available" when served from a checkout), and
``info.description`` from the class docstring. The package's own version and summary say which
code answers, wherever it runs.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _package_info() -> tuple[str, str]:
    if _PYPROJECT.is_file():  # a checkout (or a bento, which ships pyproject.toml): its own numbers
        with _PYPROJECT.open("rb") as fh:
            project = tomllib.load(fh)["project"]
        return str(project["version"]), str(project["description"])
    info = metadata.metadata("propensity")
    return str(info["Version"]), str(info["Summary"])


PACKAGE_VERSION, PACKAGE_DESCRIPTION = _package_info()


def set_service_version() -> None:
    """Label BentoML's metrics with the package version when no bento tag gives one."""
    from bentoml._internal.context import server_context

    if server_context.bento_version in (None, "", "not available"):
        server_context.bento_version = PACKAGE_VERSION


def versioned(service: Any) -> None:
    """Make ``service``'s OpenAPI document carry the package version and description."""
    import attrs

    base = type(service)

    class _Versioned(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        @property
        def openapi_spec(self) -> Any:
            spec = super().openapi_spec
            info = attrs.evolve(spec.info, version=PACKAGE_VERSION, description=PACKAGE_DESCRIPTION)
            return attrs.evolve(spec, info=info)

    service.__class__ = _Versioned
