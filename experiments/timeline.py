"""Cumulative results per day of first exposure: the lift over time and the sequential read-out.

Each day is one "look": the cumulative summaries up to the end of that day give the difference,
its fixed-horizon interval and p-value (what a daily dashboard would show), and the always-valid
p-value and confidence sequence (safe to look at every day).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from experiments import aggregate
from experiments.config import ExperimentsConfig
from experiments.results import ExperimentResult
from experiments.stats import sequential as seq
from propensity.errors import DataError

DAY = "_day"


def _day_column(data: pl.DataFrame, timestamp_col: str) -> pl.Expr:
    dtype = data.schema[timestamp_col]
    col = pl.col(timestamp_col)
    if dtype == pl.String:
        col = col.str.to_datetime(time_zone="UTC", strict=False)
    elif not isinstance(dtype, (pl.Datetime, pl.Date)):
        raise DataError(f"timestamp column '{timestamp_col}' is not a date or time (type {dtype})")
    return col.dt.date().alias(DAY)


def _cumulative(summary: pl.DataFrame, variant: str, variant_col: str, days: list, cols: list[str]
                ) -> dict[str, np.ndarray]:
    part = summary.filter(pl.col(variant_col) == variant)
    grid = pl.DataFrame({DAY: days}, schema={DAY: summary.schema[DAY]}).join(part, on=DAY, how="left")
    return {c: np.cumsum(grid[c].fill_null(0).to_numpy().astype(float)) for c in cols}


def attach_timeline(result: ExperimentResult, data: pl.DataFrame, variant_col: str, timestamp_col: str,
                    metrics: Sequence[str], kinds: Mapping[str, str], settings: ExperimentsConfig) -> None:
    """Fill ``result.timeline`` and each metric's ``sequential`` results (last look) in place."""
    frame = data.with_columns(_day_column(data, timestamp_col)).filter(pl.col(DAY).is_not_null())
    summary = aggregate.summarize(frame, variant_col, metrics, by=[DAY])
    days = sorted(summary[DAY].unique().to_list())
    if not days:
        return
    z = float(stats.norm.isf(settings.alpha / 2))
    rows: list[pl.DataFrame] = []
    for m in metrics:
        cols = [f"{m}__n", f"{m}__sum", f"{m}__sum_sq"]
        cum = {v: _cumulative(summary, v, variant_col, days, cols) for v in result.variants}
        stats_by_variant = {}
        for v, c in cum.items():
            n = c[f"{m}__n"]
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = c[f"{m}__sum"] / n
                var = (c[f"{m}__sum_sq"] - c[f"{m}__sum"] ** 2 / n) / (n - 1)
            stats_by_variant[v] = (n, mean, var)
        n_c, mean_c, var_c = stats_by_variant[result.control]
        for v in result.variants[1:]:
            n_t, mean_t, var_t = stats_by_variant[v]
            with np.errstate(divide="ignore", invalid="ignore"):
                diff = mean_t - mean_c
                v_diff = var_t / n_t + var_c / n_c
                p_fixed = 2 * stats.norm.sf(np.abs(diff) / np.sqrt(v_diff))
                rel = mean_t / mean_c - 1
            ok = (n_c >= 2) & (n_t >= 2) & (v_diff > 0)
            if not ok.any():
                continue
            tuning = settings.sequential.tuning_n_per_variant
            v_plan = v_diff[ok][-1] * (n_c[ok][-1] / tuning if tuning else 1.0)
            tau2 = seq.mixing_variance(float(v_plan), settings.alpha)
            p_seq = np.full(len(days), np.nan)
            cs_lo, cs_hi = np.full(len(days), np.nan), np.full(len(days), np.nan)
            p_seq[ok] = seq.always_valid_p_values(diff[ok], v_diff[ok], tau2)
            lo, hi = seq.confidence_sequence(diff[ok], v_diff[ok], tau2, settings.alpha)
            cs_lo[ok], cs_hi[ok] = np.maximum.accumulate(lo), np.minimum.accumulate(hi)
            last = np.flatnonzero(ok)[-1]
            result.metrics[m].sequential[v] = seq.SequentialResult(
                p_value=float(p_seq[last]), ci_low=float(cs_lo[last]), ci_high=float(cs_hi[last]), tau2=tau2)
            half = z * np.sqrt(v_diff)
            rows.append(pl.DataFrame({
                "metric": [m] * len(days), "variant": [v] * len(days), "day": days,
                "n_control": n_c.astype(np.int64), "n_treatment": n_t.astype(np.int64),
                "difference": diff, "ci_low": diff - half, "ci_high": diff + half, "relative_lift": rel,
                "p_value": p_fixed, "p_value_sequential": p_seq, "cs_low": cs_lo, "cs_high": cs_hi,
            }).filter(pl.Series(ok)))
    if rows:
        result.timeline = pl.concat(rows).with_columns(pl.col("day").cast(pl.String)).fill_nan(None)
