"""Diagnostic figures of a trained model: ROC, PR, calibration, feature importance, Optuna history.

Each function returns a matplotlib Figure (Agg backend); :func:`save_all` writes them as PNGs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def roc_figure(y: np.ndarray, p: np.ndarray, auc: float) -> Figure:
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
    ax.legend(loc="lower right")
    return fig


def pr_figure(y: np.ndarray, p: np.ndarray, pr_auc: float) -> Figure:
    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"model (AP {pr_auc:.3f})")
    ax.axhline(float(np.mean(y)), ls="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (validation)")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    frac, mean = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(mean, frac, "o-", label="model")
    top = max(float(mean.max()), float(frac.max()))
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate",
           title="Calibration (validation, quantile bins)")
    ax.legend(loc="upper left")
    return fig


def importance_figure(names: list[str], importance: np.ndarray, top: int = 25) -> Figure:
    order = np.argsort(importance)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(order) + 1.5))
    ax.barh([names[i] for i in order], importance[order])
    ax.set(xlabel="importance (drop in validation AUC when permuted)", title="Feature importance")
    fig.tight_layout()
    return fig


def optuna_figures(study: optuna.Study) -> dict[str, Figure]:
    """Optimisation history and (with ≥ 2 complete trials of varied params) parameter importances."""
    out: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

        out["optuna_history"] = _root(plot_optimization_history(study))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= 2:
            try:
                out["optuna_param_importances"] = _root(plot_param_importances(study))
            except (ValueError, RuntimeError):
                pass  # importances need at least one parameter that varies across complete trials
    return out


def _root(ax: Any) -> Figure:
    fig = ax.get_figure(root=True)
    assert fig is not None
    return fig


def save_all(figures: dict[str, Any], folder: Path) -> list[Path]:
    """Write each figure as ``<name>.png`` into ``folder`` and close it; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=72)
        plt.close(fig)
        paths.append(path)
    return paths
