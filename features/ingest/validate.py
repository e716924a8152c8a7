"""Ingestion of raw events and users: read, normalise, validate, de-duplicate, quarantine.

Every input row ends up exactly once in one of three places: the clean frame, the duplicate count
(a repeated ``event_id`` / ``user_id`` after the first valid occurrence), or the quarantine frame,
which keeps the raw values as strings plus a ``reason`` column. Nothing is silently dropped.

Clean events have the canonical schema :data:`EVENT_SCHEMA` (timestamps ``datetime[us, UTC]``,
enum strings trimmed and lower-cased); clean users have :data:`USER_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from features.contract import EVENT_FIELDS, USER_FIELDS, Field, user_fields
from features.ingest.eventtime import EPOCH_HINT, TimestampUnit, event_time_expr, is_epoch_number_expr
from features.ingest.read import RawRows, detect_delimiter, read_rows, require_columns
from propensity.errors import DataError

UTC_US = pl.Datetime("us", "UTC")
# Polars dtype of each kind of contract field (features/contract.py).
_DTYPES: dict[str, pl.DataType] = {"id": pl.String(), "string": pl.String(), "enum": pl.String(),
                                   "float": pl.Float64(), "int": pl.Int64(), "bool": pl.Boolean(),
                                   "date": pl.Date(), "timestamp": UTC_US}

EVENT_SCHEMA: dict[str, pl.DataType] = {f.name: _DTYPES[f.kind] for f in EVENT_FIELDS.values()}
USER_SCHEMA: dict[str, pl.DataType] = {f.name: _DTYPES[f.kind] for f in USER_FIELDS.values()}
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_FIELDS)
USER_COLUMNS: tuple[str, ...] = tuple(USER_FIELDS)
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS.values() if f.required)
NUMERIC_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS.values() if f.kind == "float")
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "ndjson", ".ndjson": "ndjson",
           ".json": "ndjson"}
_ROW = "__row"
UPDATED_AT = "updated_at"  # optional users column: the latest row of a user wins
_BAD = "__bad"
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


def read_table(path: str | Path, columns: Collection[str] | None = None) -> pl.DataFrame:
    """Read a Parquet, CSV or JSON Lines file, chosen by extension; CSV columns are read as strings.

    ``columns`` limits a Parquet read to those of the named columns the file has (others are never
    decoded); CSV and JSON Lines are read whole (the CSV delimiter, ``,`` ``;`` or tab, is detected).
    Raises :class:`DataError` (one line naming the file) for a missing, unreadable or unsupported
    file; :func:`read_raw` instead sets broken rows aside.
    """
    return _read_whole(*_kind(path), columns)


def read_raw(path: str | Path, columns: Collection[str] | None = None,
             required: Collection[str] = REQUIRED_EVENT_COLUMNS) -> RawRows:
    """:func:`read_table`, except that undecodable bytes, broken JSON lines and CSV rows with too
    many fields are set aside (``rejected``, with a reason) instead of failing the whole file.

    When every row is broken, the frame is empty with the ``required`` columns (strings)."""
    path, kind = _kind(path)
    delimiter = detect_delimiter(path) if kind == "csv" else None
    raw = read_rows(path, kind, lambda: _read_whole(path, kind, columns, delimiter), delimiter)
    if raw.frame.width == 0 and raw.rejected.height:  # nothing left to name the columns by
        return replace(raw, frame=pl.DataFrame(schema={c: pl.String for c in required}))
    return raw


def _kind(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .parquet, .csv or .jsonl)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path, kind


def _read_whole(path: Path, kind: str, columns: Collection[str] | None,
                delimiter: str | None = None) -> pl.DataFrame:
    try:
        if kind == "parquet":
            if columns is None:
                return pl.read_parquet(path)
            present = pl.read_parquet_schema(path)
            return pl.read_parquet(path, columns=[c for c in present if c in set(columns)])
        if kind == "csv":
            return pl.read_csv(path, infer_schema=False, separator=delimiter or detect_delimiter(path))
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception as exc:  # polars/arrow raise many types for corrupt files; all mean "unreadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind} ({first[:200]})") from None


def with_rejected(validated: Validated, raw: RawRows) -> Validated:
    """``validated`` (of ``raw.frame``) with the rows set aside while reading added to its quarantine;
    row numbers are those of the file, so rows in = clean + duplicates + quarantined still holds."""
    quarantine = validated.quarantine
    if raw.rows is not None and quarantine.height:
        quarantine = quarantine.with_columns(raw.rows.gather(quarantine["row"]).alias("row"))
    if raw.rejected.height == 0:
        return replace(validated, quarantine=quarantine)
    rejected = raw.rejected.with_columns(pl.lit(validated.source).alias("file"))
    quarantine = pl.concat([quarantine, rejected], how="diagonal_relaxed").sort("row")
    return replace(validated, quarantine=quarantine, rows_read=validated.rows_read + rejected.height)


def _text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as strings, verbatim."""
    if dtype == pl.Null:
        return pl.lit(None, pl.String).alias(name)
    return pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String, strict=False)


