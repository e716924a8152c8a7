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

from reports.style import PALETTE, plot_style  # noqa: E402

# Readable MLflow artefacts: 7-inch square curves at 110 dpi are ~770 px wide.
CURVE_SIZE = (7, 7)
DPI = 110
# Optuna's parameter importances (fANOVA) mean little on a handful of trials: drawn from this many on.
MIN_TRIALS_FOR_PARAM_IMPORTANCE = 20


def roc_figure(y: np.ndarray, p: np.ndarray, auc: float) -> Figure:
    fpr, tpr, _ = roc_curve(y, p)
    with plot_style():
        fig, ax = plt.subplots(figsize=CURVE_SIZE)
        ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], "--", color=PALETTE["grey"], label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
        ax.legend(loc="lower right")
    return fig


def pr_figure(y: np.ndarray, p: np.ndarray, pr_auc: float) -> Figure:
    precision, recall, _ = precision_recall_curve(y, p)
    with plot_style():
        fig, ax = plt.subplots(figsize=CURVE_SIZE)
        ax.plot(recall, precision, label=f"model (AP {pr_auc:.3f})")
        ax.axhline(float(np.mean(y)), ls="--", color=PALETTE["grey"], label="base rate")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (validation)")
        ax.legend(loc="upper right")
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    frac, mean = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    with plot_style():
        fig, ax = plt.subplots(figsize=CURVE_SIZE)
        ax.plot(mean, frac, "o-", label="model")
        top = max(float(mean.max()), float(frac.max()))
        ax.plot([0, top], [0, top], "--", color=PALETTE["grey"], label="perfect")
        ax.set(xlabel="mean predicted probability", ylabel="observed conversion rate",
               title="Calibration (validation, quantile bins)")
        ax.legend(loc="upper left")
    return fig


def importance_figure(importance: dict[str, dict[str, float]], repeats: int, top: int = 25) -> Figure:
    """Permutation importance: mean AUC drop per input column with its spread over the repeats
    (bar = mean, whisker = ±1 standard deviation); grey bars are within 2 standard deviations of 0."""
    names = sorted(importance, key=lambda n: importance[n]["mean"], reverse=True)[:top][::-1]
    means = np.array([importance[n]["mean"] for n in names])
    stds = np.array([importance[n]["std"] for n in names])
    noise = means <= 2 * stds
    with plot_style():
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 2))
        ax.barh(names, means, xerr=stds, capsize=3,
                color=[PALETTE["grey"] if n else PALETTE["blue"] for n in noise])
        ax.axvline(0, color="black", lw=0.8)
        ax.set(xlabel=f"drop in validation AUC when the column is shuffled (mean ± sd of {repeats} repeats)",
               title="Permutation importance (grey: indistinguishable from noise)")
        ax.grid(axis="y", visible=False)
        fig.tight_layout()
    return fig


def optuna_figures(study: optuna.Study) -> dict[str, Figure]:
    """Optimisation history and (with enough complete trials of varied params) parameter importances.

    Optuna's matplotlib plots call ``plt.style.use("ggplot")``: drawn inside :func:`plot_style`,
    the process-wide style is restored afterwards, so later figures keep the palette.
    """
    out: dict[str, Figure] = {}
    with warnings.catch_warnings(), plot_style():
        warnings.simplefilter("ignore")
        from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

        axes = plot_optimization_history(study)
        axes.set(ylabel="validation ROC AUC", title="Optuna search: validation AUC per trial")
        history = _root(axes)
        history.set_size_inches(9, 5)
        out["optuna_history"] = history
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= MIN_TRIALS_FOR_PARAM_IMPORTANCE:
            try:
                importances = _root(plot_param_importances(study))
                importances.set_size_inches(9, 0.35 * len(study.best_params) + 2.5)
                out["optuna_param_importances"] = importances
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
        fig.savefig(path, dpi=DPI, facecolor="white")
        plt.close(fig)
        paths.append(path)
    return paths
