"""Ingestion of raw events and users: read, normalise, validate, de-duplicate, quarantine.

Every input row ends up exactly once in one of three places: the clean frame, the duplicate count
(a repeated ``event_id`` / ``user_id`` after the first valid occurrence), or the quarantine frame,
which keeps the raw values as strings plus a ``reason`` column. Nothing is silently dropped.

Clean events have the canonical schema :data:`EVENT_SCHEMA` (timestamps ``datetime[us, UTC]``,
enum strings trimmed and lower-cased); clean users have :data:`USER_SCHEMA`
(:mod:`features.ingest.tables`, which also reads files). The row-check machinery is
:mod:`features.ingest.checks`; this module states the checks of events and users.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from features.contract import EVENT_FIELDS, UPDATED_AT, user_fields
from features.ingest.checks import (
    ROW,
    RowChecks,
    Validated,
    as_text,
    number_checks,
    require_raw_columns,
    split_rows,
    string_checks,
)
from features.ingest.eventtime import TimestampUnit
from features.ingest.read import RawRows, require_columns
from features.ingest.tables import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    NUMERIC_EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    USER_COLUMNS,
    USER_SCHEMA,
    read_raw,
)
from propensity.errors import DataError

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


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


def validate_events(raw: pl.DataFrame, source: str = "events",
                    timestamp_unit: TimestampUnit | None = None) -> Validated:
    """Normalise and validate a raw events frame (any column types; extra columns are ignored).

    Checks: event_id, user_id, event and a parseable timestamp present; value >= 0 and
    duration_s >= 0 (seconds), scroll_depth in [0, 1], each numeric and finite when present.
    IDs are kept verbatim (blank means missing); enum columns are trimmed and lower-cased.
    Epoch-number timestamps are read in ``timestamp_unit`` (s, ms, µs) and quarantined without one.
    Raises :class:`DataError` only for a missing required column.
    """
    require_raw_columns(raw, REQUIRED_EVENT_COLUMNS, source)
    checks = RowChecks(raw)
    for spec in EVENT_FIELDS.values():
        if spec.is_string:
            string_checks(checks, spec)
    checks.checks.append((~checks.present("timestamp"), "missing timestamp"))
    checks.timestamp("timestamp", unit=timestamp_unit)
    for name in NUMERIC_EVENT_COLUMNS:
        if name in raw.columns:
            number_checks(checks, EVENT_FIELDS[name])
    return split_rows(source, checks, "event_id", EVENT_COLUMNS, EVENT_SCHEMA)


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
    require_raw_columns(raw, ("user_id",), source)
    fields = user_fields(age_range)
    age_range = (int(fields["age"].low or 0), int(fields["age"].high or 0))
    checks = RowChecks(raw)
    for spec in fields.values():
        if spec.is_string:
            string_checks(checks, spec)
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
            text = as_text("consent", dtype).str.strip_chars().str.to_lowercase()
            consent = pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False)
            checks.exprs["__consent"] = consent.alias("__consent")
            checks.checks.append((pl.col("__consent").is_null() & checks.present("consent"),
                                  "consent not a boolean"))
    checks.exprs["consent"] = consent.fill_null(consent_default).alias("consent")
    if UPDATED_AT not in raw.columns:
        validated = split_rows(source, checks, "user_id", USER_COLUMNS, USER_SCHEMA)
        if validated.duplicates:
            _raise_duplicate_users(raw, validated)
        return validated
    checks.timestamp(UPDATED_AT, label=UPDATED_AT, unit=timestamp_unit)
    return split_rows(source, checks, "user_id", (*USER_COLUMNS, UPDATED_AT), USER_SCHEMA, latest=UPDATED_AT)


def _raise_duplicate_users(raw: pl.DataFrame, validated: Validated) -> None:
    """:class:`DataError` naming (up to 5 of) the user_ids with more than one valid row."""
    valid = raw.with_row_index(ROW).filter(~pl.col(ROW).is_in(validated.quarantine["row"].implode()))
    ids = as_text("user_id", raw.schema["user_id"])
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
