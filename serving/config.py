"""Typed configuration of the serving stage (``configs/serving.yaml``), validated on load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from content.online_config import ContentServingConfig
from features.ingest.eventtime import TimestampUnit
from features.live.store import ProfileStoreConfig
from propensity.config import StrictModel, load_config
from propensity.errors import ConfigError
from training.registry import choose_model_uri, env_over_config


class CacheConfig(StrictModel):
    """Per-user prediction cache; any write to the user (event, attributes, deletion) invalidates it."""

    enabled: bool = True
    ttl_s: float = Field(default=2.0, ge=0, description="lifetime of a prediction for 'now' requests, s")
    max_users: int = Field(default=100_000, ge=1)


class RateLimitConfig(StrictModel):
    """Per-client token bucket; the client is the API key's name (the peer address without keys),
    never a header the client chooses. Shared by all workers through Redis when the store is Redis."""

    enabled: bool = False
    rate_per_s: float = Field(default=200.0, gt=0)
    burst: float = Field(default=400.0, ge=1)


class AuthConfig(StrictModel):
    """API keys (``name:scope+scope:sha256hex``, serving/auth.py); ``PROPENSITY_API_KEYS`` replaces them."""

    keys: list[str] = Field(default_factory=list, description="hashed key entries; [] = loopback only")


class OnlineIngestConfig(StrictModel):
    """Checks on events arriving online (``/events`` and the stream consumer)."""

    max_future_skew: timedelta = Field(default=timedelta(days=1),
                                       description="events later than now + this are refused (e.g. 1d, 2h)")
    timestamp_unit: TimestampUnit | None = Field(
        default=None, description="unit of epoch-number timestamps (s, ms, us); null = refused")

    @field_validator("max_future_skew", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        from features.batch.config import parse_duration

        return parse_duration(value if isinstance(value, timedelta) else str(value))


class ExperimentConfig(StrictModel):
    """Champion/challenger split by a deterministic hash of (salt, user_id)."""

    enabled: bool = False
    name: str = "champion-vs-challenger"
    salt: str = "propensity"
    challenger_share: float = Field(default=0.1, ge=0, le=1)
    challenger_model: str = "models:/propensity-conversion@challenger"
    exposure_log: str | None = Field(
        default=None, description="a separate JSONL exposure log; null = the prediction log is the exposure "
                                  "log (<work_dir>/exposures.jsonl when the prediction log is off)")


class PredictionLogConfig(StrictModel):
    """The prediction log (serving/predlog.py): every answer, written off the request path."""

    enabled: bool = True
    backend: Literal["auto", "file", "redis"] = Field(
        default="auto", description="auto = a Redis stream when the store is Redis, else Parquet files")
    path: str | None = Field(default=None,
                             description="folder of the Parquet files; null = <work_dir>/predictions")
    stream: str = Field(default="predictions", description="Redis stream key, after store.key_prefix")
    stream_max_len: int = Field(default=1_000_000, ge=1000,
                                description="Redis stream entries kept (approximate trimming)")
    feature_share: float = Field(default=0.1, ge=0, le=1,
                                 description="share 0..1 of records that carry the feature vector (drift "
                                             "needs a sample; every vector costs throughput and p99)")
    flush_rows: int = Field(default=5000, ge=1, description="write when this many records wait")
    flush_every_s: float = Field(default=5.0, gt=0, le=3600, description="write at least this often, seconds")
    max_buffer_rows: int = Field(default=100_000, ge=1,
                                 description="records held in memory at most; beyond, dropped and counted")
    writer: Literal["process", "thread"] = Field(
        default="thread", description="thread = frames built in a thread of the worker (the queued answers "
                                      "read by its event loop between requests); process = by a child "
                                      "process (~86 MB more)")


class ServingConfig(StrictModel):
    """The ``propensity serve`` / ``propensity consume`` settings."""

    model: str = "models:/propensity-conversion@champion"
    tracking_uri: str | None = Field(default=None, description="null = training.tracking default")
    model_name: str | None = Field(default=None, description="name reported in responses; null = from URI")
    rules: str | None = Field(default=None,
                               description="decision rules YAML; null = configs/rules.yaml if any")
    segmenter: str | None = Field(default=None,
                                  description="fitted Segmenter (segmenter.joblib) for clusters; null = none")
    segments_config: str | None = Field(default=None, description="null = configs/segments.yaml")
    store: ProfileStoreConfig = Field(default_factory=ProfileStoreConfig)
    consent_default: bool = True
    reasons_top_k: int = Field(default=3, ge=0)
    reasons_approximate: bool = Field(default=True, description="Saabas instead of exact TreeSHAP reasons")
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch: int = Field(default=1000, ge=1)
    batch_requests: bool = Field(
        default=False, description="score concurrent /predict requests as one model batch (the rows ready "
                                   "together on the event loop); false: each request at once")
    batch_wait_ms: float = Field(default=0.0, ge=0, le=50,
                                 description="adaptive batching: wait up to this long for more /predict rows "
                                             "(> 0 turns batch_requests on)")
    batch_max_rows: int = Field(default=1024, ge=1,
                                description="adaptive batching: score at once when this many rows wait")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    ingest: OnlineIngestConfig = Field(default_factory=OnlineIngestConfig)
    content: ContentServingConfig = Field(default_factory=ContentServingConfig)
    default_decision: str = "default"
    access_log: bool = Field(default=True, description="BentoML access log line per request")
    record_unsampled_spans: bool = Field(
        default=False, description="BentoML's sampler: record every request's spans even when the trace is "
                                   "not sampled (false: the standard sampler, serving.telemetry)")
    gc_every_s: float = Field(default=1.0, ge=0, le=3600,
                              description="collect cyclic garbage between requests every this many "
                                          "seconds (serving.gc_policy); 0 = Python's automatic collector")


def load_serving_config(path: str | Path | None = None) -> ServingConfig:
    """Read ``path`` (default ``configs/serving.yaml``); a bad key is a ConfigError naming it."""
    cfg = load_config(ServingConfig, path, default_name="serving.yaml")
    # The standard variables beat the file: MLFLOW_TRACKING_URI (store), PROPENSITY_MODEL (model).
    cfg.tracking_uri = env_over_config(cfg.tracking_uri)
    cfg.model = choose_model_uri(None, cfg.model)
    return cfg


def write_split_config(path: str | Path, champion: str, challenger: str, enabled: bool = True,
                       base: str | Path | None = None, reserved_salts: tuple[str, ...] = (),
                       challenger_share: float | None = None) -> ServingConfig:
    """Write the serving config ``path`` with the champion/challenger split on (or off): ``model`` =
    ``champion``, ``experiment.challenger_model`` = ``challenger``, ``experiment.enabled``.

    The other settings come from ``path`` when it exists, else from ``base`` (default
    ``configs/serving.yaml``). The result is validated before it is written; a running service reads
    its config at start-up only, so it takes the split on its next restart. ``reserved_salts`` are
    other experiments' salts (the recommender's): the split's must differ (a ConfigError before
    anything is written). Returns the written config.
    """
    import yaml

    from propensity.config import default_config_path

    target = Path(path)
    source = target if target.is_file() else Path(base) if base is not None else default_config_path(
        "serving.yaml")
    data = yaml.safe_load(source.read_text()) or {}
    experiment = dict(data.get("experiment") or {})
    experiment.update(enabled=enabled, challenger_model=challenger)
    if challenger_share is not None:
        experiment["challenger_share"] = challenger_share
    data.update(model=champion, experiment=experiment)
    cfg = ServingConfig.model_validate(data)
    if cfg.experiment.salt in reserved_salts:
        raise ConfigError(f"{source}: experiment.salt '{cfg.experiment.salt}' is another experiment's salt "
                          "(the recommenders'); the model split needs its own, so they are independent")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# written by `propensity retrain` / `propensity promote --from-experiment`; read by\n"
                      "# `propensity serve --config` at start-up (restart a running service to apply it)\n"
                      + yaml.safe_dump(data, sort_keys=False))
    return cfg
