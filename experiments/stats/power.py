"""Planning: sample size, power and minimum detectable effect for proportions and means.

Conventions follow R: proportions as ``power.prop.test`` (normal approximation, pooled variance
under H0, unpooled under H1), means as ``power.t.test`` (noncentral t with n1 + n2 - 2 degrees
of freedom). Both are two-sided and, like R's default ``strict = FALSE``, count only the rejection
tail in the direction of the effect. ``ratio`` is n_treatment / n_control; with several variants
the alpha is split over the ``variants - 1`` comparisons against the control (Bonferroni).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize, stats

from experiments.stats.errors import StatsInputError

MetricKind = Literal["proportion", "mean"]
# Above this many degrees of freedom the noncentral t is replaced by the normal distribution:
# the difference is below 1e-7 in power and scipy's nct can return NaN for huge df.
_NCT_MAX_DF = 1e7
_MAX_N = 1e12


@dataclass(frozen=True)
class Design:
    """What is planned: metric kind, control baseline, absolute effect, and the test's settings.

    ``baseline`` is the control rate (0..1) or mean; ``effect`` is treatment - control in the
    same unit; ``sd`` is the per-unit standard deviation (means only).
    """

    metric: MetricKind
    baseline: float
    effect: float
    sd: float | None = None
    alpha: float = 0.05
    ratio: float = 1.0
    variants: int = 2

    def __post_init__(self) -> None:
        if self.metric not in ("proportion", "mean"):
            raise StatsInputError(f"metric must be 'proportion' or 'mean', got '{self.metric}'")
        if not 0 < self.alpha < 1:
            raise StatsInputError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.ratio > 0:
            raise StatsInputError(f"ratio must be positive, got {self.ratio}")
        if self.variants < 2:
            raise StatsInputError(f"variants counts the control too and must be >= 2, got {self.variants}")
        if self.metric == "proportion":
            if not 0 < self.baseline < 1:
                raise StatsInputError(f"baseline rate must be in (0, 1), got {self.baseline}")
            if not 0 < self.baseline + self.effect < 1:
                raise StatsInputError(f"treatment rate {self.baseline + self.effect:.6g} is outside (0, 1)")
        elif self.sd is None or not self.sd > 0:
            raise StatsInputError("a mean metric needs a positive --sd (per-unit standard deviation)")

    @property
    def alpha_per_comparison(self) -> float:
        return self.alpha / (self.variants - 1)

    @property
    def treatment(self) -> float:
        return self.baseline + self.effect


@dataclass(frozen=True)
class Plan:
    """Sizes for a design at a power. ``n_per_variant`` is the control arm (every arm when ratio = 1)."""

    design: Design
    power: float
    n_control_exact: float
    n_control: int
    n_treatment: int
    n_total: int

    @property
    def n_per_variant(self) -> int:
        return self.n_control


def _check_power(power: float) -> None:
    if not 0 < power < 1:
        raise StatsInputError(f"power must be in (0, 1), got {power}")


def power_for(design: Design, n_control: float) -> float:
    """Power (0..1) with ``n_control`` units in the control and ``ratio`` times that per treatment."""
    if n_control <= 1:
        raise StatsInputError(f"need more than one unit per variant, got {n_control}")
    if design.effect == 0:
        return design.alpha_per_comparison / 2
    n1, n2 = n_control, n_control * design.ratio
    alpha = design.alpha_per_comparison
    delta = abs(design.effect)
    if design.metric == "proportion":
        p1, p2 = design.baseline, design.treatment
        pbar = (n1 * p1 + n2 * p2) / (n1 + n2)
        se0 = math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n2))
        se1 = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        return float(stats.norm.cdf((delta - stats.norm.isf(alpha / 2) * se0) / se1))
    assert design.sd is not None
    ncp = delta / (design.sd * math.sqrt(1 / n1 + 1 / n2))
    df = n1 + n2 - 2
    if df <= _NCT_MAX_DF:
        value = float(stats.nct.sf(stats.t.isf(alpha / 2, df), df, ncp))
        if math.isfinite(value):
            return value
    return float(stats.norm.sf(stats.norm.isf(alpha / 2) - ncp))


def sample_size(design: Design, power: float = 0.8) -> Plan:
    """Smallest whole sample that reaches ``power``: control n rounded up, treatments ceil(ratio * n)."""
    _check_power(power)
    if design.effect == 0:
        raise StatsInputError("the minimum detectable effect must not be zero")
    if design.metric == "proportion":
        p1, p2, r = design.baseline, design.treatment, design.ratio
        pbar = (p1 + r * p2) / (1 + r)
        z_a = stats.norm.isf(design.alpha_per_comparison / 2)
        z_b = stats.norm.isf(1 - power)
        n1 = (z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / r))
              + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / r)) ** 2 / design.effect**2
    else:
        hi = 4.0
        while power_for(design, hi) < power:
            hi *= 4
            if hi > _MAX_N:
                raise StatsInputError("the effect is too small: more than 1e12 units per variant needed")
        if power_for(design, 2.0) >= power:
            n1 = 2.0
        else:
            n1 = optimize.brentq(lambda n: power_for(design, n) - power, 2.0, hi, xtol=1e-10, rtol=1e-12)
    n_control = math.ceil(n1 - 1e-9)
    n_treatment = math.ceil(n_control * design.ratio - 1e-9)
    return Plan(design=design, power=power, n_control_exact=float(n1), n_control=n_control,
                n_treatment=n_treatment, n_total=n_control + (design.variants - 1) * n_treatment)


def minimum_detectable_effect(design: Design, n_control: float, power: float = 0.8,
                              direction: int = 1) -> float:
    """Smallest absolute effect (same unit as the baseline, sign of ``direction``) reached at ``power``.

    ``design.effect`` is ignored. Raises when no effect inside the metric's range reaches the power.
    """
    _check_power(power)
    sign = 1 if direction >= 0 else -1

    def gap(effect: float) -> float:
        d = Design(design.metric, design.baseline, sign * effect, design.sd, design.alpha, design.ratio,
                   design.variants)
        return power_for(d, n_control) - power

    if design.metric == "proportion":
        hi = (1 - design.baseline if sign > 0 else design.baseline) * (1 - 1e-9)
    else:
        assert design.sd is not None
        hi = design.sd
        while gap(hi) < 0:
            hi *= 2
    if gap(hi) < 0:
        raise StatsInputError(f"no effect reaches power {power} with {n_control:g} units per variant")
    return sign * float(optimize.brentq(gap, 1e-12 * max(hi, 1e-12), hi, xtol=1e-12, rtol=1e-10))
