"""The Optuna search over model families: prepared matrices, the objective, study storage, workers.

One trial = one family and its hyper-parameters, fitted on the training snapshots and scored by
ROC AUC on the validation snapshot (maximised). Intermediate AUCs feed the pruner. Each trial can
be logged as a light nested MLflow run (params + metrics, no artefacts). With ``workers > 1`` the
trials run in spawned processes that share one study through a persistent storage (a journal file
by default, or the configured SQLite/PostgreSQL URL).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import polars as pl
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from features import registry
from propensity.paths import work_dir
from propensity.progress import Progress
from training.config import TrainConfig
from training.families import N_STEPS, FitContext, get_family
from training.preprocess import FeatureEncoder

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Prepared:
    """Training and validation frames with their encoded matrices (one encoder per scaling mode)."""

    train: pl.DataFrame
    valid: pl.DataFrame
    numeric: list[str]
    categorical: list[str]
    y_train: np.ndarray
    y_valid: np.ndarray
    w_train: np.ndarray | None = None  # sample weights of the training rows (None: equal)
    encoders: dict[bool, FeatureEncoder] = field(default_factory=dict)
    matrices: dict[bool, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def encoded(self, scale: bool) -> tuple[FeatureEncoder, np.ndarray, np.ndarray]:
        """The encoder fitted on the training rows and the (train, valid) matrices it produces."""
        if scale not in self.encoders:
            enc = FeatureEncoder(self.numeric, self.categorical, scale=scale).fit(self.train)
            self.encoders[scale] = enc
            self.matrices[scale] = (enc.transform(self.train), enc.transform(self.valid))
        X_train, X_valid = self.matrices[scale]
        return self.encoders[scale], X_train, X_valid


def prepare(train: pl.DataFrame, valid: pl.DataFrame, numeric: list[str], categorical: list[str],
            w_train: np.ndarray | None = None) -> Prepared:
    """Bundle the split with its labels and the training rows' sample weights (None: equal); matrices
    are encoded lazily per scaling mode."""
    label = registry.LABEL_COLUMN
    if w_train is not None and len(w_train) != train.height:
        raise ValueError(f"{len(w_train)} sample weights for {train.height} training rows")
    return Prepared(train, valid, numeric, categorical,
                    train.get_column(label).to_numpy().astype(np.int64),
                    valid.get_column(label).to_numpy().astype(np.int64), w_train)


@dataclass
class Fitted:
    """A fitted candidate: family, parameters, encoder and estimator, with its validation AUC."""

    trial: int
    family: str
    params: dict[str, Any]
    encoder: FeatureEncoder
    estimator: Any
    auc: float


def family_params(trial_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split Optuna's flat params ({"family", "xgboost.max_depth", ...}) into (family, params)."""
    family = str(trial_params["family"])
    prefix = family + "."
    return family, {k[len(prefix):]: v for k, v in trial_params.items() if k.startswith(prefix)}


def fit_candidate(data: Prepared, family: str, params: dict[str, Any], seed: int, threads: int,
                  report: Callable[[int, float], None] | None = None) -> tuple[FeatureEncoder, Any, float]:
    """Fit one family with ``params``; returns (encoder, estimator, validation AUC)."""
    fam = get_family(family)
    enc, X_train, X_valid = data.encoded(fam.needs_scaling)
    n_threads = effective_threads(threads, len(X_train))
    ctx = FitContext(X_valid, data.y_valid, seed, n_threads, report, data.w_train)
    with threadpool_limits(limits=n_threads):  # OpenMP/BLAS pools of scikit-learn
        est = fam.fit(X_train, data.y_train, params, ctx)
    auc = float(roc_auc_score(data.y_valid, fam.predict(est, X_valid)))
    return enc, est, auc


