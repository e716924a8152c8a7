"""XGBoost's C prediction calls without its Python wrapper's per-call work: the serving fast path.

On this service's batches (1 to ~30 rows of a 300-tree model) the wrapper costs far more than the
trees: ``inplace_predict`` spends ~170 µs a call in Python (type dispatch over pandas/polars/arrow/
cupy inputs, imports, JSON of its arguments, building a class, copying the shape) before and after
a C call of a few µs a row, and a ``DMatrix`` for ``pred_contribs`` adds ~120 µs more. Serving
always hands a C-contiguous float32 numpy matrix to one single-threaded CPU booster, so
:class:`BoosterCalls` makes the same two C calls the wrapper makes (``XGBoosterPredictFromDense``,
and ``XGDMatrixCreateFromDense`` + ``XGBoosterPredictFromDMatrix``) with their argument JSON built
once; the numbers are the wrapper's, bit for bit. :func:`booster_calls` checks that on a probe
row at start-up and returns None (the caller keeps the public API) when the library differs.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import numpy as np

# XGBoost's PredictionType codes (c_api.h): value, margin, contributions, approximate contributions.
VALUE, MARGIN, CONTRIBS, APPROX_CONTRIBS = 0, 1, 2, 3
_ULONG = ctypes.c_uint64


def _args(kind: int) -> bytes:
    return json.dumps({"type": kind, "training": False, "iteration_begin": 0, "iteration_end": 0,
                       "strict_shape": False, "cache_id": 0, "missing": float("nan")}).encode()


class BoosterCalls:
    """Dense predictions and contributions of one CPU booster (keep a reference to the booster)."""

    def __init__(self, booster: Any) -> None:
        from xgboost.core import _LIB

        self._lib = _LIB
        self._booster = booster  # owns the handle
        self._handle = booster.handle
        self._args = {k: _args(k) for k in (VALUE, MARGIN, CONTRIBS, APPROX_CONTRIBS)}
        self._dmatrix_args = json.dumps({"missing": float("nan"), "nthread": 1,
                                         "data_split_mode": 0}).encode()

    @staticmethod
    def _interface(X: np.ndarray) -> bytes:
        rows, cols = X.shape
        return (b'{"data": [%d, true], "strides": null, "descr": [["", "<f4"]], "typestr": "<f4", '
                b'"shape": [%d, %d], "version": 3}' % (X.ctypes.data, rows, cols))

    def _output(self, shape: Any, dims: Any, out: Any) -> np.ndarray:
        size = 1
        dims_shape = tuple(int(shape[i]) for i in range(dims.value))
        for d in dims_shape:
            size *= d
        result = np.empty(dims_shape, dtype=np.float32)
        ctypes.memmove(result.ctypes.data, out, size * 4)
        return result

    def predict(self, X: np.ndarray, kind: int = VALUE) -> np.ndarray:
        """``inplace_predict`` of a float32 matrix (``kind``: VALUE or MARGIN), shape (rows,)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        shape = ctypes.POINTER(_ULONG)()
        dims = _ULONG()
        out = ctypes.POINTER(ctypes.c_float)()
        if self._lib.XGBoosterPredictFromDense(self._handle, self._interface(X), self._args[kind], None,
                                               ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out)):
            raise RuntimeError(self._lib.XGBGetLastError().decode())
        return self._output(shape, dims, out)

    def contributions(self, X: np.ndarray, approximate: bool) -> np.ndarray:
        """``predict(DMatrix(X), pred_contribs=True, approx_contribs=approximate)``: rows x (columns + 1)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        dmatrix = ctypes.c_void_p()
        if self._lib.XGDMatrixCreateFromDense(self._interface(X), self._dmatrix_args, ctypes.byref(dmatrix)):
            raise RuntimeError(self._lib.XGBGetLastError().decode())
        try:
            shape = ctypes.POINTER(_ULONG)()
            dims = _ULONG()
            out = ctypes.POINTER(ctypes.c_float)()
            kind = APPROX_CONTRIBS if approximate else CONTRIBS
            if self._lib.XGBoosterPredictFromDMatrix(self._handle, dmatrix, self._args[kind],
                                                     ctypes.byref(shape), ctypes.byref(dims),
                                                     ctypes.byref(out)):
                raise RuntimeError(self._lib.XGBGetLastError().decode())
            return self._output(shape, dims, out)
        finally:
            self._lib.XGDMatrixFree(dmatrix)


def booster_calls(booster: Any, n_columns: int) -> BoosterCalls | None:
    """:class:`BoosterCalls` of ``booster`` when it gives the public API's numbers bit for bit on
    probe rows (missing values included), else None."""
    import xgboost as xgb

    try:
        calls = BoosterCalls(booster)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(3, n_columns)).astype(np.float32)
        X[1, ::2] = np.nan
        same = np.array_equal(calls.predict(X), booster.inplace_predict(X, validate_features=False))
        for approximate in (True, False):
            public = booster.predict(xgb.DMatrix(X, nthread=1), pred_contribs=True,
                                     approx_contribs=approximate, validate_features=False)
            same = same and np.array_equal(calls.contributions(X, approximate), public)
        return calls if same else None
    except Exception:  # another library layout: the caller keeps the public API
        return None
