"""The ``train`` stage: time split, Optuna search, calibration, evaluation, MLflow logging, registration."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import polars as pl
from mlflow.data import from_polars  # type: ignore[attr-defined]
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema
from threadpoolctl import threadpool_limits

from features import registry
from propensity.errors import DataError
from propensity.redact import redact, redact_obj
from training import plots
from training.calibration import choose_calibration
from training.config import TrainConfig
from training.data import (
    Split,
    TrainingData,
    load_training_data,
    recency_weights,
    select_features,
    time_split,
    without_empty,
)
from training.evaluate import classification_metrics, permutation_importance
from training.families import get_family
from training.model import ConversionModel
from training.registry import log_conversion_model, register
from training.search import (
    Fitted,
    Objective,
    Prepared,
    enqueue_defaults,
    family_params,
    fit_candidate,
    leaderboard,
    make_storage,
    make_study,
    prepare,
    refit_candidate,
    run_trials,
    run_workers,
)
from training.tracking import git_commit, setup_tracking, ui_command

HEADLINE = ("auc", "pr_auc", "log_loss", "brier")
# shuffles per column: the importance plot shows their mean and spread (bar ± sd; grey when within
# 2 sd of 0). 3 rather than 5: each repeat costs one model call per input column on 2,000 rows.
PERMUTATION_REPEATS = 3


@dataclass
class TrainResult:
    """What a training run produced and where it is recorded."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    model_uri: str  # models:/NAME/VERSION
    registered_name: str
    registered_version: str
    metrics: dict[str, float]  # validation metrics of the registered (calibrated) model
    best_family: str
    best_params: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    calibration: str
    dataset_digest: str
    n_trials: int
    oracle_auc: float | None
    model: ConversionModel = field(repr=False)

    @property
    def ui_command(self) -> str:
        return ui_command(self.tracking_uri)

    def to_json(self) -> dict[str, Any]:
        """The ``propensity train --json`` document."""
        return {
            "tracking_uri": redact(self.tracking_uri),
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "registered_model": {"name": self.registered_name, "version": self.registered_version},
            "metrics": dict(self.metrics),
            "best": {"family": self.best_family, "params": dict(self.best_params)},
        }


ORACLE_COLUMNS: tuple[str, ...] = ("user_id", "as_of", "p_true")


def check_oracle_file(oracle_path: str | Path) -> Path:
    """The path of an existing oracle file with :data:`ORACLE_COLUMNS`; else a one-line :class:`DataError`."""
    path = Path(oracle_path)
    if not path.is_file():
        raise DataError(f"{path}: oracle file not found")
    try:
        present = pl.read_parquet_schema(path)
    except Exception as exc:  # arrow raises many types for a file that is not Parquet
        raise DataError(f"{path}: cannot read as an oracle file ({type(exc).__name__})") from None
    missing = [c for c in ORACLE_COLUMNS if c not in present]
    if missing:
        raise DataError(f"{path}: not an oracle file (missing column(s) {', '.join(missing)}; "
                        f"expected {', '.join(ORACLE_COLUMNS)})")
    return path


def oracle_auc(valid: pl.DataFrame, oracle_path: str | Path) -> float:
    """ROC AUC of the validation labels against the generator's true probability (``p_true``).

    Joins ``oracle.parquet`` (user_id, as_of, p_true) on (user_id, as_of); the best any model can do.
    """
    from sklearn.metrics import roc_auc_score

    path = check_oracle_file(oracle_path)
    keys = valid.select("user_id", "as_of", registry.LABEL_COLUMN)
    try:  # a file that happens to be called oracle.parquet must not end a training run with a traceback
        oracle = pl.read_parquet(path, columns=list(ORACLE_COLUMNS)).with_columns(
            pl.col("user_id").cast(pl.String), pl.col("as_of").cast(keys.schema["as_of"]),
            pl.col("p_true").cast(pl.Float64))
    except DataError:
        raise
    except Exception as exc:  # unreadable Parquet or columns of the wrong type
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as an oracle file ({first})") from None
    joined = keys.join(oracle, on=["user_id", "as_of"], how="inner")
    if joined.height < 0.9 * keys.height:
        raise DataError(f"{path}: oracle covers only {joined.height} of {keys.height} validation rows")
    return float(roc_auc_score(joined.get_column(registry.LABEL_COLUMN).to_numpy(),
                               joined.get_column("p_true").to_numpy()))


