"""Relative lift and its delta-method confidence interval, shared by proportions and means."""

from __future__ import annotations

import math


def relative_lift_ci(mean_t: float, var_mean_t: float, mean_c: float, var_mean_c: float,
                     crit: float) -> tuple[float, float, float]:
    """Relative lift ``mean_t / mean_c - 1`` with a delta-method interval ``lift +- crit * se``.

    ``var_mean_*`` are the variances of the two sample means (unit variance / n). The delta method
    treats the ratio of two independent means: Var(T/C) ~ Var(T)/C^2 + T^2 Var(C)/C^4.
    Returns NaNs when the control mean is zero.
    """
    if mean_c == 0 or not math.isfinite(mean_c):
        return math.nan, math.nan, math.nan
    lift = mean_t / mean_c - 1.0
    se = math.sqrt(var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4)
    return lift, lift - crit * se, lift + crit * se
