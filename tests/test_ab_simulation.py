"""Simulation tests: A/A false positive rates, and peeking with fixed vs sequential tests.

Binomial bands: with S simulations and a true rate alpha, the observed rate lies within
alpha +- 4 sqrt(alpha (1 - alpha) / S) with probability > 0.9999.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.stats import ProportionSummary
from experiments.stats.proportions import two_proportion_test
from experiments.stats.sequential import always_valid_p_values, mixing_variance, sequential_test

ALPHA = 0.05


def _band(sims: int) -> float:
    return 4 * math.sqrt(ALPHA * (1 - ALPHA) / sims)


def _aa_daily_counts(sims: int, days: int, per_day: int, rate: float, seed: int):
    rng = np.random.default_rng(seed)
    conv = rng.binomial(per_day, rate, size=(2, sims, days)).cumsum(axis=2).astype(float)
    n = per_day * np.arange(1, days + 1, dtype=float)
    p = conv / n
    diff = p[1] - p[0]
    var = (p[0] * (1 - p[0]) + p[1] * (1 - p[1])) / n
    return conv, n, diff, var


def test_fixed_horizon_aa_false_positive_rate_is_alpha():
    sims = 4000
    conv, n, _, _ = _aa_daily_counts(sims, 1, 2000, 0.1, seed=11)
    rejections = [two_proportion_test(ProportionSummary(2000, conv[1, s, -1]),
                                      ProportionSummary(2000, conv[0, s, -1])).p_value < ALPHA
                  for s in range(sims)]
    assert abs(np.mean(rejections) - ALPHA) < _band(sims)


def test_daily_peeking_inflates_fixed_test_but_not_sequential():
    sims, days = 4000, 20
    _, _, diff, var = _aa_daily_counts(sims, days, 500, 0.1, seed=12)
    fixed_any = (np.abs(diff) / np.sqrt(var) > stats.norm.isf(ALPHA / 2)).any(axis=1).mean()
    tau2 = mixing_variance(float(var[:, -1].mean()), ALPHA)
    seq_any = (always_valid_p_values(diff, var, tau2)[:, -1] < ALPHA).mean()
    assert fixed_any > ALPHA + _band(sims)  # peeking 20 times: about 0.2
    assert seq_any <= ALPHA + _band(sims)


def test_sequential_test_detects_a_real_effect():
    rng = np.random.default_rng(4)
    days, per_day = 20, 2000
    conv_c = rng.binomial(per_day, 0.10, days).cumsum()
    conv_t = rng.binomial(per_day, 0.115, days).cumsum()
    n = per_day * np.arange(1, days + 1)
    pc, pt = conv_c / n, conv_t / n
    res = sequential_test(pt - pc, (pc * (1 - pc) + pt * (1 - pt)) / n, ALPHA)
    assert res.p_value < ALPHA
    assert res.ci_low < 0.015 < res.ci_high


@pytest.mark.parametrize("seed", [21])
def test_confidence_sequence_covers_true_difference_at_all_looks(seed):
    sims, days = 2000, 15
    _, _, diff, var = _aa_daily_counts(sims, days, 400, 0.2, seed=seed)
    from experiments.stats.sequential import confidence_sequence

    lo, hi = confidence_sequence(diff, var, mixing_variance(float(var[:, -1].mean()), ALPHA), ALPHA)
    miss = ((lo > 0) | (hi < 0)).any(axis=1).mean()
    assert miss <= ALPHA + _band(sims)