def find_oracle(meta: dict[str, Any]) -> Path | None:
    """``oracle.parquet`` next to the snapshot's source events file (a synthetic shop), if there is one."""
    events = (meta.get("sources") or {}).get("events") or {}
    path = events.get("path") if isinstance(events, dict) else None
    if not path:
        return None
    candidate = Path(path).parent / "oracle.parquet"
    return candidate if candidate.is_file() else None


def _oracle_auc(valid: pl.DataFrame, oracle: str | Path | None, meta: dict[str, Any],
                say: Any) -> float | None:
    if oracle is not None:
        return oracle_auc(valid, oracle)
    found = find_oracle(meta)
    if found is None:
        return None
    try:
        return oracle_auc(valid, found)
    except DataError as exc:  # found by convention, not asked for: report and go on
        say(f"oracle not used: {exc}")
        return None


def _search(data: Prepared, cfg: TrainConfig, study_name: str, tracking: tuple[str, str, str],
            progress: Any, seed_trials: list[dict[str, Any]]) -> tuple[optuna.Study, Objective | None, int]:
    workers = cfg.search.workers
    storage = make_storage(cfg.search.storage, workers)
    study = make_study(cfg, study_name, storage, cfg.seed)
    if not study.trials:  # a new study: the given starting points first, then each family's defaults
        for params in seed_trials:
            study.enqueue_trial(params)
        if cfg.search.enqueue_defaults:
            enqueue_defaults(study, list(cfg.search.families), only_new=False)
    n, timeout = cfg.search.n_trials, cfg.search.timeout_s
    if workers > 1:
        done = run_workers(data, cfg, study_name, n, timeout, tracking, workers)
        return study, None, done
    objective = Objective(data, cfg, tracking, progress, n)
    run_trials(study, objective, n, timeout)
    return study, objective, objective.done


def _prepared_split(source: TrainingData, cfg: TrainConfig, pre_transform: Any,
                    say: Any) -> tuple[Split, Prepared]:
    """The time split of the snapshot (after the pre-transform) and its encoded matrices."""
    frame = source.frame if pre_transform is None else pre_transform.transform(source.frame)
    numeric, categorical = select_features(frame, cfg.data, source.meta)
    split = time_split(frame, cfg.data, cfg.seed)
    numeric, categorical, empty = without_empty(split.train, numeric, categorical)
    if not numeric + categorical:
        raise DataError("every model feature column is empty in the training rows")
    if empty:
        say(f"left out (no values in the training rows): {', '.join(empty)}")
    say(f"data: {split.train.height} training rows ({', '.join(split.train_as_of)}), {split.valid.height} "
        f"validation rows ({', '.join(split.valid_as_of)}), {len(numeric) + len(categorical)} features")
    weights = recency_weights(split.train.get_column("as_of"), cfg.data.recency_half_life_days)
    if weights is not None:
        say(f"recency weighting (half-life {cfg.data.recency_half_life_days:g} days): training rows "
            f"weigh {weights.min():.2f} to {weights.max():.2f}")
    return split, prepare(split.train, split.valid, numeric, categorical, weights)


@dataclass
class _Final:
    """The calibrated best candidate with its validation scores and metrics."""

    model: ConversionModel
    metrics: dict[str, float]
    scored: np.ndarray
    y: np.ndarray
    losses: dict[str, float]


def _final_model(best: Fitted, data: Prepared, split: Split, source: TrainingData, cfg: TrainConfig,
                 run_id: str, pre_transform: Any, refit: Fitted | None = None) -> _Final:
    """Calibrate the best candidate on the validation rows and wrap it as a :class:`ConversionModel`;
    with ``refit`` (the same candidate refitted on training + validation rows) the model wraps the
    refit with that calibrator, and the metrics stay the held-out candidate's."""
    family = get_family(best.family)
    raw = family.predict(best.estimator, data.encoded(family.needs_scaling)[2])
    choice = choose_calibration(raw, data.y_valid, cfg.calibration, cfg.seed)
    metrics = classification_metrics(data.y_valid, choice.crossed)
    metrics["auc_uncalibrated"] = float(classification_metrics(data.y_valid, raw)["auc"])
    metadata = {"dataset_digest": source.digest, "run_id": run_id, "params": best.params,
                "calibration": choice.method, "valid_as_of": split.valid_as_of,
                "refit_with_validation": refit is not None, "feature_specs": _feature_specs(source.meta)}
    fitted = refit or best
    model = ConversionModel(best.family, fitted.encoder, fitted.estimator, choice.calibrator, pre_transform,
                            metadata=metadata)
    return _Final(model, metrics, choice.crossed, data.y_valid, choice.losses)


