"""Per-window monitoring results and the alert rules over them (no I/O).

Like with like: a feature's drift alert needs its PSI against the reference above the threshold,
its test p-value below the threshold, *and* (when the window of the same weekday one week earlier
was monitored) its PSI against that window above the threshold too. Weekly seasonality (weekends
busier) and slow trends (tenure grows) move the reference PSI but not the week-over-week one, so
they do not alert; a sudden shift moves both. Volume is judged against the same weekday one week
earlier for the same reason. A model input also alerts when an event field it is computed from
stops arriving in some slice of the traffic (:mod:`monitoring.fields`, judged the same way against
the week before): a tracking outage that a 30-day aggregate hides for weeks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from fairness.audit import MISSING_GROUP, metric_intervals, selection_threshold
from monitoring.config import MonitorConfig
from monitoring.drift import (
    Bins,
    SortedSample,
    bin_counts,
    categorical_bins,
    feature_drift,
    numeric_bins,
    psi_from_counts,
)
from monitoring.fields import field_alerts
from monitoring.performance import calibration_shifts, estimate, realized, recalibrated

PREDICTION = "prediction"  # the drift subject of the model's output
WEEK = timedelta(days=7)


@dataclass
class Reference:
    """What windows are compared with: per-feature values and bins, and the model's validation AUC."""

    values: dict[str, np.ndarray]
    bins: dict[str, Bins]
    auc: float | None
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # per-bin counts of all reference rows
    sorted: dict[str, SortedSample] = field(default_factory=dict)  # the numeric samples, sorted once
    calibration: tuple[float, float] | None = None  # (a, b) of performance.recalibration
    calibration_cov: np.ndarray | None = None  # its covariance (performance.recalibration_cov)

    @classmethod
    def of(cls, frame: pl.DataFrame, probability: np.ndarray, features: list[str], bins: int,
           auc: float | None, sample_rows: int, seed: int = 0) -> Reference:
        """Bins and counts from every reference row; the values kept for the tests are a sample of
        at most ``sample_rows`` rows (drawn once, shared by every window)."""
        if frame.height > sample_rows:
            keep = np.sort(np.random.default_rng(seed).choice(frame.height, size=sample_rows, replace=False))
            sample, sample_p = frame[keep], np.asarray(probability)[keep]
        else:
            sample, sample_p = frame, np.asarray(probability)
        full = cls._values(frame, probability, features)
        specs = {name: (categorical_bins(v) if v.dtype == object else numeric_bins(v, bins))
                 for name, v in full.items()}
        counts = {name: bin_counts(v, specs[name]) for name, v in full.items()}
        values = cls._values(sample, sample_p, features)
        ordered = {name: SortedSample.of(v) for name, v in values.items() if specs[name].edges is not None}
        return cls(values, specs, auc, counts, ordered)

    @staticmethod
    def _values(frame: pl.DataFrame, probability: np.ndarray, features: list[str]) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {PREDICTION: np.asarray(probability, dtype=np.float64)}
        for name in features:
            column = frame.get_column(name)
            if column.dtype == pl.String:
                values[name] = np.array(column.to_list(), dtype=object)
            else:
                values[name] = column.cast(pl.Float64).fill_null(np.nan).to_numpy()
        return values


@dataclass
class Window:
    """One window of one model version (see ``monitoring.stage.monitor`` for the JSON shape)."""

    start: datetime
    end: datetime
    model_version: str
    predictions: int
    mean_probability: float
    labelled: bool
    realized: dict[str, Any]
    estimated: dict[str, float]
    drift: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    week_psi: dict[str, float] = field(default_factory=dict)
    selection_ratio: dict[str, tuple[float, float]] = field(default_factory=dict)  # (ratio, upper end)
    volume_ratio: float | None = None
    fields: list[dict[str, Any]] = field(default_factory=list)  # event-field arrival vs a week earlier

    def to_json(self) -> dict[str, Any]:
        r = self.realized if self.labelled else {}
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "model_version": self.model_version, "predictions": self.predictions,
                "mean_probability": self.mean_probability, "labelled": self.labelled,
                "realized_rate": r.get("realized_rate"), "realized_auc": r.get("realized_auc"),
                "log_loss": r.get("log_loss"), "ece": r.get("ece"), "reliability": r.get("reliability"),
                "estimated_auc": self.estimated["auc"], "estimated_auc_low": self.estimated["low"],
                "estimated_auc_high": self.estimated["high"],
                "estimated_log_loss": self.estimated["log_loss"],
                "estimated_auc_correction": self.estimated.get("correction"),
                "drift": self.drift, "drift_week_over_week": self.week_psi,
                "selection_ratio": {k: v[0] for k, v in self.selection_ratio.items()},
                "selection_ratio_high": {k: v[1] for k, v in self.selection_ratio.items()},
                "volume_ratio": self.volume_ratio, "fields": self.fields}