def _blank(text: pl.Expr) -> pl.Expr:
    """Empty or whitespace-only (null stays null)."""
    return text.str.contains(r"^\s*$")


def _blank_to_null(name: str, dtype: pl.DataType) -> pl.Expr:
    text = _text(name, dtype)
    return pl.when(_blank(text)).then(None).otherwise(text).alias(name)


def _normalise_enum(raw: pl.DataFrame, name: str) -> pl.Expr:
    """Enum strings trimmed and lower-cased (blank -> null), worked out on the distinct values only."""
    distinct = raw.select(_text(name, raw.schema[name]).unique().drop_nulls()).to_series()
    normal = distinct.str.strip_chars().str.to_lowercase()
    changed = (normal == "") | (distinct != normal)
    text = _text(name, raw.schema[name])
    if not changed.any():
        return text.alias(name)
    normal = pl.select(pl.when(normal == "").then(None).otherwise(normal)).to_series()
    return text.replace(distinct.filter(changed), normal.filter(changed)).alias(name)


class _Checks:
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
            present = ~_blank(_text(name, dtype)).fill_null(True) if text_like else pl.col(name).is_not_null()
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
            self.exprs[name] = _text(name, dtype).alias(name)
        else:
            self.exprs[name] = _blank_to_null(name, dtype)
        if required:
            self.checks.append((pl.col(name).is_null() | _blank(pl.col(name)), f"missing {name}"))

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
        self.exprs[name] = _text(name, dtype).str.strip_chars().cast(pl.Float64, strict=False).alias(name)
        self.checks.append((pl.col(name).is_null() & self.present(name), label or f"{name} not numeric"))

    def parsed(self) -> tuple[pl.DataFrame, pl.Series]:
        """The parsed frame (helper columns included) and the mask of rows failing any check."""
        bad: pl.Expr | bool = (pl.any_horizontal([c for c, _ in self.checks]).fill_null(False).alias(_BAD)
                               if self.checks else False)
        frame = (self.raw.lazy().select(*self.exprs.values())
                 .with_columns(pl.lit(False).alias(_BAD) if isinstance(bad, bool) else bad)
                 .collect(engine="streaming"))
        return frame, frame[_BAD]


def _require_columns(raw: pl.DataFrame, required: tuple[str, ...], source: str) -> None:
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


