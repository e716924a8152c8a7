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
from experiments.content_outcomes import CONTENT_METRICS, CONTENT_STEPS, content_outcomes, is_content_log
from experiments.exposure import cohort_activity, outcomes_from_exposures
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
    return _with_attributes(units, attributes)


def _exposure_units(exposures: pl.DataFrame, events: pl.DataFrame, settings: ExperimentsConfig,
                    attributes: pl.DataFrame | None, experiment: str | None
                    ) -> tuple[pl.DataFrame, Sequence[str], list[str]]:
    """(units, funnel steps, default metrics) of an exposure log: a content exposure log (it lists the
    products shown) gets the outcomes of shown products (:mod:`experiments.content_outcomes`: clicks,
    carts, purchases and revenue within ``recommendations.window_days``), any other log the
    conversions of :func:`units_from_exposures`."""
    if not is_content_log(exposures):
        units = units_from_exposures(exposures, events, settings, attributes, experiment)
        return units, settings.funnel.steps, ["converted", "revenue"]
    units = content_outcomes(exposures, events, settings.recommendations.window_days, experiment)
    return _with_attributes(units, attributes), CONTENT_STEPS, list(CONTENT_METRICS)


def _with_attributes(units: pl.DataFrame, attributes: pl.DataFrame | None) -> pl.DataFrame:
    if attributes is None:
        return units
    require_columns(attributes, ["user_id"], "attributes")
    extra = [c for c in attributes.columns if c not in units.columns]
    attrs = attributes.select("user_id", *extra).with_columns(pl.col("user_id").cast(pl.String))
    return units.join(attrs, on="user_id", how="left")


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

    With ``exposures`` and ``events`` the units are built by :func:`_exposure_units` (metrics default
    to converted and revenue, for a content exposure log to clicked, converted and revenue; the
    timestamp to first_exposure) and the result carries the funnel and the weekly cohorts. ``name``
    titles the report (default: ``experiment`` or the input's file name). Returns the result, the
    verdict lines and the report paths.
    """
    settings = load_experiments_config(config_path, overrides)
    if sequential is not None:
        settings.sequential.enabled = sequential
    if (exposures is None) != (events is None):
        raise DataError("an exposure log needs events too (--exposures with --events)")
    steps: Sequence[str] = settings.funnel.steps
    content = False
    if exposures is not None and events is not None:
        if data is not None:
            raise DataError("give either --data or --exposures/--events, not both")
        event_frame, log = read_table(events), read_table(exposures)
        frame, steps, default_metrics = _exposure_units(log, event_frame, settings,
                                                        read_table(attributes) if attributes else None,
                                                        experiment)
        content = is_content_log(log)
        metrics = list(metrics) or default_metrics
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
        result.funnel = funnel_by_variant(frame, control, steps, alpha=settings.alpha,
                                          correction=settings.correction)
        if not content:  # shown products' outcomes have no weekly cohorts
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
    digest of the input files (sha256 of their bytes, in order; first 16 hex digits)."""
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
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
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
