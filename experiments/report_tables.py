"""The tables of a report, as plain strings, shared by the HTML and Markdown renderers.

Numbers go through :mod:`reports.numbers`: an estimate and its interval share their decimals
(set by the interval's width), p-values have two significant digits, rates are percentages.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from experiments.results import ExperimentResult, MetricResult
from reports.numbers import count, estimate, num, p_value, pct, share_interval


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _k(metric: MetricResult) -> float:
    return 100.0 if metric.type == "proportion" else 1.0


def _unit(metric: MetricResult) -> str:
    return " pp" if metric.type == "proportion" else ""


def _p(value: float | None) -> str:
    return "" if value is None else p_value(value)


def _decision(p: float | None, alpha: float) -> str:
    if p is None:
        return ""
    return f"significant (< {alpha:g})" if p < alpha else f"not significant (≥ {alpha:g})"


def _comparisons(metrics: dict[str, MetricResult], alpha: float,
                 prefix: list[str] | None = None) -> list[list[str]]:
    rows = []
    for name, m in metrics.items():
        for c in m.comparisons:
            bayes = m.bayes.get(c.variant)
            seq = m.sequential.get(c.variant)
            rows.append([*(prefix or []), name, c.variant,
                         estimate(c.difference, c.ci_low, c.ci_high, _unit(m), scale=_k(m)),
                         estimate(c.relative_lift, c.relative_ci_low, c.relative_ci_high, "%", scale=100),
                         _p(c.p_value), _p(c.p_value_adjusted), _decision(c.p_value_adjusted, alpha),
                         pct(bayes.chance_to_beat) if bayes else "",
                         _p(m.sequential_adjusted.get(c.variant)) if seq else "", c.test])
    return rows


COMPARISON_HEADER = ["metric", "variant", "difference [interval] (pp for rates)", "relative [interval]", "p",
                     "p adjusted", "judged against alpha", "chance to beat control", "always-valid p adj.",
                     "test"]


def censored_weeks(cohorts: pl.DataFrame) -> list[int]:
    """Cohort weeks that the data does not cover for every exposed user (the data ends inside them)."""
    if "complete_share" not in cohorts.columns:
        return []
    part = cohorts.filter(pl.col("complete_share") < 1.0)
    return sorted(set(part["week"].to_list()))


def _cuped(result: ExperimentResult) -> Table | None:
    rows = []
    for name, m in result.metrics.items():
        if not m.cuped:
            continue
        reduction = float(m.cuped["variance_reduction"])
        reading = ("the covariate barely predicts the metric: CUPED changes nothing here (it never hurts); "
                   "pick a pre-period covariate correlated with the metric to gain precision"
                   if reduction < 0.01
                   else f"intervals are about {pct(1 - (1 - reduction) ** 0.5, 2)} narrower")
        rows.append([name, str(m.cuped["covariate"]), num(m.cuped["theta"]), pct(reduction, 2), reading])
    if not rows:
        return None
    return Table("CUPED variance reduction",
                 ["metric", "covariate", "theta", "variance reduction", "reading"], rows,
                 "Comparisons of these metrics use the CUPED-adjusted means. The variance reduction is "
                 "the squared correlation between the covariate and the metric; near 0% means the "
                 "covariate carries no information about the outcome.")


def _cohorts(result: ExperimentResult) -> Table:
    assert result.cohorts is not None
    censored = set(censored_weeks(result.cohorts))
    rows = []
    for r in result.cohorts.sort("week", "variant").iter_rows(named=True):
        state = (f"censored: {pct(r['complete_share'], 2)} of users observed the whole week"
                 if r["week"] in censored else "complete")
        rows.append([r["variant"], str(r["week"]), pct(r["returning_share"]), pct(r["purchasing_share"]),
                     state])
    note = ("Censored weeks are cut off by the end of the data: their low shares are missing data, "
            "not users leaving. Compare variants only on complete weeks." if censored else "")
    return Table("Weekly cohorts", ["variant", "week", "returning", "purchasing", "coverage"], rows, note)


def report_tables(result: ExperimentResult) -> list[Table]:
    """Comparisons, variants, CUPED, segments, factorial terms, funnel and cohorts, when present."""
    tables = [Table("Comparisons", COMPARISON_HEADER, _comparisons(result.metrics, result.alpha),
                    f"Intervals are unadjusted {1 - result.alpha:.0%} intervals of treatment - control; "
                    f"a variant is significant when its adjusted p is below alpha = {result.alpha:g}.")]
    variants = [[name, v.name, count(v.n),
                 share_interval(v.mean, v.ci_low, v.ci_high) if m.type == "proportion"
                 else estimate(v.mean, v.ci_low, v.ci_high, sign=False)]
                for name, m in result.metrics.items() for v in m.variants]
    omnibus = "; ".join(f"{name}: {m.omnibus.test} p = {p_value(m.omnibus.p_value)}"
                        for name, m in result.metrics.items())
    tables.append(Table("Variants", ["metric", "variant", "units", "mean or rate [interval]"], variants,
                        f"All variants equal? {omnibus}."))
    cuped = _cuped(result)
    if cuped is not None:
        tables.append(cuped)
    if result.segments:
        rows = [r for seg, metrics in result.segments.items()
                for r in _comparisons(metrics, result.alpha, [seg])]
        tables.append(Table(f"By {result.segment_col}", [str(result.segment_col), *COMPARISON_HEADER], rows,
                            "Adjusted over all segments x variants x metrics."))
    for f in result.factorial:
        rows = [[t.term, t.kind, estimate(t.estimate, t.ci_low, t.ci_high), _p(t.p_value)] for t in f.terms]
        tables.append(Table(f"Factorial effects on {f.metric} ({f.model}, {f.scale})",
                            ["term", "kind", "estimate [interval]", "p"], rows,
                            "Reference levels: " + ", ".join(f"{k}={v}" for k, v in f.references.items())))
    if result.funnel is not None:
        rows = [[r["step"], r["variant"], share_interval(r["rate"], r["ci_low"], r["ci_high"]),
                 "" if r["step_conversion"] is None else pct(r["step_conversion"]),
                 _p(r["p_value_adjusted"])]
                for r in result.funnel.iter_rows(named=True)]
        tables.append(Table("Funnel", ["step", "variant", "reached [interval]", "from previous step",
                                       "p adjusted vs control"], rows))
    if result.cohorts is not None:
        tables.append(_cohorts(result))
    return tables
