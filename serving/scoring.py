"""Per-user scoring pieces of the service: segment state, request batching, the champion/challenger split.

The model scores and explains (:class:`training.scorer.Scorer`); this module only gathers the rows
that are ready together and hands them over as one batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.definitions import FeatureSet
from features.feature_set import active_feature_set
from features.live.evaluate import compiled_for
from features.live.profile import UserProfile
from features.segments.config import SegmentsConfig
from features.segments.engagement import EngagementState
from features.segments.journey import JourneyMachine, JourneyState
from training.scorer import Scorer


@dataclass
class ProfileState:
    """A profile with its incremental segment states, rebuilt only when the store's version changes."""

    profile: UserProfile
    engagement: EngagementState
    journey: JourneyState
    # (feature set's compiled functions' id, as_of, until, fixed, stamps, cart rate): plain values
    # only, so the cyclic collector stops tracking the tuple
    _memo: tuple | None = field(default=None, repr=False, compare=False)

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
        ``journey_stage`` and ``segment`` at ``as_of``.

        The fold over the events is kept while no event enters or leaves a window (requests for
        "now" move ``as_of`` forward by little): a later ``as_of`` before that moment only
        recomputes the "time since" features, the cart's hours and the CRM features, with the
        same numbers as a full evaluation (:func:`features.live.evaluate.generate_source`)."""
        compiled = compiled_for(feature_set or active_feature_set())
        memo = self._memo
        if memo is None or memo[0] != id(compiled) or not memo[1] <= as_of_us < memo[2]:
            fixed, stamps, rate, until = compiled.parts(self.profile.events, as_of_us, self.profile.compacted)
            memo = self._memo = (id(compiled), as_of_us, until, fixed, stamps, rate)
        out = compiled.finish(memo[3], memo[4], memo[5], as_of_us, self.profile.attributes)
        out["engagement_score"], segment = self.engagement.score_and_segment_at(as_of_us)
        out["journey_stage"] = self.journey.stage_at(as_of_us)
        out["segment"] = segment
        return out


class ModelBatcher:
    """Scores the requests that are ready together on the event loop as one batch (with the
    service's ``batch_requests``; :meth:`score_now` scores given rows at once).

    ``score`` queues a row and schedules a flush with ``call_soon``: the flush runs after every
    request handler already runnable in this loop iteration has queued its row, so under load one
    ``inplace_predict`` and one ``pred_contribs`` call serve many requests, and an idle server adds
    no waiting. With ``max_wait_s`` > 0 the flush waits that long for more rows instead; a queue of
    ``max_rows`` is scored at once. Each model's rows go to its ``predict_rows`` and ``reasons_rows``
    (the :class:`training.scorer.Scorer` protocol), which give the numbers ``predict_one`` gives.
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
        by_model: dict[int, list[tuple[Any, Mapping[str, Any], int, asyncio.Future]]] = {}
        for item in queue:
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            try:
                results = self.score_now(items[0][0], [(f, k) for _, f, k, _ in items])
            except Exception as exc:  # every waiting request gets the error, none hangs
                for *_, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def score_now(self, model: Scorer,
                  rows: Sequence[tuple[Mapping[str, Any], int]]) -> list[tuple[float, list]]:
        """(probability, reasons) of each (features, top_k) row of ``model``, as one batch, at once."""
        self.batches += 1
        self.rows += len(rows)
        if len(rows) == 1:  # the common case (each /predict at once): no list building around one row
            features, top_k = rows[0]
            probs, reasons = model.score_rows([features], top_k, self.approximate)
            return [(float(probs[0]), reasons[0][:top_k])]
        probs, reasons = model.score_rows([f for f, _ in rows], max(k for _, k in rows), self.approximate)
        # A row that wants fewer reasons (none when not personalized) gets the head of the ranking.
        return [(float(p), r[:k]) for p, r, (_, k) in zip(probs, reasons, rows, strict=True)]


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
