"""Plain-language warnings about an analysis: SRM, too-small samples, peeking without sequential tests."""

from __future__ import annotations

import numpy as np
from scipy import stats

from experiments.config import ExperimentsConfig
from experiments.results import ExperimentResult


def peeking_false_positive_rate(looks: int, alpha: float = 0.05, paths: int = 20_000, seed: int = 0) -> float:
    """False positive rate (0..1) of a fixed-horizon two-sided test checked at ``looks`` equally spaced times.

    Monte Carlo over Brownian paths under H0 (deterministic for a given seed); 1 look gives ``alpha``.
    """
    if looks <= 1:
        return alpha
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((paths, looks)), axis=1)
    z = np.abs(walk) / np.sqrt(np.arange(1, looks + 1))
    return float(np.mean((z > stats.norm.isf(alpha / 2)).any(axis=1)))


def collect_warnings(result: ExperimentResult, settings: ExperimentsConfig) -> list[str]:
    """Warnings in the order an analyst should read them."""
    out: list[str] = []
    srm = result.srm
    if srm.mismatch:
        observed = ", ".join(f"{v} {n:,}" for v, n in zip(sorted(result.variants), srm.observed, strict=True))
        expected = ", ".join(f"{e:,.0f}" for e in srm.expected)
        out.append(f"Sample ratio mismatch: observed {observed} vs expected {expected} "
                   f"(chi-square p = {srm.p_value:.2g} < {srm.threshold:g}). Assignment or logging is "
                   "broken; do not trust these results until it is explained.")
    if result.looks > 1 and not result.sequential_decision:
        fpr = peeking_false_positive_rate(result.looks, result.alpha)
        out.append(f"Peeking: results were examined {result.looks} times with fixed-horizon tests, so the "
                   f"false positive rate is about {fpr:.0%} instead of {result.alpha:.0%}. Use the "
                   "sequential read-out (--sequential), which stays valid however often you look.")
    for name, metric in result.metrics.items():
        for variant, check in metric.power.items():
            if check.achieved_power >= settings.power:
                continue
            lift = f"{check.planned_relative_lift:+.0%}"
            out.append(f"Sample too small for '{name}', {variant} vs {result.control}: power is "
                       f"{check.achieved_power:.0%} to detect a {lift} relative lift (target "
                       f"{settings.power:.0%}); {check.n_required_per_variant:,} units per variant are "
                       f"needed, {check.n_more_per_variant:,} more than the control has. Keep the "
                       "experiment running until then, or read a non-significant result as "
                       "inconclusive, not as no effect.")
    return out