def refit_candidate(best: Fitted, data: Prepared, half_life_days: float | None, seed: int,
                    threads: int) -> Fitted:
    """``best``'s family and parameters fitted again on the training and validation rows together
    (a new encoder; recency weights, when ``half_life_days`` is set, counted from the validation
    snapshot), with the budget the search chose (rounds, trees, iterations: no early stopping to
    redo). Its ``auc`` stays the held-out one of ``best``: the validation rows are no longer unseen."""
    from training.data import recency_weights

    rows = pl.concat([data.train, data.valid], how="vertical_relaxed")
    weights = recency_weights(rows.get_column("as_of"), half_life_days)
    both = prepare(rows, data.valid, data.numeric, data.categorical, weights)
    encoder, estimator, _ = fit_candidate(both, best.family, best.params, seed, threads)
    return Fitted(best.trial, best.family, best.params, encoder, estimator, best.auc)


def effective_threads(threads: int, n_rows: int) -> int:
    """Threads for one fit: the configured number, or with 0 ("auto") one thread below 50,000 rows
    (thread start-up and spin-waits cost more than they save there) and all cores above."""
    if threads > 0:
        return threads
    return 1 if n_rows < 50_000 else (os.cpu_count() or 1)


class Objective:
    """The Optuna objective; keeps the best fitted candidate of this process in memory."""

    def __init__(self, data: Prepared, cfg: TrainConfig, tracking: tuple[str, str, str] | None,
                 progress: Progress | None = None, total: int | None = None) -> None:
        self.data, self.cfg, self.tracking, self.progress, self.total = data, cfg, tracking, progress, total
        self.best: Fitted | None = None
        self.done = 0
        timeout = cfg.search.timeout_s
        # Optuna checks its timeout between trials only; a long trial past the budget is cut at its
        # next report once some trial has completed (so a search always yields a model).
        self.deadline = time.monotonic() + timeout if timeout is not None else math.inf

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        family = trial.suggest_categorical("family", list(self.cfg.search.families))
        params = get_family(family).suggest(trial)
        started = time.perf_counter()

        def report(step: int, auc: float) -> None:
            trial.report(auc, step)
            if step < N_STEPS - 1 and trial.should_prune():
                raise optuna.TrialPruned(f"validation AUC {auc:.4f} at step {step}")
            if step < N_STEPS - 1 and self.best is not None and time.monotonic() > self.deadline:
                raise optuna.TrialPruned("search time budget exhausted")

        try:
            enc, est, auc = fit_candidate(self.data, family, params, self.cfg.seed, self.cfg.search.threads,
                                          report)
        except optuna.TrialPruned:
            self._log(trial, family, params, None, time.perf_counter() - started, "PRUNED")
            raise
        if self.best is None or auc > self.best.auc:
            self.best = Fitted(trial.number, family, params, enc, est, auc)
        self._log(trial, family, params, auc, time.perf_counter() - started, "COMPLETE")
        return auc

    def _log(self, trial: optuna.Trial, family: str, params: dict[str, Any], auc: float | None,
             seconds: float, state: str) -> None:
        self.done += 1
        if self.progress is not None:
            total = f"/{self.total}" if self.total else ""
            best = f", best {self.best.auc:.4f} ({self.best.family})" if self.best else ""
            score = f"auc {auc:.4f}" if auc is not None else "pruned"
            self.progress(f"trial {self.done}{total}: {family} {score} in {seconds:.1f}s{best}")
        if self.tracking is None or not self.cfg.tracking.log_trials:
            return
        uri, experiment_id, parent = self.tracking
        client = MlflowClient(uri)
        run = client.create_run(experiment_id, run_name=f"trial-{trial.number}",
                                tags={"mlflow.parentRunId": parent, "family": family, "state": state})
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metrics = [Metric("fit_seconds", seconds, now, 0)]
        if auc is not None:
            metrics.append(Metric("val_auc", auc, now, 0))
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("family", family)] + [Param(k, str(v)) for k, v in params.items()])
        client.set_terminated(run.info.run_id, "FINISHED" if state == "COMPLETE" else "KILLED")


