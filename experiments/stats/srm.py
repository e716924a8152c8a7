"""Sample ratio mismatch: chi-square goodness of fit of variant counts against the planned split."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from experiments.stats.errors import StatsInputError


@dataclass(frozen=True)
class SRMResult:
    """Outcome of the SRM check. ``mismatch`` is True when ``p_value < threshold``."""

    statistic: float
    df: int
    p_value: float
    mismatch: bool
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    threshold: float


def validate_split(split: Sequence[float], k: int) -> tuple[float, ...]:
    """Check a planned split: ``k`` positive shares summing to 1 (within 1e-6). Raises ValueError."""
    if len(split) != k:
        raise StatsInputError(f"expected split has {len(split)} shares but there are {k} variants")
    if any(not math.isfinite(s) or s <= 0 for s in split):
        raise StatsInputError(f"expected split shares must be positive, got {list(split)}")
    if abs(sum(split) - 1.0) > 1e-6:
        raise StatsInputError(f"expected split must sum to 1, got {sum(split):.6g}")
    return tuple(float(s) for s in split)


def sample_ratio_mismatch(counts: Sequence[int], split: Sequence[float] | None = None,
                          threshold: float = 0.001) -> SRMResult:
    """Pearson chi-square of observed unit ``counts`` per variant against ``split`` (equal when None)."""
    k = len(counts)
    shares = validate_split(split, k) if split is not None else tuple(1.0 / k for _ in counts)
    n = sum(counts)
    expected = tuple(n * s for s in shares)
    stat = sum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
    p = float(stats.chi2.sf(stat, k - 1))
    return SRMResult(statistic=stat, df=k - 1, p_value=p, mismatch=p < threshold,
                     observed=tuple(int(c) for c in counts), expected=expected, threshold=threshold)
