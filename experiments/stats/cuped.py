"""CUPED (Deng et al. 2013): variance reduction with a pre-period covariate, from joint moments.

Each unit's metric y is replaced by y - theta (x - mean(x)), with theta = Cov(x, y) / Var(x) pooled
over all variants. The adjustment keeps each variant's expected difference (x is pre-treatment,
so its mean is the same in every arm) while shrinking the variance by about corr(x, y)^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.stats.summaries import MeanSummary, RegressionSummary


@dataclass(frozen=True)
class CupedResult:
    """Adjusted per-variant summaries (same order as the input), theta and the variance reduction (0..1)."""

    theta: float
    adjusted: tuple[MeanSummary, ...]
    variance_reduction: float


def cuped_adjust(groups: Sequence[RegressionSummary]) -> CupedResult:
    """Adjust every variant's metric with the pooled theta; a constant covariate leaves it unchanged."""
    n = sum(g.n for g in groups)
    pooled = RegressionSummary(n, sum(g.sum_y for g in groups), sum(g.sum_y2 for g in groups),
                               sum(g.sum_x for g in groups), sum(g.sum_x2 for g in groups),
                               sum(g.sum_xy for g in groups))
    var_x = pooled.x.variance
    theta = pooled.covariance / var_x if var_x > 0 else 0.0
    grand_x = pooled.x.mean
    adjusted = []
    before = after = 0.0
    for g in groups:
        mean = g.y.mean - theta * (g.x.mean - grand_x)
        var = max(g.y.variance - 2 * theta * g.covariance + theta**2 * g.x.variance, 0.0)
        adjusted.append(MeanSummary.from_moments(g.n, mean, math.sqrt(var)))
        before += (g.n - 1) * g.y.variance
        after += (g.n - 1) * var
    reduction = 1 - after / before if before > 0 else 0.0
    return CupedResult(theta=theta, adjusted=tuple(adjusted), variance_reduction=reduction)
