"""Continuous metrics: Welch (default) or Student t-test with intervals, and one-way ANOVA."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from experiments.stats.lift import relative_lift_ci
from experiments.stats.summaries import Comparison, MeanSummary, OmnibusTest


def t_test(treatment: MeanSummary, control: MeanSummary, alpha: float = 0.05, equal_var: bool = False,
           variant: str = "treatment", control_name: str = "control") -> Comparison:
    """Two-sided t-test of equal means with ``1 - alpha`` intervals for the absolute and relative lift.

    Welch's test (Satterthwaite degrees of freedom) unless ``equal_var``, then Student's pooled test.
    The difference is treatment - control in the metric's own unit.
    """
    n_t, n_c = treatment.n, control.n
    v_t, v_c = treatment.variance, control.variance
    diff = treatment.mean - control.mean
    if equal_var:
        df = float(n_t + n_c - 2)
        pooled = ((n_t - 1) * v_t + (n_c - 1) * v_c) / df
        var_t, var_c = pooled / n_t, pooled / n_c
        name = "Student t-test"
    else:
        var_t, var_c = v_t / n_t, v_c / n_c
        denom = var_t**2 / (n_t - 1) + var_c**2 / (n_c - 1)
        df = (var_t + var_c) ** 2 / denom if denom > 0 else float(n_t + n_c - 2)
        name = "Welch t-test"
    se = math.sqrt(var_t + var_c)
    t = diff / se if se > 0 else 0.0
    p_value = float(2 * stats.t.sf(abs(t), df))
    crit = float(stats.t.isf(alpha / 2, df))
    rel, rel_lo, rel_hi = relative_lift_ci(treatment.mean, var_t, control.mean, var_c, crit)
    return Comparison(variant=variant, control=control_name, test=name, statistic=t, df=df,
                      p_value=p_value, difference=diff, ci_low=diff - crit * se, ci_high=diff + crit * se,
                      relative_lift=rel, relative_ci_low=rel_lo, relative_ci_high=rel_hi)


def mean_ci(summary: MeanSummary, alpha: float = 0.05) -> tuple[float, float]:
    """t interval of one mean."""
    if summary.n < 2:
        return math.nan, math.nan
    half = float(stats.t.isf(alpha / 2, summary.n - 1)) * math.sqrt(summary.variance / summary.n)
    return summary.mean - half, summary.mean + half


def one_way_anova(groups: Sequence[MeanSummary], equal_var: bool = False) -> OmnibusTest:
    """Test that all group means are equal: Welch's ANOVA (default) or the classic F-test."""
    k = len(groups)
    n = [g.n for g in groups]
    means = [g.mean for g in groups]
    var = [g.variance for g in groups]
    if equal_var:
        n_total = sum(n)
        grand = sum(g.total for g in groups) / n_total
        between = sum(ni * (m - grand) ** 2 for ni, m in zip(n, means, strict=True)) / (k - 1)
        within = sum((ni - 1) * v for ni, v in zip(n, var, strict=True)) / (n_total - k)
        f = between / within if within > 0 else math.nan
        df: tuple[float, float] = (float(k - 1), float(n_total - k))
        return OmnibusTest("one-way ANOVA", f, df, float(stats.f.sf(f, *df)))
    w = [ni / v if v > 0 else math.inf for ni, v in zip(n, var, strict=True)]
    if any(math.isinf(x) for x in w):
        return OmnibusTest("Welch ANOVA", math.nan, (float(k - 1), math.nan), math.nan)
    w_sum = sum(w)
    weighted = sum(wi * m for wi, m in zip(w, means, strict=True)) / w_sum
    a = sum(wi * (m - weighted) ** 2 for wi, m in zip(w, means, strict=True)) / (k - 1)
    lam = sum((1 - wi / w_sum) ** 2 / (ni - 1) for wi, ni in zip(w, n, strict=True))
    b = 1 + 2 * (k - 2) / (k * k - 1) * lam
    f = a / b
    df = (float(k - 1), (k * k - 1) / (3 * lam))
    return OmnibusTest("Welch ANOVA", f, df, float(stats.f.sf(f, *df)))
