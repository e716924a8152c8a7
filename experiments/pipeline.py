"""Stage functions that tie reading, analysis and reporting together (called by the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from experiments.aggregate import read_table, require_columns
from experiments.analysis import analyze_experiment
from experiments.config import ExperimentsConfig, load_experiments_config
from experiments.exposure import cohort_activity, first_exposures, outcomes_from_exposures
from experiments.funnel import funnel_by_variant
from experiments.results import ExperimentResult
from experiments.verdict import verdict_lines
from propensity.errors import DataError


def units_from_exposures(exposures: pl.DataFrame, events: pl.DataFrame, settings: ExperimentsConfig,
                         attributes: pl.DataFrame | None = None,
                         experiment: str | None = None) -> pl.DataFrame:
    """Exposed users with outcomes (:func:`outcomes_from_exposures`), plus the columns of
    ``attributes`` (one row per user_id: covariates, segments) joined on user_id."""
    units = outcomes_from_exposures(exposures, events, settings.conversion_window_days, experiment,
                                    settings.funnel.steps)
    if attributes is not None:
        require_columns(attributes, ["user_id"], "attributes")
        extra = [c for c in attributes.columns if c not in units.columns]
        attrs = attributes.select("user_id", *extra).with_columns(pl.col("user_id").cast(pl.String))
        units = units.join(attrs, on="user_id", how="left")
    return units


def read_exposures(path: str | Path) -> pl.DataFrame:
    """An exposure table (user_id, variant, first_exposure, experiment if known) from ``path``: a
    table of first exposures, the service's JSON Lines exposure log, or its prediction log (a
    Parquet folder or file, or ``redis://HOST:PORT/DB#STREAM``)."""
    source = str(path)
    if source.startswith(("redis://", "rediss://")) or Path(path).is_dir():
        from monitoring.log import scan_prediction_log

        log = scan_prediction_log(path)
        names = log.collect_schema().names()
        return first_exposures(log.select(c for c in ("user_id", "experiment", "variant", "time")
                                          if c in names).collect())
    return first_exposures(read_table(path))


def analyze_file(data: str | Path | None, variant_col: str, control: str, metrics: Sequence[str], *,
                 exposures: str | Path | None = None, events: str | Path | None = None,
                 attributes: str | Path | None = None, experiment: str | None = None,
                 covariate: str | None = None, segment_col: str | None = None,
                 timestamp_col: str | None = None, factors: Sequence[str] = (),
                 expected_split: Sequence[float] | Mapping[str, float] | None = None,
                 config_path: str | Path | None = None, report: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, sequential: bool | None = None,
                 name: str | None = None) -> tuple[ExperimentResult, list[str], dict[str, str]]:
    """Read unit-level ``data`` (or an exposure log + events), analyse, optionally write ``report``.

    With ``exposures`` and ``events`` the units are built by :func:`units_from_exposures` (metrics
    default to converted and revenue, the timestamp to first_exposure) and the result carries the
    funnel and the weekly cohorts. ``name`` titles the report (default: ``experiment`` or the input's
    file name). Returns the result, the verdict lines and the report paths.
    """
    settings = load_experiments_config(config_path, overrides)
    if sequential is not None:
        settings.sequential.enabled = sequential
    if (exposures is None) != (events is None):
        raise DataError("an exposure log needs events too (--exposures with --events)")
    if exposures is not None and events is not None:
        if data is not None:
            raise DataError("give either --data or --exposures/--events, not both")
        event_frame = read_table(events)
        frame = units_from_exposures(read_exposures(exposures), event_frame, settings,
                                     read_table(attributes) if attributes else None, experiment)
        metrics = list(metrics) or ["converted", "revenue"]
        timestamp_col = timestamp_col or "first_exposure"
        variant_col = "variant"
    elif data is not None:
        frame = read_table(data)
        event_frame = None
    else:
        raise DataError("no input: give --data, or --exposures with --events")
    result = analyze_experiment(frame, variant_col, control, metrics, covariate=covariate,
                                segment_col=segment_col, expected_split=expected_split,
                                timestamp_col=timestamp_col, factors=factors, settings=settings)
    if event_frame is not None:
        result.funnel = funnel_by_variant(frame, control, settings.funnel.steps, alpha=settings.alpha,
                                          correction=settings.correction)
        result.cohorts = cohort_activity(frame, event_frame, settings.funnel.cohort_weeks)
    verdicts = verdict_lines(result)
    paths: dict[str, str] = {}
    if report is not None:
        from experiments.report import write_report

        title = name or experiment or Path(data or exposures or "experiment").stem
        meta = report_meta(frame, title, timestamp_col,
                           [p for p in (data, exposures, events, attributes) if p is not None])
        paths = write_report(result, report, title=f"Experiment report: {meta.name}", meta=meta)
    return result, verdicts, paths


