"""The ``monitor`` stage: predictions (a log, or backfilled from events) → windows → drift,
performance, fairness, alerts → JSON, HTML report and a monitoring run in MLflow.

Two passes keep memory bounded on large logs: a slim pass over every record (time, version,
probability, outcome, sensitive attributes) for volume, performance and fairness, then one scan
per window of the records that carry feature vectors, for drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.batch.snapshot import to_utc
from monitoring.backfill import read_events, snapshot_records
from monitoring.config import MonitorConfig, load_monitor_config
from monitoring.fields import arrival_counts, field_changes, input_fields
from monitoring.log import LOG_SCHEMA, UTC_US, scan_prediction_log, with_outcomes
from monitoring.performance import recalibration, recalibration_cov
from monitoring.windows import (
    WEEK,
    Reference,
    Window,
    alerts,
    compare_weeks,
    correct_estimates,
    drift_of,
    performance_of,
    selection_ratios,
)
from propensity.errors import DataError
from propensity.paths import work_dir
from propensity.progress import Progress

MONITORING_EXPERIMENT = "propensity-monitoring"
MONITOR_TAG = "monitoring_run"
LABEL = "label"


@dataclass
class MonitorResult:
    model_uri: str
    model: tuple[str, str]  # (name, version) of --model
    windows: list[Window]
    alerts: list[dict[str, Any]]
    report: Path
    json_path: Path
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # period, digest (of the inputs), reference_digest

    def to_json(self) -> dict[str, Any]:
        """The ``propensity monitor --json`` document."""
        return {"model": {"uri": self.model_uri, "name": self.model[0], "version": self.model[1]},
                "data": self.data, "windows": [w.to_json() for w in self.windows], "alerts": self.alerts,
                "report": str(self.report), "run_id": self.run_id}


def _load_model(model_uri: str, cfg: MonitorConfig) -> tuple[Any, tuple[str, str]]:
    from training.registry import load_model, resolve_version, use_store

    use_store(cfg.tracking.uri)
    registered = resolve_version(model_uri)
    model = load_model(model_uri)
    return model, registered or ("model", str(model.metadata.get("run_id", "unknown")))


def _data_facts(windows: list[Window], inputs: list[str | Path | None],
                reference: pl.DataFrame) -> dict[str, Any]:
    """What was monitored: the windows' period (UTC), a digest of the input files and of the reference."""
    from features.batch.dataset import content_digest, files_digest

    first, last = min(w.start for w in windows), max(w.end for w in windows)
    return {"period": f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC ({len(windows)} windows)",
            "digest": files_digest([p for p in inputs if p is not None]),
            "reference_digest": content_digest(reference)[:len("sha256:") + 16]}


def _training_run(model: Any) -> Any:
    from mlflow.tracking import MlflowClient

    run_id = model.metadata.get("run_id")
    return MlflowClient().get_run(run_id) if run_id else None


def reference_frame(reference: str | Path | None, model: Any) -> pl.DataFrame:
    """``reference`` (a snapshot Parquet file), or the training dataset registered with the model's
    MLflow run. Raises :class:`DataError` when neither can be read."""
    if reference is None:
        run = _training_run(model)
        sources = [json.loads(d.dataset.source).get("uri") for d in (run.inputs.dataset_inputs if run else [])
                   if d.dataset.source_type == "local"]
        if not sources or not sources[0] or not Path(sources[0]).exists():
            raise DataError(f"the model's training dataset ({sources[0] if sources else 'not recorded'}) "
                            f"is not readable here: pass --reference F.parquet")
        reference = sources[0]
    path = Path(reference)
    if not path.exists():
        raise DataError(f"{path}: reference snapshot not found")
    return pl.read_parquet(path)


Fit = tuple[tuple[float, float] | None, np.ndarray | None]  # a recalibration map and its covariance


def _fitted(p: np.ndarray, y: np.ndarray, cfg: MonitorConfig) -> Fit:
    """:func:`recalibration` of ``p`` on ``y``, with its covariance under
    ``performance.calibration_uncertainty``."""
    fit = recalibration(p, y)
    cov = recalibration_cov(p, fit) if fit is not None and cfg.performance.calibration_uncertainty else None
    return fit, cov