def _split(source: str, checks: _Checks, key: str, columns: tuple[str, ...],
           schema: dict[str, pl.DataType], latest: str | None = None) -> Validated:
    """Quarantine rows failing a check (with every reason), then keep the first valid row per ``key``
    (or, with ``latest``, the valid row with the greatest ``latest`` value; the later row on a tie)."""
    raw = checks.raw
    parsed, bad = checks.parsed()
    reasons = [pl.when(c.fill_null(False)).then(pl.lit(msg)) for c, msg in checks.checks]
    any_bad = bool(bad.any())
    quarantine = raw.with_row_index(_ROW).filter(bad).select(
        pl.lit(source).alias("file"), pl.col(_ROW).cast(pl.Int64).alias("row"),
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


def _string_checks(checks: _Checks, spec: Field) -> None:
    """A string field of the contract: normalised, required ones checked, length bounded."""
    if spec.name not in checks.raw.columns:
        return
    checks.strings(spec.name, enum=spec.kind == "enum", required=spec.required)
    if spec.max_length is not None:
        checks.checks.append((pl.col(spec.name).str.len_chars() > spec.max_length,
                              f"{spec.name} longer than {spec.max_length} characters"))


def _number_checks(checks: _Checks, spec: Field) -> None:
    """A float field of the contract: numeric, finite and within its range (the contract's reasons)."""
    checks.number(spec.name)
    val = pl.col(spec.name)
    checks.checks.append((val.is_not_null() & ~val.is_finite(), f"{spec.name} not finite"))
    if spec.low is not None:
        checks.checks.append((val.is_finite() & (val < spec.low), spec.check_number(spec.low - 1) or ""))
    if spec.high is not None:
        checks.checks.append((val.is_finite() & (val > spec.high), spec.check_number(spec.high + 1) or ""))


def validate_events(raw: pl.DataFrame, source: str = "events",
                    timestamp_unit: TimestampUnit | None = None) -> Validated:
    """Normalise and validate a raw events frame (any column types; extra columns are ignored).

    Checks: event_id, user_id, event and a parseable timestamp present; value >= 0 and
    duration_s >= 0 (seconds), scroll_depth in [0, 1], each numeric and finite when present.
    IDs are kept verbatim (blank means missing); enum columns are trimmed and lower-cased.
    Epoch-number timestamps are read in ``timestamp_unit`` (s, ms, µs) and quarantined without one.
    Raises :class:`DataError` only for a missing required column.
    """
    _require_columns(raw, REQUIRED_EVENT_COLUMNS, source)
    checks = _Checks(raw)
    for spec in EVENT_FIELDS.values():
        if spec.is_string:
            _string_checks(checks, spec)
    checks.checks.append((~checks.present("timestamp"), "missing timestamp"))
    checks.timestamp("timestamp", unit=timestamp_unit)
    for name in NUMERIC_EVENT_COLUMNS:
        if name in raw.columns:
            _number_checks(checks, EVENT_FIELDS[name])
    return _split(source, checks, "event_id", EVENT_COLUMNS, EVENT_SCHEMA)


def validate_users(raw: pl.DataFrame, source: str = "users", consent_default: bool = True,
                   age_range: tuple[int, int] | None = None,
                   timestamp_unit: TimestampUnit | None = None) -> Validated:
    """Normalise and validate a raw users (CRM) frame into one row per user_id.

    ``age`` must be a whole number of years within ``age_range`` (inclusive; default: the configured
    range, :func:`features.contract.age_range`); ``consent`` a boolean (true/false, yes/no, 1/0); a
    null consent or an absent consent column takes ``consent_default``.
    Several valid rows of one user: with an ``updated_at`` column (a timestamp, the one rule) the
    latest wins and the others count as duplicates; without it, :class:`DataError` names the users.
    """
    _require_columns(raw, ("user_id",), source)
    fields = user_fields(age_range)
    age_range = (int(fields["age"].low or 0), int(fields["age"].high or 0))
    checks = _Checks(raw)
    for spec in fields.values():
        if spec.is_string:
            _string_checks(checks, spec)
    age_reason = f"age not a whole number in [{age_range[0]}, {age_range[1]}]"
    if "age" in raw.columns:
        checks.number("age", label=age_reason)
        age = pl.col("age")
        checks.checks.append((~age.is_finite() | (age != age.floor()) | (age < age_range[0])
                              | (age > age_range[1]), age_reason))
    if "signup_date" in raw.columns:
        checks.timestamp("signup_date", label="signup_date")
        checks.exprs["signup_date"] = checks.exprs["signup_date"].dt.date()
    consent: pl.Expr = pl.lit(None, pl.Boolean)
    if "consent" in raw.columns:
        dtype = raw.schema["consent"]
        if dtype == pl.Boolean:
            consent = pl.col("consent")
        else:
            text = _text("consent", dtype).str.strip_chars().str.to_lowercase()
            consent = pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False)
            checks.exprs["__consent"] = consent.alias("__consent")
            checks.checks.append((pl.col("__consent").is_null() & checks.present("consent"),
                                  "consent not a boolean"))
    checks.exprs["consent"] = consent.fill_null(consent_default).alias("consent")
    if UPDATED_AT not in raw.columns:
        validated = _split(source, checks, "user_id", USER_COLUMNS, USER_SCHEMA)
        if validated.duplicates:
            _raise_duplicate_users(raw, validated)
        return validated
    checks.timestamp(UPDATED_AT, label=UPDATED_AT, unit=timestamp_unit)
    return _split(source, checks, "user_id", (*USER_COLUMNS, UPDATED_AT), USER_SCHEMA, latest=UPDATED_AT)


