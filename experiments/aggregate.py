"""From unit-level rows (or a summary table) to per-variant summary statistics, with Polars.

The summary layout, one row per variant (and per segment / day when grouped), is the only thing
the statistics see: ``n`` rows, and per metric ``m``: ``m__n`` (non-missing values), ``m__sum``,
``m__sum_sq``; with a covariate ``x`` also ``m__x_sum``, ``m__x_sum_sq`` and ``m__xy`` over the
units where both are present.

A summary table given as input has columns ``<variant_col>``, ``n`` and per metric ``<m>_sum``
(successes for a binary metric) and, for a continuous metric, ``<m>_sum_sq``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from propensity.errors import DataError

_READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".parquet": pl.read_parquet, ".pq": pl.read_parquet, ".csv": pl.read_csv,
    ".jsonl": pl.read_ndjson, ".ndjson": pl.read_ndjson, ".json": pl.read_ndjson}


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a Parquet, CSV or JSON Lines file (by extension) into a DataFrame; DataError if it cannot."""
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .parquet, .csv or .jsonl)")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return reader(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None


def require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str = "data") -> None:
    """DataError naming the first column of ``columns`` that ``frame`` lacks."""
    for col in columns:
        if col not in frame.columns:
            raise DataError(f"{what} has no column '{col}' (columns: {', '.join(frame.columns[:20])})")


def is_summary_table(frame: pl.DataFrame, metrics: Sequence[str]) -> bool:
    """True when ``frame`` is a per-variant summary table (``n`` and ``<m>_sum`` columns) for ``metrics``."""
    return "n" in frame.columns and all(f"{m}_sum" in frame.columns and m not in frame.columns
                                        for m in metrics)


def metric_kinds(frame: pl.DataFrame, metrics: Sequence[str]) -> dict[str, str]:
    """"proportion" for a metric with only 0/1 (or boolean) values, else "mean"; DataError if not numeric."""
    kinds: dict[str, str] = {}
    for m in metrics:
        dtype = frame.schema[m]
        if dtype == pl.Boolean:
            kinds[m] = "proportion"
            continue
        if not dtype.is_numeric():
            raise DataError(f"metric column '{m}' is not numeric (type {dtype})")
        y = pl.col(m).drop_nulls().cast(pl.Float64)
        binary = frame.select(((y == 0.0) | (y == 1.0)).all()).item()
        kinds[m] = "proportion" if binary else "mean"
    return kinds


def summary_kinds(frame: pl.DataFrame, metrics: Sequence[str]) -> dict[str, str]:
    """Metric kinds of a summary table: with ``<m>_sum_sq`` a mean, otherwise a proportion."""
    return {m: "mean" if f"{m}_sum_sq" in frame.columns else "proportion" for m in metrics}


def summarize(frame: pl.DataFrame, variant_col: str, metrics: Sequence[str], covariate: str | None = None,
              by: Sequence[str] = ()) -> pl.DataFrame:
    """Per-variant (and per ``by`` group) summary statistics in the layout of the module docstring."""
    exprs: list[pl.Expr] = [pl.len().alias("n")]
    for m in metrics:
        y = pl.col(m).cast(pl.Float64)
        exprs += [y.count().alias(f"{m}__n"), y.sum().alias(f"{m}__sum"), (y * y).sum().alias(f"{m}__sum_sq")]
        if covariate is not None:
            x = pl.col(covariate).cast(pl.Float64)
            both = y.is_not_null() & x.is_not_null()
            xb = pl.when(both).then(x)
            exprs += [both.sum().alias(f"{m}__xy_n"), pl.when(both).then(y).sum().alias(f"{m}__y_sum"),
                      pl.when(both).then(y * y).sum().alias(f"{m}__y_sum_sq"),
                      xb.sum().alias(f"{m}__x_sum"), (xb * xb).sum().alias(f"{m}__x_sum_sq"),
                      (xb * y).sum().alias(f"{m}__xy")]
    keys = [*by, variant_col]
    return (frame.lazy().with_columns(pl.col(variant_col).cast(pl.String))
            .group_by(keys).agg(exprs).sort(keys).collect())


def summary_from_table(table: pl.DataFrame, variant_col: str, metrics: Sequence[str]) -> pl.DataFrame:
    """Convert a user's summary table into the internal layout (a proportion's sum of squares is its sum)."""
    require_columns(table, [variant_col, "n", *(f"{m}_sum" for m in metrics)], "summary table")
    if table[variant_col].n_unique() != table.height:
        raise DataError(f"summary table has repeated values in '{variant_col}'; expected one row per variant")
    exprs = [pl.col(variant_col).cast(pl.String), pl.col("n").cast(pl.Int64)]
    for m in metrics:
        sq = f"{m}_sum_sq" if f"{m}_sum_sq" in table.columns else f"{m}_sum"
        exprs += [pl.col("n").cast(pl.Int64).alias(f"{m}__n"),
                  pl.col(f"{m}_sum").cast(pl.Float64).alias(f"{m}__sum"),
                  pl.col(sq).cast(pl.Float64).alias(f"{m}__sum_sq")]
    return table.select(exprs).sort(variant_col)
