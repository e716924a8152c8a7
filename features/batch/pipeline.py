"""The feature stage: raw files -> validated events/users -> stacked snapshots -> versioned Parquet.

:func:`build_features` is what ``propensity features``, the demo and tests call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from features.batch.config import FeaturesConfig, format_duration, load_features_config
from features.batch.dataset import file_digest, metadata_path, write_snapshot
from features.batch.engine import make_engine
from features.batch.snapshot import SNAPSHOT_EVENT_COLUMNS, snapshot_times
from features.ingest.checks import Validated
from features.ingest.eventtime import TimestampUnit
from features.ingest.read import require_columns
from features.ingest.tables import REQUIRED_EVENT_COLUMNS, read_raw
from features.ingest.validate import (
    check_bad_share,
    top_reasons,
    validate_events,
    validate_users,
    with_rejected,
    write_quarantine,
)
from features.privacy import forgotten_users, resolve_ledger, scrub_forgotten
from propensity.errors import DataError
from propensity.progress import Progress, Tracker

_INGEST_UNITS, _SNAPSHOT_UNITS, _SEGMENT_UNITS = 4, 3, 2


@dataclass(frozen=True)
class FeatureBuildResult:
    """What a feature build wrote. ``label_rate`` is a share 0..1 (None for an empty snapshot)."""

    output: Path
    metadata_path: Path
    rows: int
    users: int
    label_rate: float | None
    quarantined: int
    quarantine_path: Path | None
    digest: str
    duplicates: int
    seconds: float
    metadata: dict[str, Any] = field(repr=False)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)  # top reasons -> rows
    warnings: list[str] = field(default_factory=list)
    latest_event: datetime | None = None  # the latest valid event time (UTC), None without events

    def summary(self) -> dict[str, Any]:
        """The ``--json`` document of ``propensity features``."""
        return {
            "output": str(self.output),
            "rows": self.rows,
            "users": self.users,
            "label_rate": self.label_rate,
            "quarantined": self.quarantined,
            "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "duplicates": self.duplicates,
            "digest": self.digest,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
        }


def quarantine_path_for(out: Path) -> Path:
    """Where the bad rows of a build writing ``F.parquet`` go: ``F.quarantine.parquet``."""
    return out.with_name(out.stem + ".quarantine.parquet")


def _ingest_counts(v: Validated) -> dict[str, int]:
    return {"rows_read": v.rows_read, "clean": v.clean.height, "duplicates": v.duplicates,
            "quarantined": v.quarantine.height}


def build_features(events_path: str | Path, users_path: str | Path | None,
                   as_of: datetime | Callable[[datetime], datetime], horizon: timedelta | None,
                   snapshots: int | None, every: timedelta | None, out: str | Path,
                   config: FeaturesConfig | str | Path | None = None, progress: Progress | None = None,
                   timestamp_unit: TimestampUnit | None = None) -> FeatureBuildResult:
    """Ingest the raw files, build ``snapshots`` stacked snapshots ending at ``as_of``, write them.

    ``horizon`` (label window), ``snapshots`` (count) and ``every`` (spacing) default to the config
    (``configs/features.yaml``). ``as_of`` may be a function of the latest valid event time (UTC),
    e.g. "the latest cut-off whose label window the data covers" (the events are read once). Writes
    ``out`` (Parquet), its ``.meta.json`` sidecar and, when rows were bad, ``<out stem>.quarantine.parquet``.
    Users without consent and users in the forget ledger are left out. Epoch-number timestamps are
    read in ``timestamp_unit`` (default: the config's ``ingest.timestamp_unit``; none: quarantined).
    Raises :class:`DataError` for unreadable input, a users file that is an events file, an ``out``
    that is not ``.parquet``, events without a valid one (with an ``as_of`` function), or too many bad
    rows (after the quarantine file is written). Suspicious but usable input (a users file matching
    no event's user, label windows past the end of the data) gives ``warnings``.
    """
    started = time.perf_counter()
    cfg = config if isinstance(config, FeaturesConfig) else load_features_config(config)
    horizon = horizon or cfg.horizon
    count, every = snapshots or cfg.snapshots, every or cfg.every
    as_ofs = [] if callable(as_of) else snapshot_times(as_of, count, every)
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"--out {out}: features are written as Parquet; use a .parquet file name")
    # progress units, about each part's share of the run time
    track = Tracker(progress, total=_INGEST_UNITS + _SNAPSHOT_UNITS * count
                    + (_SEGMENT_UNITS if cfg.segment_features else 0) + 1, prefix="features")
    forgotten = forgotten_users(resolve_ledger(cfg))
    q_path = quarantine_path_for(out)
    unit = timestamp_unit or cfg.ingest.timestamp_unit
    events, users, quarantined = _ingest(events_path, users_path, cfg, unit, forgotten, q_path, track)
    latest = _latest_event(events)
    if callable(as_of):
        if latest is None:
            raise DataError(f"{events_path}: no valid events")
        as_ofs = snapshot_times(as_of(latest), count, every)
    parts = [events] + ([users] if users is not None else [])
    warnings = _input_warnings(events, users, as_ofs, horizon)

    frame, feature_names = _build_frame(cfg, events, users, as_ofs, horizon, forgotten, track)
    track.begin(f"writing {out}")
    meta = write_snapshot(frame, out, _metadata(cfg, as_ofs, horizon, feature_names, events_path, users_path,
                                                parts, q_path if quarantined else None, len(forgotten)))
    track.finish(f"wrote {out}")
    return FeatureBuildResult(
        output=out, metadata_path=metadata_path(out), rows=meta["rows"], users=meta["users"],
        label_rate=meta["label_rate"], quarantined=quarantined,
        quarantine_path=q_path if quarantined else None,
        digest=meta["digest"], duplicates=sum(p.duplicates for p in parts),
        seconds=time.perf_counter() - started, metadata=meta,
        quarantine_reasons=top_reasons(parts), warnings=warnings, latest_event=latest,
    )


def _build_frame(cfg: FeaturesConfig, events: Validated, users: Validated | None, as_ofs: list[datetime],
                 horizon: timedelta, forgotten: set[str], track: Tracker) -> tuple[Any, list[str]]:
    """The stacked snapshots (with the segment features when configured) and their feature names."""
    track.begin(f"building {len(as_ofs)} snapshot(s) with the {cfg.engine} engine")
    feature_set = cfg.feature_set
    with make_engine(cfg) as engine:
        frame = engine.build(events.clean, users.clean if users else None, as_ofs, horizon,
                             consent_default=cfg.ingest.consent_default, exclude_users=forgotten,
                             feature_set=feature_set)
    track.advance(_SNAPSHOT_UNITS * len(as_ofs))
    feature_names = list(feature_set.names)
    if cfg.segment_features:
        from features.segments.stage import SEGMENT_FEATURES, add_segment_features

        track.begin("adding engagement scores and journey stages")
        frame = add_segment_features(frame, events.clean, None)
        feature_names += list(SEGMENT_FEATURES)
        track.advance(_SEGMENT_UNITS)
    return frame, feature_names


def _latest_event(events: Validated) -> datetime | None:
    """The latest valid event time, in UTC (None without valid events)."""
    latest = events.clean.get_column("timestamp").max() if events.clean.height else None
    if not isinstance(latest, datetime):
        return None
    return latest.astimezone(UTC) if latest.tzinfo else latest.replace(tzinfo=UTC)


def _metadata(cfg: FeaturesConfig, as_ofs: list[datetime], horizon: timedelta, feature_names: list[str],
              events_path: str | Path, users_path: str | Path | None, parts: list[Validated],
              q_path: Path | None, n_forgotten: int) -> dict[str, Any]:
    """The sidecar's description of a build (write_snapshot adds counts and the digest)."""
    return {
        "as_of": [t.isoformat() for t in as_ofs],
        "horizon": format_duration(horizon),
        "horizon_seconds": horizon.total_seconds(),
        "features": feature_names,
        "feature_specs": cfg.feature_set.to_dicts(),
        "engine": cfg.engine,
        "sources": {"events": file_digest(events_path),
                    "users": file_digest(users_path) if users_path is not None else None},
        "ingest": {part.source: _ingest_counts(part) for part in parts},
        "quarantine_path": str(q_path) if q_path else None,
        "forgotten_users_in_ledger": n_forgotten,
        "created_at": datetime.now(UTC).isoformat(),
        "consent_default": cfg.ingest.consent_default,
    }


def _ingest(events_path: str | Path, users_path: str | Path | None, cfg: FeaturesConfig,
            unit: TimestampUnit | None, forgotten: set[str], q_path: Path,
            track: Tracker) -> tuple[Validated, Validated | None, int]:
    """Read and validate the events (and users), write the quarantine file; returns the validated
    events, users and the number of quarantined rows. :class:`DataError` when too many rows are bad."""
    track.begin(f"reading {events_path}")
    raw_events = read_raw(events_path, SNAPSHOT_EVENT_COLUMNS)
    require_columns(raw_events, REQUIRED_EVENT_COLUMNS, str(events_path))
    events = with_rejected(validate_events(raw_events.frame, source=str(events_path), timestamp_unit=unit),
                           raw_events)
    track.advance(_INGEST_UNITS - 1)
    users = None
    if users_path is not None:
        track.begin(f"reading {users_path}")
        users = _read_users(users_path, cfg, unit)
    track.advance(1)
    parts = [events] + ([users] if users is not None else [])
    # The quarantine file keeps raw rows: forgotten users' rows are left out of it too.
    quarantined = write_quarantine([replace(p, quarantine=scrub_forgotten(p.quarantine, forgotten))
                                    for p in parts], q_path)
    for part in parts:
        check_bad_share(part, cfg.ingest.max_bad_share, q_path if quarantined else None)
    track.note(f"{events.clean.height} clean events, {events.duplicates} duplicates, "
               f"{quarantined} rows quarantined")
    return events, users, quarantined


def _read_users(path: str | Path, cfg: FeaturesConfig, unit: TimestampUnit | None) -> Validated:
    """The users file, validated; :class:`DataError` when it is an events file given as users."""
    raw = read_raw(path, required=("user_id",))
    if {"event_id", "event", "timestamp"} <= set(raw.frame.columns):
        raise DataError(f"--users {path}: this is an events file (it has event_id, event and timestamp "
                        "columns); pass it as --events and the CRM/profile file as --users")
    require_columns(raw, ("user_id",), str(path))
    users = validate_users(raw.frame, source=str(path), consent_default=cfg.ingest.consent_default,
                           age_range=(cfg.ingest.age_min, cfg.ingest.age_max), timestamp_unit=unit)
    return with_rejected(users, raw)


def _input_warnings(events: Validated, users: Validated | None, as_ofs: list[datetime],
                    horizon: timedelta) -> list[str]:
    """Input that builds but misleads: users matching no event's user, label windows past the data."""
    warnings = []
    if users is not None and users.clean.height and events.clean.height:
        matched = users.clean["user_id"].is_in(events.clean["user_id"].unique().implode()).sum()
        if matched == 0:
            warnings.append(f"users file {users.source} matches no user of the events ({users.clean.height} "
                            "users, 0 with events): check that both files come from the same system")
    data_end = events.clean["timestamp"].max() if events.clean.height else None
    if isinstance(data_end, datetime):
        short = [t for t in as_ofs if t + horizon > data_end]
        if short:
            latest_ok = (data_end - horizon).date().isoformat()
            warnings.append(
                f"{len(short)} of {len(as_ofs)} snapshot(s) (latest cut-off {max(short).isoformat()}) have a "
                f"{format_duration(horizon)} label window past the end of the data ({data_end.isoformat()}): "
                f"their labels are censored, not real non-conversions; use --as-of {latest_ok} or earlier")
    return warnings
