"""Factorial (multivariate) experiments: main effects and interactions by regression with robust errors.

Each unit has one level per factor (e.g. headline x call-to-action x recommender). Main effects
come from the additive model (the average effect of a level against the factor's reference level,
over the other factors); interactions come from the full model with all interaction terms. A binary
metric uses a logistic regression (estimates are log odds ratios), a continuous one ordinary least
squares (estimates in the metric's unit). Standard errors are heteroscedasticity-robust (HC1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from experiments.stats.errors import StatsInputError


@dataclass(frozen=True)
class FactorTerm:
    """One regression term: ``kind`` is "main" or "interaction"; ``term`` like "cta=buy x headline=b"."""

    term: str
    kind: str
    estimate: float
    std_error: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class FactorialResult:
    metric: str
    model: str
    scale: str
    n: int
    references: dict[str, str]
    terms: tuple[FactorTerm, ...]


def _dummies(frame: pd.DataFrame, factors: Sequence[str],
             references: Mapping[str, str]) -> dict[str, list[tuple[str, np.ndarray]]]:
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for f in factors:
        values = frame[f].astype(str).to_numpy()
        levels = sorted(set(values))
        if len(levels) < 2:
            raise StatsInputError(f"factor '{f}' has a single level; nothing to compare")
        ref = references.get(f, levels[0])
        if ref not in levels:
            raise StatsInputError(f"reference level '{ref}' of factor '{f}' does not occur in the data")
        out[f] = [(f"{f}={lv}", (values == lv).astype(float)) for lv in levels if lv != ref]
    return out


def _fit(y: np.ndarray, columns: dict[str, np.ndarray], binary: bool, alpha: float) -> pd.DataFrame:
    exog = pd.DataFrame({"const": np.ones(len(y)), **columns})
    model = sm.Logit(y, exog) if binary else sm.OLS(y, exog)
    fit = model.fit(disp=0, cov_type="HC1") if binary else model.fit(cov_type="HC1")
    ci = fit.conf_int(alpha)
    return pd.DataFrame({"estimate": fit.params, "std_error": fit.bse, "statistic": fit.tvalues,
                         "p_value": fit.pvalues, "ci_low": ci[0], "ci_high": ci[1]})


def factorial_effects(frame: pd.DataFrame, factors: Sequence[str], metric: str, binary: bool,
                      references: Mapping[str, str] | None = None, alpha: float = 0.05,
                      max_order: int = 2) -> FactorialResult:
    """Main effects and interactions up to ``max_order`` factors of ``metric`` (one row per unit)."""
    if len(factors) < 1:
        raise StatsInputError("a factorial analysis needs at least one factor")
    refs = dict(references or {})
    dummies = _dummies(frame, factors, refs)
    refs = {f: refs.get(f, sorted(set(frame[f].astype(str)))[0]) for f in factors}
    y = frame[metric].to_numpy(dtype=float)
    main_cols = {name: col for f in factors for name, col in dummies[f]}
    tables = [("main", _fit(y, main_cols, binary, alpha), list(main_cols))]
    inter_cols: dict[str, np.ndarray] = {}
    for order in range(2, min(max_order, len(factors)) + 1):
        for combo in itertools.combinations(factors, order):
            for parts in itertools.product(*(dummies[f] for f in combo)):
                name = " x ".join(p[0] for p in parts)
                inter_cols[name] = np.prod([p[1] for p in parts], axis=0)
    if inter_cols:
        tables.append(("interaction", _fit(y, {**main_cols, **inter_cols}, binary, alpha), list(inter_cols)))
    terms = [FactorTerm(term=name, kind=kind, **{k: float(v) for k, v in table.loc[name].items()})
             for kind, table, names in tables for name in names]
    if any(not math.isfinite(t.std_error) for t in terms):
        raise StatsInputError(f"factorial model for '{metric}' is not identifiable (empty factor cells?)")
    return FactorialResult(metric=metric, model="logit" if binary else "ols",
                           scale="log odds ratio" if binary else "difference in means", n=len(y),
                           references=refs, terms=tuple(terms))
