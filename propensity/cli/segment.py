"""`propensity segment`: flags -> features.segments.stage.segment_snapshot (no logic here)."""

from __future__ import annotations

from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took


@click.command()
@click.option("--features", "features_path", required=True, type=click.Path(dir_okay=False),
              help="Snapshot Parquet file written by `propensity features`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for assignments, profile table, plot, HTML report and the fitted segmenter.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Segments config [default: configs/segments.yaml].")
@click.option("--events", "events_path", default=None, type=click.Path(dir_okay=False),
              help="Events file: computes engagement_score / journey_stage when the snapshot lacks them.")
@click.option("--method", type=click.Choice(["kmeans", "dbscan"]), default=None,
              help="Clustering method (overrides the config).")
@click.option("--k", type=click.IntRange(min=1), default=None,
              help="Fixed number of K-Means clusters (overrides the silhouette search).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def segment(features_path: str, out_dir: str, config_path: str | None, events_path: str | None,
            method: str | None, k: int | None, as_json: bool) -> None:
    """Engagement segments, journey stages and behavioural clusters of a snapshot."""
    from features.segments.config import load_segments_config
    from features.segments.stage import segment_snapshot

    cfg = load_segments_config(config_path)
    if method is not None:
        cfg.clustering.method = method  # type: ignore[assignment]
    if k is not None:
        cfg.clustering.k = k
    with Steps(f"segmenting {features_path}", as_json=as_json) as steps:
        steps(f"segmenting {features_path} ...")
        result = segment_snapshot(features_path, out_dir, cfg, events_path=events_path, progress=steps)
    if as_json:
        emit_json({**result.to_dict(), "paths": segment_paths(result), "seconds": steps.seconds})
        return
    print_segments(result)
    info(took(steps.seconds))


def segment_paths(result: Any) -> dict[str, str]:
    """Every artefact of the segment stage, by the key names of the README's JSON key table."""
    paths = {"out_dir": result.out_dir, "assignments": result.assignments_path,
             "profile_csv": result.profile_csv, "profile_md": result.profile_md, "plot": result.plot_path,
             "segmenter": result.segmenter_path,
             "report_html": result.report_html}
    return {k: str(v) for k, v in paths.items() if v is not None}


def print_segments(result: Any) -> None:
    """The human summary of a :class:`features.segments.stage.SegmentResult` (also used by the demo)."""
    from features.segments.report import markdown_table

    for note in result.notes:
        info(f"note: {note}")
    columns = [c for c in ("cluster", "size", "share", "conversion_rate", "lift", "description")
               if c in result.profile.columns]
    click.echo(f"{result.n_rows} rows -> {result.n_clusters} clusters ({result.method})")
    click.echo(markdown_table(result.profile, columns))
    if result.segment_summary is not None:
        click.echo(markdown_table(result.segment_summary))
    if result.stage_summary is not None:
        click.echo(markdown_table(result.stage_summary))
    info(f"report: {result.report_html}")
    info(f"profile: {result.profile_md} (CSV: {result.profile_csv})")
    info(f"assignments: {result.assignments_path}; plot: {result.plot_path}")
    info(f"segmenter: {result.segmenter_path}")
