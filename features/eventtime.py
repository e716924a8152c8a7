"""Event timestamps as integer microseconds since the Unix epoch (UTC).

Batch code reads ``datetime[us, UTC]`` columns as ``dt.epoch("us")``; incremental code converts
each event's timestamp with :func:`epoch_us`. Both sides then do the same integer arithmetic,
which is what makes batch and incremental results identical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from features.errors import DataError

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
