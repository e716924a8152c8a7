"""The batch evaluator: feature specs compiled into Polars aggregations over a user's history.

The history frame has one row per event before ``as_of`` with ``__age_us`` (``as_of - timestamp``,
µs) and ``__<column>`` integer millionths of the float columns (:data:`FIXED_POINT`), so every sum
and mean is exact and independent of row order (the Spark shards give bit-identical results).
:func:`aggregations` gives the per-user ``group_by`` expressions, :func:`finishers` the columns
computed from them after the group-by.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from features.definitions import FeatureSpec

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
FIXED_POINT = 1_000_000
AGE = "__age_us"
FIXED_COLUMNS: tuple[str, ...] = ("duration_s", "scroll_depth", "value")


def per_unit(expr: pl.Expr, unit: int) -> pl.Expr:
    """``expr / unit`` computed as ``expr * (1 / unit)``, bit-identical however the frame is split.

    Polars divides a column of several rows by a literal by multiplying with the literal's
    reciprocal, but a single value (a one-row frame, one group: a Spark shard holding one user) by
    true division, and the two can differ in the last bit. A multiplication has one result in every
    evaluation path, so the Spark shards equal the local build whatever users they hold.
    """
    return expr * (1.0 / unit)


def fixed(column: str) -> pl.Expr:
    """A float column as integer millionths, so sums are exact and do not depend on row order."""
    return (pl.col(column) * FIXED_POINT).round(0).cast(pl.Int64).alias(f"__{column}")


def condition(spec: FeatureSpec) -> pl.Expr | None:
    """Events taking part in ``spec``: event types, field filters and window (None: every event)."""
    parts: list[pl.Expr] = []
    if spec.events:
        ev = pl.col("event")
        parts.append(ev == spec.events[0] if len(spec.events) == 1 else ev.is_in(list(spec.events)))
    for name, values in spec.where:
        col = pl.col(name)
        parts.append(col == values[0] if len(values) == 1 else col.is_in(list(values)))
    if spec.window_days is not None:
        parts.append(pl.col(AGE) <= spec.window_days * US_PER_DAY)
    if not parts:
        return None
    out = parts[-1]
    for part in reversed(parts[:-1]):
        out = part & out
    return out


def _filtered(expr: pl.Expr, cond: pl.Expr | None) -> pl.Expr:
    return expr if cond is None else expr.filter(cond)


def _count(cond: pl.Expr | None) -> pl.Expr:
    return pl.len() if cond is None else cond.sum()


def _hidden(spec: FeatureSpec, part: str) -> str:
    if part == "den":  # shared by the shares of one column under the same filters (device mix)
        return f"__den:{spec.column}:{spec.events}:{spec.where}:{spec.window_days}"
    return f"__{part}:{spec.name}"


def aggregations(spec: FeatureSpec) -> list[pl.Expr]:
    """The per-user aggregations of one spec (its own column, or hidden parts for :func:`finisher`)."""
    cond = condition(spec)
    agg = spec.aggregate
    name = spec.name
    if agg == "count":
        return [_count(cond).cast(pl.Float64).alias(name)]
    column = spec.column or ""
    if agg in ("sum", "mean"):
        values = _filtered(pl.col(f"__{column}") if column in FIXED_COLUMNS else pl.col(column), cond)
        if agg == "sum":
            return [per_unit(values.sum(), FIXED_POINT).alias(name)]
        n = values.count()
        return [pl.when(n > 0).then(per_unit(values.sum() / n, FIXED_POINT)).alias(name)]
    if agg in ("min", "max"):
        values = _filtered(pl.col(column), cond)
        return [(values.min() if agg == "min" else values.max()).cast(pl.Float64).alias(name)]
    if agg == "distinct_count":
        return [_filtered(pl.col(column), cond).drop_nulls().n_unique().cast(pl.Float64).alias(name)]
    if agg == "share":
        present = pl.col(column).is_not_null()
        den = present if cond is None else cond & present
        return [den.sum().alias(_hidden(spec, "den")),
                (den & (pl.col(column) == spec.value)).sum().alias(_hidden(spec, "num"))]
    age = _filtered(pl.col(AGE), cond)
    if agg in ("days_since_last", "hours_since_last", "us_since_last"):
        return [age.min().alias(_hidden(spec, "age"))]
    if agg == "days_since_first":
        return [age.max().alias(_hidden(spec, "age"))]
    raise ValueError(f"{name}: no batch evaluation for aggregation '{agg}'")


def finisher(spec: FeatureSpec) -> pl.Expr | None:
    """The expression turning hidden parts into the feature after the group-by (None: already done)."""
    agg = spec.aggregate
    if agg == "share":
        den = pl.col(_hidden(spec, "den"))
        return pl.when(den > 0).then(pl.col(_hidden(spec, "num")) / den).otherwise(None)
    if agg in ("days_since_last", "days_since_first"):
        return per_unit(pl.col(_hidden(spec, "age")), US_PER_DAY)
    if agg == "hours_since_last":
        return per_unit(pl.col(_hidden(spec, "age")), US_PER_HOUR)
    if agg == "us_since_last":
        return pl.col(_hidden(spec, "age"))
    return None


def all_aggregations(specs: Iterable[FeatureSpec]) -> list[pl.Expr]:
    """Every per-user aggregation of ``specs`` (shared parts once)."""
    out: dict[str, pl.Expr] = {}
    for spec in specs:
        for expr in aggregations(spec):
            out.setdefault(expr.meta.output_name(), expr)
    return list(out.values())


def finishers(specs: Iterable[FeatureSpec]) -> dict[str, pl.Expr]:
    """Feature name -> the expression computing it after the group-by (plain column when direct)."""
    out: dict[str, pl.Expr] = {}
    for spec in specs:
        done = finisher(spec)
        out[spec.name] = pl.col(spec.name) if done is None else done
    return out
