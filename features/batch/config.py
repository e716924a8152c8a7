"""Configuration of the feature build (``configs/features.yaml``), durations and cut-off times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from features.ingest.eventtime import TimestampUnit
from propensity.config import StrictModel, default_config_path, load_config
from propensity.paths import work_dir

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | timedelta) -> timedelta:
    """A duration like ``7d``, ``12h``, ``30m``, ``45s`` or ``2w`` as a timedelta (must be > 0).

    Raises ValueError with a message saying what is accepted.
    """
    if isinstance(text, timedelta):
        value = text
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"'{text}' is not a duration (use a number and a unit s, m, h, d or w, e.g. 7d)")
        value = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if value <= timedelta(0):
        raise ValueError(f"duration must be positive, got '{text}'")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest ``<n><unit>`` spelling of a duration (``7d``, ``36h``, ``90s``)."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{seconds}s"


def parse_as_of(text: str | datetime) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC datetime (naive means UTC), microsecond precision."""
    if isinstance(text, datetime):
        value = text
    else:
        try:
            value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{text}' is not an ISO-8601 date or date-time "
                             "(e.g. 2024-03-01 or 2024-03-01T12:00:00+01:00)") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class IngestConfig(StrictModel):
    max_bad_share: float = Field(default=0.05, ge=0.0, le=1.0)  # share 0..1 of a file's rows
    consent_default: bool = True
    age_min: int = Field(default=0, ge=0)  # years
    age_max: int = Field(default=120, ge=1)  # years
    timestamp_unit: TimestampUnit | None = None  # unit of epoch-number timestamps (s, ms, us); None: refused


class PrivacyConfig(StrictModel):
    # None: in the online store's Redis when it is Redis, else <work_dir>/privacy/forget_ledger.jsonl;
    # a path, or a redis:// URL (optionally #key-prefix). See features.privacy.resolve_ledger.
    ledger_path: str | None = None


class SparkConfig(StrictModel):
    master: str = "local[2]"
    shards: int = Field(default=8, ge=1)
    driver_memory: str = "2g"


class FeaturesConfig(StrictModel):
    """``configs/features.yaml``: engine, default horizon and snapshot cadence, ingestion limits."""

    engine: Literal["local", "spark"] = "local"
    horizon: timedelta = timedelta(days=7)
    snapshots: int = Field(default=1, ge=1)
    every: timedelta = timedelta(days=7)
    segment_features: bool = True  # add engagement_score and journey_stage (configs/segments.yaml)
    ingest: IngestConfig = IngestConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    spark: SparkConfig = SparkConfig()
    # Feature definitions added to the built-ins (features/definitions.py), one mapping each.
    features: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def feature_set(self) -> Any:
        """The built-ins plus :attr:`features` (a :class:`features.definitions.FeatureSet`)."""
        from features.definitions import FeatureSet, parse_user_specs

        return FeatureSet(parse_user_specs(self.features))

    @field_validator("horizon", "every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        if isinstance(value, timedelta):
            return parse_duration(value)
        return parse_duration(str(value))


def load_features_config(path: str | Path | None = None) -> FeaturesConfig:
    """Read ``path`` or the default ``configs/features.yaml``; :class:`ConfigError` on any problem
    (a bad ``features:`` entry is one line naming the file and the entry)."""
    from propensity.errors import ConfigError

    cfg = load_config(FeaturesConfig, path, default_name="features.yaml")
    try:
        cfg.feature_set  # noqa: B018 - validates the feature definitions now, not at first use
    except ConfigError as exc:
        where = path if path is not None else default_config_path("features.yaml")
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def ledger_path(config: FeaturesConfig | None = None) -> Path:
    """The forget ledger file: ``privacy.ledger_path`` or ``<work_dir>/privacy/forget_ledger.jsonl``,
    absolute (every process resolves the same file whatever its working folder). Where the ledger
    really lives (it may be Redis) is :func:`features.privacy.resolve_ledger`."""
    if config is None:
        config = load_features_config()
    if config.privacy.ledger_path:
        return Path(config.privacy.ledger_path).expanduser().absolute()
    return (work_dir() / "privacy" / "forget_ledger.jsonl").absolute()
