"""Summary statistics (the inputs) and test results (the outputs) shared by the statistics modules."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ProportionSummary:
    """A binary metric in one variant: ``successes`` units out of ``n`` converted."""

    n: int
    successes: float

    def __post_init__(self) -> None:
        if self.n < 0 or self.successes < 0 or self.successes > self.n:
            raise ValueError(f"need 0 <= successes <= n, got successes={self.successes}, n={self.n}")

    @property
    def rate(self) -> float:
        """Share of units with a success, 0..1 (NaN for an empty variant)."""
        return self.successes / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Bernoulli variance p(1-p) of one unit."""
        p = self.rate
        return p * (1.0 - p)


@dataclass(frozen=True)
class MeanSummary:
    """A continuous metric in one variant: ``n`` units, sum and sum of squares of their values."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance of one unit (ddof = 1); NaN below two units."""
        if self.n < 2:
            return math.nan
        return max((self.total_sq - self.total**2 / self.n) / (self.n - 1), 0.0)

    @classmethod
    def from_moments(cls, n: int, mean: float, sd: float) -> MeanSummary:
        """Build from n, mean and sample standard deviation (ddof = 1), as in a published table."""
        total = n * mean
        return cls(n=n, total=total, total_sq=sd**2 * (n - 1) + total**2 / n)


@dataclass(frozen=True)
class RegressionSummary:
    """Joint moments of a metric ``y`` and a pre-period covariate ``x`` in one variant (for CUPED)."""

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    @property
    def y(self) -> MeanSummary:
        return MeanSummary(self.n, self.sum_y, self.sum_y2)

    @property
    def x(self) -> MeanSummary:
        return MeanSummary(self.n, self.sum_x, self.sum_x2)

    @property
    def covariance(self) -> float:
        """Sample covariance of x and y (ddof = 1)."""
        if self.n < 2:
            return math.nan
        return (self.sum_xy - self.sum_x * self.sum_y / self.n) / (self.n - 1)


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control on one metric. ``difference`` is treatment - control."""

    variant: str
    control: str
    test: str
    statistic: float
    df: float | None
    p_value: float
    difference: float
    ci_low: float
    ci_high: float
    relative_lift: float
    relative_ci_low: float
    relative_ci_high: float
    p_value_adjusted: float | None = None


@dataclass(frozen=True)
class OmnibusTest:
    """A test of "all variants are equal" on one metric."""

    test: str
    statistic: float
    df: float | tuple[float, float]
    p_value: float
