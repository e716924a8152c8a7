"""Multiple-comparison corrections of p-values (family-wise: Holm, Bonferroni; FDR: Benjamini-Hochberg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from experiments.stats.errors import StatsInputError

Correction = Literal["holm", "bh", "bonferroni", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "bonferroni", "none")
LABELS = {"holm": "Holm", "bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "no correction"}


def adjust_p_values(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Adjusted p-values in the input order, capped at 1. NaN inputs stay NaN and do not count.

    Holm: step-down max_{j<=i} (m - j + 1) p_(j); BH: step-up min_{j>=i} m p_(j) / j.
    """
    if method not in CORRECTIONS:
        raise StatsInputError(f"unknown correction '{method}', expected one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out.tolist()
    if method == "none":
        adj = q
    elif method == "bonferroni":
        adj = q * m
    else:
        order = np.argsort(q, kind="stable")
        ranked = q[order]
        if method == "holm":
            stepped = np.maximum.accumulate(ranked * (m - np.arange(m)))
        else:
            stepped = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = stepped
    out[ok] = np.minimum(adj, 1.0)
    return out.tolist()
