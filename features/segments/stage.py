"""The segment stage: snapshot in, segment assignments, profile tables, PCA plot and segmenter out.

Called by ``propensity segment`` and the demo. When the snapshot lacks the event-derived columns
(``engagement_score``, ``journey_stage``) and an events file is given, they are computed from the
events at each snapshot's ``as_of``; without events the stage segments on what exists and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from features.segments.config import SegmentsConfig, load_segments_config
from features.segments.engagement import engagement_scores
from features.segments.journey import journey_stages, machine_for
from features.segments.report import cluster_profile, group_profile, html_report, markdown_table, pca_plot
from features.segments.segmenter import Segmenter
from propensity.errors import DataError
from propensity.progress import Progress, Tracker

SEGMENT_FEATURES = ("engagement_score", "journey_stage")  # event-derived columns a snapshot may carry
# progress units of segment_snapshot's parts, about their share of the run time
_UNITS = {"read": 1, "cluster": 6, "write": 3}
_UNITS_EVENTS = 4  # engagement scores and journey stages from an events file
_PROFILE_COLUMNS = ["cluster", "size", "share", "conversion_rate", "lift", "description", "top_features"]


@dataclass
class SegmentResult:
    """Where the segment stage wrote its outputs, and the tables it printed."""

    out_dir: Path
    assignments_path: Path
    profile_csv: Path
    profile_md: Path
    plot_path: Path
    segmenter_path: Path
    profile: pl.DataFrame
    segment_summary: pl.DataFrame | None
    stage_summary: pl.DataFrame | None
    n_rows: int
    method: str
    n_clusters: int
    silhouette: dict[int, float]
    features: list[str]
    digest: str
    notes: list[str] = field(default_factory=list)
    source: str | None = None  # the snapshot file segmented
    period: str | None = None  # the snapshot's cut-offs, e.g. "as_of 2026-10-01 to 2026-10-22"
    report_html: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (paths as strings, tables as lists of rows)."""
        return {
            "out_dir": str(self.out_dir), "assignments": str(self.assignments_path),
            "profile_csv": str(self.profile_csv), "profile_md": str(self.profile_md),
            "plot": str(self.plot_path), "segmenter": str(self.segmenter_path),
            "rows": self.n_rows, "method": self.method, "clusters": self.n_clusters,
            "silhouette": {str(k): v for k, v in self.silhouette.items()}, "features": self.features,
            "fitted_on_digest": self.digest, "notes": self.notes,
            "report_html": None if self.report_html is None else str(self.report_html),
            "profile": self.profile.select([c for c in _PROFILE_COLUMNS
                                            if c in self.profile.columns]).to_dicts(),
            "segments": None if self.segment_summary is None else self.segment_summary.to_dicts(),
            "stages": None if self.stage_summary is None else self.stage_summary.to_dicts(),
        }


def add_segment_features(snapshot: pl.DataFrame, events: pl.DataFrame | pl.LazyFrame,
                         cfg: SegmentsConfig | None = None) -> pl.DataFrame:
    """``snapshot`` (keys ``user_id``, ``as_of``) with ``engagement_score`` and ``journey_stage`` from
    ``events`` at each row's ``as_of``. A user without events before ``as_of`` gets score 0.0 and the
    initial stage, exactly what the incremental states give for an empty history."""
    cfg = cfg or load_segments_config()
    parts = []
    for as_of in snapshot["as_of"].unique().sort().to_list():
        scores = engagement_scores(events, as_of, cfg)
        stages = journey_stages(events, as_of, cfg)
        parts.append(scores.join(stages, on="user_id", how="full", coalesce=True)
                     .with_columns(pl.lit(as_of).cast(snapshot.schema["as_of"]).alias("as_of")))
    derived = pl.concat(parts) if parts else pl.DataFrame(
        schema={"user_id": pl.String, "engagement_score": pl.Float64, "journey_stage": pl.String,
                "as_of": snapshot.schema["as_of"]})
    initial = machine_for(cfg).stages[machine_for(cfg).initial]
    base = snapshot.drop([c for c in ("engagement_score", "journey_stage") if c in snapshot.columns])
    return (base.join(derived, on=["user_id", "as_of"], how="left")
            .with_columns(pl.col("engagement_score").fill_null(0.0),
                          pl.col("journey_stage").fill_null(initial)))


def _read_snapshot(path: Path, notes: list[str]) -> tuple[pl.DataFrame, str | None]:
    """The snapshot and its digest: via ``features.batch.dataset`` when the file has its metadata sidecar,
    else the bare Parquet file (digest computed from the content)."""
    try:
        from features.batch import dataset
    except ImportError:
        dataset = None  # type: ignore[assignment]
    if dataset is not None and dataset.metadata_path(path).is_file():
        frame, meta = dataset.read_snapshot(path)
        return frame, meta.get("digest")
    if not path.is_file():
        raise DataError(f"{path}: snapshot file not found")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # arrow raises many types for a corrupt file; all mean "unreadable"
        raise DataError(f"{path}: cannot read the snapshot as Parquet ({type(exc).__name__})") from None
    notes.append(f"{path.name} has no metadata sidecar: digest computed from its content")
    return frame, (dataset.content_digest(frame) if dataset is not None else None)


