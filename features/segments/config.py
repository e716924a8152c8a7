"""Typed configuration of the segments stage (``configs/segments.yaml``), validated on load.

Three sections: ``engagement`` (behaviour weights, time decay, score thresholds -> segment names),
``journey`` (the stage machine as a transition table, inactivity limits) and ``clustering``
(K-Means / DBSCAN options). Every check names the key it rejects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from features.schema import EVENT_TYPES
from propensity.config import StrictModel, load_config

DERIVED_BEHAVIOURS: tuple[str, ...] = ("abandoned_cart",)
ANY_EVENT = "*"


class Threshold(StrictModel):
    segment: str = Field(min_length=1)
    min_score: float


class EngagementConfig(StrictModel):
    weights: dict[str, float]
    custom_events: list[str] = Field(default_factory=list)
    half_life_days: float | None = Field(default=14.0, gt=0)
    abandoned_cart_after_hours: float = Field(default=24.0, gt=0)
    thresholds: list[Threshold]
    below_segment: str = Field(default="dormant", min_length=1)

    @model_validator(mode="after")
    def _known_behaviours(self) -> EngagementConfig:
        known = set(EVENT_TYPES) | set(DERIVED_BEHAVIOURS) | set(self.custom_events)
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise ValueError(f"weights: unknown behaviour '{unknown[0]}' (known: events of "
                             f"features/schema.py, {', '.join(DERIVED_BEHAVIOURS)}, or custom_events)")
        return self

    @field_validator("thresholds")
    @classmethod
    def _sorted_thresholds(cls, value: list[Threshold]) -> list[Threshold]:
        if not value:
            raise ValueError("at least one threshold is needed")
        scores = [t.min_score for t in value]
        if any(a <= b for a, b in zip(scores, scores[1:], strict=False)):
            raise ValueError(f"min_score must be strictly decreasing from the top, got {scores}")
        names = [t.segment for t in value]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        return value

    @property
    def segment_names(self) -> list[str]:
        """All segment names, best first, ``below_segment`` last."""
        return [t.segment for t in self.thresholds] + [self.below_segment]


class InactivityLimit(StrictModel):
    after_days: float = Field(gt=0)
    stage: str = Field(min_length=1)


class JourneyConfig(StrictModel):
    initial_stage: str = "awareness"
    inactivity: list[InactivityLimit] = Field(default_factory=list)
    transitions: list[tuple[str, str, str]]

    @field_validator("inactivity")
    @classmethod
    def _sorted_limits(cls, value: list[InactivityLimit]) -> list[InactivityLimit]:
        days = [lim.after_days for lim in value]
        if any(a <= b for a, b in zip(days, days[1:], strict=False)):
            raise ValueError(f"after_days must be strictly decreasing (longest limit first), got {days}")
        return value

    @field_validator("transitions")
    @classmethod
    def _unique_rows(cls, value: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        seen: set[tuple[str, str]] = set()
        for i, (src, event, dst) in enumerate(value):
            if not src or not event or not dst:
                raise ValueError(f"row {i}: empty stage or event")
            if (src, event) in seen:
                raise ValueError(f"row {i}: a second transition from '{src}' on '{event}'")
            seen.add((src, event))
        return value

    @property
    def stages(self) -> list[str]:
        """Stage names in order of first mention: initial stage, table rows, inactivity stages."""
        names = [self.initial_stage]
        for src, _, dst in self.transitions:
            names += [src, dst]
        names += [lim.stage for lim in reversed(self.inactivity)]
        return list(dict.fromkeys(names))


class ClusteringConfig(StrictModel):
    method: Literal["kmeans", "dbscan"] = "kmeans"
    k: int | None = Field(default=None, ge=1)
    k_range: tuple[int, int] = (2, 8)
    silhouette_sample: int = Field(default=4000, ge=50)
    fit_sample: int = Field(default=50000, ge=50)
    eps: float | None = Field(default=None, gt=0)
    min_samples: int = Field(default=10, ge=2)
    log_features: bool = True
    random_state: int = 0
    features: list[str] = Field(default_factory=list)
    top_features: int = Field(default=3, ge=1)
    plot_sample: int = Field(default=5000, ge=10)

    @field_validator("k_range")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 2 or value[1] < value[0]:
            raise ValueError(f"k_range must be [low, high] with 2 <= low <= high, got {list(value)}")
        return value


class SegmentsConfig(StrictModel):
    engagement: EngagementConfig
    journey: JourneyConfig
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig)

    @model_validator(mode="after")
    def _journey_events_known(self) -> SegmentsConfig:
        known = set(EVENT_TYPES) | set(self.engagement.custom_events) | {ANY_EVENT}
        for i, (_, event, _) in enumerate(self.journey.transitions):
            if event not in known:
                raise ValueError(f"journey.transitions row {i}: unknown event '{event}' "
                                 "(add it to engagement.custom_events if it is yours)")
        return self


def load_segments_config(path: str | Path | None = None) -> SegmentsConfig:
    """Read ``path`` (default ``configs/segments.yaml``); a bad key is a ConfigError naming it."""
    return load_config(SegmentsConfig, path, default_name="segments.yaml")


_DEFAULT: list[SegmentsConfig] = []


def default_segments_config() -> SegmentsConfig:
    """``configs/segments.yaml``, read once per process (for callers that pass no config)."""
    if not _DEFAULT:
        _DEFAULT.append(load_segments_config())
    return _DEFAULT[0]
