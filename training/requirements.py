"""Pinned runtime requirements of the project, for artefacts that must install without the checkout.

The source of truth is ``[project] dependencies`` of ``pyproject.toml`` (the checkout's when there
is one, else the installed distribution's metadata): the runtime set only, never the development
extra (pytest, mypy, ruff, pyspark). Each is pinned to the version installed here, so a registered
model or a bento installs what the model was trained and tested with.

XGBoost's Linux wheels require NVIDIA's NCCL (``nvidia-nccl-cu12``, ~200 MB, used only by
multi-GPU training); the same library without it is published as ``xgboost-cpu``. Artefacts
therefore pin ``xgboost-cpu`` on Linux x86_64 and ``xgboost`` elsewhere (environment markers), at the
version installed here, and the pinned closure leaves NCCL out. The registered model's own
requirements keep plain ``xgboost`` (MLflow compares them with what is installed when it loads).
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
DISTRIBUTION = "propensity"
# Needed by the HTTP service only: a model loads without them.
SERVER_ONLY = frozenset({"bentoml", "uvloop", "httptools", "redis", "psycopg2-binary", "httpx"})
# distribution -> (its CPU-only build, the platforms that build is published for)
CPU_BUILDS = {"xgboost": ("xgboost-cpu", ('platform_system == "Linux" and platform_machine == "x86_64"',
                                         'platform_system != "Linux" or platform_machine != "x86_64"'))}
GPU_ONLY = frozenset({"nvidia-nccl-cu12"})  # needed by XGBoost's multi-GPU training only


def declared_requirements() -> list[Requirement]:
    """The runtime dependencies the project declares (markers kept, extras left out)."""
    if _PYPROJECT.is_file():
        with _PYPROJECT.open("rb") as fh:
            lines = tomllib.load(fh)["project"]["dependencies"]
    else:
        lines = [r for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
    return [Requirement(line) for line in lines]


def _pinned(requirements: list[Requirement]) -> list[str]:
    out = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            out.append(f"{req.name}=={metadata.version(req.name)}")
        except metadata.PackageNotFoundError:
            out.append(str(req))  # not installed here: keep the declared range
    return out


def cpu_only(pins: list[str]) -> list[str]:
    """``pins`` with every distribution of :data:`CPU_BUILDS` split into its CPU-only build where that
    is published and itself elsewhere (same version, environment markers)."""
    out = []
    for pin in pins:
        name, _, version = pin.partition("==")
        build = CPU_BUILDS.get(name.lower())
        if build is None or not version:
            out.append(pin)
            continue
        cpu_name, (where, elsewhere) = build
        out += [f"{cpu_name}=={version}; {where}", f"{name}=={version}; {elsewhere}"]
    return out


def runtime_requirements() -> list[str]:
    """``name==version`` of every runtime dependency (what the bento installs)."""
    return _pinned(declared_requirements())


def model_requirements() -> list[str]:
    """``name==version`` of what loading a registered model needs (the runtime set minus the server),
    plus cloudpickle, which MLflow uses for the pyfunc wrapper."""
    pins = _pinned([r for r in declared_requirements() if r.name not in SERVER_ONLY])
    return pins + [f"cloudpickle=={metadata.version('cloudpickle')}"]


def _with_dependencies(pins: list[str]) -> list[str]:
    """``pins`` and, recursively, every distribution they need, each pinned to its installed version."""
    seen: dict[str, str] = {}
    todo = [(Requirement(p), frozenset(Requirement(p).extras)) for p in pins]
    while todo:
        req, extras = todo.pop()
        key = req.name.lower().replace("_", "-")
        if (key in seen and not extras) or key in GPU_ONLY:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed here
        seen[key] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            sub = Requirement(line)
            wanted = sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""})
            if wanted:
                todo.append((sub, frozenset(sub.extras)))
    return sorted(seen.values(), key=str.lower)


def locked_runtime_requirements() -> list[str]:
    """:func:`runtime_requirements` with their whole dependency closure pinned (a bento's lock),
    CPU-only builds where published (:func:`cpu_only`)."""
    return cpu_only(_with_dependencies(runtime_requirements()))