def _read_events(path: Path) -> pl.DataFrame:
    from features.batch.config import load_features_config
    from features.ingest.validate import ingest_events

    return ingest_events(path, timestamp_unit=load_features_config().ingest.timestamp_unit).clean


def segment_snapshot(features_path: str | Path, out_dir: str | Path, cfg: SegmentsConfig | None = None,
                     events_path: str | Path | None = None,
                     progress: Progress | None = None) -> SegmentResult:
    """Fit a :class:`Segmenter` on the snapshot at ``features_path`` and write to ``out_dir``:
    ``assignments.parquet`` (keys, score, stage, segment, cluster), ``profile.csv``, ``profile.md``,
    ``clusters_pca.png`` and ``segmenter.joblib``. ``progress`` receives
    :class:`~propensity.progress.Step` messages."""
    cfg = cfg or load_segments_config()
    track = Tracker(progress, sum(_UNITS.values()) + (_UNITS_EVENTS if events_path is not None else 0),
                    prefix="segment")
    notes: list[str] = []
    track.begin(f"reading {features_path}")
    snapshot, digest = _read_snapshot(Path(features_path), notes)
    if snapshot.height == 0:
        raise DataError(f"{features_path}: the snapshot has no rows")
    missing = [c for c in ("engagement_score", "journey_stage") if c not in snapshot.columns]
    track.advance(_UNITS["read"])
    if missing and events_path is not None:
        track.begin(f"engagement scores and journey stages from {events_path}")
        snapshot = add_segment_features(snapshot, _read_events(Path(events_path)), cfg)
        notes.append(f"computed {', '.join(missing)} from {events_path}")
        track.advance(_UNITS_EVENTS)
    elif missing:
        notes.append(f"snapshot has no {', '.join(missing)} column: segmented on what exists "
                     "(pass --events to compute them)")
    track.begin(f"clustering {snapshot.height} rows")
    segmenter = Segmenter(cfg).fit(snapshot, digest=digest)
    if segmenter.missing_features_:
        notes.append("clustering features absent from the snapshot: "
                     + ", ".join(segmenter.missing_features_))
    assigned = segmenter.transform(snapshot)
    track.advance(_UNITS["cluster"])
    track.begin(f"writing profiles and the report to {out_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep = [c for c in ("user_id", "as_of", "engagement_score", "journey_stage", "segment", "cluster",
                        "label") if c in assigned.columns]
    assignments_path = out / "assignments.parquet"
    assigned.select(keep).write_parquet(assignments_path)
    profile = cluster_profile(assigned, segmenter)
    profile_csv = out / "profile.csv"
    profile.write_csv(profile_csv)
    segment_summary = group_profile(assigned, "segment") if "engagement_score" in assigned.columns else None
    stage_summary = group_profile(assigned, "journey_stage") if "journey_stage" in assigned.columns else None
    profile_md = _write_profile_md(out / "profile.md", assigned, segmenter, profile,
                                   {"segment": segment_summary, "journey_stage": stage_summary}, notes)
    plot_path = pca_plot(assigned, segmenter, out / "clusters_pca.png", sample=cfg.clustering.plot_sample,
                         seed=cfg.clustering.random_state)
    segmenter_path = segmenter.save(out / "segmenter.joblib")
    result = SegmentResult(out, assignments_path, profile_csv, profile_md, plot_path, segmenter_path, profile,
                           segment_summary, stage_summary, assigned.height, segmenter.cluster_model_.method,
                           segmenter.n_clusters_, segmenter.cluster_model_.silhouette, segmenter.features_,
                           segmenter.fitted_on_digest_, notes, str(features_path), _period(assigned))
    result.report_html = html_report(result, out / "segments_report.html")
    track.finish("segments written")
    return result


def _write_profile_md(path: Path, assigned: pl.DataFrame, segmenter: Segmenter, profile: pl.DataFrame,
                      summaries: dict[str, pl.DataFrame | None], notes: list[str]) -> Path:
    """``profile.md``: the cluster profile and the segment and stage summaries as Markdown tables."""
    md = ["# Segment profile", "", f"{assigned.height} rows, {segmenter.cluster_model_.method}, "
          f"{segmenter.n_clusters_} clusters; fitted on `{segmenter.fitted_on_digest_}`.", "",
          "## Behavioural clusters", "",
          markdown_table(profile, [c for c in _PROFILE_COLUMNS if c in profile.columns])]
    for title, column in (("Engagement segments", "segment"), ("Journey stages", "journey_stage")):
        table = summaries[column]
        if table is not None:
            md += [f"## {title}", "", markdown_table(table, [column, *table.columns[1:]])]
    md += [f"- {note}" for note in notes]
    path.write_text("\n".join(md) + "\n")
    return path


def _period(frame: pl.DataFrame) -> str | None:
    """The snapshot's cut-off dates, for the report's title."""
    if "as_of" not in frame.columns or frame.height == 0:
        return None
    first, last = str(frame["as_of"].min())[:10], str(frame["as_of"].max())[:10]
    return f"as_of {first}" if first == last else f"as_of {first} to {last}"
