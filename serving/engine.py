"""The prediction engine behind the HTTP service: profile lookup, features, model, reasons, decision.

Framework-free (the BentoML service in :mod:`serving.service` only translates HTTP), so tests,
the benchmark and the service all exercise the same code. One engine per worker process; the
profile store may be shared between workers (Redis).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from features.engagement import segment_for
from features.errors import DataError
from features.journey import machine_for
from features.online import empty_features, normalize_event, to_epoch_us
from features.profile_store import ProfileStore
from features.registry import FEATURE_NAMES
from features.segment_config import SegmentsConfig
from serving.config import ServingConfig
from serving.scoring import ExposureLog, ProfileState, feature_reasons, json_ready, variant_for

_KNOWN_FEATURES = frozenset(FEATURE_NAMES) | {"engagement_score", "journey_stage", "segment", "cluster"}


@dataclass(frozen=True)
class LoadedModel:
    """A model with the name and version reported in responses and exposures."""

    model: Any
    name: str
    version: str


def _now_us() -> int:
    return time.time_ns() // 1000


class PredictionEngine:
    """Scores users from the live profile store (see :meth:`predict`)."""

    def __init__(self, cfg: ServingConfig, store: ProfileStore, champion: LoadedModel,
                 seg_cfg: SegmentsConfig, decide: Callable[[Mapping[str, Any]], str] | None = None,
                 challenger: LoadedModel | None = None, exposure_log: ExposureLog | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.champion = champion
        self.challenger = challenger
        self.seg_cfg = seg_cfg
        self._machine = machine_for(seg_cfg)
        self.decide = decide
        self.exposures = exposure_log
        self._states: OrderedDict[str, ProfileState] = OrderedDict()
        self._answers: OrderedDict[tuple, tuple[float, dict[str, Any]]] = OrderedDict()

    # -- profiles -------------------------------------------------------------------------------

    def _state(self, user_id: str) -> ProfileState:
        version = self.store.version(user_id)
        state = self._states.get(user_id)
        if state is not None and state.profile.version == version:
            self._states.move_to_end(user_id)
            return state
        state = ProfileState.build(self.store.get_profile(user_id), self.seg_cfg, self._machine)
        self._states[user_id] = state
        if len(self._states) > self.cfg.cache.max_users:
            self._states.popitem(last=False)
        return state

    def _consents(self, attributes: Mapping[str, Any]) -> bool:
        consent = attributes.get("consent")
        return self.cfg.consent_default if consent is None else bool(consent)

    # -- predictions ----------------------------------------------------------------------------

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one ``/predict`` request (``user_id``, ``context``, optional ``features``, ``as_of``,
        ``debug``); raises :class:`DataError` naming a bad field."""
        user_id = str(request.get("user_id") or "")
        context: Mapping[str, Any] = request.get("context") or {}
        raw_as_of = request.get("as_of")
        as_of_us = to_epoch_us(raw_as_of, "as_of") if raw_as_of is not None else _now_us()
        if request.get("features") is not None:
            return self._exposed(self._answer(user_id, dict(request["features"]), context, "features",
                                              as_of_us, bool(request.get("debug"))))
        if not user_id:
            raise DataError("user_id: required unless 'features' is given")
        cache = self.cfg.cache
        key: tuple | None = None
        if cache.enabled:
            version = self.store.version(user_id)
            ctx_key = tuple(sorted((k, str(v)) for k, v in context.items()))
            key = (user_id, version, raw_as_of, ctx_key, bool(request.get("debug")))
            hit = self._answers.get(key)
            if hit is not None and (raw_as_of is not None or time.monotonic() - hit[0] <= cache.ttl_s):
                return self._exposed(hit[1])
        state = self._state(user_id)
        profile = state.profile
        if profile.deleted:
            answer = self._answer(user_id, self._context_features(context), context, "deleted", as_of_us,
                                  bool(request.get("debug")))
        elif not self._consents(profile.attributes):
            answer = self._answer(user_id, self._context_features(context), context, "no_consent", as_of_us,
                                  bool(request.get("debug")))
        elif not profile.known:
            answer = self._answer(user_id, self._context_features(context), context, "cold_start", as_of_us,
                                  bool(request.get("debug")))
        else:
            features = state.features(as_of_us)
            answer = self._answer(user_id, features, context, "profile", as_of_us, bool(request.get("debug")))
        if key is not None:
            self._answers[key] = (time.monotonic(), answer)
            if len(self._answers) > cache.max_users:
                self._answers.popitem(last=False)
        return self._exposed(answer)

    def _exposed(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Record the exposure of an answer (every prediction served, cached or not) when experimenting."""
        if self.exposures is not None and self.cfg.experiment.enabled and answer["user_id"]:
            self.exposures.record(answer["user_id"], self.cfg.experiment.name, answer["variant"],
                                  answer["model"]["name"], answer["model"]["version"])
        return answer

    def _context_features(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The non-personalized vector: no history, no CRM attributes, plus context keys that are features."""
        features = empty_features()
        features.update({k: v for k, v in context.items() if k in _KNOWN_FEATURES})
        return features

    def _model_for(self, user_id: str) -> tuple[LoadedModel, str]:
        exp = self.cfg.experiment
        if exp.enabled and self.challenger is not None and user_id:
            variant = variant_for(exp.salt, user_id, exp.challenger_share)
            loaded = self.challenger if variant == "challenger" else self.champion
            return loaded, variant
        return self.champion, "champion"

    def _answer(self, user_id: str, features: dict[str, Any], context: Mapping[str, Any], source: str,
                as_of_us: int, debug: bool) -> dict[str, Any]:
        personalized = source in ("profile", "features")
        loaded, variant = self._model_for(user_id)
        probability = loaded.model.predict_one(features)
        score = features.get("engagement_score")
        if "segment" not in features and score is not None:
            features["segment"] = segment_for(float(score), self.seg_cfg)
        pre = getattr(loaded.model, "pre_transform", None)
        cluster = pre.assign_one(features).get("cluster") if pre is not None else None
        reasons = feature_reasons(loaded.model, features, self.cfg.reasons_top_k,
                                  self.cfg.reasons_approximate) if personalized else []
        facts = {**features, **context, "probability": probability, "personalized": personalized,
                 "source": source}
        decision = self.decide(facts) if self.decide is not None else self.cfg.default_decision
        answer: dict[str, Any] = {
            "user_id": user_id or None,
            "probability": probability,
            "segment": features.get("segment") if personalized else None,
            "cluster": cluster if personalized else None,
            "journey_stage": features.get("journey_stage") if personalized else None,
            "engagement_score": _number(features.get("engagement_score")) if personalized else None,
            "reasons": reasons,
            "model": {"name": loaded.name, "version": loaded.version},
            "variant": variant,
            "decision": decision,
            "personalized": personalized,
            "source": source,
        }
        if debug:
            answer["features"] = json_ready(features)
            answer["worker_pid"] = os.getpid()
        return answer

    def predict_batch(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``/predict`` for each request, same order; a bad item raises DataError naming its index."""
        out = []
        for i, request in enumerate(requests):
            try:
                out.append(self.predict(request))
            except DataError as exc:
                raise DataError(f"[{i}].{exc}") from None
        return out

    # -- writes ---------------------------------------------------------------------------------

    def ingest(self, events: list[Mapping[str, Any]]) -> dict[str, int]:
        """Validate every event first (DataError naming ``[index].field``), then apply them all."""
        if len(events) > self.cfg.max_batch:
            raise DataError(f"events: at most {self.cfg.max_batch} events per request, got {len(events)}")
        parsed = []
        for i, event in enumerate(events):
            try:
                parsed.append(normalize_event(event))
            except DataError as exc:
                raise DataError(f"[{i}].{exc}") from None
        result = self.store.add_events(parsed)
        return {"received": len(events), "applied": result.applied, "duplicates": result.duplicates,
                "dropped_deleted": result.dropped_deleted}

    def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Upsert CRM attributes; returns the stored attributes."""
        profile = self.store.upsert_user(user_id, attributes)
        return {"user_id": user_id, "attributes": profile.attributes}

    def get_user(self, user_id: str, as_of: str | None = None) -> dict[str, Any]:
        """The live profile: attributes, event counts, and the feature vector at ``as_of`` (default now)."""
        as_of_us = to_epoch_us(as_of, "as_of") if as_of is not None else _now_us()
        state = self._state(user_id)
        profile = state.profile
        return {
            "user_id": user_id,
            "known": profile.known,
            "deleted": profile.deleted,
            "consent": self._consents(profile.attributes),
            "attributes": profile.attributes,
            "events_retained": len(profile.events),
            "events_compacted": profile.compacted.n_events,
            "version": profile.version,
            "features": json_ready(state.features(as_of_us)) if profile.known else None,
        }

    def delete_user(self, user_id: str, ledger: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """Privacy deletion: the store forgets the user; ``ledger`` records it for later feature builds."""
        existed = self.store.delete_user(user_id)
        self._states.pop(user_id, None)
        if ledger is not None:
            ledger(user_id)
        return {"user_id": user_id, "deleted": True, "existed": existed}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number
