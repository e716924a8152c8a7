"""The promotion gate: configured limits on the audit's disparity metrics → a verdict, with culprits.

Each enabled check of each audited feature is judged on the metric's interval when the audit has
one (:mod:`fairness.intervals`: it covers the metric with the configured confidence and contains the
point value): ``fail`` when the whole interval lies beyond the limit, ``pass`` when it lies within,
``insufficient_evidence`` when it straddles the limit (too few rows to tell). Without an interval
the point value decides (pass or fail). The gate's verdict is ``fail`` if any check fails, else
``insufficient_evidence`` if any check is undecided, else ``pass``; only ``fail`` blocks promotion.
"""

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


PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient_evidence"


@dataclass
class GateVerdict:
    """``verdict`` is "pass", "fail" or "insufficient_evidence"; ``failing`` names metric, feature,
    value, limit, interval and groups of the failed checks; ``undecided`` the same for checks whose
    interval straddles the limit; ``checks`` every judged check."""

    verdict: str
    failing: list[dict[str, Any]] = field(default_factory=list)
    undecided: list[dict[str, Any]] = field(default_factory=list)
    # every enabled check: metric, feature, value, interval (95% by default), limit, kind ("min"/"max"),
    # verdict
    # (pass / fail / insufficient_evidence; None: not computable), passed (the point value is within)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    @property
    def blocks_promotion(self) -> bool:
        return self.verdict == FAIL


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


def judge(value: float, interval: tuple[float, float] | None, limit: float, kind: str) -> str:
    """One check: ``kind`` "min" (value must be >= limit) or "max" (<= limit); see the module docstring."""
    def beyond(v: float) -> bool:
        return v < limit if kind == "min" else v > limit

    if interval is None or any(math.isnan(v) for v in interval):
        return FAIL if beyond(value) else PASS
    low, high = interval
    if beyond(low) and beyond(high):
        return FAIL
    if not beyond(low) and not beyond(high):
        return PASS
    return INSUFFICIENT


def evaluate_gate(audit: Audit, cfg: GateConfig) -> GateVerdict:
    """Check every audited feature against every enabled limit.

    A metric that cannot be computed (NaN: fewer than two judged groups) does not fail the gate.
    """
    checks: list[dict[str, Any]] = []
    for feature, fa in audit.features.items():
        for metric, (key, kind, rates) in CHECKS.items():
            limit = getattr(cfg, key)
            value = fa.metrics[metric]
            if limit is None:
                continue
            if math.isnan(value):
                checks.append({"metric": metric, "feature": feature, "value": value, "limit": limit,
                               "kind": kind, "interval": None, "verdict": None, "passed": None, "groups": []})
                continue
            interval = fa.intervals.get(metric)
            verdict = judge(value, interval, limit, kind)
            bad = value < limit if kind == "min" else value > limit
            checks.append({"metric": metric, "feature": feature, "value": value, "limit": limit, "kind": kind,
                           "interval": list(interval) if interval else None, "verdict": verdict,
                           "passed": not bad, "groups": extreme_groups(fa, rates)})
    failing = [c for c in checks if c["verdict"] == FAIL]
    undecided = [c for c in checks if c["verdict"] == INSUFFICIENT]
    overall = FAIL if failing else INSUFFICIENT if undecided else PASS
    return GateVerdict(overall, failing, undecided, checks)