def train(features: str | Path | pl.DataFrame | pd.DataFrame, cfg: TrainConfig, *,
          oracle: str | Path | None = None, pre_transform: Any = None, progress: Any = None,
          seed_trials: list[dict[str, Any]] | None = None) -> TrainResult:
    """Search model families on a feature snapshot, register the best as ``cfg.tracking.registered_model``.

    ``features`` is a snapshot file (Parquet, written by ``propensity features``) or a frame with
    ``user_id``, ``as_of``, feature columns and ``label``. ``oracle`` is an optional
    ``oracle.parquet`` of the synthetic shop (default: the one next to the snapshot's source events
    file, when present): its AUC on the validation snapshot is logged next to the model's.
    ``pre_transform`` is an optional fitted object (``transform(frame) -> frame`` adding columns,
    ``assign_one(mapping) -> dict``; e.g. ``features.segments.segmenter.Segmenter``) applied before feature
    selection and stored in the model. ``seed_trials`` are Optuna parameter sets (``{"family": F,
    "F.param": value, ...}``) tried first, e.g. the champion's (``training.retrain``). ``progress``
    receives one human line per trial. Raises :class:`DataError` / :class:`ConfigError` for bad input.
    """
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    if oracle is not None:  # asked for explicitly: a bad file is an error before any work
        check_oracle_file(oracle)
    source = load_training_data(features)
    split, data = _prepared_split(source, cfg, pre_transform, say)
    tracking = cfg.tracking
    uri, experiment_id = setup_tracking(tracking.uri, tracking.experiment, tracking.artifact_location)
    study_name = cfg.search.study_name or f"propensity-{source.short_digest}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{source.short_digest[:8]}") as run:
        run_id = run.info.run_id
        _log_inputs(cfg, source, split, study_name, len(data.numeric + data.categorical))
        study, objective, done = _search(data, cfg, study_name, (uri, experiment_id, run_id), say,
                                         list(seed_trials or []))
        best = _best_candidate(study, objective, data, cfg)
        refit = None
        if cfg.data.refit_with_validation:
            say(f"refitting {best.family} on the training and validation rows ({split.valid_as_of[-1]})")
            refit = refit_candidate(best, data, cfg.data.recency_half_life_days, cfg.seed, cfg.search.threads)
        final = _final_model(best, data, split, source, cfg, run_id, pre_transform, refit)
        oracle_value = _oracle_auc(split.valid, oracle, source.meta, say)
        if oracle_value is not None:
            final.metrics["oracle_auc"] = oracle_value
            final.metrics["auc_gap_to_oracle"] = oracle_value - final.metrics["auc"]
        board = leaderboard(study)
        version = _record(final, study, board, split, source, cfg)
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    name = tracking.registered_model
    return TrainResult(uri, experiment_id, run_id, f"models:/{name}/{version}", name, version, final.metrics,
                       best.family, best.params, board, str(final.model.metadata["calibration"]),
                       source.digest, done, oracle_value, final.model)


def _record(final: _Final, study: optuna.Study, board: list[dict[str, Any]], split: Split,
            source: TrainingData, cfg: TrainConfig) -> str:
    """Log metrics, leaderboard, plots and the model to the active run; register it; returns the version."""
    model, metrics = final.model, final.metrics
    family, method, run_id = model.family, str(model.metadata["calibration"]), str(model.metadata["run_id"])
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    mlflow.log_metrics({f"calibration_log_loss_{k}": v for k, v in final.losses.items()})
    mlflow.log_params({"best_family": family, "calibration": method,
                       **{f"best.{k}": v for k, v in model.metadata["params"].items()}})
    mlflow.log_dict({"leaderboard": board}, "leaderboard.json")
    if cfg.tracking.plots:
        _log_plots(model, split.valid, final.y, final.scored, metrics, study, cfg.seed)
    info = _log_model(model, split.valid, source.frame)
    tags = {"dataset_digest": source.digest, "git_commit": git_commit() or "unknown", "family": family,
            "run_id": run_id, "calibration": method, **{k: f"{metrics[k]:.5f}" for k in HEADLINE}}
    description = describe_run(family, method, metrics, board, source.digest, split.valid_as_of)
    mlflow.set_tag("mlflow.note.content", description)  # the run's description in the MLflow UI
    return register(info.model_uri, cfg.tracking.registered_model, cfg.tracking.alias, tags,
                    description=description)