def _calibration(frame: pl.DataFrame, probability: np.ndarray, model: Any, cfg: MonitorConfig) -> Fit:
    """Recalibration of the model's probabilities on the reference's labelled rows: those of its
    latest snapshot when it holds several (the validation rows: the model did not fit them). The
    model's own calibrator was fitted on those rows, so in-sample its probabilities look calibrated
    whatever its error; the map is fitted instead on out-of-fold probabilities (the calibrator refitted
    on the other ``performance.calibration_folds`` folds of the raw scores), which show it. Also the
    map's covariance with ``performance.calibration_uncertainty``."""
    if LABEL not in frame.columns:
        return None, None
    rows = frame.select(pl.col(LABEL).is_not_null().alias("keep"))["keep"]
    if "as_of" in frame.columns and frame.get_column("as_of").n_unique() > 1:
        rows = rows & (frame.get_column("as_of") == frame.get_column("as_of").max())
    keep = rows.to_numpy()
    p, y = np.asarray(probability)[keep], frame.get_column(LABEL).to_numpy()[keep]
    folds = cfg.performance.calibration_folds
    calibrator = getattr(model, "calibrator", None)
    if folds > 1 and calibrator is not None and len(p) >= 2 * folds:
        from scipy.special import expit

        from training.calibration import cross_fitted

        raw = expit(model.margin(frame.filter(pl.Series(keep))))
        p = cross_fitted(calibrator.method, raw, y, cfg.seed, folds)
    return _fitted(p, y, cfg)


def _window_starts(t0: datetime, t1: datetime, every: timedelta, warm_up: bool) -> list[datetime]:
    first = t0 - WEEK if warm_up else t0
    n = int((t1 - first) / every)
    return [first + i * every for i in range(n) if first + i * every < t1]


def _records(model: Any, name: str, version: str, cfg: MonitorConfig, predictions: str | Path | None,
             clean_events: pl.DataFrame | None, clean_users: pl.DataFrame | None, start: datetime | None,
             end: datetime | None, every: timedelta, say: Progress
             ) -> tuple[pl.LazyFrame, pl.LazyFrame, datetime]:
    """The records, the records with ``label``, and the first reported window start."""
    warm_up = cfg.drift.compare == "weekday" and WEEK % every == timedelta(0)
    if predictions is None:
        if clean_events is None or start is None or end is None:
            raise DataError("monitor needs --predictions LOG, or --events with --from and --to")
        as_ofs = _window_starts(start, end, every, warm_up)
        lf = snapshot_records(model, name, version, clean_events, clean_users, as_ofs, cfg.horizon,
                              say).lazy()
        base, t0 = lf, start
    else:
        lf = scan_prediction_log(predictions)
        if start is not None:
            lf = lf.filter(pl.col("time") >= (start - WEEK if warm_up else start))
        if end is not None:
            lf = lf.filter(pl.col("time") < end)
        first = lf.select(pl.col("time").min()).collect().item()
        if first is None:
            raise DataError(f"{predictions}: no predictions in the requested period")
        t0 = start or datetime(first.year, first.month, first.day, tzinfo=UTC)
        base, lf = lf, _with_sensitive(lf, clean_users, cfg)
    if clean_events is None:
        return base, lf.with_columns(pl.lit(None, pl.Int64).alias("label")), t0
    purchases = clean_events.lazy().filter(pl.col("event") == "purchase").select("user_id", "timestamp")
    data_end = clean_events.get_column("timestamp").max()
    return base, with_outcomes(lf, purchases, cfg.horizon, data_end), t0  # type: ignore[arg-type]


def _judge_fields(windows: list[Window], events: pl.DataFrame | None, feature_names: list[str],
                  t0: datetime, every: timedelta, lag: timedelta, cfg: MonitorConfig) -> dict[str, list[str]]:
    """Fill each window's ``fields`` (event-field arrival against the week before,
    :mod:`monitoring.fields`); returns event field -> the model inputs computed from it."""
    if events is None or not cfg.drift.fields:
        return {}
    feeds = input_fields(feature_names, events.columns)
    first = min(w.start for w in windows) - WEEK
    last = max(w.end for w in windows)
    seen = events.filter((pl.col("timestamp") >= first - lag) & (pl.col("timestamp") < last - lag))
    counts = arrival_counts(seen, list(feeds), cfg.drift.field_slices, t0, every, lag)
    changes = field_changes(counts, cfg.drift.min_rows, cfg.drift.test_sample_rows)
    for w in windows:
        w.fields = changes.get(w.start, [])
    return feeds


def _with_sensitive(lf: pl.LazyFrame, users: pl.DataFrame | None, cfg: MonitorConfig) -> pl.LazyFrame:
    """Sensitive attributes the log lacks, joined from the users file (age → age band)."""
    have = lf.collect_schema().names()
    wanted = [c for c in cfg.fairness.sensitive_features if c not in have]
    if not wanted or users is None:
        return lf
    from features.schema import age_band

    crm = users.with_columns(pl.col("age").map_elements(age_band, return_dtype=pl.String).alias("age_band"))
    return lf.join(crm.select("user_id", *[c for c in wanted if c in crm.columns]).lazy(), on="user_id",
                   how="left")


