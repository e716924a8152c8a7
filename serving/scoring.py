"""Per-user scoring pieces of the service: segment state, reasons, the champion/challenger split.

No pandas on this path: one profile at a time, numpy rows, XGBoost ``pred_contribs`` for reasons.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.definitions import FeatureSet
from features.engagement import EngagementState
from features.journey import JourneyMachine, JourneyState
from features.online import UserProfile, online_features
from features.segment_config import SegmentsConfig


@dataclass
class ProfileState:
    """A profile with its incremental segment states, rebuilt only when the store's version changes."""

    profile: UserProfile
    engagement: EngagementState
    journey: JourneyState

    @classmethod
    def build(cls, profile: UserProfile, seg_cfg: SegmentsConfig, machine: JourneyMachine) -> ProfileState:
        engagement = EngagementState(seg_cfg)
        journey = JourneyState(machine)
        # Time order makes every journey step an append (a late event would re-fold its successors).
        for rec in sorted(profile.events, key=lambda r: (r.ts, r.event_id)):
            event = {"timestamp": rec.ts, "event": rec.event, "event_id": rec.event_id}
            engagement.add(event)
            journey.apply(event)
        return cls(profile, engagement, journey)

    def features(self, as_of_us: int, feature_set: FeatureSet | None = None) -> dict[str, Any]:
        """The features of ``feature_set`` (default: the configured set) plus ``engagement_score``,
        ``journey_stage`` and ``segment`` at ``as_of``."""
        out = online_features(self.profile, as_of_us, feature_set)
        out["engagement_score"] = self.engagement.score_at(as_of_us)
        out["journey_stage"] = self.journey.stage_at(as_of_us)
        out["segment"] = self.engagement.segment_at(as_of_us)
        return out


def feature_reasons(model: Any, features: Mapping[str, Any], top_k: int,
                    approximate: bool = False) -> list[dict[str, Any]]:
    """Top ``top_k`` feature contributions (log-odds) of one prediction: XGBoost TreeSHAP, or the
    faster Saabas path attribution when ``approximate``.

    One-hot columns (``name=value``) and missing indicators are summed back to their raw feature.
    Other families go through :class:`fairness.explain.Explainer` (shap's TreeExplainer for hist
    gradient boosting and random forest, linear SHAP for logistic regression; a mitigated model is
    explained through its base model).
    """
    if top_k == 0:
        return []
    if getattr(model, "booster", None) is None:
        return [{"feature": r["feature"], "contribution": r["contribution"]}
                for r in _explainer(model).reasons_one(features, top_k)]
    return top_reasons(model, contributions(model, encode(model, features), approximate)[0], top_k)


def _explainer(model: Any) -> Any:
    explainer = model.__dict__.get("_serving_explainer")
    if explainer is None:
        from fairness.explain import Explainer

        explainer = Explainer.for_model(model)
        model.__dict__["_serving_explainer"] = explainer
    return explainer


def encode(model: Any, features: Mapping[str, Any]) -> np.ndarray:
    """The model's input row (1 x n) for one profile, as ``ConversionModel.predict_one`` builds it."""
    pre = getattr(model, "pre_transform", None)
    if pre is not None:
        features = {**features, **pre.assign_one(features)}
    row: np.ndarray = model.encoder.encode_one(features)
    return row


def contributions(model: Any, X: np.ndarray, approximate: bool) -> np.ndarray:
    """Per-column contributions (rows x columns, bias dropped) of an XGBoost model."""
    import xgboost as xgb

    # One thread: on a busy 2-core box OpenMP start-up dominates a few rows by far.
    out = _single_thread(model).predict(xgb.DMatrix(X, nthread=1), pred_contribs=True,
                                        approx_contribs=approximate, validate_features=False)
    return np.asarray(out)[:, :-1]