def _raise_duplicate_users(raw: pl.DataFrame, validated: Validated) -> None:
    """:class:`DataError` naming (up to 5 of) the user_ids with more than one valid row."""
    valid = raw.with_row_index(_ROW).filter(~pl.col(_ROW).is_in(validated.quarantine["row"].implode()))
    ids = _text("user_id", raw.schema["user_id"])
    names = valid.select(ids.filter(ids.is_duplicated()).unique(maintain_order=True)).to_series()
    shown = ", ".join(repr(n) for n in names.head(5).to_list()) + (", ..." if names.len() > 5 else "")
    raise DataError(f"{validated.source}: {names.len()} user_id(s) have several rows ({shown}); keep one row "
                    f"per user or add an {UPDATED_AT} column so the latest row wins")


def check_bad_share(validated: Validated, max_bad_share: float, where: str | Path | None = None) -> None:
    """Raise :class:`DataError` when the quarantined share (0..1) of rows exceeds ``max_bad_share``;
    the message names the most common reason."""
    if validated.bad_share > max_bad_share:
        hint = f"; see {where}" if where else ""
        reason, count = next(iter(top_reasons([validated], 1).items()))
        raise DataError(
            f"{validated.source}: {validated.quarantine.height} of {validated.rows_read} rows are bad "
            f"(share {validated.bad_share:.3f} > limit {max_bad_share:.3f}); most common: {reason} "
            f"({count} rows){hint}"
        )


def top_reasons(parts: list[Validated], k: int = 5) -> dict[str, int]:
    """The ``k`` most common quarantine reasons of ``parts`` and their row counts (a row can have several)."""
    frames = [p.quarantine.select("reason") for p in parts if p.quarantine.height]
    if not frames:
        return {}
    counts = (pl.concat(frames).select(pl.col("reason").str.split("; ").explode())
              .group_by("reason").len().sort(["len", "reason"], descending=[True, False]).head(k))
    return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))


def ingest_events(path: str | Path, max_bad_share: float = 0.05,
                  timestamp_unit: TimestampUnit | None = None) -> Validated:
    """Read, validate and de-duplicate an events file; :class:`DataError` when too many rows are bad."""
    raw = read_raw(path)
    require_columns(raw, REQUIRED_EVENT_COLUMNS, str(path))
    validated = with_rejected(validate_events(raw.frame, str(path), timestamp_unit), raw)
    check_bad_share(validated, max_bad_share)
    return validated


def ingest_users(path: str | Path, max_bad_share: float = 0.05, consent_default: bool = True,
                 age_range: tuple[int, int] | None = None,
                 timestamp_unit: TimestampUnit | None = None) -> Validated:
    """Read, validate and de-duplicate a users file; :class:`DataError` when too many rows are bad."""
    raw = read_raw(path, required=("user_id",))
    require_columns(raw, ("user_id",), str(path))
    validated = with_rejected(validate_users(raw.frame, source=str(path), consent_default=consent_default,
                                             age_range=age_range, timestamp_unit=timestamp_unit), raw)
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
