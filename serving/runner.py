"""`propensity serve`: check the settings once, preload users, then hand over to `bentoml serve`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features.live.store import make_profile_store
from features.privacy import apply_ledger, forgotten_users, open_ledger, resolve_ledger
from propensity.errors import ConfigError, PropensityError
from propensity.redact import redact
from serving.auth import insecure_from_env, is_loopback, load_keys
from serving.loader import ENV_SETTINGS, check_model, preload_users, resolve_config

ROOT = Path(__file__).resolve().parent.parent


def open_ledger_and_apply(store: Any, ledger: str) -> None:
    """Tombstone the ledger's users in ``store`` before anything is preloaded into it."""
    opened = open_ledger(ledger)
    try:
        apply_ledger(store, opened)
    finally:
        opened.close()


def check_exposure(host: str, has_keys: bool, insecure: bool) -> None:
    """Without API keys the service listens on loopback only, unless explicitly insecure."""
    if not has_keys and not insecure and not is_loopback(host):
        raise ConfigError(f"--host: no API keys are configured, so the service only listens on loopback "
                          f"(127.0.0.1), not '{host}'; add keys (propensity keys create) or pass --insecure")


def server_settings(model_uri: str | None = None, users_path: str | None = None, workers: int = 1,
                    config_path: str | None = None, store_overrides: dict[str, Any] | None = None,
                    announce: Callable[[str], None] = lambda _: None, host: str = "127.0.0.1",
                    insecure: bool = False, tracking_uri: str | None = None) -> dict[str, Any]:
    """Validated worker settings; users are preloaded here once when the store is shared (Redis)."""
    cfg = resolve_config(config_path, model_uri, store_overrides, tracking_uri)
    insecure = insecure or insecure_from_env()
    check_exposure(host, bool(load_keys(cfg.auth.keys)), insecure)
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    if workers > 1 and cfg.store.backend == "inprocess":
        raise ConfigError("--workers: several workers need a shared profile store (--store redis); "
                          "the in-process store is private to each worker")
    check_model(cfg)
    ledger = resolve_ledger(store_cfg=cfg.store)  # once, here, for every worker
    settings: dict[str, Any] = {"config_path": config_path, "model_uri": model_uri, "workers": workers,
                                "store": store_overrides or {}, "users_path": users_path, "ledger": ledger,
                                "insecure": insecure, "tracking_uri": tracking_uri}
    if users_path and cfg.store.backend == "redis":
        store = make_profile_store(cfg.store)
        if not store.ping():
            raise PropensityError(f"store: Redis at {redact(cfg.store.redis_url)} does not answer")
        open_ledger_and_apply(store, ledger)
        n = preload_users(store, users_path, cfg.consent_default, forgotten_users(ledger))
        store.close()
        settings["users_preloaded"] = True
        announce(f"preloaded {n} users into the Redis profile store")
    return settings


def run_server(model_uri: str | None = None, host: str = "127.0.0.1", port: int = 3000,
               users_path: str | None = None, workers: int = 1, config_path: str | None = None,
               store_overrides: dict[str, Any] | None = None,
               announce: Callable[[str], None] = lambda _: None, insecure: bool = False,
               tracking_uri: str | None = None) -> None:
    """Replace this process by `bentoml serve serving.service:PropensityService` with the settings."""
    settings = server_settings(model_uri, users_path, workers, config_path, store_overrides, announce,
                               host=host, insecure=insecure, tracking_uri=tracking_uri)
    env = {**os.environ, ENV_SETTINGS: json.dumps(settings)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    announce(f"serving on http://{host}:{port} (workers: {workers}); try: curl -s -X POST "
             f"http://{host}:{port}/predict -H 'content-type: application/json' -d '{{\"user_id\": \"u1\"}}'")
    args = [sys.executable, "-m", "bentoml", "serve", "serving.service:PropensityService", "--host", host,
            "--port", str(port), "--working-dir", str(ROOT)]
    os.execve(sys.executable, args, env)


def sample_request(model_uri: str, user_id: str, events_path: str | None = None,
                   users_path: str | None = None, port: int = 3000,
                   config_path: str | None = None, as_of: str | None = None) -> tuple[str, dict[str, Any]]:
    """A curl command for ``/predict`` and the answer the service gives to it (computed in-process).

    The engine is the one the server runs (same config, in-process store) fed with the users and
    events files, so `make demo` can print a real answer without starting a server.
    """
    import polars as pl

    from features.ingest.validate import ingest_events
    from features.live.profile import normalize_event
    from serving.loader import build_engine

    settings = {"config_path": config_path, "model_uri": model_uri, "users_path": users_path,
                "store": {"backend": "inprocess"}}
    engine = build_engine(settings)
    if events_path is not None:
        rows = ingest_events(events_path).clean.filter(pl.col("user_id") == user_id)
        engine.store.add_events(normalize_event(r) for r in rows.to_dicts())
    body: dict[str, Any] = {"user_id": user_id, "context": {"device": "mobile", "page_type": "product"}}
    if as_of is not None:  # a replay of the data's own time instead of now
        body["as_of"] = as_of
    command = (f"curl -s -X POST http://127.0.0.1:{port}/predict -H 'content-type: application/json' "
               f"-d '{json.dumps(body)}'")
    return command, engine.predict(body)