def _windows(base: pl.LazyFrame, lf: pl.LazyFrame, t0: datetime, every: timedelta, features: list[str],
             ref: Reference, cfg: MonitorConfig, say: Progress) -> list[Window]:
    """Windows of ``lf`` (the records with outcomes); drift from the feature rows of ``base`` (the
    same records without the outcome join), read a batch of windows at a time."""
    step = every // timedelta(microseconds=1)
    origin = int(t0.timestamp() * 1_000_000)
    window = (((pl.col("time").cast(pl.Int64) - origin) // step) * step + origin).cast(UTC_US).alias("__w")
    sensitive = [c for c in cfg.fairness.sensitive_features if c in lf.collect_schema().names()]
    slim = lf.select(window, "model_version", "probability", pl.col("label").cast(pl.Int8),
                     *[pl.col(c).cast(pl.String).cast(pl.Categorical) for c in sensitive]).collect()
    present = [f for f in features if f in base.collect_schema().names()]
    rng = np.random.default_rng(cfg.seed)
    parts = _parts(slim)
    out = []
    for batch in _batches(parts):
        rows = _feature_rows(base, window, present, batch[0][0][0], batch[-1][0][0] + every)  # type: ignore[operator]
        for (start, version), part in batch:
            recent = _recent_calibration(parts, start + every, version, every, cfg)
            calibration, cov = recent if recent[0] is not None else (ref.calibration, ref.calibration_cov)
            labelled, real, est = performance_of(part, cfg, cfg.seed, calibration, cov)
            current = rows.get((start, version), pl.DataFrame(schema={"probability": pl.Float64}))
            drift, counts = drift_of(current, current.get_column("probability").to_numpy(), ref, cfg, rng)
            out.append(Window(start, start + every, str(version), part.height,  # type: ignore[operator]
                              float(part["probability"].mean()), labelled, real, est, drift, counts,  # type: ignore[arg-type]
                              selection_ratio=selection_ratios(part, cfg)))
            say(f"monitor: window {start:%Y-%m-%d %H:%M} v{version}: {part.height} predictions")
    compare_weeks(out)
    if cfg.performance.correct_windows:
        correct_estimates(out, cfg.horizon, cfg.performance.correct_windows)
    return [w for w in out if w.start >= t0]


def _parts(slim: pl.DataFrame) -> list[tuple[tuple[Any, Any], pl.DataFrame]]:
    """((window start, version), rows) in key order: zero-copy slices of ``slim`` sorted by both
    (stably, so each window keeps its time order; no sort when it is sorted already)."""
    versions = slim.get_column("model_version")
    if not (versions.n_unique() == 1 and slim.get_column("__w").is_sorted()):
        slim = slim.sort("__w", "model_version", maintain_order=True)
    sizes = slim.group_by("__w", "model_version", maintain_order=True).len()
    offsets = np.concatenate([[0], np.cumsum(sizes.get_column("len").to_numpy())])
    return [((start, version), slim.slice(int(offsets[i]), n))
            for i, (start, version, n) in enumerate(sizes.iter_rows())]


CALIBRATION_ROWS = 50_000  # rows of recent labelled windows the recalibration is fitted on (at most)


def _recent_calibration(parts: list[tuple[tuple[Any, Any], pl.DataFrame]], end: datetime, version: Any,
                        every: timedelta, cfg: MonitorConfig) -> Fit:
    """Recalibration (and its covariance) fitted on the last ``performance.recent_windows`` windows of
    ``version`` whose labels had all arrived when the window ending at ``end`` closed (their end plus
    the horizon not after ``end``); None when there are none (the reference's then serves)."""
    k = cfg.performance.recent_windows
    if not (cfg.performance.recalibrate and k):
        return None, None
    known = [part for (start, v), part in parts if v == version and start + every + cfg.horizon <= end
             and part.height and part.get_column("label").null_count() == 0][-k:]
    if not known:
        return None, None
    rows = pl.concat([part.select("probability", "label") for part in known])
    rows = rows.gather_every(max(1, rows.height // CALIBRATION_ROWS))
    return _fitted(rows.get_column("probability").to_numpy(), rows.get_column("label").to_numpy(), cfg)


BATCH_ROWS = 2_000_000  # records whose feature rows are read at once: bounds the memory of a read


def _batches(parts: list[tuple[Any, pl.DataFrame]]) -> list[list[tuple[Any, pl.DataFrame]]]:
    """Consecutive windows grouped so that each group holds at most ``BATCH_ROWS`` records (a window
    start is never split; a single larger window is a group of its own)."""
    groups: list[list[tuple[Any, pl.DataFrame]]] = []
    size = 0
    for key, part in parts:
        same_start = groups and groups[-1][-1][0][0] == key[0]
        if groups and (same_start or size + part.height <= BATCH_ROWS):
            groups[-1].append((key, part))
            size += part.height
        else:
            groups.append([(key, part)])
            size = part.height
    return groups


def _feature_rows(base: pl.LazyFrame, window: pl.Expr, present: list[str], t0: datetime,
                  t1: datetime) -> dict[tuple[Any, ...], pl.DataFrame]:
    """The records in ``[t0, t1)`` that carry a feature vector, by (window start, model version), in
    time order (stable)."""
    sampled = pl.any_horizontal(pl.col(present).is_not_null()) if present else pl.lit(False)
    rows = (base.filter((pl.col("time") >= t0) & (pl.col("time") < t1) & sampled)
            .select(window, "time", "model_version", *present, "probability")
            .sort("time", maintain_order=True).collect())
    return rows.partition_by(["__w", "model_version"], as_dict=True, maintain_order=True)


def monitor(model_uri: str, *, predictions: str | Path | None = None, events: str | Path | None = None,
            users: str | Path | None = None, start: datetime | None = None, end: datetime | None = None,
            every: timedelta | None = None, reference: str | Path | pl.DataFrame | None = None,
            out_dir: str | Path | None = None, cfg: MonitorConfig | None = None, record: bool = True,
            progress: Progress | None = None) -> MonitorResult:
    """Monitor the model at ``model_uri`` over a prediction log or, in backfill mode, over daily
    snapshots of ``events`` between ``start`` and ``end`` (UTC; naive means UTC).

    Outcomes come from ``events`` (a purchase within ``cfg.horizon`` after each prediction); drift
    is measured against ``reference`` (a snapshot) or the model's registered training dataset.
    Writes ``monitor.json`` and ``monitor_report.html`` to ``out_dir`` (default
    ``<work>/monitor/<name>-<version>``) and, with ``record``, logs the daily metrics to a
    monitoring run in MLflow tagged on the model version. Raises :class:`DataError` /
    :class:`PropensityError` with one-line reasons on bad input.
    """
    cfg = cfg or load_monitor_config()
    every = every or cfg.every
    say = progress or (lambda _m: None)
    start, end = (to_utc(t) if t is not None else None for t in (start, end))
    if start is not None and end is not None and end <= start:
        raise DataError("--to must be after --from")
    model, (name, version) = _load_model(model_uri, cfg)
    ref_frame = reference if isinstance(reference, pl.DataFrame) else reference_frame(reference, model)
    features = [f for f in model.feature_names if f in ref_frame.columns and f not in LOG_SCHEMA]
    run = _training_run(model)
    auc = run.data.metrics.get("auc") if run is not None else None
    ref_p = model.predict_proba(ref_frame)
    ref = Reference.of(ref_frame, ref_p, features, cfg.drift.bins, auc, cfg.drift.test_sample_rows, cfg.seed)
    if cfg.performance.recalibrate:
        ref.calibration, ref.calibration_cov = _calibration(ref_frame, ref_p, model, cfg)
    clean_events, clean_users = read_events(events, users) if events is not None else (None, None)
    base, lf, t0 = _records(model, name, version, cfg, predictions, clean_events, clean_users, start, end,
                            every, say)
    windows = _windows(base, lf, t0, every, features, ref, cfg, say)
    if not windows:
        raise DataError("no predictions fall in the requested windows")
    feeds = _judge_fields(windows, clean_events, model.feature_names, t0, every,
                          every if predictions is None else timedelta(0), cfg)
    found = alerts(windows, ref, cfg, feeds)
    from monitoring.report import write_report

    out = Path(out_dir) if out_dir is not None else work_dir() / "monitor" / f"{name}-{version}"
    facts = _data_facts(windows, [predictions, events, users], ref_frame)
    result = MonitorResult(model_uri, (name, version), windows, found, out / "monitor_report.html",
                           out / "monitor.json", data=facts)
    write_report(result, ref)
    if record and cfg.tracking.log_to_mlflow:
        from monitoring.tracking import log_monitoring_run

        result.run_id = log_monitoring_run(result)
    return result
