"""Bayesian read-out of a binary metric: Beta-Binomial posteriors, chance to beat control, expected loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.stats.summaries import ProportionSummary


@dataclass(frozen=True)
class BayesResult:
    """``chance_to_beat`` = P(rate_t > rate_c); losses are expected rate shortfalls (0..1) of each choice."""

    chance_to_beat: float
    expected_loss_treatment: float
    expected_loss_control: float
    lift_ci_low: float
    lift_ci_high: float


def beta_binomial_compare(treatment: ProportionSummary, control: ProportionSummary,
                          prior: tuple[float, float] = (1.0, 1.0), draws: int = 200_000,
                          seed: int = 0, credible: float = 0.95) -> BayesResult:
    """Monte Carlo over the two Beta posteriors (Beta(prior_a + successes, prior_b + failures)).

    ``expected_loss_treatment`` is E[max(rate_c - rate_t, 0)]: the rate given up, on average, by
    shipping the treatment if it is in fact worse. The lift interval is for the absolute difference.
    """
    rng = np.random.default_rng(seed)
    a, b = prior
    t = rng.beta(a + treatment.successes, b + treatment.n - treatment.successes, draws)
    c = rng.beta(a + control.successes, b + control.n - control.successes, draws)
    diff = t - c
    tail = (1 - credible) / 2
    lo, hi = np.quantile(diff, [tail, 1 - tail])
    return BayesResult(chance_to_beat=float(np.mean(diff > 0)),
                       expected_loss_treatment=float(np.mean(np.maximum(-diff, 0.0))),
                       expected_loss_control=float(np.mean(np.maximum(diff, 0.0))),
                       lift_ci_low=float(lo), lift_ci_high=float(hi))
