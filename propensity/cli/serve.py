"""`propensity serve` and `propensity consume`: flags -> serving stage functions (no logic here)."""

from __future__ import annotations

import click

from propensity.cli.common import emit_json, info


def _store_overrides(backend: str | None, redis_url: str | None, key_prefix: str | None) -> dict:
    return {k: v for k, v in {"backend": backend, "redis_url": redis_url, "key_prefix": key_prefix}.items()
            if v is not None}


@click.command()
@click.option("--model", "model_uri", default=None,
              help="MLflow model URI [default: $PROPENSITY_MODEL, else `model:` of configs/serving.yaml].")
@click.option("--tracking-uri", default=None,
              help="MLflow store [default: $MLFLOW_TRACKING_URI, else the config, else work/mlflow.db].")
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--users", "users_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CRM users file (Parquet/CSV/JSONL) preloaded into the profile store.")
@click.option("--workers", default=1, show_default=True, type=int, help="Server worker processes.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Serving config [default: configs/serving.yaml].")
@click.option("--store", "backend", type=click.Choice(["inprocess", "redis"]), default=None,
              help="Profile store backend (overrides the config).")
@click.option("--redis-url", default=None, help="Redis URL of the profile store.")
@click.option("--key-prefix", default=None, help="Key prefix of the Redis profile store.")
@click.option("--insecure", is_flag=True,
              help="Serve without API keys on a non-loopback --host (also PROPENSITY_INSECURE=1).")
def serve(model_uri: str | None, tracking_uri: str | None, port: int, host: str, users_path: str | None,
          workers: int, config_path: str | None, backend: str | None, redis_url: str | None,
          key_prefix: str | None, insecure: bool) -> None:
    """Start the HTTP prediction service (BentoML).

    With API keys (auth.keys in the config or PROPENSITY_API_KEYS) every route but the probes and
    /metrics needs `Authorization: Bearer KEY`; without keys it only listens on loopback.
    """
    from serving.runner import run_server

    run_server(model_uri=model_uri, host=host, port=port, users_path=users_path, workers=workers,
               config_path=config_path, store_overrides=_store_overrides(backend, redis_url, key_prefix),
               announce=info, tracking_uri=tracking_uri, insecure=insecure)


@click.command()
@click.option("--stream", "stream_url", required=True,
              help="redis://HOST:PORT/DB?stream=KEY&group=NAME[&consumer=NAME]")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Serving config [default: configs/serving.yaml] (its store section).")
@click.option("--redis-url", default=None, help="Redis URL of the profile store [default: config].")
@click.option("--key-prefix", default=None, help="Key prefix of the profile store [default: config].")
@click.option("--consumer", default=None, help="Consumer name in the group [default: host-pid].")
@click.option("--batch-size", default=200, show_default=True, type=int)
@click.option("--claim-idle-ms", default=30_000, show_default=True, type=int,
              help="Take over another consumer's pending entries after this idle time.")
@click.option("--max-events", default=None, type=int, help="Stop after this many stream entries.")
@click.option("--exit-when-idle", default=None, type=float,
              help="Stop after this many seconds without entries and nothing pending.")
@click.option("--timestamp-unit", type=click.Choice(["s", "ms", "us"]), default=None,
              help="Unit of epoch-number timestamps [config: ingest.timestamp_unit; none: refused].")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def consume(stream_url: str, config_path: str | None, redis_url: str | None, key_prefix: str | None,
            consumer: str | None, batch_size: int, claim_idle_ms: int, max_events: int | None,
            exit_when_idle: float | None, timestamp_unit: str | None, as_json: bool) -> None:
    """Apply events from a Redis Stream (consumer group) to the live profile store."""
    from serving.consumer import StreamSource, consume_from_config

    source = StreamSource.from_url(stream_url, consumer=consumer)
    info(f"consuming {source.stream} as {source.group}/{source.consumer}")
    unit = {"timestamp_unit": timestamp_unit} if timestamp_unit else {}
    stats = consume_from_config(source, config_path, redis_url=redis_url, key_prefix=key_prefix,
                                batch_size=batch_size, claim_idle_ms=claim_idle_ms, max_events=max_events,
                                exit_when_idle_s=exit_when_idle, **unit)
    info(f"read {stats.read} entries: {stats.applied} applied, {stats.duplicates} duplicates, "
         f"{stats.dropped_deleted} of deleted users, {stats.dead_letters} dead letters "
         f"({stats.future_dated} future-dated; {stats.claimed} reclaimed; {stats.reconnects} reconnections) "
         f"in {stats.seconds:.1f} s")
    if as_json:
        emit_json(dict(stats.__dict__))


@click.command()
@click.option("--model", "model_uri", default=None,
              help="Registered model [default: $PROPENSITY_MODEL, else `model:` of configs/serving.yaml].")
@click.option("--tracking-uri", default=None,
              help="MLflow store [default: $MLFLOW_TRACKING_URI, else the config, else work/mlflow.db].")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Serving config [default: configs/serving.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(model_uri: str | None, tracking_uri: str | None, config_path: str | None, as_json: bool) -> None:
    """Build a bento that carries the model (`bentoml serve TAG` runs it anywhere)."""
    from serving.bento import build_bento

    result = build_bento(model_uri, config_path, tracking_uri)
    info(f"bento {result.bento_tag} carries {result.model_name} version {result.model_version} "
         f"(BentoML model {result.model_tag}); {result.requirements} pinned requirements")
    info(f"serve it: bentoml serve {result.bento_tag}")
    info(f"container image: bentoml containerize {result.bento_tag}")
    if as_json:
        emit_json(result.to_json())


@click.group()
def keys() -> None:
    """API keys of the HTTP service (scopes: predict, ingest, admin)."""


@keys.command("create")
@click.option("--name", required=True, help="Client name (rate limits and logs use it).")
@click.option("--scopes", required=True, help="Comma-separated: predict, ingest, admin.")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its entry as JSON.")
def keys_create(name: str, scopes: str, as_json: bool) -> None:
    """Print a new key once, and the hashed entry to add to auth.keys or PROPENSITY_API_KEYS."""
    from serving.auth import new_key

    secret, key = new_key(name, scopes)
    if as_json:
        emit_json({"name": key.name, "scopes": sorted(key.scopes), "key": secret, "entry": key.entry()})
        return
    click.echo(f"key (shown once, give it to the client): {secret}")
    click.echo(f"entry (add to auth.keys in configs/serving.yaml, or to PROPENSITY_API_KEYS): {key.entry()}")
    info("the service stores only the SHA-256 of the key; clients send 'Authorization: Bearer <key>'")
