"""The prediction engine behind the HTTP service: profile lookup, features, model, reasons, decision.

Framework-free (the BentoML service in :mod:`serving.service` only translates HTTP), so tests,
the benchmark and the service all exercise the same code. One engine per worker process; the
profile store may be shared between workers (Redis).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from features.feature_set import feature_set_of_models
from features.live.profile import empty_features, normalize_event, to_epoch_us
from features.live.store import ProfileStore
from features.privacy import ForgetLedger
from features.segments.config import SegmentsConfig
from features.segments.engagement import segment_for
from features.segments.journey import machine_for
from propensity.errors import DataError
from serving.config import ServingConfig
from serving.guards import check_not_future
from serving.scoring import (
    ExposureLog,
    ModelBatcher,
    ProfileState,
    json_ready,
    variant_for,
)

_SEGMENT_COLUMNS = frozenset({"engagement_score", "journey_stage", "segment", "cluster"})


@dataclass(frozen=True)
class LoadedModel:
    """A model with the name and version reported in responses and exposures."""

    model: Any
    name: str
    version: str


@dataclass
class _Plan:
    """A request between profile lookup and scoring."""

    user_id: str
    features: dict[str, Any]
    context: Mapping[str, Any]
    source: str
    debug: bool
    cache_key: tuple | None
    loaded: LoadedModel
    variant: str

    @property
    def personalized(self) -> bool:
        return self.source in ("profile", "features")


def _now_us() -> int:
    return time.time_ns() // 1000


class PredictionEngine:
    """Scores users from the live profile store (see :meth:`predict`)."""

    def __init__(self, cfg: ServingConfig, store: ProfileStore, champion: LoadedModel,
                 seg_cfg: SegmentsConfig, decide: Callable[[Mapping[str, Any]], str] | None = None,
                 challenger: LoadedModel | None = None, exposure_log: ExposureLog | None = None,
                 segmenter: Any = None, metrics: Any = None) -> None:
        self.cfg = cfg
        self.store = store
        self.champion = champion
        self.challenger = challenger
        self.seg_cfg = seg_cfg
        self._machine = machine_for(seg_cfg)
        self.decide = decide
        self.exposures = exposure_log
        self.segmenter = segmenter
        self.metrics = metrics  # serving.metrics.ServiceMetrics (or None: nothing counted)
        self.prediction_log: Any = None  # serving.predlog.PredictionLog, set by the loader (or None)
        self.batcher = ModelBatcher(cfg.reasons_approximate, cfg.batch_wait_ms / 1000.0, cfg.batch_max_rows)
        self.batch_requests = cfg.batch_requests or cfg.batch_wait_ms > 0
        # The features the models were trained with (their stored specs), not this machine's config.
        self.feature_set = feature_set_of_models(champion.model, challenger.model if challenger else None)
        for loaded in (champion, challenger):  # the models' serving caches, before the heap is frozen
            prepare = getattr(loaded.model if loaded else None, "prepare_serving", None)
            if prepare is not None:
                prepare()
        self._known_features = frozenset(self.feature_set.names) | _SEGMENT_COLUMNS
        self._states: OrderedDict[str, ProfileState] = OrderedDict()
        self._answers: OrderedDict[tuple, tuple[float, dict[str, Any], dict[str, Any] | None]] = OrderedDict()

    # -- profiles -------------------------------------------------------------------------------

    def _state(self, user_id: str, version: int | None = None) -> ProfileState:
        """The user's built state, rebuilt when the store's version differs (``version``: already
        read for this request; one read less, a round trip with Redis)."""
        if version is None:
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
        hit, plan = self._plan(request)
        if plan is None:
            return self._from_cache(hit)
        model = plan.loaded.model
        probability = model.predict_one(plan.features)
        top_k = self._top_k(plan)
        reasons = model.reasons_rows([plan.features], top_k, self.cfg.reasons_approximate)[0]
        return self._finish(plan, probability, reasons)

    async def predict_async(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`predict` for the event loop. With ``batch_requests``, model and reasons of
        concurrent requests run as one batch (a batch is whatever is ready together, or arrives
        within ``batch_wait_ms``); else the row is scored at once, with no turn of the event loop."""
        hit, plan = self._plan(request)
        if plan is None:
            return self._from_cache(hit)
        top_k = self._top_k(plan)
        if self.batch_requests:
            probability, reasons = await self.batcher.score(plan.loaded.model, plan.features, top_k)
        else:
            [(probability, reasons)] = self.batcher.score_now(plan.loaded.model, [(plan.features, top_k)])
        return self._finish(plan, probability, reasons)

    def _top_k(self, plan: _Plan) -> int:
        return self.cfg.reasons_top_k if plan.personalized else 0

    def _plan(self, request: Mapping[str, Any]) -> tuple[Any, _Plan | None]:
        """A cache entry not yet served (and None: :meth:`_from_cache` serves it), or (None and) the
        features and model still to be scored."""
        user_id = str(request.get("user_id") or "")
        context: Mapping[str, Any] = request.get("context") or {}
        raw_as_of = request.get("as_of")
        as_of_us = to_epoch_us(raw_as_of, "as_of") if raw_as_of is not None else _now_us()
        debug = bool(request.get("debug"))
        if request.get("features") is not None:
            return None, self._new_plan(user_id, dict(request["features"]), context, "features", debug, None)
        if not user_id:
            raise DataError("user_id: required unless 'features' is given")
        cache = self.cfg.cache
        key: tuple | None = None
        version: int | None = None
        if cache.enabled:
            version = self.store.version(user_id)
            ctx_key = tuple(sorted((k, str(v)) for k, v in context.items()))
            key = (user_id, version, raw_as_of, ctx_key, debug)
            hit = self._answers.get(key)
            if hit is not None and (raw_as_of is not None or time.monotonic() - hit[0] <= cache.ttl_s):
                return hit, None
        state = self._state(user_id, version)
        profile = state.profile
        if profile.deleted:
            source = "deleted"
        elif not self._consents(profile.attributes):
            source = "no_consent"
        elif not profile.known:
            source = "cold_start"
        else:
            features = state.features(as_of_us, self.feature_set)
            return None, self._new_plan(user_id, features, context, "profile", debug, key)
        return None, self._new_plan(user_id, self._context_features(context), context, source, debug, key)

    def _new_plan(self, user_id: str, features: dict[str, Any], context: Mapping[str, Any], source: str,
                  debug: bool, cache_key: tuple | None) -> _Plan:
        loaded, variant = self._model_for(user_id)
        score = features.get("engagement_score")
        if "segment" not in features and score is not None:
            features["segment"] = segment_for(float(score), self.seg_cfg)
        return _Plan(user_id, features, context, source, debug, cache_key, loaded, variant)

    def _from_cache(self, hit: tuple[float, dict[str, Any], dict[str, Any] | None]) -> dict[str, Any]:
        return self._exposed(hit[1], hit[2], cached=True)

    def _exposed(self, answer: dict[str, Any], features: Mapping[str, Any] | None,
                 cached: bool = False) -> dict[str, Any]:
        """Count and log every prediction served, cached or not; record its exposure when experimenting."""
        if self.metrics is not None:
            self.metrics.prediction(answer, cached)
        if self.prediction_log is not None:
            self.prediction_log.append(answer, features)
        if self.exposures is not None and self.cfg.experiment.enabled and answer["user_id"]:
            self.exposures.record(answer["user_id"], self.cfg.experiment.name, answer["variant"],
                                  answer["model"]["name"], answer["model"]["version"])
        return answer

    def _context_features(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The non-personalized vector: no history, no CRM attributes, plus context keys that are features."""
        features = empty_features(self.feature_set)
        features.update({k: v for k, v in context.items() if k in self._known_features})
        return features

    def _model_for(self, user_id: str) -> tuple[LoadedModel, str]:
        exp = self.cfg.experiment
        if exp.enabled and self.challenger is not None and user_id:
            variant = variant_for(exp.salt, user_id, exp.challenger_share)
            loaded = self.challenger if variant == "challenger" else self.champion
            return loaded, variant
        return self.champion, "champion"

    def _finish(self, plan: _Plan, probability: float, reasons: list[dict[str, Any]]) -> dict[str, Any]:
        features, personalized = plan.features, plan.personalized
        # The cluster comes from the separately loaded segmenter, else from one the model embeds.
        assigner = self.segmenter or getattr(plan.loaded.model, "pre_transform", None)
        cluster = None
        if assigner is not None and personalized:
            cluster = assigner.assign_one(features).get("cluster")
        facts = {**features, **plan.context, "probability": probability, "personalized": personalized,
                 "source": plan.source, "cluster": cluster}
        decision = self.decide(facts) if self.decide is not None else self.cfg.default_decision
        answer: dict[str, Any] = {
            "user_id": plan.user_id or None,
            "probability": probability,
            "segment": features.get("segment") if personalized else None,
            "cluster": cluster,
            "journey_stage": features.get("journey_stage") if personalized else None,
            "engagement_score": _number(features.get("engagement_score")) if personalized else None,
            "reasons": reasons,
            "model": {"name": plan.loaded.name, "version": plan.loaded.version},
            "variant": plan.variant,
            "decision": decision,
            "personalized": personalized,
            "source": plan.source,
        }
        if plan.debug:
            answer["features"] = json_ready(features)
            answer["worker_pid"] = os.getpid()
        if plan.cache_key is not None:
            # The vector is kept only for the prediction log (cache hits are logged with it too).
            kept = features if self.prediction_log is not None else None
            self._answers[plan.cache_key] = (time.monotonic(), answer, kept)
            if len(self._answers) > self.cfg.cache.max_users:
                self._answers.popitem(last=False)
        return self._exposed(answer, features)

    def predict_batch(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``/predict`` for each request, same order; a bad item raises DataError naming its index."""
        out = []
        for i, request in enumerate(requests):
            try:
                out.append(self.predict(request))
            except DataError as exc:
                raise DataError(f"[{i}].{exc}") from None
        return out

    async def predict_batch_async(self, requests: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`predict_batch` with every item checked first (a bad one fails the request before
        any answer is served, counted or logged), then one model batch per model."""
        planned = []
        for i, request in enumerate(requests):
            try:
                planned.append(self._plan(request))
            except DataError as exc:
                raise DataError(f"[{i}].{exc}") from None
        # the batcher's flush groups the rows by model: one batch per model
        results = iter(await asyncio.gather(*(self.batcher.score(p.loaded.model, p.features, self._top_k(p))
                                              for _, p in planned if p is not None)))
        return [self._from_cache(hit) if plan is None else self._finish(plan, *next(results))
                for hit, plan in planned]

    # -- writes ---------------------------------------------------------------------------------

    def ingest(self, events: list[Mapping[str, Any]]) -> dict[str, int]:
        """Validate every event first (DataError naming ``[index].field``), then apply them all."""
        if len(events) > self.cfg.max_batch:
            raise DataError(f"events: at most {self.cfg.max_batch} events per request, got {len(events)}")
        parsed = []
        latest_us = _now_us() + int(self.cfg.ingest.max_future_skew.total_seconds() * 1_000_000)
        for i, event in enumerate(events):
            try:
                record = normalize_event(event, self.cfg.ingest.timestamp_unit)
                parsed.append(check_not_future(record, latest_us))
            except DataError as exc:
                if self.metrics is not None:
                    self.metrics.events(refused=len(events))
                raise DataError(f"[{i}].{exc}") from None
        result = self.store.add_events(parsed)
        if self.metrics is not None:
            self.metrics.events(result.applied, result.duplicates, result.dropped_deleted)
        return {"received": len(events), "applied": result.applied, "duplicates": result.duplicates,
                "dropped_deleted": result.dropped_deleted}

    def put_user(self, user_id: str, attributes: Mapping[str, Any],
                 ledger: ForgetLedger | None = None) -> dict[str, Any]:
        """Upsert CRM attributes; returns the stored attributes.

        A deleted user is refused (:class:`ForgottenUser`) unless the body is an explicit re-consent
        (``consent`` true and a ``reconsent_reason``), which is recorded in ``ledger`` first.
        """
        attrs = dict(attributes)
        reason = attrs.pop("reconsent_reason", None)
        if reason is not None:
            if attrs.get("consent") is not True:
                raise DataError("consent: a re-consent needs \"consent\": true")
            if ledger is None:
                raise DataError("reconsent_reason: this service has no forget ledger")
            ledger.reconsent(user_id, str(reason))
        profile = self.store.upsert_user(user_id, attrs, reconsent=reason is not None)
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
            "features": json_ready(state.features(as_of_us, self.feature_set)) if profile.known else None,
        }

    def delete_user(self, user_id: str, ledger: ForgetLedger | Callable[[str], Any] | None = None
                    ) -> dict[str, Any]:
        """Privacy deletion: ``ledger`` records it first (durable, for every later path), then the
        store forgets the user."""
        if isinstance(ledger, ForgetLedger):
            ledger.forget(user_id)
        elif ledger is not None:
            ledger(user_id)
        existed = self.store.delete_user(user_id)
        self._states.pop(user_id, None)
        return {"user_id": user_id, "deleted": True, "existed": existed}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number
