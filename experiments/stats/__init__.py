"""Pure statistics over summary statistics: no I/O, no plotting, no data frames.

Inputs are small frozen dataclasses (:mod:`experiments.stats.summaries`); outputs are result
dataclasses. Every formula is pinned against an independent reference in ``tests/test_ab_*.py``.
"""

from experiments.stats.summaries import (
    Comparison,
    MeanSummary,
    OmnibusTest,
    ProportionSummary,
    RegressionSummary,
)

__all__ = ["Comparison", "MeanSummary", "OmnibusTest", "ProportionSummary", "RegressionSummary"]
