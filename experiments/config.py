"""Typed settings of the experiments stage (defaults in ``configs/experiments.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from propensity.config import StrictModel, load_config


class BayesSettings(StrictModel):
    prior_alpha: float = Field(default=1.0, gt=0, description="Beta prior successes (1, 1 = uniform)")
    prior_beta: float = Field(default=1.0, gt=0, description="Beta prior failures")
    draws: int = Field(default=200_000, ge=1000, description="Monte Carlo draws per comparison")
    seed: int = 0


class SequentialSettings(StrictModel):
    enabled: bool = Field(default=False, description="verdicts use always-valid (mSPRT) p-values")
    tuning_n_per_variant: int | None = Field(
        default=None, gt=1, description="n per variant where the sequence is tightest; None = so far")


class FunnelSettings(StrictModel):
    steps: list[str] = ["product_view", "add_to_cart", "checkout_start", "purchase"]
    cohort_weeks: int = Field(default=4, ge=1, le=52, description="weeks after first exposure")


class DemoSettings(StrictModel):
    users: int = Field(default=30_000, ge=100)
    days: int = Field(default=14, ge=1, description="enrolment period, days")
    seed: int = 7
    variants: dict[str, float] = Field(
        default_factory=lambda: {"A": 0.0, "B": 0.12, "C": 0.02},
        description="relative lift of the purchase propensity per variant; the first is the control")


class ExperimentsConfig(StrictModel):
    name: str | None = Field(default=None, description="experiment name (report title)")
    hypothesis: str | None = Field(default=None, description="what the experiment tests, in one sentence")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1, description="planning / small-sample warning")
    correction: Literal["holm", "bh", "bonferroni", "none"] = "holm"
    equal_var: bool = Field(default=False, description="Student instead of Welch t-test")
    srm_threshold: float = Field(default=0.001, gt=0, lt=1, description="SRM alert below this p")
    planned_mde_relative: float = Field(
        default=0.05, gt=0, description="relative lift the test is sized for")
    conversion_window_days: float = Field(default=7.0, gt=0, description="days after exposure")
    looks: int = Field(default=1, ge=1, description="how many times results were examined (peeking warning)")
    bayes: BayesSettings = BayesSettings()
    sequential: SequentialSettings = SequentialSettings()
    funnel: FunnelSettings = FunnelSettings()
    demo: DemoSettings = DemoSettings()


def load_experiments_config(path: str | Path | None = None,
                            overrides: dict[str, Any] | None = None) -> ExperimentsConfig:
    """Read ``path`` (default ``configs/experiments.yaml``); ``overrides``: top-level keys (CLI flags)."""
    return load_config(ExperimentsConfig, path, "experiments.yaml", overrides)