def top_reasons(model: Any, contribs: np.ndarray, top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` raw features with the largest absolute summed contribution."""
    totals: dict[str, float] = {}
    for name, value in zip(_raw_names(model), contribs, strict=False):
        totals[name] = totals.get(name, 0.0) + float(value)
    ranked = sorted(totals.items(), key=lambda kv: -abs(kv[1]))[:top_k]
    return [{"feature": name, "contribution": value} for name, value in ranked if value != 0.0]


class ModelBatcher:
    """Scores the requests that are ready together on the event loop as one batch.

    ``score`` queues a row and schedules a flush with ``call_soon``: the flush runs after every
    request handler already runnable in this loop iteration has queued its row, so under load one
    ``inplace_predict`` and one ``pred_contribs`` call serve many requests, and an idle server adds
    no waiting. With ``max_wait_s`` > 0 the flush waits that long for more rows instead; a queue of
    ``max_rows`` is scored at once. Rows of an XGBoost ``ConversionModel`` are scored exactly as
    ``predict_one`` does (same encoding, single-threaded booster, calibration); other models use
    ``predict_one`` and :func:`feature_reasons` row by row.
    """

    def __init__(self, approximate: bool, max_wait_s: float = 0.0, max_rows: int = 1024) -> None:
        self.approximate = approximate
        self.max_wait_s = max_wait_s
        self.max_rows = max_rows
        self._queue: list[tuple[Any, Mapping[str, Any], int, asyncio.Future]] = []
        self._scheduled: asyncio.Handle | None = None
        self.batches = 0
        self.rows = 0

    async def score(self, model: Any, features: Mapping[str, Any], top_k: int) -> tuple[float, list]:
        """(probability, reasons) of one row, computed in the next batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._queue.append((model, features, top_k, future))
        if len(self._queue) >= self.max_rows:
            if self._scheduled is not None:
                self._scheduled.cancel()
            self._flush()
        elif self._scheduled is None:
            self._scheduled = (loop.call_later(self.max_wait_s, self._flush) if self.max_wait_s > 0
                               else loop.call_soon(self._flush))
        result: tuple[float, list] = await future
        return result

    def _flush(self) -> None:
        queue, self._queue, self._scheduled = self._queue, [], None
        if not queue:
            return
        self.batches += 1
        self.rows += len(queue)
        by_model: dict[int, list[tuple[Any, Mapping[str, Any], int, asyncio.Future]]] = {}
        for item in queue:
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            try:
                results = self._score_rows(items[0][0], [(f, k) for _, f, k, _ in items])
            except Exception as exc:  # every waiting request gets the error, none hangs
                for *_, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _score_rows(self, model: Any, rows: list[tuple[Mapping[str, Any], int]]) -> list[tuple[float, list]]:
        if getattr(model, "booster", None) is None:
            return [(model.predict_one(f), feature_reasons(model, f, k)) for f, k in rows]
        X = np.vstack([encode(model, f) for f, _ in rows])
        p = _single_thread(model).inplace_predict(X, validate_features=False)
        if model.calibrator is not None:
            p = model.calibrator.apply(p)
        probs = [float(v) for v in p]
        wanted = [i for i, (_, k) in enumerate(rows) if k > 0]
        reasons: list[list] = [[] for _ in rows]
        if wanted:
            contribs = contributions(model, X[wanted], self.approximate)
            for j, i in enumerate(wanted):
                reasons[i] = top_reasons(model, contribs[j], rows[i][1])
        return list(zip(probs, reasons, strict=True))


def _single_thread(model: Any) -> Any:
    booster = model.__dict__.get("_serving_booster")
    if booster is None:
        booster = model.booster.copy()
        booster.set_param({"nthread": 1})
        model.__dict__["_serving_booster"] = booster
    return booster


def _raw_names(model: Any) -> list[str]:
    names = model.__dict__.get("_serving_raw_names")
    if names is None:
        names = [n.split("=", 1)[0].removesuffix("__missing") for n in model.transformed_feature_names]
        model.__dict__["_serving_raw_names"] = names
    return names


def variant_for(salt: str, user_id: str, challenger_share: float) -> str:
    """``challenger`` for a deterministic share of users (hash of salt and user id), else ``champion``."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "challenger" if u < challenger_share else "champion"


class ExposureLog:
    """Append-only JSON Lines of exposures (user, experiment, variant, model, version, time).

    Each record is one ``write`` on an ``O_APPEND`` descriptor, so several worker processes can
    share the file without interleaving lines.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def record(self, user_id: str, experiment: str, variant: str, model_name: str,
               model_version: str) -> None:
        line = json.dumps({"user_id": user_id, "experiment": experiment, "variant": variant,
                           "model_name": model_name, "model_version": model_version,
                           "time": datetime.now(UTC).isoformat()}) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


def json_ready(features: Mapping[str, Any]) -> dict[str, Any]:
    """Features with NaN as None and numpy scalars as Python numbers (JSON output)."""
    out: dict[str, Any] = {}
    for name, value in features.items():
        if isinstance(value, float | np.floating):
            out[name] = None if math.isnan(value) else float(value)
        else:
            out[name] = value
    return out
