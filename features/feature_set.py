"""The configured feature set: the built-ins plus the ``features:`` entries of configs/features.yaml.

Loaded once per config file version (path and modification time), so the snapshot builder and the
live profile read the same definitions without re-parsing YAML on every call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from features.definitions import FeatureSet, parse_user_specs

_CACHE: dict[tuple[str, float], FeatureSet] = {}
_RECHECK_S = 1.0  # how often the config file's modification time is looked at again, seconds
_LAST: list[tuple[float, str, FeatureSet]] = []  # (checked at, config dir, set)


def feature_set_from_config(path: str | Path | None = None) -> FeatureSet:
    """The feature set of a features config file (default: ``configs/features.yaml``)."""
    from features.batch.config import load_features_config

    return load_features_config(path).feature_set


def active_feature_set() -> FeatureSet:
    """The feature set of the default ``configs/features.yaml`` (``$PROPENSITY_CONFIG_DIR`` honoured);
    the built-ins when there is no such file."""
    from propensity.config import default_config_path

    now = time.monotonic()
    where = os.environ.get("PROPENSITY_CONFIG_DIR", "")
    if _LAST and now - _LAST[0][0] < _RECHECK_S and _LAST[0][1] == where:
        return _LAST[0][2]
    path = default_config_path("features.yaml")
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return FeatureSet()
    cached = _CACHE.get(key)
    if cached is None:
        cached = feature_set_from_config(path)
        _CACHE.clear()
        _CACHE[key] = cached
    _LAST[:] = [(now, where, cached)]
    return cached


def feature_set_of_model(model: object) -> FeatureSet:
    """The features a trained model was built with (``metadata["feature_specs"]``, stored at training
    time); the configured set for a model trained before specs were stored."""
    metadata = getattr(model, "metadata", None)
    specs = metadata.get("feature_specs") if isinstance(metadata, dict) else None
    if not specs:
        base = getattr(model, "base", None) or getattr(model, "model", None)
        return feature_set_of_model(base) if base is not None and base is not model else active_feature_set()
    return FeatureSet.from_dicts(specs)


def feature_set_of_models(champion: object, challenger: object | None = None) -> FeatureSet:
    """The features serving computes: the champion's, plus any the challenger adds."""
    first = feature_set_of_model(champion)
    if challenger is None:
        return first
    names = set(first.names)
    extra = tuple(e for e in feature_set_of_model(challenger).entries if e.name not in names)
    return FeatureSet(first.entries + extra) if extra else first


__all__ = ["FeatureSet", "active_feature_set", "feature_set_from_config", "feature_set_of_model",
           "feature_set_of_models", "parse_user_specs"]
