"""Turning snapshot columns into the numeric matrix an estimator sees, identically in batch and per row.

:class:`FeatureEncoder` follows the scikit-learn contract (``fit`` learns attributes ending in
``_``, ``transform`` never learns). Numeric columns pass through as float32 with NaN for missing;
categoricals are one-hot encoded over the categories seen in training (unknown or missing: all
zeros). With ``scale=True`` (linear models) numeric columns are median-imputed, standardised and
followed by a 0/1 missing indicator for every column that had missing values in training.
:meth:`FeatureEncoder.encode_one` builds the same row from a plain mapping without pandas, for
the serving fast path.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import polars as pl

Frame: TypeAlias = pd.DataFrame | pl.DataFrame
MAX_CATEGORIES = 50  # most frequent categories kept per column; the rest encode as unknown


def numeric_column(frame: Frame, name: str) -> np.ndarray:
    """Column ``name`` as float32 with NaN for null; all-NaN when the column is absent."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan, dtype=np.float32)
    if isinstance(frame, pl.DataFrame):
        series = frame.get_column(name)
        return series.cast(pl.Float32, strict=False).fill_null(float("nan")).to_numpy().astype(np.float32)
    values = pd.to_numeric(frame[name], errors="coerce")
    return values.to_numpy(dtype=np.float32, na_value=np.nan)


