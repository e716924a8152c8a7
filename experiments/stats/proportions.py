"""Binary metrics: two-proportion z-test with a Wald interval, and the k x 2 chi-square test.

The z-test uses the pooled variance for the statistic and the unpooled variance for the
interval, as R's ``prop.test(correct = FALSE)`` does (its X-squared equals z^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from experiments.stats.lift import relative_lift_ci
from experiments.stats.summaries import Comparison, OmnibusTest, ProportionSummary


def two_proportion_test(treatment: ProportionSummary, control: ProportionSummary, alpha: float = 0.05,
                        variant: str = "treatment", control_name: str = "control") -> Comparison:
    """Two-sided z-test of equal rates, with ``1 - alpha`` intervals for the absolute and relative lift.

    Rates are shares 0..1; the difference is treatment - control in rate units (0.01 = 1 pp).
    """
    p_t, p_c = treatment.rate, control.rate
    diff = p_t - p_c
    pooled = (treatment.successes + control.successes) / (treatment.n + control.n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / treatment.n + 1 / control.n))
    z = diff / se0 if se0 > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z)))
    var_t, var_c = treatment.variance / treatment.n, control.variance / control.n
    crit = float(stats.norm.isf(alpha / 2))
    half = crit * math.sqrt(var_t + var_c)
    rel, rel_lo, rel_hi = relative_lift_ci(p_t, var_t, p_c, var_c, crit)
    return Comparison(variant=variant, control=control_name, test="two-proportion z-test",
                      statistic=z, df=None, p_value=p_value, difference=diff,
                      ci_low=diff - half, ci_high=diff + half, relative_lift=rel,
                      relative_ci_low=rel_lo, relative_ci_high=rel_hi)


def proportion_ci(summary: ProportionSummary, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of one rate (stays inside 0..1, sound for small counts)."""
    n, p = summary.n, summary.rate
    if n == 0:
        return math.nan, math.nan
    z = float(stats.norm.isf(alpha / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def chi_square_independence(groups: Sequence[ProportionSummary]) -> OmnibusTest:
    """Pearson chi-square test of independence of variant and outcome (k x 2, no continuity correction)."""
    n_total = sum(g.n for g in groups)
    s_total = sum(g.successes for g in groups)
    stat = 0.0
    for g in groups:
        for observed, share in ((g.successes, s_total / n_total), (g.n - g.successes, 1 - s_total / n_total)):
            expected = g.n * share
            if expected > 0:
                stat += (observed - expected) ** 2 / expected
    df = len(groups) - 1
    return OmnibusTest(test="chi-square independence", statistic=stat, df=df,
                       p_value=float(stats.chi2.sf(stat, df)))
