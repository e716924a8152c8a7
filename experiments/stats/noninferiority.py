"""Non-inferiority of a treatment against a control from a confidence interval (or sequence) of
the difference ``treatment - control``.

With margin ``m`` > 0 (in the metric's units, e.g. 0.005 = half a percentage point of conversion):

- ``non_inferior`` when the interval's lower bound lies above ``-m`` (the treatment is at most
  ``m`` worse, at the interval's confidence);
- ``inferior`` when its upper bound lies below ``-m`` (worse by more than the margin);
- ``inconclusive`` otherwise (the interval still contains differences worse than ``-m``).

Used with the always-valid confidence sequence (:mod:`experiments.stats.sequential`), the read-out
stays valid however often it is repeated while the test runs. A two-sided ``1 - alpha`` interval
makes this a one-sided test at ``alpha / 2`` (Piaggio et al. 2012, CONSORT non-inferiority).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NON_INFERIOR, INFERIOR, INCONCLUSIVE = "non_inferior", "inferior", "inconclusive"


@dataclass(frozen=True)
class NonInferiority:
    """The verdict, the margin and the interval of the difference it was judged on."""

    verdict: str
    margin: float
    difference: float
    ci_low: float
    ci_high: float


def non_inferiority(difference: float, ci_low: float, ci_high: float, margin: float) -> NonInferiority:
    """Judge ``treatment - control`` (its point ``difference`` and interval) against ``margin`` >= 0."""
    if not margin >= 0 or math.isnan(ci_low) or math.isnan(ci_high) or ci_low > ci_high:
        raise ValueError(f"need margin >= 0 and ci_low <= ci_high, got {margin}, {ci_low}, {ci_high}")
    if ci_low > -margin:
        verdict = NON_INFERIOR
    elif ci_high < -margin:
        verdict = INFERIOR
    else:
        verdict = INCONCLUSIVE
    return NonInferiority(verdict, margin, difference, ci_low, ci_high)