def category_key(value: Any) -> str | None:
    """The string a categorical value is matched by; None for null/NaN."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    return str(value)


def category_column(frame: Frame, name: str) -> list[str | None]:
    """Column ``name`` as strings (None for null); all None when the column is absent."""
    if name not in frame.columns:
        return [None] * len(frame)
    if isinstance(frame, pl.DataFrame):
        values = frame.get_column(name).to_list()
    else:
        values = frame[name].tolist()
    return [category_key(v) for v in values]


class FeatureEncoder:
    """Snapshot columns → float32 matrix; see the module docstring for the encoding."""

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], scale: bool = False) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.scale = scale

    def fit(self, frame: Frame) -> FeatureEncoder:
        """Learn categories (and medians, means, scales, missing columns when ``scale``)."""
        self.categories_: dict[str, list[str]] = {}
        for name in self.categorical:
            counts = pd.Series(category_column(frame, name), dtype=object).value_counts(dropna=True)
            top = sorted(counts.index[:MAX_CATEGORIES].tolist(), key=lambda c: (-counts[c], c))
            self.categories_[name] = sorted(top)
        self.medians_ = np.zeros(len(self.numeric), dtype=np.float32)
        self.means_ = np.zeros(len(self.numeric), dtype=np.float32)
        self.scales_ = np.ones(len(self.numeric), dtype=np.float32)
        self.missing_columns_: list[int] = []
        if self.scale:
            for i, name in enumerate(self.numeric):
                col = numeric_column(frame, name)
                missing = np.isnan(col)
                median = float(np.median(col[~missing])) if (~missing).any() else 0.0
                filled = np.where(missing, median, col)
                std = float(filled.std())
                self.medians_[i], self.means_[i] = median, float(filled.mean())
                self.scales_[i] = std if std > 0 else 1.0
                if missing.any():
                    self.missing_columns_.append(i)
        self._build_lookup()
        return self

    def _build_lookup(self) -> None:
        offset = len(self.numeric)
        self.code_: dict[str, dict[str, int]] = {}
        for name in self.categorical:
            self.code_[name] = {c: offset + j for j, c in enumerate(self.categories_[name])}
            offset += len(self.categories_[name])
        self.missing_offset_ = offset
        self.n_columns_ = offset + len(self.missing_columns_)

    @property
    def feature_names_out(self) -> list[str]:
        """Names of the output columns, in order."""
        names = list(self.numeric)
        for name in self.categorical:
            names += [f"{name}={c}" for c in self.categories_[name]]
        names += [f"{self.numeric[i]}__missing" for i in self.missing_columns_]
        return names

    def transform(self, frame: Frame) -> np.ndarray:
        """The float32 matrix (rows × :attr:`feature_names_out`); absent columns count as missing."""
        n = len(frame)
        out = np.zeros((n, self.n_columns_), dtype=np.float32)
        present = [name for name in self.numeric if name in frame.columns]
        if isinstance(frame, pl.DataFrame) and len(present) == len(self.numeric) and self.numeric:
            # one conversion of the whole numeric block (much faster than column by column)
            numbers = frame.select([pl.col(c).cast(pl.Float32, strict=False) for c in self.numeric])
            out[:, : len(self.numeric)] = numbers.to_numpy(allow_copy=True).astype(np.float32, copy=False)
        else:
            for i, name in enumerate(self.numeric):
                out[:, i] = numeric_column(frame, name)
        if self.scale:
            for k, i in enumerate(self.missing_columns_):
                out[:, self.missing_offset_ + k] = np.isnan(out[:, i])
            block = out[:, : len(self.numeric)]
            block[:] = np.where(np.isnan(block), self.medians_, block)
            block -= self.means_
            block /= self.scales_
        for name in self.categorical:
            codes = self.code_[name]
            idx = np.array([codes.get(v, -1) if v is not None else -1 for v in category_column(frame, name)],
                           dtype=np.int64)
            rows = np.nonzero(idx >= 0)[0]
            out[rows, idx[rows]] = 1.0
        return out

    def column_groups(self) -> dict[str, list[int]]:
        """Output column positions of each input column (one-hot and missing-indicator columns included)."""
        groups: dict[str, list[int]] = {name: [i] for i, name in enumerate(self.numeric)}
        for name in self.categorical:
            groups[name] = sorted(self.code_[name].values())
        for k, i in enumerate(self.missing_columns_):
            groups[self.numeric[i]].append(self.missing_offset_ + k)
        return groups

    def encode_one(self, features: Mapping[str, Any]) -> np.ndarray:
        """One row (shape 1 × n) from a mapping, without pandas; missing keys are missing values."""
        return self.encode_rows([features])

    def _numeric_block(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The numeric values of ``rows`` as float32, None and absent keys as NaN: one numpy conversion
        of Python values (element-wise numpy assignment costs ~10x more per value)."""
        names = self.numeric
        if len(names) > 1:  # complete vectors (the served profiles): one C-level read per row, ~2x faster
            getter = self.__dict__.get("_numeric_getter")
            if getter is None:
                getter = self.__dict__["_numeric_getter"] = operator.itemgetter(*names)
            try:
                return np.array([getter(f) for f in rows], dtype=np.float32)
            except (KeyError, TypeError, ValueError):  # a key absent, or a value float() must judge
                pass
        values = [[math.nan if (v := f.get(name)) is None else float(v) for name in names] for f in rows]
        return np.array(values, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        """The pickled state, without the getter built at serving time (artefacts stay as trained)."""
        return {k: v for k, v in self.__dict__.items() if k != "_numeric_getter"}

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows (n × columns) from mappings, without pandas, exactly as :meth:`transform` encodes them."""
        n, width = len(rows), len(self.numeric)
        out = np.zeros((n, self.n_columns_), dtype=np.float32)
        out[:, :width] = self._numeric_block(rows).reshape(n, width)
        if self.scale:
            for k, i in enumerate(self.missing_columns_):
                out[:, self.missing_offset_ + k] = np.isnan(out[:, i])
            block = out[:, :width]
            block[:] = np.where(np.isnan(block), self.medians_, block)
            block -= self.means_
            block /= self.scales_
        for name in self.categorical:
            codes = self.code_[name]
            for r, features in enumerate(rows):
                key = category_key(features.get(name))
                j = codes.get(key) if key is not None else None
                if j is not None:
                    out[r, j] = 1.0
        return out
