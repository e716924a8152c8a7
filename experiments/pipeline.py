"""Stage functions that tie reading, analysis and reporting together (called by the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from experiments.aggregate import read_table, require_columns
from experiments.analysis import analyze_experiment
from experiments.config import ExperimentsConfig, load_experiments_config
from experiments.content_outcomes import CONTENT_METRICS, CONTENT_STEPS, content_outcomes, is_content_log
from experiments.exposure import cohort_activity, first_exposures, outcomes_from_exposures
from experiments.funnel import funnel_by_variant
from experiments.results import ExperimentResult
from experiments.verdict import verdict_lines
from propensity.errors import DataError
from propensity.progress import Progress, Tracker


@dataclass(frozen=True)
class Units:
    """What an analysis reads: the unit-level frame, the events (exposure logs only), the funnel
    steps, the default metrics, and whether the log is a content exposure log."""

    frame: pl.DataFrame
    events: pl.DataFrame | None
    steps: Sequence[str]
    default_metrics: list[str]
    content: bool


# progress units of analyze_file's parts, about their share of the run time
_UNITS = {"read": 2, "analyse": 3, "funnel": 2, "report": 5}


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
                 name: str | None = None, progress: Progress | None = None,
                 ) -> tuple[ExperimentResult, list[str], dict[str, str]]:
    """Read unit-level ``data`` (or an exposure log + events), analyse, optionally write ``report``.

    With ``exposures`` and ``events`` the units are built by :func:`_exposure_units` (metrics default
    to converted and revenue, for a content exposure log to clicked, converted and revenue; the
    timestamp to first_exposure) and the result carries the funnel and the weekly cohorts. ``name``
    titles the report (default: ``experiment`` or the input's file name, or the config's ``name``);
    the config's ``hypothesis`` and ``planned_mde_relative`` head the report. ``progress`` receives
    :class:`~propensity.progress.Step` messages. Returns the result, the verdict lines and the
    report paths.
    """
    settings = load_experiments_config(config_path, overrides)
    track = Tracker(progress, sum(_UNITS.values()) - (0 if events is not None else _UNITS["funnel"])
                    - (0 if report is not None else _UNITS["report"]), prefix="ab analyze")
    track.begin("reading the input")
    if sequential is not None:
        settings.sequential.enabled = sequential
    units = _read_units(data, exposures, events, attributes, experiment, settings)
    frame, event_frame = units.frame, units.events
    if event_frame is not None:  # an exposure log: its units' columns
        metrics = list(metrics) or units.default_metrics
        timestamp_col = timestamp_col or "first_exposure"
        variant_col = "variant"
    track.advance(_UNITS["read"])
    track.begin(f"testing {len(metrics)} metric(s) on {frame.height} units")
    result = analyze_experiment(frame, variant_col, control, metrics, covariate=covariate,
                                segment_col=segment_col, expected_split=expected_split,
                                timestamp_col=timestamp_col, factors=factors, settings=settings)
    track.advance(_UNITS["analyse"])
    if event_frame is not None:
        track.begin("funnel and weekly cohorts")
        result.funnel = funnel_by_variant(frame, control, units.steps, alpha=settings.alpha,
                                          correction=settings.correction)
        if not units.content:  # shown products' outcomes have no weekly cohorts
            result.cohorts = cohort_activity(frame, event_frame, settings.funnel.cohort_weeks)
        track.advance(_UNITS["funnel"])
    verdicts = verdict_lines(result)
    paths: dict[str, str] = {}
    if report is not None:
        from experiments.report import write_report

        track.begin(f"writing the report {report}")
        title = name or settings.name or experiment or Path(data or exposures or "experiment").stem
        meta = report_meta(frame, title, timestamp_col,
                           [p for p in (data, exposures, events, attributes) if p is not None], settings)
        paths = write_report(result, report, title=f"Experiment report: {meta.name}", meta=meta)
    track.finish("analysis done")
    return result, verdicts, paths


def _read_units(data: str | Path | None, exposures: str | Path | None, events: str | Path | None,
                attributes: str | Path | None, experiment: str | None,
                settings: ExperimentsConfig) -> Units:
    """The unit-level frame (``data``, or built from an exposure log) and the events (exposure logs only)."""
    if (exposures is None) != (events is None):
        raise DataError("an exposure log needs events too (--exposures with --events)")
    steps: Sequence[str] = settings.funnel.steps
    if exposures is not None and events is not None:
        if data is not None:
            raise DataError("give either --data or --exposures/--events, not both")
        event_frame = read_table(events)
        log = _read_log(exposures)
        frame, steps, default_metrics = _exposure_units(log, event_frame, settings,
                                                        read_table(attributes) if attributes else None,
                                                        experiment)
        return Units(frame, event_frame, steps, default_metrics, is_content_log(log))
    if data is None:
        raise DataError("no input: give --data, or --exposures with --events")
    return Units(read_table(data), None, steps, [], False)


def _read_log(path: str | Path) -> pl.DataFrame:
    """A content exposure log as written (its rows list the products shown), else the first
    exposures of :func:`read_exposures`."""
    if not str(path).startswith(("redis://", "rediss://")) and not Path(path).is_dir():
        table = read_table(path)
        return table if is_content_log(table) else first_exposures(table)
    return read_exposures(path)


def report_meta(frame: pl.DataFrame, name: str, timestamp_col: str | None,
                inputs: Sequence[str | Path], settings: ExperimentsConfig | None = None) -> Any:
    """The report's title facts: experiment name, hypothesis and planned effect (``settings``),
    first-exposure period (UTC dates), unit count and a digest of the input files (sha256 of their
    bytes, in order; first 16 hex digits)."""
    from experiments.report import ReportMeta
    from features.batch.dataset import files_digest

    period = None
    if timestamp_col and timestamp_col in frame.columns and frame.height:
        column = frame[timestamp_col]
        if column.dtype.is_temporal():
            first, last = column.min(), column.max()
            period = f"{str(first)[:10]} to {str(last)[:10]} (first exposure, UTC)"
    planned = settings.planned_mde_relative if settings is not None else None
    return ReportMeta(name, period, files_digest(list(inputs)), frame.height,
                      settings.hypothesis if settings is not None else None, planned)


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
    control, *treatments = demo.variants
    hypothesis = settings.hypothesis or (f"{' and '.join(treatments)} raise purchase conversion and revenue "
                                         f"per user over the control {control}")
    result, verdicts, paths = analyze_file(
        None, "variant", control, [], exposures=files["exposures"], events=files["events"],
        attributes=attributes, covariate="pre_revenue", segment_col="device", config_path=config_path,
        overrides={"hypothesis": hypothesis},
        report=out / "experiment_report.html", name="demo experiment (planted lifts "
        + ", ".join(f"{k} {v:+.0%}" for k, v in list(demo.variants.items())[1:]) + ")")
    return {"data": str(files.get("units", files["exposures"])), "exposures": str(files["exposures"]),
            "events": str(files["events"]), "html": paths["html"], "markdown": paths["markdown"],
            "verdicts": verdicts, "warnings": result.warnings}
