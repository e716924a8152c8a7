"""A binary:logistic XGBoost forest as flat node arrays walked by compiled code: the serving path.

XGBoost's per-call overhead (~0.1-0.3 ms of fixed work per ``inplace_predict`` or
``pred_contribs`` call, whatever the rows: argument parsing, per-tree depth walks, mean values of
every node for Saabas) dwarfs the trees themselves on the batches a service sees (1 to ~30 rows of
a 300-tree, depth-6 model). :class:`TreeArrays` holds every node of every tree in one array of
20-byte records (split feature and threshold, left child, default direction, and the change of
the cover-weighted mean value along each edge) and walks them in a loop compiled by numba
(installed with SHAP anyway; compiled once per process, ~1 s at model load): for the bench's
300-tree model ~11 µs for one row with the reasons' contributions and ~120 µs for 16, against
~100 and ~470 µs for the earlier numpy walk (one step per depth level over every (row, tree)) and
~400 and ~1,200 µs for XGBoost's own calls (``bench/bench_walk.py``, BENCHMARKS.md):

- the margin is the base margin plus the leaf values summed tree by tree in float32, and the
  probability is XGBoost's float32 sigmoid (with the C library's ``expf``, which numpy's float32
  ``exp`` differs from by an ulp now and then), so the numbers are XGBoost's: :func:`tree_arrays` builds
  the arrays only when that holds bit for bit on probe rows (missing values included) and returns
  None otherwise (another objective, categorical splits, DART, or a library that rounds differently);
- Saabas path attributions (XGBoost's ``approx_contribs``): each step from a node to its child adds
  the change of the cover-weighted mean value to the node's split feature, the root's mean value and
  the base margin go to the bias column; sums are float64, so they agree with XGBoost's float32
  sums to ~1e-6 and add up to the margin.

Splits follow XGBoost: ``x < threshold`` goes left, a missing value (NaN) takes the default child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

import numba
import numpy as np

from training.scorer import _rank

_F32 = np.float32


def _libm_expf() -> Any:
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    expf = libm.expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return expf


_EXPF = _libm_expf()  # the C library's expf, called from the compiled walk


def _mean_values(left: list[int], right: list[int], leaf: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """Cover-weighted mean value of every node (XGBoost's FillNodeMeanValues, float32)."""
    means = np.zeros(len(left), dtype=_F32)
    for nid in reversed(range(len(left))):  # children have larger ids than their parent
        lc, rc = left[nid], right[nid]
        if lc == -1:
            means[nid] = leaf[nid]
        else:
            means[nid] = (means[lc] * hess[lc] + means[rc] * hess[rc]) / hess[nid]
    return means


# One node in 20 bytes, so a step reads one cache line: threshold, left child, split feature,
# default direction, and the change of mean value along the left and the right edge (Saabas).
NODE = np.dtype([("threshold", np.float32), ("left", np.int32), ("feature", np.int16),
                 ("default_right", np.int8), ("pad", np.int8), ("delta_left", np.float32),
                 ("delta_right", np.float32)], align=True)


@numba.njit(nogil=True)
def _forest(X: np.ndarray, nodes: np.ndarray, leaf_value: np.ndarray, roots: np.ndarray, depth: int,
            base: np.float32, contributions: np.ndarray,
            explain: bool) -> np.ndarray:  # pragma: no cover - compiled; tested through TreeArrays
    """P(positive) of the rows of ``X`` (float64 holding float32); with ``explain``, each step's
    change of mean value added to ``contributions[row, split feature]`` (float64).

    Level by level over all trees of a row: the trees' steps are independent, so the processor
    overlaps them (a tree at a time waits on every load of its path). A step has no branch on the
    path: a node's right child is its left child + 1, and a leaf steps to itself (threshold NaN,
    changes 0). The margin is summed tree by tree in float32 and turned into a probability by
    XGBoost's ``common::Sigmoid``: ``1 / (expf(min(-x, 88.7)) + 1 + 1e-16)`` in float32."""
    probabilities = np.empty(X.shape[0], np.float64)
    node = np.empty(roots.shape[0], np.intp)
    for r in range(X.shape[0]):
        node[:] = roots
        for _ in range(depth):
            for t in range(node.shape[0]):
                n = nodes[node[t]]
                f = n.feature
                x = X[r, f]
                right = (x >= n.threshold) | ((x != x) & (n.default_right == 1))
                if explain:
                    contributions[r, f] += n.delta_right if right else n.delta_left
                node[t] = n.left + right
        margin = base
        for t in range(node.shape[0]):
            margin = margin + leaf_value[node[t]]
        e = _EXPF(min(-margin, np.float32(88.7)))
        probabilities[r] = np.float32(1.0) / (e + np.float32(1.0) + np.float32(1e-16))
    return probabilities


@numba.njit(nogil=True)
def _forest_ranked(X: np.ndarray, nodes: np.ndarray, leaf_value: np.ndarray, roots: np.ndarray, depth: int,
                   base: np.float32, n_columns: int, column_raw: np.ndarray, n_raw: int,
                   top_k: int) -> tuple:  # pragma: no cover - compiled; tested through TreeArrays
    """:func:`_forest` with contributions, then :func:`training.scorer._rank` of them, in one call:
    (probabilities, raw indices, totals, how many) per row. The bias column is left out of the
    ranking, so it is not added here."""
    contributions = np.zeros((X.shape[0], n_columns + 1), np.float64)
    probabilities = _forest(X, nodes, leaf_value, roots, depth, base, contributions, True)
    ranked, values, counts = _rank(contributions, column_raw, n_raw, top_k)
    return probabilities, ranked, values, counts


class TreeArrays:
    """Every tree of a binary:logistic gbtree model as flat node arrays (see the module docstring)."""

    def __init__(self, model_json: dict[str, Any]) -> None:
        learner = model_json["learner"]
        trees = learner["gradient_booster"]["model"]["trees"]
        self.n_columns = int(learner["learner_model_param"]["num_feature"])
        base = _F32(float(str(learner["learner_model_param"]["base_score"]).strip("[]")))
        self.base_margin = _F32(-np.log(_F32(1.0) / base - _F32(1.0)))
        feats, thresholds, lefts, default_right, values, means, roots = [], [], [], [], [], [], []
        depth, offset = 0, 0
        for tree in trees:
            left, right = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
            is_leaf, ids = left == -1, np.arange(len(left))
            if np.any(right[~is_leaf] != left[~is_leaf] + 1):  # XGBoost allocates children in pairs
                raise ValueError("a node's children are not adjacent")
            cond = np.asarray(tree["split_conditions"], dtype=_F32)
            leaf = np.where(is_leaf, cond, _F32(0))
            roots.append(offset)
            feats.append(np.where(is_leaf, 0, tree["split_indices"]))
            thresholds.append(np.where(is_leaf, _F32(np.nan), cond))  # x >= NaN is false: stay
            lefts.append(np.where(is_leaf, ids, left) + offset)
            default_right.append(~is_leaf & (np.asarray(tree["default_left"]) != 1))
            values.append(leaf)
            means.append(_mean_values(list(left), list(right), leaf,
                                      np.asarray(tree["sum_hessian"], dtype=_F32)))
            depth = max(depth, _depth(list(left), list(right)))
            offset += len(left)
        mean = np.concatenate(means).astype(_F32)
        left_all = np.concatenate(lefts).astype(np.intp)
        root = np.asarray(roots, dtype=np.intp)
        self.bias = float(self.base_margin) + float(np.sum(mean[root], dtype=np.float64))
        if len(left_all) >= 2**31 or self.n_columns >= 2**15:
            raise ValueError("too many nodes or columns for the compact node layout")
        leaf_node = left_all == np.arange(len(left_all))
        right_all = np.where(leaf_node, left_all, left_all + 1)
        nodes = np.zeros(len(left_all), dtype=NODE)
        nodes["threshold"] = np.concatenate(thresholds)
        nodes["left"] = left_all
        nodes["feature"] = np.concatenate(feats)
        nodes["default_right"] = np.concatenate(default_right)
        # The change of cover-weighted mean value along each edge (Saabas); 0 on a leaf's step to itself.
        nodes["delta_left"] = np.where(leaf_node, _F32(0), mean[left_all] - mean)
        nodes["delta_right"] = np.where(leaf_node, _F32(0), mean[right_all] - mean)
        self._nodes = nodes
        self._leaf_value = np.concatenate(values).astype(_F32)
        self._roots = root
        self._depth = depth
        self._no_contributions = np.zeros((1, 1))

    def _walk(self, X: np.ndarray, contributions: np.ndarray | None) -> np.ndarray:
        rows = np.ascontiguousarray(X, dtype=_F32)
        explain = contributions is not None
        out = contributions if contributions is not None else self._no_contributions
        probabilities: np.ndarray = _forest(rows, self._nodes, self._leaf_value, self._roots, self._depth,
                                            self.base_margin, out, explain)
        return probabilities

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(positive) per row of the encoded float32 matrix (float64 holding XGBoost's float32)."""
        return self._walk(X, None)

    def predict_ranked(self, X: np.ndarray, column_raw: np.ndarray, n_raw: int,
                       top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, and per row the ``top_k`` raw features by |summed contribution|: raw
        indices, totals, how many), the numbers of :meth:`predict_with_contributions` followed by
        :func:`training.scorer.contribution_reasons`' ranking, in one compiled call (the serving path)."""
        result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = _forest_ranked(
            np.ascontiguousarray(X, dtype=_F32), self._nodes, self._leaf_value, self._roots, self._depth,
            self.base_margin, self.n_columns, column_raw, n_raw, top_k)
        return result

    def predict_with_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, Saabas contributions rows x (columns + 1), the last column the bias)."""
        contributions = np.zeros((len(X), self.n_columns + 1))
        probabilities = self._walk(X, contributions)
        contributions[:, -1] += self.bias
        return probabilities, contributions


def _depth(left: list[int], right: list[int]) -> int:
    depth = [0] * len(left)
    for nid in range(len(left)):  # parents come first
        if left[nid] != -1:
            depth[left[nid]] = depth[right[nid]] = depth[nid] + 1
    return max(depth)


def tree_arrays(booster: Any) -> TreeArrays | None:
    """:class:`TreeArrays` of ``booster`` when it is a binary:logistic gbtree with numeric splits only
    and gives XGBoost's probabilities bit for bit (and its Saabas contributions to 1e-5) on probe
    rows; else None (the caller keeps XGBoost's own calls)."""
    import xgboost as xgb

    try:
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        gbm = learner["gradient_booster"]
        if (learner["objective"]["name"] != "binary:logistic" or gbm["name"] != "gbtree"
                or int(learner["learner_model_param"].get("num_target", "1")) != 1
                or any(t["categories_nodes"] for t in gbm["model"]["trees"])):
            return None
        arrays = TreeArrays(model)
        rng = np.random.default_rng(0)
        X = rng.normal(scale=20.0, size=(64, arrays.n_columns)).astype(_F32)
        X[rng.random(X.shape) < 0.3] = np.nan
        X[::4] = np.round(X[::4])  # values on typical thresholds (counts)
        probability, contributions = arrays.predict_with_contributions(X)
        expected = booster.inplace_predict(X, validate_features=False)
        public = booster.predict(xgb.DMatrix(X, nthread=1), pred_contribs=True, approx_contribs=True,
                                 validate_features=False)
        same = np.array_equal(probability.astype(_F32), expected)
        return arrays if same and np.allclose(contributions, public, atol=1e-5) else None
    except (KeyError, ValueError, TypeError, OSError, AttributeError):
        return None
