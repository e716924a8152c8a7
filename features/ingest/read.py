"""Reading raw CSV and JSON Lines files row by row when one row is broken.

The fast readers (Polars) refuse a whole file for one undecodable byte, one broken JSON line or
one CSV row with too many fields. :func:`read_rows` reads the file whole when it can and otherwise
falls back to a row-by-row pass that sets the broken rows aside, with a reason, so ingestion can
quarantine them and keep the rest. A file with no broken row but some other problem (mixed
types, a corrupt Parquet footer) still fails as a whole, with one line naming the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from propensity.errors import DataError

DELIMITERS: tuple[str, ...] = (",", ";", "\t")
_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_RAW_CHARS = 1000  # the raw text kept per rejected row in the quarantine file
REJECTED_SCHEMA: dict[str, pl.DataType] = {"file": pl.String(), "row": pl.Int64(), "reason": pl.String(),
                                           "raw": pl.String()}


@dataclass(frozen=True)
class RawRows:
    """A raw table and the rows set aside while reading it.

    ``rows`` maps each row of ``frame`` to its 0-based row number in the file (data rows: the CSV
    header is not counted; blank lines are skipped); ``None`` when they are the same.
    ``rejected`` has :data:`REJECTED_SCHEMA`. ``delimiter`` is the CSV delimiter used (else None).
    """

    frame: pl.DataFrame
    rejected: pl.DataFrame
    rows: pl.Series | None = None
    delimiter: str | None = None

    def describe_delimiter(self) -> str:
        """``" (read as CSV with delimiter ';')"`` for a CSV file, else ``""``: a hint for errors."""
        return f" (read as CSV with delimiter {_NAMES[self.delimiter]})" if self.delimiter else ""


def detect_delimiter(path: Path) -> str:
    """The delimiter among ``,`` ``;`` tab splitting the header line into the most fields (``,`` on ties)."""
    with path.open("rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace")
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], d == ","))


def read_rows(path: Path, kind: str, read_whole: Callable[[], pl.DataFrame],
              delimiter: str | None = None) -> RawRows:
    """``read_whole()`` when it succeeds, else the row-by-row fallback of ``kind`` (csv or ndjson).

    Raises the first error again (:class:`DataError`) when the fallback finds no broken row.
    """
    try:
        return RawRows(read_whole(), _rejected([]), delimiter=delimiter)
    except DataError as first:
        if kind not in ("csv", "ndjson"):
            raise
        try:
            data = path.read_bytes()
        except OSError:
            raise first from None
        fallback = _csv_rows(path, data, delimiter or ",") if kind == "csv" else _ndjson_rows(path, data)
        if fallback.rejected.height == 0:
            raise first from None
        return fallback


def _rejected(records: list[tuple[str, int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=REJECTED_SCHEMA, orient="row")


def _raw_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")[:_RAW_CHARS]


def _not_utf8(data: bytes) -> str | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte 0x{data[exc.start]:02x} at position {exc.start})"
    return None


def _csv_rows(path: Path, data: bytes, delimiter: str) -> RawRows:
    """Python's csv module over the file (quoted fields may span lines); broken rows set aside."""
    # surrogateescape keeps undecodable bytes recognisable per row instead of failing the file.
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline=""),
                        delimiter=delimiter)
    header = next(reader, [])
    good: list[list[str | None]] = []
    rows: list[int] = []
    rejected: list[tuple[str, int, str, str]] = []
    row = 0
    for record in reader:
        if not record:
            continue
        line = delimiter.join(record).encode("utf-8", errors="surrogateescape")
        reason = _not_utf8(line)
        if reason is None and len(record) > len(header):
            reason = f"ragged row: {len(record)} fields, the header has {len(header)}"
        if reason is not None:
            rejected.append((str(path), row, reason, _raw_text(line)))
        else:  # short rows are padded with nulls, as the fast reader does
            good.append([v if v != "" else None for v in record] + [None] * (len(header) - len(record)))
            rows.append(row)
        row += 1
    try:
        frame = pl.DataFrame(good, schema={h: pl.String for h in header}, orient="row")
    except Exception as exc:  # e.g. duplicate header names: the file itself is unreadable
        raise DataError(f"{path}: cannot read as csv ({str(exc).splitlines()[0][:200]})") from None
    return RawRows(frame, _rejected(rejected), pl.Series("row", rows, pl.Int64), delimiter)


def _ndjson_rows(path: Path, data: bytes) -> RawRows:
    """One JSON object per non-blank line; undecodable, broken or non-object lines set aside."""
    good: list[bytes] = []
    rows: list[int] = []
    rejected: list[tuple[str, int, str, str]] = []
    row = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        reason = _not_utf8(line) or _json_problem(line)
        if reason is not None:
            rejected.append((str(path), row, reason, _raw_text(line)))
        else:
            good.append(line)
            rows.append(row)
        row += 1
    try:
        frame = (pl.read_ndjson(io.BytesIO(b"\n".join(good)), infer_schema_length=None) if good
                 else pl.DataFrame())
    except Exception as exc:  # the remaining rows disagree on types: the file is unreadable as a whole
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as ndjson ({first[:200]})") from None
    return RawRows(frame, _rejected(rejected), pl.Series("row", rows, pl.Int64))


def _json_problem(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except RecursionError:
        return "broken JSON (nested too deep)"
    except ValueError as exc:
        return f"broken JSON ({getattr(exc, 'msg', str(exc))} at column {getattr(exc, 'colno', '?')})"
    return None if isinstance(value, dict) else "not a JSON object"


def require_columns(raw: RawRows, required: Collection[str], source: str) -> None:
    """:class:`DataError` naming the first missing column, the CSV delimiter used and the columns found."""
    for name in required:
        if name not in raw.frame.columns:
            found = ", ".join(raw.frame.columns[:8]) or "none"
            raise DataError(f"{source}: missing required column '{name}'{raw.describe_delimiter()}; "
                            f"columns found: {found[:200]}")
