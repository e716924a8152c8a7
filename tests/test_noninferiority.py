"""experiments.stats.noninferiority: the verdict follows where the interval lies against -margin."""

from __future__ import annotations

import pytest

from experiments.stats.noninferiority import non_inferiority


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (-0.004, 0.010, "non_inferior"),   # lower bound above -0.005
    (-0.020, -0.006, "inferior"),      # upper bound below -0.005: worse beyond the margin
    (-0.010, 0.010, "inconclusive"),   # the interval holds differences worse than -0.005
    (-0.005, 0.002, "inconclusive"),   # a bound on the margin is not beyond it
])
def test_verdict_by_the_interval_against_the_margin(low: float, high: float, verdict: str) -> None:
    result = non_inferiority((low + high) / 2, low, high, margin=0.005)
    assert result.verdict == verdict and (result.ci_low, result.ci_high) == (low, high)


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        non_inferiority(0.0, 0.01, -0.01, margin=0.005)
