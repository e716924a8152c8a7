"""Drift statistics of one feature between a reference sample and a current one: pure functions.

* **PSI** (population stability index) over bins: ``sum((a - e) * ln(a / e))`` with ``e`` and ``a``
  the reference and current shares of each bin. Numbers are binned at the reference's quantiles
  (``bins`` bins, fewer when values repeat); categories are their own bins; a missing value is
  always a bin of its own, so a field that stops arriving shows as drift. Empty bins get the share
  :data:`EPSILON` (the usual guard against ``ln 0``; Siddiqi, *Credit Risk Scorecards*, 2006).
* **Two-sample tests** (scipy): Kolmogorov-Smirnov on the non-missing numbers
  (``scipy.stats.ks_2samp``, two-sided; asymptotic p-values above 10^6 row pairs), plus a
  chi-square test of the missing share (a field that stops arriving), and Pearson's chi-square
  on the category counts, missing included (``scipy.stats.chi2_contingency`` without Yates' correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

EPSILON = 1e-4
MISSING = "<missing>"


@dataclass(frozen=True)
class Bins:
    """How a feature is binned: numeric edges (interior cut points) or the category names."""

    edges: np.ndarray | None = None
    categories: tuple[str, ...] | None = None


def numeric_bins(reference: np.ndarray, bins: int) -> Bins:
    """Interior cut points at the reference's quantiles 1/bins .. (bins-1)/bins (missing values ignored)."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Bins(edges=np.array([]))
    cuts = np.quantile(values, np.arange(1, bins) / bins)
    return Bins(edges=np.unique(cuts))


def categorical_bins(reference: np.ndarray) -> Bins:
    """The reference's categories (missing is added by :func:`bin_counts`)."""
    return Bins(categories=tuple(sorted({str(v) for v in reference if v is not None})))


def bin_counts(values: np.ndarray | pl.Series, spec: Bins) -> np.ndarray:
    """Counts per bin: numeric ``(-inf, c1], (c1, c2], ..., (ck, inf)`` then missing; categorical: the
    spec's categories, then any other category, then missing. Categorical ``values`` may be a Polars
    string column (counted without a Python loop)."""
    if spec.edges is not None:
        x = np.asarray(values, dtype=np.float64)
        missing = np.isnan(x)
        idx = np.searchsorted(spec.edges, x[~missing], side="left")
        found = np.bincount(idx, minlength=len(spec.edges) + 1)
        return np.append(found, missing.sum()).astype(np.float64)
    assert spec.categories is not None
    k = len(spec.categories)
    if isinstance(values, pl.Series):
        codes = values.cast(pl.String).replace_strict(list(spec.categories), list(range(k)), default=k,
                                                      return_dtype=pl.Int64)
        return np.bincount(codes.set(values.is_null(), k + 1).to_numpy(), minlength=k + 2).astype(np.float64)
    position = {c: i for i, c in enumerate(spec.categories)}
    counts = np.zeros(k + 2)
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            counts[-1] += 1
        else:
            counts[position.get(str(v), k)] += 1
    return counts


def psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two count vectors over the same bins (NaN when either side is empty)."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.sum() == 0 or a.sum() == 0:
        return math.nan
    e = np.maximum(e / e.sum(), EPSILON)
    a = np.maximum(a / a.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sided Kolmogorov-Smirnov p-value on the non-missing numbers (NaN when a side is empty)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return math.nan
    # the exact distribution (scipy's choice up to 10 000 rows a side) costs ~0.1 s a call on large
    # samples; the asymptotic one is accurate there
    if x.size * y.size <= 1_000_000:
        return float(stats.ks_2samp(x, y, method="auto").pvalue)
    return ks_p_value_sorted(SortedSample.of(x), y)


@dataclass(frozen=True)
class SortedSample:
    """A sample's non-missing numbers, sorted, with the count of values at or below each one (a
    reference sample is sorted once and tested against every window)."""

    values: np.ndarray
    at_or_below: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> SortedSample:
        x = np.sort(np.asarray(values, dtype=np.float64))
        x = x[~np.isnan(x)]
        if x.size == 0:
            return cls(x, np.zeros(0, dtype=np.int64))
        last = np.flatnonzero(np.append(x[1:] != x[:-1], True))  # last index of each run of ties
        run = np.cumsum(np.insert(x[1:] != x[:-1], 0, False))
        return cls(x, last[run] + 1)


def ks_statistic(x: np.ndarray | SortedSample, y: np.ndarray | SortedSample) -> float:
    """The two-sided KS statistic of two non-empty samples (sorted arrays or :class:`SortedSample`):
    the largest gap of the empirical CDFs over all points, exactly as ``scipy.stats.ks_2samp``."""
    a = x if isinstance(x, SortedSample) else SortedSample.of(x)
    b = y if isinstance(y, SortedSample) else SortedSample.of(y)
    n1, n2 = a.values.size, b.values.size
    diff = np.concatenate([a.at_or_below / n1 - np.searchsorted(b.values, a.values, side="right") / n2,
                           np.searchsorted(a.values, b.values, side="right") / n1 - b.at_or_below / n2])
    return float(max(np.clip(-diff.min(), 0, 1), diff.max()))


def ks_p_value_sorted(reference: SortedSample, current: np.ndarray) -> float:
    """:func:`ks_p_value` with the reference sorted once."""
    y = SortedSample.of(current)
    if reference.values.size == 0 or y.values.size == 0:
        return math.nan
    if reference.values.size * y.values.size <= 1_000_000:
        return float(stats.ks_2samp(reference.values, y.values, method="auto").pvalue)
    d = ks_statistic(reference, y)
    return float(ks_asymptotic_p_values(np.array([d]), np.array([reference.values.size]),
                                        np.array([y.values.size]))[0])


def ks_asymptotic_p_values(d: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Smirnov's asymptotic two-sided p-values of KS statistics ``d`` for sample sizes ``n1``, ``n2``
    (scipy's ``ks_2samp(method="asymp")``: the ``kstwo`` law at the effective size), vectorised."""
    m, n = np.maximum(n1, n2).astype(np.float64), np.minimum(n1, n2).astype(np.float64)
    return np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1)


def chi2_p_value(expected: np.ndarray, actual: np.ndarray) -> float:
    """Pearson chi-square p-value of the 2 x k table of counts (bins empty on both sides dropped;
    no Yates correction). 1.0 when fewer than two bins are used."""
    table = np.vstack([expected, actual]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0 if table.shape[1] < 2 else math.nan
    return float(stats.chi2_contingency(table, correction=False).pvalue)


@dataclass(frozen=True)
class DriftStat:
    psi: float
    p_value: float
    test: str  # "ks" or "chi2"
    counts: np.ndarray  # the current sample's bin counts


def feature_drift(reference: np.ndarray, current: np.ndarray | pl.Series, spec: Bins, sample_rows: int,
                  rng: np.random.Generator, reference_counts: np.ndarray | None = None,
                  reference_sorted: SortedSample | None = None) -> DriftStat:
    """PSI on all rows (``reference_counts``: the reference's bin counts when ``reference`` is only a
    sample of it); the test on at most ``sample_rows`` rows per side (sampled without replacement),
    because with very large samples every trivial difference is significant."""
    ref_counts = bin_counts(reference, spec) if reference_counts is None else reference_counts
    cur_counts = bin_counts(current, spec)
    psi = psi_from_counts(ref_counts, cur_counts)
    if spec.edges is not None:
        if reference_sorted is not None and len(reference) <= sample_rows:  # (no draw for the reference)
            p = ks_p_value_sorted(reference_sorted, _sample(np.asarray(current), sample_rows, rng))
        else:
            p = ks_p_value(_sample(reference, sample_rows, rng),
                           _sample(np.asarray(current), sample_rows, rng))
        numeric_missing = (np.array([ref_counts[-1], ref_counts[:-1].sum()]),
                           np.array([cur_counts[-1], cur_counts[:-1].sum()]))
        # a field that stops arriving changes the missing share, which KS (non-missing values) cannot see
        p_missing = chi2_p_value(*scaled_counts(*numeric_missing, sample_rows))
        both = [v for v in (p, p_missing) if not math.isnan(v)]
        return DriftStat(psi, min(both) if both else math.nan, "ks", cur_counts)
    p_value = chi2_p_value(*scaled_counts(ref_counts, cur_counts, sample_rows))
    return DriftStat(psi, p_value, "chi2", cur_counts)


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= n else values[rng.choice(len(values), size=n, replace=False)]


def scaled_counts(expected: np.ndarray, actual: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts scaled down to at most ``n`` per side (the tests' sample size), rounded."""
    def one(c: np.ndarray) -> np.ndarray:
        total = c.sum()
        return np.round(c * (n / total)) if total > n else c
    return one(expected), one(actual)
