"""Start-up of the service: config, model(s) from MLflow, segments config, rules, store, users preload.

The server's worker processes receive their settings through one environment variable
(``PROPENSITY_SERVING``, JSON) written by :func:`serving.runner.run_server`, so every worker builds
the same engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from features.live.store import ProfileStore, make_profile_store
from features.segments.config import load_segments_config
from propensity.errors import ConfigError
from propensity.paths import work_dir
from serving.config import ServingConfig, load_serving_config
from serving.engine import LoadedModel, PredictionEngine
from serving.predlog import open_prediction_log
from serving.scoring import ExposureLog
from training.registry import load_model as registry_load
from training.registry import resolve_version, use_store

ENV_SETTINGS = "PROPENSITY_SERVING"


def settings_from_env() -> dict[str, Any]:
    """The start-up settings a runner left for the workers (empty when started by hand)."""
    raw = os.environ.get(ENV_SETTINGS)
    return json.loads(raw) if raw else {}


def resolve_config(config_path: str | None = None, model_uri: str | None = None,
                   store_overrides: dict[str, Any] | None = None,
                   tracking_uri: str | None = None) -> ServingConfig:
    """The serving config with command-line overrides applied (flags beat the environment, which
    beats the file: see :func:`serving.config.load_serving_config`)."""
    cfg = load_serving_config(config_path)
    if model_uri:
        cfg = cfg.model_copy(update={"model": model_uri})
    if tracking_uri:
        cfg = cfg.model_copy(update={"tracking_uri": tracking_uri})
    if store_overrides:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update=store_overrides)})
    return cfg


def load_model(uri: str, cfg: ServingConfig) -> LoadedModel:
    """A ConversionModel from ``models:/NAME@alias``, ``models:/NAME/V``, ``runs:/...`` or a pickle path,
    in the store of :func:`training.registry.tracking_uri` (the config's, else the environment's)."""
    if not uri.startswith(("models:/", "runs:/")):
        path = Path(uri)
        if not path.is_file():
            raise ConfigError(f"model: '{uri}' is neither an MLflow URI nor a model file")
        from training.model import ConversionModel

        return LoadedModel(ConversionModel.load(str(path)), cfg.model_name or path.stem, "file")
    use_store(cfg.tracking_uri)
    name, version = resolve_version(uri) or (uri, "run")
    return LoadedModel(registry_load(uri), cfg.model_name or name, version)


def check_model(cfg: ServingConfig) -> None:
    """Fail fast, with a one-line ConfigError naming the store, when the configured model cannot be found."""
    uri = cfg.model
    if not uri.startswith(("models:/", "runs:/")):
        if not Path(uri).is_file():
            raise ConfigError(f"model: '{uri}' is neither an MLflow URI nor a model file")
        return
    use_store(cfg.tracking_uri)
    resolve_version(uri)


def _rules(cfg: ServingConfig) -> Any:
    path = cfg.rules
    if path is None:
        from propensity.config import default_config_path

        default = default_config_path("rules.yaml")
        if not default.is_file():
            return None
        path = str(default)
    try:
        from serving.rules import load_rules
    except ImportError:
        return None
    rules = load_rules(path)
    from content.components import check_rules

    check_rules(rules, str(path))  # every action names a component of configs/content.yaml
    return rules.decide


def preload_users(store: ProfileStore, users_path: str, consent_default: bool = True,
                  forgotten: set[str] | frozenset[str] = frozenset()) -> int:
    """Upsert every valid row of a users file (bad rows are skipped and counted by ingestion).

    Users in ``forgotten`` (the forget ledger) and users deleted in the store are left out.
    """
    from features.ingest.validate import ingest_users

    validated = ingest_users(users_path, consent_default=consent_default)
    rows = validated.clean.to_dicts()
    return store.upsert_users(rows, skip=frozenset(forgotten))


def build_engine(settings: dict[str, Any] | None = None, carried: LoadedModel | None = None,
                 metrics: Any = None, carried_challenger: LoadedModel | None = None,
                 log_predictions: bool = False) -> PredictionEngine:
    """The engine described by ``settings`` (config path, model URI, store overrides, users file);
    ``carried`` and ``carried_challenger`` (the models a bento carries) replace the configured
    champion and challenger; ``metrics`` (:class:`serving.metrics.ServiceMetrics`) counts what it
    serves; with ``log_predictions`` (the service) every answer goes to the configured prediction
    log (serving/predlog.py)."""
    settings = settings if settings is not None else settings_from_env()
    cfg = resolve_config(settings.get("config_path"), settings.get("model_uri"), settings.get("store"),
                         settings.get("tracking_uri"))
    champion = carried or load_model(cfg.model, cfg)
    challenger = exposures = None
    if cfg.experiment.enabled:
        challenger = carried_challenger or load_model(cfg.experiment.challenger_model, cfg)
        exposures = _exposure_log(cfg, log_predictions)
    store = make_profile_store(cfg.store)
    # A store down at start-up is not fatal: /readyz says 503 and requests get 503 until it answers.
    if settings.get("users_path") and not settings.get("users_preloaded"):
        from features.privacy import forgotten_users

        forgotten = forgotten_users(settings.get("ledger"))
        preload_users(store, settings["users_path"], cfg.consent_default, forgotten)
    segmenter = None
    if cfg.segmenter is not None:
        from features.segments.segmenter import Segmenter

        segmenter = Segmenter.load(cfg.segmenter)
    engine = PredictionEngine(cfg, store, champion, load_segments_config(cfg.segments_config),
                              decide=_rules(cfg), challenger=challenger, exposure_log=exposures,
                              segmenter=segmenter, metrics=metrics)
    if log_predictions:
        engine.prediction_log = open_prediction_log(cfg, logged_feature_kinds(engine), metrics)
    return engine


def _exposure_log(cfg: ServingConfig, log_predictions: bool) -> ExposureLog | None:
    """A separate JSONL exposure log: when configured, or when there is no prediction log (which
    otherwise is the exposure log: ``propensity ab analyze --exposures <work_dir>/predictions``)."""
    if cfg.experiment.exposure_log is not None:
        return ExposureLog(cfg.experiment.exposure_log)
    if log_predictions and cfg.prediction_log.enabled:
        return None
    return ExposureLog(work_dir() / "exposures.jsonl")


def logged_feature_kinds(engine: PredictionEngine) -> dict[str, str]:
    """The logged features: those the engine computes, with the engagement score."""
    kinds = {f.name: f.kind for f in engine.feature_set.features}
    kinds.setdefault("engagement_score", "numeric")
    return kinds


def forget_online_user(user_id: str, config_path: str | None = None) -> bool:
    """Delete a user from the configured live profile store (``propensity forget``); True if stored.

    Only a shared (Redis) store outlives a process; the in-process store of a running server is
    reached through ``DELETE /users/{id}`` instead.
    """
    store = make_profile_store(load_serving_config(config_path).store)
    try:
        return store.delete_user(user_id)
    finally:
        store.close()
