"""Result types of an experiment analysis and their JSON form (the ``ab analyze --json`` contract).

Contract keys: ``{"srm": {"statistic", "df", "p_value", "mismatch"}, "metrics": {NAME: {"type",
"variants": [{"name", "n", "mean"}], "omnibus": {"test", "statistic", "df", "p_value"},
"comparisons": [{"variant", "control", "test", "statistic", "df", "p_value", "p_value_adjusted",
"difference", "ci_low", "ci_high", "relative_lift", "relative_ci_low", "relative_ci_high"}]}}}``.
Every other key is an addition (documented in the README) that consumers may ignore.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from experiments.stats.bayes import BayesResult
from experiments.stats.factorial import FactorialResult
from experiments.stats.sequential import SequentialResult
from experiments.stats.srm import SRMResult
from experiments.stats.summaries import Comparison, OmnibusTest


@dataclass(frozen=True)
class VariantStat:
    """One variant on one metric: units with a value, mean (a rate 0..1 for proportions) and its CI."""

    name: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    sd: float


@dataclass(frozen=True)
class PowerCheck:
    """Power reached for the planned relative lift and units per variant still needed (0 when enough)."""

    planned_relative_lift: float
    achieved_power: float
    n_required_per_variant: int | None
    n_more_per_variant: int | None


@dataclass
class MetricResult:
    name: str
    type: str
    variants: list[VariantStat]
    omnibus: OmnibusTest
    comparisons: list[Comparison]
    cuped: dict[str, Any] | None = None
    bayes: dict[str, BayesResult] = field(default_factory=dict)
    sequential: dict[str, SequentialResult] = field(default_factory=dict)
    sequential_adjusted: dict[str, float] = field(default_factory=dict)
    power: dict[str, PowerCheck] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        comparisons = []
        for c in self.comparisons:
            row = asdict(c)
            if c.variant in self.bayes:
                row["bayes"] = asdict(self.bayes[c.variant])
            if c.variant in self.sequential:
                row["sequential"] = {**asdict(self.sequential[c.variant]),
                                     "p_value_adjusted": self.sequential_adjusted.get(c.variant)}
            if c.variant in self.power:
                row["power"] = asdict(self.power[c.variant])
            comparisons.append(row)
        omnibus = asdict(self.omnibus)
        return {"type": self.type, "variants": [asdict(v) for v in self.variants], "omnibus": omnibus,
                "comparisons": comparisons, "cuped": self.cuped}


@dataclass
class ExperimentResult:
    """Everything ``analyze_experiment`` found; the report and the CLI read only this."""

    control: str
    variants: list[str]
    alpha: float
    correction: str
    srm: SRMResult
    metrics: dict[str, MetricResult]
    sequential_decision: bool = False
    looks: int = 1
    segment_col: str | None = None
    segments: dict[str, dict[str, MetricResult]] = field(default_factory=dict)
    factorial: list[FactorialResult] = field(default_factory=list)
    timeline: pl.DataFrame | None = None
    funnel: pl.DataFrame | None = None
    cohorts: pl.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``ab analyze --json``."""
        srm = asdict(self.srm)
        out: dict[str, Any] = {
            "srm": srm,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "control": self.control,
            "variants": self.variants,
            "alpha": self.alpha,
            "correction": self.correction,
            "sequential_decision": self.sequential_decision,
            "warnings": self.warnings,
        }
        if self.segments:
            out["segments"] = {"column": self.segment_col,
                               "values": {seg: {name: m.to_dict() for name, m in metrics.items()}
                                          for seg, metrics in self.segments.items()}}
        if self.factorial:
            out["factorial"] = [asdict(f) for f in self.factorial]
        for key in ("timeline", "funnel", "cohorts"):
            frame = getattr(self, key)
            if frame is not None:
                out[key] = frame.to_dicts()
        return out
