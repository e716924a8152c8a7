"""The typed configuration of ``propensity monitor`` (``configs/monitor.yaml``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from features.batch.config import parse_duration
from propensity.config import StrictModel, load_config


class DriftConfig(StrictModel):
    bins: int = Field(default=10, ge=2)
    psi_threshold: float = Field(default=0.2, gt=0)
    p_value_threshold: float = Field(default=0.001, gt=0, le=1)
    test_sample_rows: int = Field(default=20_000, ge=10)
    min_rows: int = Field(default=200, ge=1)
    compare: Literal["weekday", "reference"] = "weekday"
    not_alerted: list[str] = Field(default_factory=lambda: ["days_since_first_event"])
    fields: bool = True
    field_slices: list[str] = Field(default_factory=lambda: ["device", "source"])


class PerformanceConfig(StrictModel):
    auc_drop: float = Field(default=0.05, gt=0, le=1)
    samples: int = Field(default=200, ge=10)
    interval: float = Field(default=0.95, gt=0, lt=1)
    recalibrate: bool = True
    calibration_folds: int = Field(default=10, ge=1)
    calibration_uncertainty: bool = True
    recent_windows: int = Field(default=0, ge=0)
    correct_windows: int = Field(default=0, ge=0)


class CalibrationConfig(StrictModel):
    bins: int = Field(default=10, ge=2)
    max_relative_gap: float = Field(default=0.25, gt=0)


class VolumeConfig(StrictModel):
    min_ratio: float = Field(default=0.5, ge=0)
    max_ratio: float = Field(default=2.0, gt=1)


class MonitorFairnessConfig(StrictModel):
    sensitive_features: list[str] = Field(default_factory=lambda: ["gender", "age_band", "country"])
    top_share: float = Field(default=0.2, gt=0, le=1)
    min_ratio: float = Field(default=0.8, ge=0, le=1)
    min_group_size: int = Field(default=50, ge=1)


class MonitorTracking(StrictModel):
    uri: str | None = None
    log_to_mlflow: bool = True


class MonitorConfig(StrictModel):
    """Everything ``propensity monitor`` reads; durations as ``1d``, ``12h``, ``7d``."""

    every: timedelta = timedelta(days=1)
    horizon: timedelta = timedelta(days=7)
    seed: int = 0
    drift: DriftConfig = Field(default_factory=DriftConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    fairness: MonitorFairnessConfig = Field(default_factory=MonitorFairnessConfig)
    tracking: MonitorTracking = Field(default_factory=MonitorTracking)

    @field_validator("every", "horizon", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value if isinstance(value, timedelta) else str(value))


def load_monitor_config(path: str | Path | None = None,
                        overrides: dict[str, Any] | None = None) -> MonitorConfig:
    """``configs/monitor.yaml`` (or ``path``) as a :class:`MonitorConfig`; ConfigError names the key."""
    return load_config(MonitorConfig, path, "monitor.yaml", overrides)
