"""The typed configuration of the audit stage (``configs/fairness.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from propensity.config import StrictModel, load_config
from training.registry import env_over_config


class SelectionConfig(StrictModel):
    """Which rows count as selected (targeted): the top share of scores, or a fixed probability."""

    top_share: float = Field(default=0.2, gt=0.0, le=1.0)  # share 0..1
    probability: float | None = Field(default=None, ge=0.0, le=1.0)


class GateConfig(StrictModel):
    """Limits of the promotion gate; ``None`` disables a check."""

    demographic_parity_ratio_min: float | None = Field(default=0.8, ge=0.0, le=1.0)
    equalized_odds_difference_max: float | None = Field(default=0.10, ge=0.0, le=1.0)
    demographic_parity_difference_max: float | None = Field(default=None, ge=0.0, le=1.0)
    equal_opportunity_difference_max: float | None = Field(default=None, ge=0.0, le=1.0)


class ConfidenceConfig(StrictModel):
    """Intervals of the disparity metrics the gate judges (:mod:`fairness.intervals`): simultaneous
    per-group intervals (``wilson`` score, or ``bootstrap`` percentile over ``n_boot`` resamples of
    the rows as Fairlearn ``MetricFrame`` draws them) combined conservatively; ``off``: point values
    decide pass/fail."""

    method: Literal["wilson", "bootstrap", "off"] = "wilson"
    n_boot: int = Field(default=4000, ge=100)  # bootstrap only
    level: float = Field(default=0.95, gt=0.0, lt=1.0)  # coverage of each metric's interval, share 0..1
    seed: int = 0

    @field_validator("method", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads an unquoted `off` as false


class MitigationConfig(StrictModel):
    """Fairlearn mitigation: post-processing (ThresholdOptimizer) or reduction (ExponentiatedGradient)."""

    method: Literal["threshold_optimizer", "exponentiated_gradient"] = "threshold_optimizer"
    # auto: equalized odds when an odds metric (equalized odds / equal opportunity) fails, else
    # demographic parity. With equal base rates equalized odds brings parity too; with truly
    # different base rates no post-processing satisfies both, and the report shows it.
    constraint: Literal["auto", "demographic_parity", "equalized_odds"] = "auto"
    feature: str | None = None  # None: the sensitive feature failing worst on the constraint


class ExplainConfig(StrictModel):
    """SHAP: rows explained for the global view, plots and reason codes."""

    sample_rows: int = Field(default=2000, ge=10)
    top_features: int = Field(default=5, ge=1)
    reasons_k: int = Field(default=3, ge=1)


class FairnessTracking(StrictModel):
    uri: str | None = None  # None: the training store (training.tracking.default_tracking_uri)
    champion_alias: str = "champion"


class FairnessConfig(StrictModel):
    """Everything ``propensity audit`` / ``propensity promote`` read."""

    sensitive_features: list[str] = Field(default_factory=lambda: ["gender", "age_band", "country"])
    intersections: list[list[str]] = Field(default_factory=list)
    min_group_size: int = Field(default=50, ge=1)
    snapshots: Literal["latest", "all"] = "latest"
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig)
    mitigation: MitigationConfig = Field(default_factory=MitigationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    tracking: FairnessTracking = Field(default_factory=FairnessTracking)

    @model_validator(mode="after")
    def _intersections_of_two_or_more(self) -> FairnessConfig:
        for combo in self.intersections:
            if len(combo) < 2:
                raise ValueError(f"an intersection needs two or more features, got {combo}")
        return self


def load_fairness_config(path: str | Path | None = None,
                         overrides: dict[str, Any] | None = None) -> FairnessConfig:
    """``configs/fairness.yaml`` (or ``path``) as a :class:`FairnessConfig`; ConfigError names the key."""
    cfg = load_config(FairnessConfig, path, "fairness.yaml", overrides)
    cfg.tracking.uri = env_over_config(cfg.tracking.uri)  # MLFLOW_TRACKING_URI beats the file
    return cfg