def performance_of(slim: pl.DataFrame, cfg: MonitorConfig, seed: int,
                   calibration: tuple[float, float] | None = None, cov: np.ndarray | None = None
                   ) -> tuple[bool, dict[str, Any], dict[str, float]]:
    """(labelled, realised metrics, estimate) of a window's ``probability`` and ``label`` columns;
    the estimate draws the labels from the probabilities recalibrated by ``calibration`` and, with its
    covariance ``cov``, carries the error of that map too
    (:func:`monitoring.performance.calibration_shifts`)."""
    p = slim.get_column("probability").to_numpy()
    labels = slim.get_column("label")
    labelled = slim.height > 0 and labels.null_count() == 0
    real = realized(labels.to_numpy(), p, cfg.calibration.bins) if labelled else {}
    samples = cfg.performance.samples
    shifts = (calibration_shifts(p, calibration, cov, samples, np.random.default_rng([seed, 1]))
              if calibration is not None and cov is not None else None)
    est = estimate(p, samples, cfg.performance.interval, seed,
                   recalibrated(p, calibration) if calibration is not None else None, shifts)
    return labelled, real, {"auc": est.auc, "low": est.low, "high": est.high, "log_loss": est.log_loss}


def drift_of(current: pl.DataFrame, probability: np.ndarray, ref: Reference, cfg: MonitorConfig,
             rng: np.random.Generator) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """PSI and test p-value per feature (and the prediction) against the reference; also the bin
    counts, kept for the week-over-week comparison. The numeric columns leave Polars as one matrix
    and categories are counted in Polars (no per-value Python)."""
    out: dict[str, dict[str, float]] = {}
    counts: dict[str, np.ndarray] = {}
    numeric = [n for n, s in ref.bins.items() if s.edges is not None and n in current.columns]
    matrix = (current.select(pl.col(n).cast(pl.Float64).fill_null(np.nan) for n in numeric).to_numpy()
              if numeric else np.empty((current.height, 0)))
    for name, spec in ref.bins.items():
        values: np.ndarray | pl.Series
        if name == PREDICTION:
            values = np.asarray(probability, dtype=np.float64)
        elif name not in current.columns:
            continue
        elif spec.categories is not None:
            values = current.get_column(name)
        else:
            values = matrix[:, numeric.index(name)]
        if len(values) == 0:
            continue
        stat = feature_drift(ref.values[name], values, spec, cfg.drift.test_sample_rows, rng,
                             ref.counts.get(name), ref.sorted.get(name))
        out[name] = {"psi": stat.psi, "p_value": stat.p_value}
        counts[name] = stat.counts
    return out, counts


def _group_codes(column: pl.Series) -> np.ndarray:
    """Group names (null: "unknown", as :func:`fairness.audit.group_labels`) as integer codes in the
    names' sorted order (so the bootstrap draws the cells in the same order as with the names)."""
    names = column.cast(pl.String).fill_null(MISSING_GROUP)
    return (names.rank("dense").cast(pl.Int64) - 1).to_numpy()


def selection_ratios(slim: pl.DataFrame, cfg: MonitorConfig) -> dict[str, tuple[float, float]]:
    """(ratio, upper end of its 95% bootstrap interval) per sensitive feature: min/max selection rate
    over the judged groups (the audit's rule: the top share of the window's probabilities is
    selected; the interval as the gate's, :func:`fairness.audit.metric_intervals`)."""
    p = slim.get_column("probability").to_numpy()
    if len(p) == 0:
        return {}
    selected = p >= selection_threshold(p, cfg.fairness.top_share)
    out = {}
    for name in cfg.fairness.sensitive_features:
        if name not in slim.columns:
            continue
        groups = _group_codes(slim.get_column(name))
        frame = pl.DataFrame({"g": groups, "s": selected})
        rates = frame.group_by("g").agg(pl.col("s").mean(), pl.len()).filter(
            pl.col("len") >= cfg.fairness.min_group_size)
        share = rates.get_column("s").to_numpy()
        if len(share) >= 2 and share.max() > 0:
            ci = metric_intervals(np.zeros(len(p), dtype=int), selected.astype(int), groups,
                                  rates.get_column("g").to_list(), n_boot=200, seed=cfg.seed)
            out[name] = (float(share.min() / share.max()), ci["demographic_parity_ratio"][1])
    return out


def compare_weeks(windows: list[Window]) -> None:
    """Fill ``week_psi`` and ``volume_ratio`` from the window of the same version one week earlier."""
    by_key = {(w.start, w.model_version): w for w in windows}
    for w in windows:
        before = by_key.get((w.start - WEEK, w.model_version))
        if before is None:
            continue
        w.volume_ratio = w.predictions / before.predictions if before.predictions else None
        w.week_psi = {name: psi_from_counts(before.counts[name], c)
                      for name, c in w.counts.items() if name in before.counts}


