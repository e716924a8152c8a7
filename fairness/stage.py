"""The ``audit`` stage: score a snapshot with a registered model, audit, explain, report, record.

``audit_model`` loads the model from MLflow, takes sensitive attributes from the snapshot or the
users file (age → age band), audits the selection (``fairness.audit``), applies the gate, explains
the model with SHAP, optionally fits a Fairlearn mitigation (fitted on one half of the users,
compared on the other half), writes the HTML + JSON report and logs both to the model's MLflow run
with the tag ``fairness_gate`` (also set on the model version).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient

from fairness import plots
from fairness.audit import Audit, audit_arrays
from fairness.config import FairnessConfig, load_fairness_config
from fairness.explain import Explainer, global_importance
from fairness.gate import GateVerdict, evaluate_gate
from fairness.mitigation import MitigatedModel, mitigate
from fairness.promote import GATE_TAG
from fairness.report import audit_json, figure_png, full_json, write_report
from features import registry
from features.schema import age_band
from propensity.errors import DataError, PropensityError
from propensity.paths import work_dir
from propensity.progress import Progress, Tracker
from training.data import load_training_data
from training.model import ConversionModel
from training.registry import (
    load_model,
    log_conversion_model,
    register,
    resolve_version,
    tag_version,
    use_store,
)

COMPARED = ("auc", "accuracy", "selection_rate")
MITIGATION_EXPERIMENT = "propensity-mitigation"
# progress units of the audit's parts, about their share of the run time
_UNITS = {"load": 1, "audit": 3, "explain": 4, "mitigate": 6, "report": 1}


@dataclass
class AuditResult:
    """What an audit found and where it is recorded."""

    model_uri: str
    audit: Audit
    verdict: GateVerdict
    document: dict[str, Any]  # the full report JSON
    html_path: Path
    json_path: Path
    run_id: str | None = None
    registered: tuple[str, str] | None = None  # (name, version)
    mitigated_model: MitigatedModel | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``propensity audit --json`` document."""
        return audit_json(self.audit, self.verdict)


def with_sensitive(frame: pl.DataFrame, users_path: str | Path | None, needed: list[str]) -> pl.DataFrame:
    """``frame`` with the ``needed`` sensitive columns, joined from the users file when given.

    Users-file columns replace the snapshot's; ``age_band`` is derived from ``age`` when absent.
    Raises :class:`DataError` naming a sensitive feature found in neither source.
    """
    if users_path is not None:
        from features.ingest.validate import ingest_users

        users = ingest_users(users_path).clean
        cols = [c for c in ("age", "gender", "country") if c in users.columns]
        users = users.select(["user_id", *cols]).unique("user_id", keep="last")
        frame = frame.drop([c for c in cols if c in frame.columns]).join(users, on="user_id", how="left")
        if "age" in cols:
            frame = frame.drop("age_band", strict=False)
    if "age_band" in needed and "age_band" not in frame.columns and "age" in frame.columns:
        bands = [age_band(None if a is None else int(a)) for a in frame.get_column("age").to_list()]
        frame = frame.with_columns(pl.Series("age_band", bands, dtype=pl.String))
    for name in needed:
        if name not in frame.columns:
            raise DataError(f"sensitive feature '{name}' is neither in the snapshot nor in the users file")
    return frame


def _split_half(user_ids: list[str]) -> np.ndarray:
    """A stable split of users into two halves (True = fitting half), by a hash of the user id."""
    return np.array([hashlib.sha256(u.encode()).digest()[0] % 2 == 0 for u in user_ids])


