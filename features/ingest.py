"""Ingestion of raw events and users: read, normalise, validate, de-duplicate, quarantine.

Every input row ends up exactly once in one of three places: the clean frame, the duplicate count
(a repeated ``event_id`` / ``user_id`` after the first valid occurrence), or the quarantine frame,
which keeps the raw values as strings plus a ``reason`` column. Nothing is silently dropped.

Clean events have the canonical schema :data:`EVENT_SCHEMA` (timestamps ``datetime[us, UTC]``,
enum strings trimmed and lower-cased); clean users have :data:`USER_SCHEMA`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.errors import DataError
from features.schema import (
    ENUM_EVENT_COLUMNS,
    EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    USER_COLUMNS,
)

UTC_US = pl.Datetime("us", "UTC")

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "timestamp": UTC_US,
    "event": pl.String(),
    "session_id": pl.String(),
    "page_type": pl.String(),
    "product_id": pl.String(),
    "category": pl.String(),
    "value": pl.Float64(),
    "duration_s": pl.Float64(),
    "scroll_depth": pl.Float64(),
    "device": pl.String(),
    "source": pl.String(),
}
USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "age": pl.Int64(),
    "gender": pl.String(),
    "country": pl.String(),
    "loyalty_tier": pl.String(),
    "signup_date": pl.Date(),
    "consent": pl.Boolean(),
}
NUMERIC_EVENT_COLUMNS: tuple[str, ...] = ("value", "duration_s", "scroll_depth")
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "ndjson", ".ndjson": "ndjson",
           ".json": "ndjson"}
_ROW = "__row"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


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


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a Parquet, CSV or JSON Lines file, chosen by extension; CSV columns are read as strings.

    Raises :class:`DataError` (one line naming the file) for a missing, unreadable or
    unsupported file.
    """
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .parquet, .csv or .jsonl)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if kind == "parquet":
            return pl.read_parquet(path)
        if kind == "csv":
            return pl.read_csv(path, infer_schema=False)
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception as exc:  # polars/arrow raise many types for corrupt files; all mean "unreadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind} ({first[:200]})") from None


