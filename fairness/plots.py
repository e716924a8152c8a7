"""SHAP figures for the audit report: beeswarm of the top columns and dependence plots of top features."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fairness.explain import Contributions  # noqa: E402
from reports.style import PALETTE, plot_style  # noqa: E402


def beeswarm(contributions: Contributions, X: np.ndarray, max_display: int = 12) -> Any:
    """shap's beeswarm of the transformed columns (colour = column value); returns the figure."""
    import shap

    explanation = shap.Explanation(values=contributions.values,
                                   base_values=np.full(len(X), contributions.base),
                                   data=X, feature_names=contributions.columns)
    with plot_style():
        plt.figure(figsize=(9, 6))
        shap.plots.beeswarm(explanation, max_display=max_display, show=False)
        fig = plt.gcf()
        fig.suptitle(f"SHAP values ({contributions.units}); colour = the column's value, low to high")
    return fig


def dependence(feature: str, values: np.ndarray, contribution: np.ndarray, units: str) -> Any:
    """Raw feature value against its (summed) SHAP contribution; categoricals as a strip per category."""
    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        numeric = np.asarray(values)
        try:
            xs = numeric.astype(np.float64)
            ax.scatter(xs, contribution, s=6, alpha=0.4, color=PALETTE["blue"])
        except (TypeError, ValueError):
            cats = sorted({str(v) for v in numeric})
            pos = {c: i for i, c in enumerate(cats)}
            jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(numeric))
            xs = np.array([pos[str(v)] for v in numeric]) + jitter
            ax.scatter(xs, contribution, s=6, alpha=0.4, color=PALETTE["blue"])
            ax.set_xticks(range(len(cats)), cats, rotation=30)
        ax.axhline(0, color="#888", lw=0.8)
        ax.set_xlabel(feature)
        ax.set_ylabel(f"SHAP ({units})")
        ax.set_title(f"Dependence: {feature} (each dot is one user)")
    return fig