def _audit(model: ConversionModel, frame: pl.DataFrame, cfg: FairnessConfig, intervals: bool = True) -> Audit:
    y = frame.get_column(registry.LABEL_COLUMN).to_numpy()
    decide = getattr(model, "decide", None)
    y_pred = decide(frame) if decide is not None else None
    sensitive = {name: frame.get_column(name).to_list() for name in cfg.sensitive_features}
    return audit_arrays(y, model.predict_proba(frame), sensitive, top_share=cfg.selection.top_share,
                        probability=cfg.selection.probability, min_group_size=cfg.min_group_size,
                        intersections=cfg.intersections, y_pred=y_pred,
                        intervals=_interval_method(cfg) if intervals else None,
                        level=cfg.confidence.level, n_boot=cfg.confidence.n_boot, seed=cfg.confidence.seed)


def _interval_method(cfg: FairnessConfig) -> str | None:
    return None if cfg.confidence.method == "off" else cfg.confidence.method


_ODDS_METRICS = ("equalized_odds", "equal_opportunity")  # metric name prefixes an odds constraint targets


def mitigation_constraint(verdict: GateVerdict, cfg: FairnessConfig) -> str:
    """The configured constraint; for ``auto``, equalized odds when an odds metric fails, else
    demographic parity."""
    if cfg.mitigation.constraint != "auto":
        return cfg.mitigation.constraint
    odds = any(f["metric"].startswith(_ODDS_METRICS) for f in verdict.failing)
    return "equalized_odds" if odds else "demographic_parity"


def worst_failing_feature(verdict: GateVerdict, cfg: FairnessConfig) -> str | None:
    """The plain sensitive feature with the largest violation, relative to its limit, of a metric the
    mitigation constraint targets (any failing metric when none of those fails)."""
    candidates = [f for f in verdict.failing if f["feature"] in cfg.sensitive_features]
    constraint = mitigation_constraint(verdict, cfg)
    targets = _ODDS_METRICS if constraint == "equalized_odds" else (constraint,)
    targeted = [f for f in candidates if f["metric"].startswith(targets)]
    if not candidates:
        return None

    def severity(item: dict[str, Any]) -> float:
        value, limit = float(item["value"]), float(item["limit"])
        return abs(value - limit) / limit if limit else abs(value)

    worst: str = max(targeted or candidates, key=severity)["feature"]
    return worst


def mitigation_comparison(model: ConversionModel, frame: pl.DataFrame, verdict: GateVerdict,
                          cfg: FairnessConfig, seed: int = 0) -> tuple[dict[str, Any], MitigatedModel] | None:
    """Fit the configured mitigation on half the users and audit before/after on the other half.

    The mitigated feature is ``cfg.mitigation.feature`` or the plain sensitive feature that fails
    worst (:func:`worst_failing_feature`); None when there is none. Returns (report section,
    mitigated model).
    """
    feature = cfg.mitigation.feature or worst_failing_feature(verdict, cfg)
    if feature is None:
        return None
    fit_rows = _split_half(frame.get_column("user_id").cast(pl.String).to_list())
    fit, held = frame.filter(pl.Series(fit_rows)), frame.filter(pl.Series(~fit_rows))
    constraint = mitigation_constraint(verdict, cfg)
    mitigated = mitigate(model, fit, fit.get_column(registry.LABEL_COLUMN).to_numpy(), feature,
                         method=cfg.mitigation.method, constraint=constraint, seed=seed)
    # point values compare before and after on the held-out half; the verdict of record is the main audit's
    before, after = _audit(model, held, cfg, intervals=False), _audit(mitigated, held, cfg, intervals=False)
    rows = []
    for label, audit in (("before", before), ("after", after)):
        row: dict[str, Any] = {"model": label, **{k: audit.overall[k] for k in COMPARED}}
        row.update(audit.features[feature].metrics)
        rows.append(row)
    section = {"method": cfg.mitigation.method, "constraint": constraint, "feature": feature,
               "rows_fit": fit.height, "rows_compared": held.height, "comparison": rows,
               "verdict_before": evaluate_gate(before, cfg.gate).verdict,
               "verdict_after": evaluate_gate(after, cfg.gate).verdict,
               "failing_after": evaluate_gate(after, cfg.gate).failing}
    return section, mitigated