def _feature_specs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The feature definitions the model is trained with: the snapshot's (written by the feature
    build), else the configured set. Serving evaluates these, whatever its own configs/ say."""
    specs = meta.get("feature_specs")
    if specs:
        return list(specs)
    from features.feature_set import active_feature_set

    return active_feature_set().to_dicts()


def describe_run(family: str, calibration: str, metrics: dict[str, float], board: list[dict[str, Any]],
                 digest: str, valid_as_of: list[str]) -> str:
    """The run's and the model version's description: what was searched, what won, how well."""
    searched = ", ".join(f"{r['family']} ({r['complete']} trials)" for r in board)
    return (f"Optuna search over {searched}. Best: {family}, calibration {calibration}. Validation "
            f"(as_of {', '.join(valid_as_of)}): AUC {metrics['auc']:.4f}, PR AUC {metrics['pr_auc']:.4f}, "
            f"log loss {metrics['log_loss']:.4f}, Brier {metrics['brier']:.4f}. Snapshot {digest}.")


def _best_candidate(study: optuna.Study, objective: Objective | None, data: Prepared,
                    cfg: TrainConfig) -> Fitted:
    """The best trial's fitted model: kept in memory when it ran here, else refitted (same seed)."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise DataError("no trial completed (all pruned or failed); raise --trials or --timeout")
    best = study.best_trial
    if objective is not None and objective.best is not None and objective.best.trial == best.number:
        return objective.best
    family, params = family_params(best.params)
    encoder, estimator, auc = fit_candidate(data, family, params, cfg.seed, cfg.search.threads)
    return Fitted(best.number, family, params, encoder, estimator, auc)


def _log_inputs(cfg: TrainConfig, source: TrainingData, split: Split, study_name: str,
                n_features: int) -> None:
    mlflow.log_dict(redact_obj(cfg.model_dump(mode="json")), "config/train.json")  # no URL passwords
    mlflow.log_params({"seed": cfg.seed, "n_trials": cfg.search.n_trials, "workers": cfg.search.workers,
                       "families": ",".join(cfg.search.families), "pruner": cfg.search.pruner,
                       "study_name": study_name, "split": split.kind, "n_features": n_features,
                       "recency_half_life_days": cfg.data.recency_half_life_days,
                       "refit_with_validation": cfg.data.refit_with_validation,
                       "valid_as_of": ",".join(split.valid_as_of)})
    origin = source.source if source.source != "<frame>" else None
    dataset = from_polars(source.frame, source=origin, targets=registry.LABEL_COLUMN, name="snapshot",
                          digest=source.mlflow_digest)
    mlflow.log_input(dataset, context="training", tags={"snapshot_digest": source.digest})
    mlflow.set_tags({"dataset_digest": source.digest, "git_commit": git_commit() or "unknown"})


def _log_plots(model: ConversionModel, valid: pl.DataFrame, y: np.ndarray, p: np.ndarray,
               metrics: dict[str, float], study: optuna.Study, seed: int) -> None:
    # one thread per model call: on 2,000 rows a thread pool's start-up and spin-waits cost more than
    # they save (hist_gradient_boosting's OpenMP predict was most of the demo's training time)
    with threadpool_limits(limits=1):
        importance = permutation_importance(model.predict_matrix, model.transform(valid), y,
                                            model.encoder.column_groups(), seed,
                                            n_repeats=PERMUTATION_REPEATS)
    figures = {
        "roc": plots.roc_figure(y, p, metrics["auc"]),
        "precision_recall": plots.pr_figure(y, p, metrics["pr_auc"]),
        "calibration": plots.calibration_figure(y, p),
        "feature_importance": plots.importance_figure(importance, PERMUTATION_REPEATS),
        **plots.optuna_figures(study),
    }
    mlflow.log_dict({"permutation_importance_auc_drop": importance, "n_repeats": PERMUTATION_REPEATS},
                    "feature_importance.json")
    with tempfile.TemporaryDirectory() as tmp:
        plots.save_all(figures, Path(tmp))
        mlflow.log_artifacts(tmp, "plots")


def _log_model(model: ConversionModel, valid: pl.DataFrame, raw: pl.DataFrame) -> Any:
    # The pyfunc's inputs: raw snapshot columns the model (and its pre-transform) read.
    wanted = model.feature_names + list(getattr(model.pre_transform, "features_", []))
    columns = list(dict.fromkeys(c for c in wanted if c in raw.columns))
    example = valid.select(columns).head(5).to_pandas()
    inferred = infer_signature(example, model.predict_proba(example))
    # Every input column is optional: the model treats an absent column as missing values.
    assert inferred.inputs is not None
    inputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.inputs.inputs])
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs)
    return log_conversion_model(model, signature=signature, input_example=example)
