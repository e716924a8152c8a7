"""Typed configuration of the serving stage (``configs/serving.yaml``), validated on load."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from features.config import StrictModel, load_config
from features.eventtime import TimestampUnit
from features.profile_store import ProfileStoreConfig


class CacheConfig(StrictModel):
    """Per-user prediction cache; any write to the user (event, attributes, deletion) invalidates it."""

    enabled: bool = True
    ttl_s: float = Field(default=2.0, ge=0, description="lifetime of a prediction for 'now' requests, s")
    max_users: int = Field(default=100_000, ge=1)


class RateLimitConfig(StrictModel):
    """Per-client token bucket (client = the ``client_header`` value, else the peer address)."""

    enabled: bool = False
    rate_per_s: float = Field(default=200.0, gt=0)
    burst: float = Field(default=400.0, ge=1)
    client_header: str = "x-client-id"


class ExperimentConfig(StrictModel):
    """Champion/challenger split by a deterministic hash of (salt, user_id)."""

    enabled: bool = False
    name: str = "champion-vs-challenger"
    salt: str = "propensity"
    challenger_share: float = Field(default=0.1, ge=0, le=1)
    challenger_model: str = "models:/propensity-conversion@challenger"
    exposure_log: str | None = Field(default=None,
                                      description="JSONL path; null = <work_dir>/exposures.jsonl")


class IngestSettings(StrictModel):
    """How online events (``/events``, the stream consumer) are read."""

    timestamp_unit: TimestampUnit | None = Field(
        default=None, description="unit of epoch-number timestamps (s, ms, us); null = refused")


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
    batch_wait_ms: float = Field(default=0.0, ge=0, le=50,
                                 description="adaptive batching: wait up to this long for more /predict rows")
    batch_max_rows: int = Field(default=1024, ge=1,
                                description="adaptive batching: score at once when this many rows wait")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    default_decision: str = "default"
    access_log: bool = Field(default=True, description="BentoML access log line per request")
    ingest: IngestSettings = Field(default_factory=IngestSettings)


def load_serving_config(path: str | Path | None = None) -> ServingConfig:
    """Read ``path`` (default ``configs/serving.yaml``); a bad key is a ConfigError naming it."""
    return load_config(ServingConfig, path, default_name="serving.yaml")
