"""Analyse an experiment: per-variant summaries -> tests, corrections, warnings (an ExperimentResult).

``analyze_experiment`` is the stage function the CLI, the demo and the tests call. Statistics come
from :mod:`experiments.stats`; this module only routes summaries to them and collects results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import polars as pl

from experiments import aggregate
from experiments.config import ExperimentsConfig
from experiments.results import ExperimentResult, MetricResult, PowerCheck, VariantStat
from experiments.stats import power as planning
from experiments.stats.bayes import beta_binomial_compare
from experiments.stats.corrections import adjust_p_values
from experiments.stats.cuped import cuped_adjust
from experiments.stats.errors import StatsInputError
from experiments.stats.factorial import factorial_effects
from experiments.stats.means import mean_ci, one_way_anova, t_test
from experiments.stats.proportions import chi_square_independence, proportion_ci, two_proportion_test
from experiments.stats.srm import sample_ratio_mismatch
from experiments.stats.summaries import MeanSummary, ProportionSummary, RegressionSummary
from propensity.errors import DataError

Summary = ProportionSummary | MeanSummary


def _summary(row: Mapping[str, float], metric: str, kind: str) -> Summary:
    n = int(row[f"{metric}__n"])
    if kind == "proportion":
        return ProportionSummary(n, float(row[f"{metric}__sum"] or 0.0))
    return MeanSummary(n, float(row[f"{metric}__sum"] or 0.0), float(row[f"{metric}__sum_sq"] or 0.0))


def _variant_stat(name: str, s: Summary, alpha: float) -> VariantStat:
    if isinstance(s, ProportionSummary):
        lo, hi = proportion_ci(s, alpha)
        return VariantStat(name, s.n, s.rate, lo, hi, math.sqrt(s.variance) if s.n else math.nan)
    lo, hi = mean_ci(s, alpha)
    return VariantStat(name, s.n, s.mean, lo, hi, math.sqrt(s.variance) if s.n > 1 else math.nan)


def _power_check(control: Summary, treatment: Summary, kind: str, k: int,
                 settings: ExperimentsConfig) -> PowerCheck | None:
    """Power to detect the planned relative lift at the sample collected; None when it cannot be judged."""
    base = control.rate if isinstance(control, ProportionSummary) else control.mean
    rel = settings.planned_mde_relative
    if control.n < 2 or treatment.n < 2 or not base or not math.isfinite(base):
        return None
    try:
        sd = math.sqrt(control.variance) if kind == "mean" else None
        design = planning.Design("mean" if kind == "mean" else "proportion", base, base * rel, sd,
                                 settings.alpha, treatment.n / control.n, k)
        achieved = planning.power_for(design, control.n)
        needed = planning.sample_size(design, settings.power).n_control
    except StatsInputError:
        return None
    return PowerCheck(rel, achieved, needed, max(needed - control.n, 0))


def analyze_metric(name: str, kind: str, rows: Mapping[str, Mapping[str, float]], control: str,
                   settings: ExperimentsConfig, covariate: str | None = None) -> MetricResult:
    """Tests of one metric from per-variant summary rows (keyed by variant name, control included)."""
    names = [control, *[v for v in rows if v != control]]
    summaries = {v: _summary(rows[v], name, kind) for v in names}
    empty = [v for v, s in summaries.items() if s.n < 2]
    if empty:
        raise DataError(f"metric '{name}': variant '{empty[0]}' has fewer than 2 units with a value")
    alpha = settings.alpha
    groups = [summaries[v] for v in names]
    if kind == "proportion":
        omnibus = chi_square_independence([g for g in groups if isinstance(g, ProportionSummary)])
    else:
        omnibus = one_way_anova([g for g in groups if isinstance(g, MeanSummary)], settings.equal_var)
    result = MetricResult(name=name, type=kind, omnibus=omnibus, comparisons=[],
                          variants=[_variant_stat(v, summaries[v], alpha) for v in names])
    tested: dict[str, Summary] = dict(summaries)
    if covariate is not None and kind == "mean":
        reg = [RegressionSummary(int(rows[v][f"{name}__xy_n"]), *(float(rows[v][f"{name}__{s}"] or 0.0)
                                 for s in ("y_sum", "y_sum_sq", "x_sum", "x_sum_sq", "xy"))) for v in names]
        cuped = cuped_adjust(reg)
        tested = dict(zip(names, cuped.adjusted, strict=True))
        result.cuped = {"covariate": covariate, "theta": cuped.theta,
                        "variance_reduction": cuped.variance_reduction,
                        "adjusted_means": {v: s.mean for v, s in zip(names, cuped.adjusted, strict=True)}}
    c = tested[control]
    for v in names[1:]:
        t = tested[v]
        if isinstance(t, ProportionSummary) and isinstance(c, ProportionSummary):
            result.comparisons.append(two_proportion_test(t, c, alpha, v, control))
            b = settings.bayes
            result.bayes[v] = beta_binomial_compare(t, c, (b.prior_alpha, b.prior_beta), b.draws, b.seed)
        else:
            assert isinstance(t, MeanSummary) and isinstance(c, MeanSummary)
            result.comparisons.append(t_test(t, c, alpha, settings.equal_var, v, control))
        check = _power_check(summaries[control], summaries[v], kind, len(names), settings)
        if check is not None:
            result.power[v] = check
    return result


def apply_correction(metrics: Sequence[MetricResult], method: str) -> None:
    """Set ``p_value_adjusted`` (and the sequential one) over all comparisons of ``metrics`` as one family."""
    flat = [(m, i) for m in metrics for i in range(len(m.comparisons))]
    adjusted = adjust_p_values([m.comparisons[i].p_value for m, i in flat], method)  # type: ignore[arg-type]
    for (m, i), p in zip(flat, adjusted, strict=True):
        m.comparisons[i] = dataclasses.replace(m.comparisons[i], p_value_adjusted=p)
    seq = [(m, v) for m in metrics for v in m.sequential]
    if seq:
        adj = adjust_p_values([m.sequential[v].p_value for m, v in seq], method)  # type: ignore[arg-type]
        for (m, v), p in zip(seq, adj, strict=True):
            m.sequential_adjusted[v] = p


def _rows_by_variant(summary: pl.DataFrame, variant_col: str) -> dict[str, dict[str, float]]:
    return {str(r[variant_col]): r for r in summary.to_dicts()}


def _split_for(variants: Sequence[str], expected_split: Sequence[float] | Mapping[str, float] | None
               ) -> list[float] | None:
    if expected_split is None or not isinstance(expected_split, Mapping):
        return list(expected_split) if expected_split is not None else None
    unknown = set(expected_split) - set(variants)
    if unknown:
        raise StatsInputError(f"expected split names unknown variant(s): {', '.join(sorted(unknown))}")
    missing = [v for v in variants if v not in expected_split]
    if missing:
        raise StatsInputError(f"expected split has no share for variant '{missing[0]}'")
    return [float(expected_split[v]) for v in variants]


def analyze_experiment(data: pl.DataFrame, variant_col: str, control: str, metrics: Sequence[str], *,
                       covariate: str | None = None, segment_col: str | None = None,
                       expected_split: Sequence[float] | Mapping[str, float] | None = None,
                       timestamp_col: str | None = None, factors: Sequence[str] = (),
                       settings: ExperimentsConfig | None = None) -> ExperimentResult:
    """Analyse unit-level rows (one per unit) or a per-variant summary table (:mod:`experiments.aggregate`).

    ``expected_split`` lists the planned shares in the sorted order of the variant names (or maps
    names to shares); None means an equal split. ``timestamp_col`` (first exposure time) enables the
    cumulative timeline and the sequential read-out; ``factors`` adds a factorial regression.
    """
    settings = settings or ExperimentsConfig()
    if not metrics:
        raise DataError("no metric given (--metric COL)")
    aggregate.require_columns(data, [variant_col], "data")
    summary_input = aggregate.is_summary_table(data, metrics)
    if summary_input:
        for opt, val in (("covariate", covariate), ("segment column", segment_col),
                         ("timestamp column", timestamp_col), ("factors", factors or None)):
            if val:
                raise DataError(f"a {opt} needs unit-level data, not a summary table")
        summary = aggregate.summary_from_table(data, variant_col, metrics)
        kinds = aggregate.summary_kinds(data, metrics)
    else:
        aggregate.require_columns(data, [*metrics, *(c for c in (covariate, segment_col, timestamp_col) if c),
                                         *factors])
        missing = data[variant_col].null_count()
        if missing:
            raise DataError(f"column '{variant_col}' has {missing} rows without a variant name")
        kinds = aggregate.metric_kinds(data, metrics)
        summary = aggregate.summarize(data, variant_col, metrics, covariate)
    rows = _rows_by_variant(summary, variant_col)
    variants = sorted(rows)
    if control not in rows:
        raise DataError(f"unknown control '{control}' (variants: {', '.join(variants)})")
    if len(variants) < 2:
        raise DataError(f"only one variant ('{control}') in the data; nothing to compare")
    srm = sample_ratio_mismatch([int(rows[v]["n"]) for v in variants], _split_for(variants, expected_split),
                                settings.srm_threshold)
    metric_results = {m: analyze_metric(m, kinds[m], rows, control, settings, covariate) for m in metrics}
    result = ExperimentResult(control=control, variants=[control, *[v for v in variants if v != control]],
                              alpha=settings.alpha, correction=settings.correction, srm=srm,
                              metrics=metric_results, sequential_decision=settings.sequential.enabled,
                              looks=settings.looks, segment_col=segment_col)
    if timestamp_col is not None:
        from experiments.timeline import attach_timeline

        attach_timeline(result, data, variant_col, timestamp_col, metrics, kinds, settings)
    apply_correction(list(metric_results.values()), settings.correction)
    if segment_col is not None:
        result.segments = _segments(data, variant_col, control, metrics, kinds, segment_col, settings)
    if factors:
        result.factorial = _factorial(data, factors, metrics, kinds, settings.alpha)
    from experiments.warnings import collect_warnings

    result.warnings = collect_warnings(result, settings)
    return result


def _segments(data: pl.DataFrame, variant_col: str, control: str, metrics: Sequence[str],
              kinds: Mapping[str, str], segment_col: str, settings: ExperimentsConfig
              ) -> dict[str, dict[str, MetricResult]]:
    """Per-segment results; the correction runs over all segments x variants x metrics together."""
    labelled = data.with_columns(pl.col(segment_col).cast(pl.String).fill_null("(missing)"))
    summary = aggregate.summarize(labelled, variant_col, metrics, by=[segment_col])
    out: dict[str, dict[str, MetricResult]] = {}
    for (segment,), part in summary.group_by([segment_col], maintain_order=True):
        rows = _rows_by_variant(part, variant_col)
        if control not in rows or len(rows) < 2 or any(int(r["n"]) < 2 for r in rows.values()):
            continue
        out[str(segment)] = {m: analyze_metric(m, kinds[m], rows, control, settings) for m in metrics}
    apply_correction([m for seg in out.values() for m in seg.values()], settings.correction)
    return out


def _factorial(data: pl.DataFrame, factors: Sequence[str], metrics: Sequence[str], kinds: Mapping[str, str],
               alpha: float) -> list:  # type: ignore[type-arg]
    frame = data.select([*factors, *metrics]).drop_nulls().to_pandas()
    return [factorial_effects(frame, factors, m, kinds[m] == "proportion", alpha=alpha) for m in metrics]
