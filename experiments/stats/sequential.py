"""Sequential monitoring: mSPRT always-valid p-values and normal-mixture confidence sequences.

For an estimate d of an effect with (approximately normal) sampling variance V, the mixture
likelihood ratio of H1: effect ~ N(0, tau2) against H0: effect = 0 is

    Lambda = sqrt(V / (V + tau2)) * exp(d^2 tau2 / (2 V (V + tau2)))        (Johari et al. 2017)

1 / Lambda, taken as a running minimum over looks, is a p-value that stays valid however often one
looks. Inverting the same test gives the confidence sequence of Howard et al. (2021), eq. 14:

    d +- sqrt(V (V + tau2) / tau2 * (2 log(1/alpha) + log((V + tau2) / V)))

``tau2`` sets the sample size where the sequence is tightest; :func:`mixing_variance` picks the
value that minimises the width at a planned sample size (Howard et al., as used by gbstats).
All functions accept numpy arrays (one entry per look) as well as floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class SequentialResult:
    """At one look: the always-valid p-value and the confidence sequence of the difference."""

    p_value: float
    ci_low: float
    ci_high: float
    tau2: float


def mixing_variance(variance_at_plan: float, alpha: float = 0.05) -> float:
    """tau2 making the sequence narrowest where the estimate's variance is ``variance_at_plan``."""
    c = -2 * math.log(alpha)
    return variance_at_plan * (c + math.log(1 + c))


def log_mixture_lr(difference: ArrayLike, variance: ArrayLike, tau2: float) -> NDArray[np.float64]:
    """log Lambda of the normal-mixture SPRT at each look."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    return 0.5 * np.log(v / (v + tau2)) + d * d * tau2 / (2 * v * (v + tau2))


def always_valid_p_values(difference: ArrayLike, variance: ArrayLike, tau2: float) -> NDArray[np.float64]:
    """Running-minimum p-values over looks along the last axis (shape of ``difference``)."""
    p = np.exp(-np.maximum(log_mixture_lr(difference, variance, tau2), 0.0))
    return np.minimum.accumulate(p, axis=-1)


def confidence_sequence(difference: ArrayLike, variance: ArrayLike, tau2: float,
                        alpha: float = 0.05) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lower and upper bounds of the ``1 - alpha`` confidence sequence at each look."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    half = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
    return d - half, d + half


def sequential_test(differences: ArrayLike, variances: ArrayLike, alpha: float = 0.05,
                    tau2: float | None = None) -> SequentialResult:
    """Result at the last of a series of looks (cumulative estimates in time order).

    When ``tau2`` is None it is tuned to the last look's variance (the sample collected so far).
    The confidence sequence is intersected over looks, as its validity allows.
    """
    d = np.atleast_1d(np.asarray(differences, dtype=float))
    v = np.atleast_1d(np.asarray(variances, dtype=float))
    if tau2 is None:
        tau2 = mixing_variance(float(v[-1]), alpha)
    p = always_valid_p_values(d, v, tau2)
    lo, hi = confidence_sequence(d, v, tau2, alpha)
    return SequentialResult(p_value=float(p[-1]), ci_low=float(np.max(lo)), ci_high=float(np.min(hi)),
                            tau2=tau2)
