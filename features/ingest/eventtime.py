"""Event timestamps as integer microseconds since the Unix epoch (UTC).

Batch code reads ``datetime[us, UTC]`` columns as ``dt.epoch("us")``; incremental code converts
each event's timestamp with :func:`epoch_us`. Both sides then do the same integer arithmetic,
which is what makes batch and incremental results identical.

:func:`parse_event_time` is the one rule for times arriving from outside (HTTP, the stream);
:func:`event_time_expr` applies the same rule to whole Polars columns (batch ingestion) through
the same patterns, and a shared test (tests/test_eventtime.py) holds the two to the same answers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import polars as pl

from propensity.errors import DataError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


def epoch_us(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive means UTC), an ISO-8601 string or an int (µs)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return (value - _EPOCH_NAIVE) // _ONE_US
        return (value - _EPOCH) // _ONE_US
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return epoch_us(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise DataError(f"timestamp: cannot parse '{value}' as ISO-8601") from None
    raise DataError(f"timestamp: expected a datetime, ISO-8601 string or epoch microseconds, got {value!r}")


def from_epoch_us(value: int) -> datetime:
    """The UTC datetime of an epoch-microsecond count."""
    return _EPOCH + timedelta(microseconds=value)


# ---------------------------------------------------------------------------------------------
# The one rule for event times arriving from outside (batch files, HTTP /events, the stream).
#
# Accepted: ISO-8601 extended strings ``YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]][Z|±HH[:]MM]]`` (a
# naive time means UTC; a date means its midnight UTC) and datetimes; numbers (or strings that are
# numbers) only as epoch counts in an explicit unit. Basic-format (``20261001T100000Z``), week and
# ordinal dates, and unit-less epoch numbers are refused: an epoch number in the wrong unit would be
# read silently as a wrong time, which is why the unit must be named.

TimestampUnit = Literal["s", "ms", "us"]
US_PER_UNIT: dict[str, int] = {"s": 1_000_000, "ms": 1_000, "us": 1}
EPOCH_HINT = "epoch numbers need --timestamp-unit s|ms|us (timestamp_unit in config)"
ISO_HINT = "not an ISO-8601 date-time (YYYY-MM-DDTHH:MM:SS with Z or an offset like +02:00)"
# Shapes of the rule as regular expressions (ASCII digits only), shared by the Polars code.
_HH, _MM = "([01][0-9]|2[0-3])", "([0-5][0-9])"
ISO_PATTERN = (rf"^([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})(?:[Tt ]{_HH}:{_MM}(?::{_MM}(?:\.([0-9]{{1,9}}))?)?"
               r"([Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?)?$")
NUMBER_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
INTEGER_PATTERN = r"^[+-]?[0-9]+$"
# Datetimes Python can represent: years 1..9999, as epoch microseconds.
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _ONE_US
_ISO = re.compile(ISO_PATTERN)
_NUMBER = re.compile(NUMBER_PATTERN)
_INTEGER = re.compile(INTEGER_PATTERN)


def parse_event_time(value: Any, unit: TimestampUnit | None = None, field: str = "timestamp") -> int:
    """Epoch microseconds (UTC) of an event time under the one rule above.

    ``value`` is a datetime (naive means UTC), an ISO-8601 string, or an epoch number (int, float or
    numeric string) counted in ``unit`` (s, ms or µs); fractions below a microsecond are floored.
    Raises :class:`DataError` starting with ``field`` and saying what is accepted.
    """
    if isinstance(value, datetime):
        return epoch_us(value)
    if isinstance(value, bool):
        raise DataError(f"{field}: expected an ISO-8601 time, got a boolean")
    if isinstance(value, int | float):
        return _epoch_number(value, unit, field)
    if not isinstance(value, str):
        raise DataError(f"{field}: expected an ISO-8601 time, got {type(value).__name__}")
    text = value.strip()
    if _NUMBER.match(text):
        return _epoch_number(int(text) if _INTEGER.match(text) else float(text), unit, field)
    match = _ISO.match(text)
    if match is None:
        raise DataError(f"{field}: {ISO_HINT}: {value[:64]!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        tz = UTC
        if offset and offset not in ("Z", "z"):
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(-delta if offset[0] == "-" else delta)
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          int((fraction or "0").ljust(6, "0")[:6]), tzinfo=tz)
    except ValueError:
        raise DataError(f"{field}: not a valid date-time: {value[:64]!r}") from None
    return epoch_us(moment)


def _epoch_number(value: int | float, unit: TimestampUnit | None, field: str) -> int:
    if unit is None:
        raise DataError(f"{field}: {EPOCH_HINT}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"{field}: not a finite number")
        micros = math.floor(value * US_PER_UNIT[unit])
    else:
        micros = value * US_PER_UNIT[unit]
    if not MIN_US <= micros <= MAX_US:
        raise DataError(f"{field}: epoch {value} {unit} is outside the years 1-9999")
    return micros


# ---------------------------------------------------------------------------------------------
# The same rule over whole Polars columns (batch ingestion), vectorised.

_UTC_US = pl.Datetime("us", "UTC")


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Null:
        return pl.lit(None, pl.String)
    return pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String, strict=False)


def event_time_expr(name: str, dtype: pl.DataType, unit: TimestampUnit | None = None) -> pl.Expr:
    """Column ``name`` (of ``dtype``) as ``datetime[us, UTC]`` under :func:`parse_event_time`'s rule.

    ISO-8601 strings (offset or naive = UTC) and datetime/date columns always; epoch numbers (numeric
    columns or numeric strings) only with ``unit``; anything else becomes null.
    """
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.convert_time_zone("UTC") if dtype.time_zone else col.dt.replace_time_zone("UTC")
        return col.cast(_UTC_US).alias(name)
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)
    if dtype.is_numeric():
        epoch = _epoch_expr(col, integer=dtype.is_integer(), unit=unit)
        return (epoch if epoch is not None else pl.lit(None, _UTC_US)).alias(name)
    raw = _as_text(name, dtype).str.strip_chars()
    text = raw.str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T").str.replace(r"[zZ]$", "+00:00")
    with_offset = [text.str.to_datetime(f, strict=False, time_zone="UTC", time_unit="us")
                   for f in ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")]
    naive = [text.str.to_datetime(f, strict=False, time_unit="us").dt.replace_time_zone("UTC")
             for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")]
    # The pattern gates what the formats alone would let through (basic format, leap seconds, ...).
    iso = pl.when(raw.str.contains(ISO_PATTERN)).then(pl.coalesce(*with_offset, *naive))
    if unit is None:
        return iso.alias(name)
    whole = raw.str.contains(INTEGER_PATTERN)
    epoch = pl.when(whole).then(_epoch_expr(raw.cast(pl.Int64, strict=False), True, unit)).otherwise(
        _epoch_expr(raw.cast(pl.Float64, strict=False), False, unit))
    return pl.when(raw.str.contains(NUMBER_PATTERN)).then(epoch).otherwise(iso).alias(name)


def _epoch_expr(number: pl.Expr, integer: bool, unit: TimestampUnit | None) -> pl.Expr | None:
    """Epoch counts in ``unit`` as ``datetime[us, UTC]``: exact for integers, floored for floats;
    null outside the years 1-9999 (as :func:`parse_event_time`)."""
    if unit is None:
        return None
    factor = US_PER_UNIT[unit]
    if integer:
        value = number.cast(pl.Int64, strict=False)
        ok = (value >= -(-MIN_US // factor)) & (value <= MAX_US // factor)
        micros = value * factor
    else:
        micros = (number.cast(pl.Float64) * factor).floor()
        ok = micros.is_finite() & (micros >= MIN_US) & (micros <= MAX_US)
    return pl.when(ok).then(micros.cast(pl.Int64)).cast(_UTC_US)


def is_epoch_number_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    """True where the raw value is an epoch number (a numeric column, or a string that is a number)."""
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return pl.lit(False)
    if dtype.is_numeric():
        return pl.lit(True)
    return _as_text(name, dtype).str.strip_chars().str.contains(NUMBER_PATTERN).fill_null(False)
