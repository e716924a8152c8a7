"""Versioned snapshot datasets: a Parquet file plus a metadata sidecar that names exactly what it holds.

``F.parquet`` is written together with ``F.meta.json``: cut-offs, horizon, row and user counts,
label rate, a content digest of the frame (same data -> same digest, whatever the file encoding),
digests of the source files, the feature list and the engine. A model logs the digest to say what
it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from features.registry import KEY_COLUMNS, LABEL_COLUMN
from propensity.errors import DataError

FORMAT = "propensity.snapshot/1"


def metadata_path(path: str | Path) -> Path:
    """The sidecar of a snapshot file: ``F.parquet`` -> ``F.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def content_digest(frame: pl.DataFrame) -> str:
    """``sha256:<hex>`` of a frame's schema and values, rows ordered by the key columns when present.

    Nulls, NaNs and every value's bits are hashed per column, so equal frames give equal digests
    independently of Parquet encoding or compression.
    """
    keys = [c for c in KEY_COLUMNS if c in frame.columns]
    if keys:
        frame = frame.sort(keys, maintain_order=True)
    digest = hashlib.sha256()
    digest.update(json.dumps([[n, str(t)] for n, t in frame.schema.items()]).encode())
    digest.update(frame.height.to_bytes(8, "little"))
    for name in frame.columns:
        series = frame[name]
        digest.update(series.is_null().to_numpy().tobytes())
        if series.dtype == pl.String:
            digest.update("\x1f".join(series.fill_null("").to_list()).encode())
        elif series.dtype == pl.Boolean:
            digest.update(series.cast(pl.Int8).fill_null(0).to_numpy().tobytes())
        elif series.dtype.is_float():
            digest.update(series.cast(pl.Float64).fill_null(0.0).to_numpy().tobytes())
        else:
            digest.update(series.to_physical().cast(pl.Int64).fill_null(0).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a source file (read in 1 MiB blocks)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def files_digest(paths: list[str | Path]) -> str:
    """``sha256:<first 16 hex>`` of the bytes of ``paths`` read in order (one file: its sha256sum),
    the dataset digest a report shows for its inputs. A folder (a prediction log) counts as its
    Parquet files in name order; a Redis stream address as its stream name (not its moving content)."""
    digest = hashlib.sha256()
    for path in paths:
        if str(path).startswith(("redis://", "rediss://")):
            digest.update(str(path).rsplit("#", 1)[-1].encode())
            continue
        files = sorted(Path(path).rglob("*.parquet")) if Path(path).is_dir() else [Path(path)]
        for file in files:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def write_snapshot(frame: pl.DataFrame, path: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``frame`` to Parquet (µs timestamps) and its sidecar; returns the full metadata written.

    ``metadata`` is completed with format, rows, users, label_rate and digest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = frame.height
    meta = {
        "format": FORMAT,
        **metadata,
        "rows": rows,
        "users": frame["user_id"].n_unique() if rows else 0,
        "label_rate": float(frame[LABEL_COLUMN].mean()) if rows else None,  # type: ignore[arg-type]
        "digest": content_digest(frame),
    }
    frame.write_parquet(path)
    metadata_path(path).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def read_snapshot(path: str | Path, verify: bool = False) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A snapshot frame and its metadata. ``verify`` recomputes the content digest and compares.

    Raises :class:`DataError` for a missing or unreadable file or sidecar, missing key/label
    columns, or (with ``verify``) a digest mismatch.
    """
    path = Path(path)
    meta_file = metadata_path(path)
    if not path.is_file():
        raise DataError(f"{path}: snapshot file not found")
    if not meta_file.is_file():
        raise DataError(f"{meta_file}: snapshot metadata not found (written by propensity features)")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # any reader failure means the file is unusable
        raise DataError(f"{path}: cannot read snapshot ({str(exc).splitlines()[0][:200]})") from None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_file}: cannot read snapshot metadata ({exc})") from None
    for column in (*KEY_COLUMNS, LABEL_COLUMN):
        if column not in frame.columns:
            raise DataError(f"{path}: snapshot lacks column '{column}'")
    if verify and content_digest(frame) != meta.get("digest"):
        raise DataError(f"{path}: content does not match the digest in {meta_file.name}")
    return frame, meta