def explain_section(model: ConversionModel, frame: pl.DataFrame, cfg: FairnessConfig,
                    seed: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """Global SHAP ranking (report section) and base64 figures: beeswarm and dependence plots."""
    base = model.base if isinstance(model, MitigatedModel) and model.base is not None else model
    n = min(cfg.explain.sample_rows, frame.height)
    sample = frame.sample(n, seed=seed) if n < frame.height else frame
    explainer = Explainer.for_model(base, background=sample)
    prepared = base._prepared(sample)
    X = base.encoder.transform(prepared)
    contributions = explainer.contributions(X)
    ranking = global_importance(explainer, contributions)
    images = {"SHAP beeswarm": figure_png(plots.beeswarm(contributions, X))}
    per_raw = explainer.by_raw_feature(contributions.values)
    for item in ranking[: cfg.explain.top_features]:
        name = item["feature"]
        if name not in prepared.columns:
            continue
        k = explainer.raw_names.index(name)
        values = prepared.get_column(name).to_numpy()
        images[f"SHAP dependence: {name}"] = figure_png(
            plots.dependence(name, values, per_raw[:, k], contributions.units))
    example = explainer.reasons(sample[:1], k=cfg.explain.reasons_k)[0]
    section = {"explainer": explainer.kind, "units": contributions.units, "base_value": contributions.base,
               "rows_explained": n, "shap_importance": ranking, "example_reasons": example}
    return section, images


def _data_facts(frame: pl.DataFrame, digest: str, origin: str) -> dict[str, Any]:
    """What the audit read: the snapshot's digest and file, and the audited cut-offs (ISO dates)."""
    as_of = (sorted({str(v)[:10] for v in frame.get_column("as_of").unique().to_list()})
             if "as_of" in frame.columns else [])
    return {"digest": digest, "source": origin, "as_of": as_of, "rows": frame.height}


def _record(run_id: str | None, registered: tuple[str, str] | None, verdict: str,
            paths: tuple[Path, ...]) -> None:
    client = MlflowClient()
    if run_id:
        for path in paths:
            client.log_artifact(run_id, str(path), "fairness")
        client.set_tag(run_id, GATE_TAG, verdict)
    if registered:
        tag_version(registered[0], registered[1], GATE_TAG, verdict)


def audit_model(model_uri: str, features_path: str | Path | pl.DataFrame,
                users_path: str | Path | None = None, cfg: FairnessConfig | None = None,
                out_dir: str | Path | None = None, *,
                mitigation: str = "auto", explain: bool = True, record: bool = True,
                progress: Progress | None = None) -> AuditResult:
    """Audit the model at ``model_uri`` (``models:/NAME/V``, ``models:/NAME@alias``, ``runs:/...``).

    ``features_path`` is a snapshot (file or frame) with ``label``; with ``snapshots: latest`` only
    its latest ``as_of`` is audited.

    ``mitigation``: "auto" (fit and compare only when the gate fails), "always" or "never".
    ``out_dir`` (default ``<work>/audit/<name>-<version>``) receives fairness_report.html/.json.
    ``record``: log the report to the model's run and set the ``fairness_gate`` tags.
    ``progress`` receives :class:`~propensity.progress.Step` messages.
    Raises :class:`PropensityError` for a model that cannot be loaded and :class:`DataError` for
    a bad snapshot or missing sensitive attributes.
    """
    cfg = cfg or load_fairness_config()
    planned = ["load", "audit", "report"] + ["explain"] * explain + ["mitigate"] * (mitigation == "always")
    track = Tracker(progress, sum(_UNITS[part] for part in planned), prefix="audit")
    track.begin(f"loading {model_uri}")
    use_store(cfg.tracking.uri)
    registered = resolve_version(model_uri)
    model = load_model(model_uri)
    source = load_training_data(features_path)
    frame = source.frame
    if registry.LABEL_COLUMN not in frame.columns or frame.height == 0:
        raise DataError("the audit needs a snapshot with rows and a 'label' column")
    if cfg.snapshots == "latest" and "as_of" in frame.columns:
        frame = frame.filter(pl.col("as_of") == pl.col("as_of").max())
    needed = list(dict.fromkeys(cfg.sensitive_features + [f for combo in cfg.intersections for f in combo]))
    frame = with_sensitive(frame, users_path, needed)
    track.advance(_UNITS["load"])
    track.begin(f"group metrics and their intervals on {frame.height} rows")
    audit = _audit(model, frame, cfg)
    verdict = evaluate_gate(audit, cfg.gate)
    track.advance(_UNITS["audit"])
    extra: dict[str, Any] = {"model": {"uri": model_uri, "family": model.family,
                                       "registered": list(registered) if registered else None},
                             "data": {**_data_facts(frame, source.digest, source.source),
                                      "min_group_size": cfg.min_group_size}}
    images: dict[str, str] = {}
    if explain:
        track.begin("SHAP explanations")
        section, images = explain_section(model, frame, cfg)
        extra.update(section)
        track.advance(_UNITS["explain"])
    mitigated = _mitigate(model, frame, verdict, cfg, mitigation, extra, track)
    track.begin("writing the report")
    doc = full_json(audit, verdict, extra)
    where = out_dir or work_dir() / "audit" / ("-".join(registered) if registered else "model")
    html_path, json_path = write_report(doc, images, where)
    run_id = model.metadata.get("run_id")
    if record:
        _record(run_id, registered, verdict.verdict, (html_path, json_path))
    track.finish("audit done")
    return AuditResult(model_uri, audit, verdict, doc, html_path, json_path, run_id, registered, mitigated)


def _mitigate(model: ConversionModel, frame: pl.DataFrame, verdict: GateVerdict, cfg: FairnessConfig,
              mitigation: str, extra: dict[str, Any], track: Tracker) -> MitigatedModel | None:
    """The mitigated model when ``mitigation`` asks for one (its comparison goes into ``extra``)."""
    if not (mitigation == "always" or (mitigation == "auto" and not verdict.passed)):
        return None
    more = _UNITS["mitigate"] if mitigation == "auto" else 0  # not planned until the gate failed
    track.begin("fitting a mitigated model", total=track.total + more)
    found = mitigation_comparison(model, frame, verdict, cfg)
    track.advance(_UNITS["mitigate"])
    if found is None:
        return None
    extra["mitigation"], mitigated = found
    return mitigated


def register_mitigated(result: AuditResult, name: str | None = None) -> str:
    """Log the audit's mitigated model as a pyfunc in a new run and register it; returns the version.

    It is registered under ``name`` (default: the audited model's name) with tags naming the
    mitigation and the base version; audit it like any other model before promoting it.
    """
    if result.mitigated_model is None:
        raise PropensityError("this audit has no mitigated model (the gate passed or mitigation was off)")
    import mlflow

    from training.tracking import setup_tracking

    model = result.mitigated_model
    target = name or (result.registered[0] if result.registered else "propensity-conversion")
    # Its own experiment (artifacts next to the store), never MLflow's "Default" one, whose
    # artifacts would land in ./mlruns of whatever folder the command runs in.
    _, experiment_id = setup_tracking(mlflow.get_tracking_uri(), MITIGATION_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"mitigated-{model.method}") as run:
        model.metadata["run_id"] = run.info.run_id
        info = log_conversion_model(model)
        mlflow.log_params({"mitigation": model.method, "sensitive_feature": model.sensitive_feature,
                           "base_model": result.model_uri})
    tags = {"mitigation": model.method, "sensitive_feature": model.sensitive_feature,
            "base_model": result.model_uri, "run_id": run.info.run_id, "family": model.family}
    return register(info.model_uri, target, "mitigated", tags)
