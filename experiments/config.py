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


class RecommenderDemo(StrictModel):
    """The demo's A/B of two recommenders on the shop, with simulated visitors
    (:mod:`experiments.visitor_sim`: they respond by their true tastes, the shop's product oracle)."""

    visitors: int = Field(default=5000, ge=100, description="shop users shown a carousel (at most all)")
    k: int = Field(default=8, ge=1, le=50, description="products shown per visitor")
    days: int = Field(default=7, ge=1, description="visitors arrive over this many days after the cut-off")
    seed: int = 11
    control: str = Field(default="content", description="recommender of configs/recommend.yaml")
    treatment: str = Field(default="item_knn", description="recommender of configs/recommend.yaml")
    click_scale: float = Field(default=1.0, gt=0, description="P(click) = 1 - exp(-click_scale * p_next)")
    cart_rate: float = Field(default=0.35, ge=0, le=1, description="P(add to cart | click)")
    purchase_rate: float = Field(default=0.5, ge=0, le=1, description="P(purchase | cart)")


class RecommendationSettings(StrictModel):
    """Outcomes of shown products (content exposure logs, :mod:`experiments.content_outcomes`)."""

    demo: RecommenderDemo = RecommenderDemo()
    window_days: float = Field(default=1.0, gt=0, description="a shown product's click, cart and purchase "
                                                             "count within this many days of showing it")


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
    recommendations: RecommendationSettings = RecommendationSettings()


def load_experiments_config(path: str | Path | None = None,
                            overrides: dict[str, Any] | None = None) -> ExperimentsConfig:
    """Read ``path`` (default ``configs/experiments.yaml``); ``overrides``: top-level keys (CLI flags)."""
    return load_config(ExperimentsConfig, path, "experiments.yaml", overrides)