def _alert(w: Window, kind: str, subject: str, value: float, threshold: float) -> dict[str, Any]:
    return {"window_start": w.start.isoformat(), "model_version": w.model_version, "kind": kind,
            "subject": subject, "value": value, "threshold": threshold}


def correct_estimates(windows: list[Window], horizon: timedelta, keep: int) -> None:
    """Shift each window's estimated AUC (and its interval) by the mean gap ``realised - estimated``
    of the last ``keep`` windows of its version whose labels had arrived when it closed (their end
    plus the horizon not after its end): a model whose ranking is worse than its calibrated
    probabilities promise (the estimate's blind spot) shows that gap on every window. The interval's
    half-widths grow by ``sqrt(1 + 1/k)`` for the noise of a mean over ``k`` windows."""
    def known(w: Window) -> bool:
        return w.labelled and not math.isnan(w.realized.get("realized_auc", math.nan)) \
            and not math.isnan(w.estimated["auc"])
    done = sorted((w for w in windows if known(w)), key=lambda w: w.end)
    for w in windows:
        gaps = [v.realized["realized_auc"] - v.estimated["auc"] for v in done
                if v.model_version == w.model_version and v.end + horizon <= w.end][-keep:]
        if not gaps or math.isnan(w.estimated["auc"]):
            continue
        shift, widen = float(np.mean(gaps)), math.sqrt(1 + 1 / len(gaps))
        auc = w.estimated["auc"]
        w.estimated.update(auc=auc + shift, low=auc + shift - (auc - w.estimated["low"]) * widen,
                           high=auc + shift + (w.estimated["high"] - auc) * widen, correction=shift)


def drift_alerts(w: Window, cfg: MonitorConfig, feeds: dict[str, list[str]]) -> list[dict[str, Any]]:
    """A window's drift alerts: features and prediction (module docstring), then the model inputs
    whose event field stopped (or started) arriving (:mod:`monitoring.fields`), once per input."""
    d = cfg.drift
    out: list[dict[str, Any]] = []
    if w.predictions >= d.min_rows:
        for name, stat in w.drift.items():
            if name in d.not_alerted:
                continue
            week = w.week_psi.get(name) if d.compare == "weekday" else None
            like = week is None or (not math.isnan(week) and week > d.psi_threshold)
            if stat["psi"] > d.psi_threshold and stat["p_value"] < d.p_value_threshold and like:
                out.append(_alert(w, "drift", name, stat["psi"], d.psi_threshold))
    seen = {a["subject"] for a in out} | set(d.not_alerted)
    for feature, change in field_alerts(w.fields, feeds, d.psi_threshold, d.p_value_threshold):
        if feature not in seen:
            seen.add(feature)
            out.append({**_alert(w, "drift", feature, change["psi"], d.psi_threshold),
                        "field": change["field"], "slice": change["slice"],
                        "share": change["share"], "share_before": change["share_before"]})
    return out


def alerts(windows: list[Window], ref: Reference, cfg: MonitorConfig,
           feeds: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The alert rules (module docstring) over reported windows, in window order; ``feeds``: event
    field -> the model inputs computed from it."""
    out: list[dict[str, Any]] = []
    for w in windows:
        out += drift_alerts(w, cfg, feeds or {})
        if ref.auc is not None:
            floor = ref.auc - cfg.performance.auc_drop
            real = w.realized.get("realized_auc") if w.labelled else None
            if real is not None and real < floor:
                out.append(_alert(w, "performance", "realized_auc", real, floor))
            if not w.labelled and w.estimated["auc"] < floor:
                out.append(_alert(w, "performance", "estimated_auc", w.estimated["auc"], floor))
        if w.labelled and w.realized.get("realized_rate"):
            gap = abs(w.mean_probability - w.realized["realized_rate"]) / w.realized["realized_rate"]
            if gap > cfg.calibration.max_relative_gap:
                out.append(_alert(w, "calibration", "relative_gap", gap, cfg.calibration.max_relative_gap))
        for name, (ratio, high) in w.selection_ratio.items():
            if high < cfg.fairness.min_ratio:  # like the gate: the whole interval below the limit
                out.append(_alert(w, "fairness", name, ratio, cfg.fairness.min_ratio))
        v = w.volume_ratio
        if v is not None and not cfg.volume.min_ratio <= v <= cfg.volume.max_ratio:
            bound = cfg.volume.min_ratio if v < cfg.volume.min_ratio else cfg.volume.max_ratio
            out.append(_alert(w, "volume", "predictions", v, bound))
    return out
