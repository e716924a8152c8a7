"""The row checks of ingestion: normalised columns, the failed checks of each row, and the split of a
raw table into clean rows, duplicates and quarantined rows (:class:`Validated`)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.contract import Field
from features.ingest.eventtime import EPOCH_HINT, TimestampUnit, event_time_expr, is_epoch_number_expr
from propensity.errors import DataError

ROW = "__row"  # the 0-based row number of the input
_BAD = "__bad"


@dataclass(frozen=True)
class Validated:
    """The outcome of validating one raw table.

    ``clean`` has the canonical schema; ``quarantine`` has ``file`` (the source), ``row`` (0-based row
    number in the input), ``reason`` and the contract columns as raw strings. ``rows_read`` equals
    ``clean.height + duplicates + quarantine.height``.
    """

    source: str
    clean: pl.DataFrame
    quarantine: pl.DataFrame
    duplicates: int
    rows_read: int

    @property
    def bad_share(self) -> float:
        """Quarantined rows as a share 0..1 of the rows read (0 for an empty input)."""
        return self.quarantine.height / self.rows_read if self.rows_read else 0.0


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as strings, verbatim."""
    if dtype == pl.Null:
        return pl.lit(None, pl.String).alias(name)
    return pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String, strict=False)


def is_blank(text: pl.Expr) -> pl.Expr:
    """Empty or whitespace-only (null stays null)."""
    return text.str.contains(r"^\s*$")


def _blank_to_null(name: str, dtype: pl.DataType) -> pl.Expr:
    text = as_text(name, dtype)
    return pl.when(is_blank(text)).then(None).otherwise(text).alias(name)


def _normalise_enum(raw: pl.DataFrame, name: str) -> pl.Expr:
    """Enum strings trimmed and lower-cased (blank -> null), worked out on the distinct values only."""
    distinct = raw.select(as_text(name, raw.schema[name]).unique().drop_nulls()).to_series()
    normal = distinct.str.strip_chars().str.to_lowercase()
    changed = (normal == "") | (distinct != normal)
    text = as_text(name, raw.schema[name])
    if not changed.any():
        return text.alias(name)
    normal = pl.select(pl.when(normal == "").then(None).otherwise(normal)).to_series()
    return text.replace(distinct.filter(changed), normal.filter(changed)).alias(name)


class RowChecks:
    """Normalised columns of a raw frame and the row checks on them, evaluated in one streaming pass.

    ``exprs`` map output columns to expressions over the raw frame; ``checks`` are (failed?, reason)
    expressions over the output columns.
    """

    def __init__(self, raw: pl.DataFrame) -> None:
        self.raw = raw
        self.exprs: dict[str, pl.Expr] = {}
        self.checks: list[tuple[pl.Expr, str]] = []

    def present(self, name: str) -> pl.Expr:
        """True where the raw value was there and not blank (a helper column of the parsed frame)."""
        helper = f"__present_{name}"
        if helper not in self.exprs:
            dtype = self.raw.schema[name]
            text_like = dtype in (pl.String, pl.Null)
            present = (~is_blank(as_text(name, dtype)).fill_null(True) if text_like
                       else pl.col(name).is_not_null())
            self.exprs[helper] = present.alias(helper)
        return pl.col(helper)

    def strings(self, name: str, enum: bool = False, required: bool = False) -> None:
        """A string column; ``required`` ones are checked (blank = missing) but kept verbatim."""
        if name not in self.raw.columns:
            return
        dtype = self.raw.schema[name]
        if enum:
            self.exprs[name] = _normalise_enum(self.raw, name)
        elif required:
            self.exprs[name] = as_text(name, dtype).alias(name)
        else:
            self.exprs[name] = _blank_to_null(name, dtype)
        if required:
            self.checks.append((pl.col(name).is_null() | is_blank(pl.col(name)), f"missing {name}"))

    def timestamp(self, name: str, label: str = "timestamp", unit: TimestampUnit | None = None) -> None:
        """A timestamp column; unparseable values and epoch numbers without ``unit`` are quarantined."""
        dtype = self.raw.schema[name]
        self.exprs[name] = event_time_expr(name, dtype, unit)
        if not isinstance(dtype, (pl.Datetime, pl.Date)):
            helper = f"__epoch_{name}"
            self.exprs[helper] = is_epoch_number_expr(name, dtype).alias(helper)
            failed = pl.col(name).is_null() & self.present(name)
            number = pl.col(helper)
            self.checks.append((failed & ~number, f"unparseable {label}"))
            epoch_reason = f"{label}: {EPOCH_HINT}" if unit is None else f"{label} outside the years 1-9999"
            self.checks.append((failed & number, epoch_reason))

    def number(self, name: str, label: str | None = None) -> None:
        dtype = self.raw.schema[name]
        if dtype.is_numeric():
            self.exprs[name] = pl.col(name).cast(pl.Float64)
            return
        self.exprs[name] = as_text(name, dtype).str.strip_chars().cast(pl.Float64, strict=False).alias(name)
        self.checks.append((pl.col(name).is_null() & self.present(name), label or f"{name} not numeric"))

    def parsed(self) -> tuple[pl.DataFrame, pl.Series]:
        """The parsed frame (helper columns included) and the mask of rows failing any check."""
        bad: pl.Expr | bool = (pl.any_horizontal([c for c, _ in self.checks]).fill_null(False).alias(_BAD)
                               if self.checks else False)
        frame = (self.raw.lazy().select(*self.exprs.values())
                 .with_columns(pl.lit(False).alias(_BAD) if isinstance(bad, bool) else bad)
                 .collect(engine="streaming"))
        return frame, frame[_BAD]