def make_storage(url: str | None, workers: int) -> Any:
    """None → in memory (one worker) or a journal file under the work folder; otherwise the URL (RDB)."""
    if url is None:
        if workers <= 1:
            return None
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str((work_dir() / "optuna-journal.log").resolve())))
    if url.startswith("postgresql"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    return url


def make_study(cfg: TrainConfig, study_name: str, storage: Any, seed: int) -> optuna.Study:
    """Create (or join) the study: seeded TPE, the configured pruner, maximising validation AUC."""
    with warnings.catch_warnings():  # multivariate/group TPE are "experimental" (stable since Optuna 2.x)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                             n_startup_trials=max(5, len(cfg.search.families)))
    pruner: optuna.pruners.BasePruner
    if cfg.search.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=max(4, len(cfg.search.families)),
                                             n_warmup_steps=1)
    elif cfg.search.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=N_STEPS, reduction_factor=2)
    else:
        pruner = optuna.pruners.NopPruner()
    return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                               direction="maximize", load_if_exists=True)


def enqueue_defaults(study: optuna.Study, families: list[str], only_new: bool = True) -> None:
    """Queue each family's default parameters (a sensible baseline per family); with ``only_new``,
    only on a study without trials (queued ones included)."""
    if only_new and study.trials:
        return
    for family in families:
        fam = get_family(family)
        study.enqueue_trial({"family": family, **{f"{family}.{k}": v for k, v in fam.defaults.items()}})


def run_trials(study: optuna.Study, objective: Objective, n_trials: int, timeout_s: float | None) -> None:
    """Run ``n_trials`` (or until ``timeout_s`` seconds) trials of ``objective`` in this process."""
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s, gc_after_trial=False,
                   catch=(), show_progress_bar=False)


@dataclass(frozen=True)
class WorkerTask:
    """Everything a spawned worker needs (picklable)."""

    data: Prepared
    cfg_json: str
    study_name: str
    storage_url: str | None
    journal: bool
    n_trials: int
    timeout_s: float | None
    tracking: tuple[str, str, str] | None
    worker: int


def _worker_main(task: WorkerTask) -> int:
    cfg = TrainConfig.model_validate_json(task.cfg_json)
    from training.tracking import quiet_mlflow

    quiet_mlflow()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(task.storage_url, 2 if task.journal else 1)
    study = make_study(cfg, task.study_name, storage, cfg.seed + task.worker)
    prefix = f"[worker {task.worker}] "

    def say(message: str) -> None:
        print(prefix + message, file=sys.stderr, flush=True)

    objective = Objective(task.data, cfg, task.tracking, say, task.n_trials)
    run_trials(study, objective, task.n_trials, task.timeout_s)
    return objective.done


def run_workers(data: Prepared, cfg: TrainConfig, study_name: str, n_trials: int, timeout_s: float | None,
                tracking: tuple[str, str, str] | None, workers: int) -> int:
    """Run ``n_trials`` split over ``workers`` spawned processes sharing the study; returns trials run."""
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    journal = cfg.search.storage is None
    tasks = [WorkerTask(data, cfg.model_dump_json(), study_name, cfg.search.storage, journal, share,
                        timeout_s, tracking, i) for i, share in enumerate(shares) if share > 0]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(tasks)) as pool:
        return sum(pool.map(_worker_main, tasks))


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """Per family: best validation AUC, its trial, complete and pruned trial counts (best first)."""
    rows: dict[str, dict[str, Any]] = {}
    for t in study.trials:
        family = t.params.get("family")
        if family is None:
            continue
        row = rows.setdefault(family, {"family": family, "best_auc": -math.inf, "best_trial": None,
                                       "complete": 0, "pruned": 0, "failed": 0})
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            row["complete"] += 1
            if t.value > row["best_auc"]:
                row["best_auc"], row["best_trial"] = t.value, t.number
        elif t.state == optuna.trial.TrialState.PRUNED:
            row["pruned"] += 1
        elif t.state == optuna.trial.TrialState.FAIL:
            row["failed"] += 1
    out = sorted(rows.values(), key=lambda r: -r["best_auc"])
    for r in out:
        if r["best_auc"] == -math.inf:
            r["best_auc"] = None
    return out
