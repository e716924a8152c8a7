"""Model families behind one interface: a search space, default parameters and a fit with pruning.

Every family fits on the encoded float32 matrix (see :mod:`training.preprocess`) and reports the
validation ROC AUC at ``N_STEPS`` evenly spaced points of its training budget (boosting rounds,
trees, iterations) through ``report(step, auc)``; the Optuna objective turns a bad report into a
pruned trial. ``predict(estimator, X)`` returns P(convert) as a 1-D float64 array.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

N_STEPS = 4
MAX_TREE_ROWS = 100_000  # bootstrap rows per random-forest tree, at most
Report = Callable[[int, float], None]


def _steps(total: int) -> list[int]:
    """Budget points at which a family reports: N_STEPS evenly spaced, the last one = total."""
    return sorted({max(1, round(total * (k + 1) / N_STEPS)) for k in range(N_STEPS)})


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else 0.5


@dataclass(frozen=True)
class FitContext:
    """What a fit needs besides the training matrix: validation data, seed, threads, a reporter and
    the training rows' sample weights (None: equal weights)."""

    X_val: np.ndarray
    y_val: np.ndarray
    seed: int
    threads: int  # 0 = all cores
    report: Report | None = None
    sample_weight: np.ndarray | None = None


class Family:
    """One model family: ``needs_scaling`` says whether its encoder standardises and imputes."""

    name: str = ""
    needs_scaling: bool = False
    defaults: dict[str, Any] = {}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample this family's hyper-parameters (Optuna names prefixed with the family)."""
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> Any:
        """Fit on ``X``, ``y`` with ``params``; reports validation AUC through ``ctx.report``."""
        raise NotImplementedError

    def predict(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        """P(convert) per row."""
        return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


class XGBoostFamily(Family):
    name = "xgboost"
    defaults = {"max_depth": 6, "learning_rate": 0.1, "n_rounds": 200, "min_child_weight": 1.0,
                "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("xgboost.max_depth", 2, 10),
            "learning_rate": trial.suggest_float("xgboost.learning_rate", 0.01, 0.3, log=True),
            "n_rounds": trial.suggest_int("xgboost.n_rounds", 50, 600, step=50),
            "min_child_weight": trial.suggest_float("xgboost.min_child_weight", 0.5, 50.0, log=True),
            "subsample": trial.suggest_float("xgboost.subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("xgboost.colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("xgboost.reg_lambda", 1e-3, 30.0, log=True),
        }

    @staticmethod
    def booster_params(params: dict[str, Any], seed: int, threads: int) -> dict[str, Any]:
        """The native ``xgboost.train`` parameters of a trial (also used by the bench baseline)."""
        return {
            "objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
            "max_depth": params["max_depth"], "eta": params["learning_rate"],
            "min_child_weight": params["min_child_weight"], "subsample": params["subsample"],
            "colsample_bytree": params["colsample_bytree"], "lambda": params["reg_lambda"],
            "seed": seed, "nthread": threads, "verbosity": 0,
        }

    def fit(self, X: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> xgb.Booster:
        dtrain = xgb.DMatrix(X, label=y, weight=ctx.sample_weight, nthread=ctx.threads)
        callbacks = [_XGBReport(ctx, _steps(params["n_rounds"]))] if ctx.report else None
        return xgb.train(self.booster_params(params, ctx.seed, ctx.threads), dtrain,
                         num_boost_round=int(params["n_rounds"]), callbacks=callbacks)

    def predict(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.inplace_predict(X, validate_features=False), dtype=np.float64)


class _XGBReport(xgb.callback.TrainingCallback):
    """Reports validation AUC at the budget points (one inplace prediction each)."""

    def __init__(self, ctx: FitContext, steps: list[int]) -> None:
        super().__init__()
        self.ctx, self.steps = ctx, steps

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        rounds = epoch + 1
        if rounds in self.steps and self.ctx.report is not None:
            p = model.inplace_predict(self.ctx.X_val, iteration_range=(0, rounds), validate_features=False)
            self.ctx.report(self.steps.index(rounds), _auc(self.ctx.y_val, p))
        return False


class HistGradientBoostingFamily(Family):
    name = "hist_gradient_boosting"
    defaults = {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                "l2_regularization": 0.01}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("hist_gradient_boosting.learning_rate", 0.01, 0.3, log=True),
            "max_iter": trial.suggest_int("hist_gradient_boosting.max_iter", 50, 500, step=50),
            "max_leaf_nodes": trial.suggest_int("hist_gradient_boosting.max_leaf_nodes", 8, 128, log=True),
            "min_samples_leaf": trial.suggest_int("hist_gradient_boosting.min_samples_leaf", 5, 200,
                                                  log=True),
            "l2_regularization": trial.suggest_float("hist_gradient_boosting.l2_regularization", 1e-4, 10.0,
                                                     log=True),
        }

    def fit(self, X: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> Any:
        model = HistGradientBoostingClassifier(
            learning_rate=params["learning_rate"], max_leaf_nodes=params["max_leaf_nodes"],
            min_samples_leaf=params["min_samples_leaf"], l2_regularization=params["l2_regularization"],
            early_stopping=False, warm_start=True, random_state=ctx.seed)
        for k, total in enumerate(_steps(int(params["max_iter"]))):
            model.set_params(max_iter=total)
            model.fit(X, y, sample_weight=ctx.sample_weight)
            if ctx.report:
                ctx.report(k, _auc(ctx.y_val, self.predict(model, ctx.X_val)))
        return model


class RandomForestFamily(Family):
    name = "random_forest"
    # Trees on bootstrap subsamples: scikit-learn's forest is the slowest family on a million rows.
    defaults = {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 20, "max_features": 0.3,
                "max_samples": 0.2}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "n_estimators": trial.suggest_int("random_forest.n_estimators", 50, 200, step=50),
            "max_depth": trial.suggest_int("random_forest.max_depth", 4, 14),
            "min_samples_leaf": trial.suggest_int("random_forest.min_samples_leaf", 5, 200, log=True),
            "max_features": trial.suggest_float("random_forest.max_features", 0.1, 0.5),
            "max_samples": trial.suggest_float("random_forest.max_samples", 0.05, 0.5),
        }

    def fit(self, X: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> Any:
        # Each tree sees at most MAX_TREE_ROWS bootstrap rows, so a forest's cost stays bounded on big data.
        max_samples = min(float(params["max_samples"]), MAX_TREE_ROWS / len(X))
        model = RandomForestClassifier(
            max_depth=params["max_depth"], min_samples_leaf=params["min_samples_leaf"],
            max_features=params["max_features"], max_samples=max_samples, bootstrap=True,
            warm_start=True, random_state=ctx.seed, n_jobs=ctx.threads)
        for k, total in enumerate(_steps(int(params["n_estimators"]))):
            model.set_params(n_estimators=total)
            model.fit(X, y, sample_weight=ctx.sample_weight)
            if ctx.report:
                ctx.report(k, _auc(ctx.y_val, self.predict(model, ctx.X_val)))
        return model


class LogisticRegressionFamily(Family):
    name = "logistic_regression"
    needs_scaling = True
    defaults = {"C": 1.0}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        # L2 only: lbfgs stays fast on a million rows, where saga (L1 / elastic net) takes minutes.
        return {"C": trial.suggest_float("logistic_regression.C", 1e-3, 100.0, log=True)}

    def fit(self, X: np.ndarray, y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> Any:
        model = LogisticRegression(C=params["C"], solver="lbfgs", max_iter=300, random_state=ctx.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y, sample_weight=ctx.sample_weight)
        if ctx.report:
            ctx.report(N_STEPS - 1, _auc(ctx.y_val, self.predict(model, ctx.X_val)))
        return model

    def predict(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        # In float64: scikit-learn computes a float32 matrix's dot product in float32, whose rounding
        # depends on the batch shape (one row vs many differed by ~6e-8; serving batches rows).
        return np.asarray(estimator.predict_proba(np.asarray(X, dtype=np.float64))[:, 1], dtype=np.float64)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    XGBoostFamily(), HistGradientBoostingFamily(), RandomForestFamily(), LogisticRegressionFamily())}


def get_family(name: str) -> Family:
    """The family called ``name``; ValueError for an unknown one (config validation prevents it)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None
