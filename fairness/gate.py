"""The promotion gate: configured limits on the audit's disparity metrics → pass or fail, with culprits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fairness.audit import Audit, FeatureAudit
from fairness.config import GateConfig

# metric -> (config field, "min" or "max", per-group rate that the metric compares)
CHECKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "demographic_parity_ratio": ("demographic_parity_ratio_min", "min", ("selection_rate",)),
    "demographic_parity_difference": ("demographic_parity_difference_max", "max", ("selection_rate",)),
    "equalized_odds_difference": ("equalized_odds_difference_max", "max", ("tpr", "fpr")),
    "equal_opportunity_difference": ("equal_opportunity_difference_max", "max", ("tpr",)),
}


@dataclass
class GateVerdict:
    """``verdict`` is "pass" or "fail"; ``failing`` names metric, feature, value, limit and groups."""

    verdict: str
    failing: list[dict[str, Any]] = field(default_factory=list)
    # every enabled check: metric, feature, value, 95% interval, limit, kind ("min"/"max"),
    # passed (None: not computable)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def extreme_groups(audit: FeatureAudit, rates: tuple[str, ...]) -> list[str]:
    """The judged groups with the lowest and highest value of the widest-spread rate among ``rates``."""
    judged = audit.judged()
    best: tuple[float, list[str]] = (-1.0, [])
    for rate in rates:
        values = [(g[rate], g["group"]) for g in judged if not math.isnan(g[rate])]
        if len(values) < 2:
            continue
        low, high = min(values), max(values)
        if high[0] - low[0] > best[0]:
            best = (high[0] - low[0], [low[1], high[1]])
    return best[1]


def evaluate_gate(audit: Audit, cfg: GateConfig) -> GateVerdict:
    """Check every audited feature against every enabled limit.

    A metric that cannot be computed (NaN: fewer than two judged groups) does not fail the gate.
    """
    failing: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for feature, fa in audit.features.items():
        for metric, (key, kind, rates) in CHECKS.items():
            limit = getattr(cfg, key)
            value = fa.metrics[metric]
            if limit is None:
                continue
            if math.isnan(value):
                checks.append({"metric": metric, "feature": feature, "value": value, "limit": limit,
                               "kind": kind, "passed": None})
                continue
            bad = value < limit if kind == "min" else value > limit
            checks.append({"metric": metric, "feature": feature, "value": value, "limit": limit, "kind": kind,
                           "passed": not bad, "interval": fa.intervals.get(metric)})
            if bad:
                failing.append({"metric": metric, "feature": feature, "value": value, "limit": limit,
                                "groups": extreme_groups(fa, rates)})
    return GateVerdict("fail" if failing else "pass", failing, checks)
