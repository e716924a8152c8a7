"""A binary:logistic XGBoost forest as flat numpy arrays: the serving path for a few rows at a time.

XGBoost's per-call overhead (~0.1-0.3 ms of fixed work per ``inplace_predict`` or
``pred_contribs`` call, whatever the rows: argument parsing, per-tree depth walks, mean values of
every node for Saabas) dwarfs the trees themselves on the batches a service sees (1 to ~30 rows of
a 300-tree, depth-6 model). :class:`TreeArrays` holds every node of every tree in one set of arrays
(children, split feature and threshold, default direction, leaf value, cover-weighted mean value;
leaves loop to themselves) and walks all trees of all rows together, one numpy step per depth level:

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

import numpy as np

_F32 = np.float32


def _libm_expf() -> Any:
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    expf = libm.expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return expf


def sigmoid32(margin: np.ndarray, expf: Any) -> np.ndarray:
    """XGBoost's ``common::Sigmoid`` in float32: ``1 / (expf(min(-x, 88.7)) + 1 + 1e-16)``."""
    x = np.minimum(-margin.astype(_F32), _F32(88.7))
    e = np.fromiter((expf(v) for v in x.tolist()), dtype=_F32, count=len(x))
    out: np.ndarray = _F32(1.0) / (e + _F32(1.0) + _F32(1e-16))
    return out


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


class TreeArrays:
    """Every tree of a binary:logistic gbtree model as flat node arrays (see the module docstring)."""

    def __init__(self, model_json: dict[str, Any]) -> None:
        learner = model_json["learner"]
        trees = learner["gradient_booster"]["model"]["trees"]
        self.n_columns = int(learner["learner_model_param"]["num_feature"])
        base = _F32(float(str(learner["learner_model_param"]["base_score"]).strip("[]")))
        self.base_margin = _F32(-np.log(_F32(1.0) / base - _F32(1.0)))
        feats, thresholds, lefts, rights, missing_right, values, means, roots = [], [], [], [], [], [], [], []
        depth, offset = 0, 0
        for tree in trees:
            left, right = tree["left_children"], tree["right_children"]
            ids = np.arange(len(left))
            is_leaf = np.asarray(left) == -1
            cond = np.asarray(tree["split_conditions"], dtype=_F32)
            leaf = np.where(is_leaf, cond, _F32(0))
            roots.append(offset)
            feats.append(np.where(is_leaf, 0, tree["split_indices"]))
            thresholds.append(np.where(is_leaf, _F32(np.inf), cond))
            lefts.append(np.where(is_leaf, ids, left) + offset)
            rights.append(np.where(is_leaf, ids, right) + offset)
            missing_right.append(~is_leaf & (np.asarray(tree["default_left"]) != 1))
            values.append(leaf)
            means.append(_mean_values(left, right, leaf, np.asarray(tree["sum_hessian"], dtype=_F32)))
            depth = max(depth, _depth(left, right))
            offset += len(left)
        feature = np.concatenate(feats).astype(np.intp)
        mean = np.concatenate(means).astype(_F32)
        root = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.bias = float(self.base_margin) + float(np.sum(mean[root], dtype=np.float64))
        self._expf = _libm_expf()
        # The walk's layout: node i is position 2i; position 2i + k holds its child for k = 0 (x <
        # threshold) and 1 (x >= threshold), as a position, and the change of mean value along that
        # edge (Saabas). A missing value needs no test of its own: each row is read from two copies,
        # NaN as -inf in one (it goes left) and +inf in the other (right), and a node reads the copy
        # of its default direction (slot = 2 x feature + default right). One level: one comparison
        # and four gathers.
        kids = np.stack([np.concatenate(lefts), np.concatenate(rights)], axis=1).astype(np.intp)
        self._kids2 = (2 * kids).ravel()
        self._delta2 = (mean[kids] - mean[:, None]).astype(_F32).ravel()
        self._slot2 = np.repeat(2 * feature + np.concatenate(missing_right), 2)
        self._threshold2 = np.repeat(np.concatenate(thresholds).astype(_F32), 2)
        self._value2 = np.repeat(np.concatenate(values).astype(_F32), 2)
        self._roots2 = 2 * root

    def _walk(self, X: np.ndarray, steps: list[tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
        """The leaf of every (row, tree) as a walk position (2 x node id); with ``steps``, each
        level's (split feature, change of mean value) pairs."""
        n = len(X)
        values = np.ascontiguousarray(X, dtype=_F32).ravel()
        missing = np.isnan(values)
        both = np.empty((len(values), 2), dtype=_F32)  # [value with NaN as -inf, value with NaN as +inf]
        both[:, 0] = np.where(missing, -np.inf, values)
        both[:, 1] = np.where(missing, np.inf, values)
        flat = both.ravel()
        row_base = (np.arange(n, dtype=np.intp) * (2 * X.shape[1]))[:, None]
        node = np.broadcast_to(self._roots2, (n, len(self._roots2)))
        for _ in range(self.depth):
            slot = self._slot2.take(node)
            x = flat.take(row_base + slot)
            edge = node + (x >= self._threshold2.take(node)).view(np.int8)
            if steps is not None:
                steps.append((slot >> 1, self._delta2.take(edge)))
            node = self._kids2.take(edge)
        return node

    def _probability(self, leaves: np.ndarray) -> np.ndarray:
        # float32, tree by tree from the base margin, then XGBoost's sigmoid (common::Sigmoid)
        values = np.empty((len(leaves), leaves.shape[1] + 1), dtype=_F32)
        values[:, 0] = self.base_margin
        values[:, 1:] = self._value2.take(leaves)
        margin = np.cumsum(values, axis=1, dtype=_F32)[:, -1]
        return sigmoid32(margin, self._expf).astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(positive) per row of the encoded float32 matrix (float64 holding XGBoost's float32)."""
        return self._probability(self._walk(X, None))

    def predict_with_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, Saabas contributions rows x (columns + 1), the last column the bias)."""
        steps: list[tuple[np.ndarray, np.ndarray]] = []
        leaves = self._walk(X, steps)
        n, width = len(X), self.n_columns + 1
        row_base = (np.arange(n, dtype=np.intp) * width)[:, None]
        index = np.concatenate([(row_base + f).ravel() for f, _ in steps])
        delta = np.concatenate([d.ravel() for _, d in steps]).astype(np.float64)
        contributions: np.ndarray = np.bincount(index, weights=delta, minlength=n * width).reshape(n, width)
        contributions[:, -1] += self.bias
        return self._probability(leaves), contributions


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