def _as_string(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as stripped strings; empty strings become null."""
    col = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(None, pl.String).alias(name)
    if dtype != pl.String:
        col = col.cast(pl.String, strict=False)
    col = col.str.strip_chars()
    return pl.when(col == "").then(None).otherwise(col).alias(name)


def _parse_timestamp(name: str, dtype: pl.DataType) -> pl.Expr:
    """A timestamp column as ``datetime[us, UTC]``: ISO-8601 strings with offset, naive means UTC."""
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.convert_time_zone("UTC") if dtype.time_zone else col.dt.replace_time_zone("UTC")
        return col.cast(UTC_US).alias(name)
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)
    text = (_as_string(name, dtype)
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T")
            .str.replace(r"[zZ]$", "+00:00"))
    with_offset = [text.str.to_datetime(f, strict=False, time_zone="UTC", time_unit="us")
                   for f in ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")]
    naive = [text.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
             for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")]
    return pl.coalesce(*with_offset, *naive).alias(name)


def _parse_float(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Float64).alias(name)
    return _as_string(name, dtype).cast(pl.Float64, strict=False).alias(name)


def _parse_bool(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return pl.col(name)
    text = _as_string(name, dtype).str.to_lowercase()
    return (pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False)
            .otherwise(None).cast(pl.Boolean).alias(name))


def _parse_date(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        return pl.col(name)
    return _parse_timestamp(name, dtype).dt.date().alias(name)


def _require_columns(raw: pl.DataFrame, required: tuple[str, ...], source: str) -> None:
    for name in required:
        if name not in raw.columns:
            raise DataError(f"{source}: missing required column '{name}'")


def _raw_strings(raw: pl.DataFrame, columns: tuple[str, ...]) -> list[pl.Expr]:
    """Contract columns as they came in, cast to strings for the quarantine file."""
    out = []
    for name in columns:
        if name in raw.columns:
            dtype = raw.schema[name]
            out.append(pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String, strict=False))
    return out


def _reasons(checks: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """'; '-joined messages of the failed checks, '' when every check passed."""
    parts = [pl.when(bad.fill_null(False)).then(pl.lit(msg)) for bad, msg in checks]
    return pl.concat_str(parts, separator="; ", ignore_nulls=True).fill_null("")


def _split(source: str, raw: pl.DataFrame, parsed: pl.DataFrame, key: str, columns: tuple[str, ...],
           schema: dict[str, pl.DataType]) -> Validated:
    """Quarantine rows with a reason, then keep the first valid occurrence of each ``key``."""
    bad = parsed["reason"] != ""
    quarantine = (
        raw.with_row_index(_ROW).filter(bad)
        .select(pl.lit(source).alias("file"), pl.col(_ROW).cast(pl.Int64).alias("row"),
                *_raw_strings(raw, columns))
        .with_columns(parsed.filter(bad)["reason"])
    )
    good = parsed.filter(~bad)
    first = good[key].is_first_distinct()
    clean = good.filter(first).select([pl.col(c).cast(t) for c, t in schema.items()])
    return Validated(source, clean, quarantine, duplicates=good.height - clean.height, rows_read=raw.height)


def validate_events(raw: pl.DataFrame, source: str = "events") -> Validated:
    """Normalise and validate a raw events frame (any column types; extra columns are ignored).

    Checks: event_id, user_id, event and a parseable timestamp present; value >= 0 and
    duration_s >= 0 (seconds), scroll_depth in [0, 1], each numeric and finite when present.
    Raises :class:`DataError` only for a missing required column.
    """
    _require_columns(raw, REQUIRED_EVENT_COLUMNS, source)
    exprs: list[pl.Expr] = []
    for name in EVENT_COLUMNS:
        dtype = raw.schema.get(name, pl.Null())
        if name not in raw.columns:
            exprs.append(pl.lit(None, EVENT_SCHEMA[name]).alias(name))
        elif name == "timestamp":
            exprs.append(_parse_timestamp(name, dtype))
        elif name in NUMERIC_EVENT_COLUMNS:
            exprs.append(_parse_float(name, dtype))
        elif name in ENUM_EVENT_COLUMNS:
            exprs.append(_as_string(name, dtype).str.to_lowercase())
        else:
            exprs.append(_as_string(name, dtype))
    checked = [n for n in ("timestamp", *NUMERIC_EVENT_COLUMNS) if n in raw.columns]
    raw_present = {name: pl.col(f"__raw_{name}").is_not_null() for name in checked}
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col(c).is_null(), f"missing {c}") for c in ("event_id", "user_id", "event")
    ]
    checks.append((pl.col("timestamp").is_null() & ~raw_present["timestamp"], "missing timestamp"))
    checks.append((pl.col("timestamp").is_null() & raw_present["timestamp"], "unparseable timestamp"))
    for name in NUMERIC_EVENT_COLUMNS:
        if name not in raw.columns:
            continue
        val = pl.col(name)
        checks.append((val.is_null() & raw_present[name], f"{name} not numeric"))
        checks.append((val.is_not_null() & ~val.is_finite(), f"{name} not finite"))
        checks.append((val.is_finite() & (val < 0), f"{name} negative"))
        if name == "scroll_depth":
            checks.append((val.is_finite() & (val > 1), "scroll_depth above 1"))
    raws = [_as_string(n, raw.schema[n]).alias(f"__raw_{n}") for n in checked]
    parsed = raw.select(*exprs, *raws).with_columns(_reasons(checks).alias("reason"))
    return _split(source, raw, parsed, "event_id", EVENT_COLUMNS, EVENT_SCHEMA)


def validate_users(raw: pl.DataFrame, source: str = "users", consent_default: bool = True,
                   age_range: tuple[int, int] = (0, 120)) -> Validated:
    """Normalise and validate a raw users (CRM) frame; one row per user_id (first valid one kept).

    ``age`` must be a whole number of years within ``age_range`` (inclusive); ``consent`` a boolean
    (true/false, yes/no, 1/0); a null consent or an absent consent column takes ``consent_default``.
    """
    _require_columns(raw, ("user_id",), source)
    exprs: list[pl.Expr] = [_as_string("user_id", raw.schema["user_id"])]
    checks: list[tuple[pl.Expr, str]] = [(pl.col("user_id").is_null(), "missing user_id")]
    raws: list[pl.Expr] = []
    for name in USER_COLUMNS[1:]:
        if name not in raw.columns:
            exprs.append(pl.lit(None, USER_SCHEMA[name]).alias(name))
            continue
        dtype = raw.schema[name]
        raws.append(_as_string(name, dtype).alias(f"__raw_{name}"))
        present = pl.col(f"__raw_{name}").is_not_null()
        if name == "age":
            exprs.append(_parse_float(name, dtype))
            age = pl.col("age")
            checks.append(((age.is_null() & present) | age.is_nan() | (age != age.floor())
                           | (age < age_range[0]) | (age > age_range[1]),
                           f"age not a whole number in [{age_range[0]}, {age_range[1]}]"))
        elif name == "signup_date":
            exprs.append(_parse_date(name, dtype))
            checks.append((pl.col(name).is_null() & present, "unparseable signup_date"))
        elif name == "consent":
            exprs.append(_parse_bool(name, dtype))
            checks.append((pl.col(name).is_null() & present, "consent not a boolean"))
        else:
            exprs.append(_as_string(name, dtype).str.to_lowercase())
    parsed = (raw.select(*exprs, *raws)
              .with_columns(_reasons(checks).alias("reason"))
              .with_columns(pl.col("consent").fill_null(consent_default),
                            pl.when(pl.col("age").is_finite()).then(pl.col("age"))
                            .cast(pl.Int64, strict=False)))
    return _split(source, raw, parsed, "user_id", USER_COLUMNS, USER_SCHEMA)


def check_bad_share(validated: Validated, max_bad_share: float, where: str | Path | None = None) -> None:
    """Raise :class:`DataError` when the quarantined share (0..1) of rows exceeds ``max_bad_share``."""
    if validated.bad_share > max_bad_share:
        hint = f"; see {where}" if where else ""
        raise DataError(
            f"{validated.source}: {validated.quarantine.height} of {validated.rows_read} rows are bad "
            f"(share {validated.bad_share:.3f} > limit {max_bad_share:.3f}){hint}"
        )


def ingest_events(path: str | Path, max_bad_share: float = 0.05) -> Validated:
    """Read, validate and de-duplicate an events file; :class:`DataError` when too many rows are bad."""
    validated = validate_events(read_table(path), source=str(path))
    check_bad_share(validated, max_bad_share)
    return validated


def ingest_users(path: str | Path, max_bad_share: float = 0.05, consent_default: bool = True,
                 age_range: tuple[int, int] = (0, 120)) -> Validated:
    """Read, validate and de-duplicate a users file; :class:`DataError` when too many rows are bad."""
    validated = validate_users(read_table(path), source=str(path), consent_default=consent_default,
                               age_range=age_range)
    check_bad_share(validated, max_bad_share)
    return validated


def write_quarantine(parts: list[Validated], path: str | Path) -> int:
    """Write the quarantined rows of ``parts`` to one Parquet file; remove a stale file when none.

    Returns the number of rows written.
    """
    path = Path(path)
    frames = [p.quarantine for p in parts if p.quarantine.height]
    if not frames:
        path.unlink(missing_ok=True)
        return 0
    table = pl.concat(frames, how="diagonal_relaxed")
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(path)
    return table.height
