"""The tables of a report, as plain strings, shared by the HTML and Markdown renderers."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.results import ExperimentResult, MetricResult


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _k(metric: MetricResult) -> float:
    return 100.0 if metric.type == "proportion" else 1.0


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _comparisons(metrics: dict[str, MetricResult], prefix: list[str] | None = None) -> list[list[str]]:
    rows = []
    for name, m in metrics.items():
        k = _k(m)
        for c in m.comparisons:
            bayes = m.bayes.get(c.variant)
            seq = m.sequential.get(c.variant)
            rows.append([*(prefix or []), name, c.variant, f"{c.difference * k:+.4g}",
                         f"[{c.ci_low * k:.4g}, {c.ci_high * k:.4g}]", f"{c.relative_lift:+.2%}",
                         _p(c.p_value), _p(c.p_value_adjusted),
                         f"{bayes.chance_to_beat:.1%}" if bayes else "",
                         _p(m.sequential_adjusted.get(c.variant)) if seq else "", c.test])
    return rows


COMPARISON_HEADER = ["metric", "variant", "difference (pp for rates)", "interval", "relative", "p",
                     "p adjusted", "chance to beat", "always-valid p adj.", "test"]


def report_tables(result: ExperimentResult) -> list[Table]:
    """Comparisons, variants, CUPED, segments, factorial terms and funnel, when present."""
    tables = [Table("Comparisons", COMPARISON_HEADER, _comparisons(result.metrics),
                    f"Intervals are unadjusted {1 - result.alpha:.0%} intervals of treatment - control.")]
    variants = [[name, v.name, f"{v.n:,}", f"{v.mean * _k(m):.4g}",
                 f"[{v.ci_low * _k(m):.4g}, {v.ci_high * _k(m):.4g}]"]
                for name, m in result.metrics.items() for v in m.variants]
    omnibus = "; ".join(f"{name}: {m.omnibus.test} p = {m.omnibus.p_value:.3g}"
                        for name, m in result.metrics.items())
    tables.append(Table("Variants", ["metric", "variant", "n", "mean (% for rates)", "interval"], variants,
                        f"All variants equal? {omnibus}."))
    cuped = [[name, str(m.cuped["covariate"]), f"{m.cuped['theta']:.4g}",
              f"{m.cuped['variance_reduction']:.1%}"] for name, m in result.metrics.items() if m.cuped]
    if cuped:
        tables.append(Table("CUPED variance reduction",
                            ["metric", "covariate", "theta", "variance reduction"], cuped,
                            "Comparisons of these metrics use the CUPED-adjusted means."))
    if result.segments:
        rows = [r for seg, metrics in result.segments.items() for r in _comparisons(metrics, [seg])]
        tables.append(Table(f"By {result.segment_col}", [str(result.segment_col), *COMPARISON_HEADER], rows,
                            "Adjusted over all segments x variants x metrics."))
    for f in result.factorial:
        rows = [[t.term, t.kind, f"{t.estimate:+.4g}", f"[{t.ci_low:.4g}, {t.ci_high:.4g}]", _p(t.p_value)]
                for t in f.terms]
        tables.append(Table(f"Factorial effects on {f.metric} ({f.model}, {f.scale})",
                            ["term", "kind", "estimate", "interval", "p"], rows,
                            "Reference levels: " + ", ".join(f"{k}={v}" for k, v in f.references.items())))
    if result.funnel is not None:
        rows = [[r["step"], r["variant"], f"{r['rate']:.2%}", f"[{r['ci_low']:.2%}, {r['ci_high']:.2%}]",
                 "" if r["step_conversion"] is None else f"{r['step_conversion']:.1%}",
                 _p(r["p_value_adjusted"])]
                for r in result.funnel.iter_rows(named=True)]
        tables.append(Table("Funnel", ["step", "variant", "reached", "interval", "from previous step",
                                       "p adjusted vs control"], rows))
    if result.cohorts is not None:
        rows = [[r["variant"], str(r["week"]), f"{r['returning_share']:.1%}", f"{r['purchasing_share']:.1%}"]
                for r in result.cohorts.sort("week", "variant").iter_rows(named=True)]
        tables.append(Table("Weekly cohorts", ["variant", "week", "returning", "purchasing"], rows))
    return tables


