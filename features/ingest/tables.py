"""Raw tables: the canonical schemas of clean events and users, and reading a file by its extension."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import polars as pl

from features.contract import EVENT_FIELDS, USER_FIELDS
from features.ingest.read import RawRows, detect_delimiter, read_rows
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