def report_meta(frame: pl.DataFrame, name: str, timestamp_col: str | None,
                inputs: Sequence[str | Path]) -> Any:
    """The report's title facts: experiment name, first-exposure period (UTC dates), unit count and a
    digest of the input files (sha256 of their bytes, in order, a folder's Parquet files by name;
    first 16 hex digits)."""
    import hashlib

    from experiments.report import ReportMeta

    period = None
    if timestamp_col and timestamp_col in frame.columns and frame.height:
        column = frame[timestamp_col]
        if column.dtype.is_temporal():
            first, last = column.min(), column.max()
            period = f"{str(first)[:10]} to {str(last)[:10]} (first exposure, UTC)"
    digest = hashlib.sha256()
    for path in inputs:
        if str(path).startswith(("redis://", "rediss://")):  # a stream: its name, not its moving content
            digest.update(str(path).rsplit("#", 1)[-1].encode())
            continue
        files = sorted(Path(path).rglob("*.parquet")) if Path(path).is_dir() else [Path(path)]
        for file in files:  # a prediction log folder: its files in name order
            with open(file, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
    return ReportMeta(name, period, f"sha256:{digest.hexdigest()[:16]}", frame.height)


def demo_experiment(out_dir: str | Path, config_path: str | Path | None = None,
                    shop: tuple[pl.DataFrame, pl.DataFrame, datetime] | None = None) -> dict[str, Any]:
    """Simulate an experiment (``demo`` settings), analyse its exposure log and events, write the report.

    With ``shop`` = (clean events, users, exposure start) the experiment runs on that synthetic
    shop's users and recorded events (:func:`experiments.simulate.simulate_on_shop`); without it,
    on simulated units. Returns {"data", "exposures", "events", "html", "markdown", "verdicts",
    "warnings"}.
    """
    from experiments.simulate import simulate_experiment, simulate_on_shop

    settings = load_experiments_config(config_path)
    demo = settings.demo
    out = Path(out_dir)
    if shop is not None:
        events, users, exposure_start = shop
        files = simulate_on_shop(events, users, out, demo.variants, exposure_start, demo.days,
                                 settings.conversion_window_days, demo.seed)
        attributes = files["attributes"]
    else:
        files = simulate_experiment(out, demo.users, demo.variants, demo.days, demo.seed)
        attributes = out / "attributes.parquet"
        read_table(files["units"]).select("user_id", "device", "pre_revenue").write_parquet(attributes)
    result, verdicts, paths = analyze_file(
        None, "variant", next(iter(demo.variants)), [], exposures=files["exposures"], events=files["events"],
        attributes=attributes, covariate="pre_revenue", segment_col="device", config_path=config_path,
        report=out / "experiment_report.html", name="demo experiment (planted lifts "
        + ", ".join(f"{k} {v:+.0%}" for k, v in list(demo.variants.items())[1:]) + ")")
    return {"data": str(files.get("units", files["exposures"])), "exposures": str(files["exposures"]),
            "events": str(files["events"]), "html": paths["html"], "markdown": paths["markdown"],
            "verdicts": verdicts, "warnings": result.warnings}
