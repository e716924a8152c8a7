"""Per-user scoring pieces of the service: segment state, reasons, the champion/challenger split.

No pandas on this path: one profile at a time, numpy rows, XGBoost ``pred_contribs`` for reasons.
"""

from __future__ import annotations

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

    def features(self, as_of_us: int) -> dict[str, Any]:
        """Registry features plus ``engagement_score``, ``journey_stage`` and ``segment`` at ``as_of``."""
        out = online_features(self.profile, as_of_us)
        out["engagement_score"] = self.engagement.score_at(as_of_us)
        out["journey_stage"] = self.journey.stage_at(as_of_us)
        out["segment"] = self.engagement.segment_at(as_of_us)
        return out


def feature_reasons(model: Any, features: Mapping[str, Any], top_k: int,
                    approximate: bool = False) -> list[dict[str, Any]]:
    """Top ``top_k`` feature contributions (log-odds) of one prediction: XGBoost TreeSHAP, or the
    faster Saabas path attribution when ``approximate``.

    One-hot columns (``name=value``) and missing indicators are summed back to their raw feature.
    Empty for non-XGBoost models (their reasons come from the audit's SHAP report).
    """
    booster = getattr(model, "booster", None)
    if booster is None or top_k == 0:
        return []
    import xgboost as xgb

    pre = getattr(model, "pre_transform", None)
    if pre is not None:
        features = {**features, **pre.assign_one(features)}
    row = model.encoder.encode_one(features)
    # One thread: on a busy 2-core box OpenMP start-up dominates a single row by far.
    contribs = _single_thread(model).predict(xgb.DMatrix(row, nthread=1), pred_contribs=True,
                                             approx_contribs=approximate, validate_features=False)[0][:-1]
    totals: dict[str, float] = {}
    for name, value in zip(_raw_names(model), contribs, strict=False):
        totals[name] = totals.get(name, 0.0) + float(value)
    ranked = sorted(totals.items(), key=lambda kv: -abs(kv[1]))[:top_k]
    return [{"feature": name, "contribution": value} for name, value in ranked if value != 0.0]


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