def require_raw_columns(raw: pl.DataFrame, required: tuple[str, ...], source: str) -> None:
    for name in required:
        if name not in raw.columns:
            raise DataError(f"{source}: missing required column '{name}'")


def _first_occurrence(keys: pl.Series) -> pl.Series:
    """True at the first occurrence of each key.

    Works on 64-bit hashes (fast on millions of strings), then re-checks exactly every row whose
    hash repeats, so a hash collision never merges two different keys.
    """
    hashes = keys.hash()
    first = hashes.is_first_distinct()
    if first.all():
        return first
    involved = hashes.is_in(hashes.filter(~first).unique())
    exact = keys.filter(involved).is_first_distinct().to_numpy()
    result = first.to_numpy().copy()
    result[involved.to_numpy()] = exact
    return pl.Series(keys.name, result)


def _latest_occurrence(keys: pl.Series, order: pl.Series) -> pl.Series:
    """True at the row with the greatest ``order`` of each non-null key (nulls oldest; ties: last row)."""
    frame = pl.DataFrame({"k": keys, "o": order}).with_row_index("i")
    winners = (frame.filter(pl.col("k").is_not_null())
               .sort(["o", "i"], descending=True, nulls_last=True)
               .unique(subset="k", keep="first")["i"])
    return frame.select(pl.col("i").is_in(winners.implode()))["i"].alias(keys.name)


def split_rows(source: str, checks: RowChecks, key: str, columns: tuple[str, ...],
           schema: dict[str, pl.DataType], latest: str | None = None) -> Validated:
    """Quarantine rows failing a check (with every reason), then keep the first valid row per ``key``
    (or, with ``latest``, the valid row with the greatest ``latest`` value; the later row on a tie)."""
    raw = checks.raw
    parsed, bad = checks.parsed()
    reasons = [pl.when(c.fill_null(False)).then(pl.lit(msg)) for c, msg in checks.checks]
    any_bad = bool(bad.any())
    quarantine = raw.with_row_index(ROW).filter(bad).select(
        pl.lit(source).alias("file"), pl.col(ROW).cast(pl.Int64).alias("row"),
        *[pl.col(c).cast(pl.String, strict=False) for c in columns if c in raw.columns])
    if any_bad:
        why = parsed.filter(bad).select(pl.concat_str(reasons, separator="; ", ignore_nulls=True))
        quarantine = quarantine.with_columns(why.to_series().alias("reason"))
    else:
        quarantine = quarantine.with_columns(pl.lit("", pl.String).alias("reason"))
    # A bad row never shadows a later valid row with the same key: bad keys are nulled first.
    keys = parsed[key]
    if any_bad:
        keys = parsed.select(pl.when(bad).then(None).otherwise(pl.col(key))).to_series()
    keep = (_first_occurrence(keys) if latest is None else _latest_occurrence(keys, parsed[latest])) & ~bad
    good_rows = raw.height - quarantine.height
    clean = parsed.filter(keep) if not keep.all() else parsed
    clean = clean.select([(pl.col(c).cast(t) if c in clean.columns else pl.lit(None, t).alias(c))
                          for c, t in schema.items()])
    return Validated(source, clean, quarantine, duplicates=good_rows - clean.height, rows_read=raw.height)


def string_checks(checks: RowChecks, spec: Field) -> None:
    """A string field of the contract: normalised, required ones checked, length bounded."""
    if spec.name not in checks.raw.columns:
        return
    checks.strings(spec.name, enum=spec.kind == "enum", required=spec.required)
    if spec.max_length is not None:
        checks.checks.append((pl.col(spec.name).str.len_chars() > spec.max_length,
                              f"{spec.name} longer than {spec.max_length} characters"))


def number_checks(checks: RowChecks, spec: Field) -> None:
    """A float field of the contract: numeric, finite and within its range (the contract's reasons)."""
    checks.number(spec.name)
    val = pl.col(spec.name)
    checks.checks.append((val.is_not_null() & ~val.is_finite(), f"{spec.name} not finite"))
    if spec.low is not None:
        checks.checks.append((val.is_finite() & (val < spec.low), spec.check_number(spec.low - 1) or ""))
    if spec.high is not None:
        checks.checks.append((val.is_finite() & (val > spec.high), spec.check_number(spec.high + 1) or ""))


