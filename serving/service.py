"""The BentoML service: /predict, /predict_batch, /events, /users/{id}, plus BentoML's probes and metrics.

Start it with ``propensity serve`` (which passes its settings to the workers, see
:mod:`serving.runner`), or ``bentoml serve serving.service:PropensityService`` with the defaults
of configs/serving.yaml. Each worker loads the model, segments config and rules once, in
``__init__``; ``/readyz`` answers 200 only once that is done and the profile store answers.
Invalid requests get 4xx JSON naming the field; while the profile store is down, 503 with
``Retry-After``; anything else would be a bug (500). Keys, scopes, body bounds and the one error
shape are enforced by :class:`serving.protection.ProtectionMiddleware`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

import bentoml
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from content.online import content_answer, load_content_setup, recommendations_answer
from features.privacy import LedgerSync, apply_ledger, open_ledger, resolve_ledger
from serving import gc_policy
from serving.aliases import PathAliases
from serving.auth import Authenticator, insecure_from_env, load_keys
from serving.bento import carried_models
from serving.content_models import ContentRequest, ContentResponse, RecommendationsResponse
from serving.errors import error_body, error_response, install_log_filter, is_store_outage, logger
from serving.loader import build_engine, resolve_config, settings_from_env
from serving.metrics import ServiceMetrics
from serving.protection import ProtectionMiddleware, install_metrics_templates
from serving.requests import EventIn, UserIn
from serving.responses import (
    DeleteResponse,
    EventsResponse,
    PredictResponse,
    UserAttributesResponse,
    UserProfileResponse,
    fast_json,
)
from serving.telemetry import install_lean_sampler
from serving.traffic import install_timer_release
from serving.versioning import PACKAGE_DESCRIPTION, set_service_version, versioned


class PredictRequest(BaseModel):
    """One scoring request: a stored user (``user_id``), or raw ``features``; ``as_of`` for replays."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    context: dict[str, Any] = Field(default_factory=dict, description="page context: device, page_type, ...")
    features: dict[str, Any] | None = Field(default=None, description="score these raw features directly")
    as_of: datetime | None = Field(default=None, description="evaluate the profile at this time (ISO-8601)")
    debug: bool = Field(default=False, description="include the feature vector in the answer")




def _engine_request(request: PredictRequest) -> dict[str, Any]:
    """The engine's request mapping (``model_dump``'s keys, read directly: the hot path)."""
    return {"user_id": request.user_id, "context": request.context, "features": request.features,
            "as_of": request.as_of, "debug": request.debug}


def _failure(exc: Exception) -> Any:  # a 4xx/503 Response; routes declare their 200 model
    return error_response(exc)


users_app = FastAPI(title="propensity users", description=PACKAGE_DESCRIPTION)
recommendations_app = FastAPI(title="propensity recommendations", description=PACKAGE_DESCRIPTION)
SETTINGS = settings_from_env()
_CFG = resolve_config(SETTINGS.get("config_path"), SETTINGS.get("model_uri"), SETTINGS.get("store"),
                      SETTINGS.get("tracking_uri"))
install_metrics_templates()
install_log_filter()
install_timer_release()
if not _CFG.record_unsampled_spans:
    install_lean_sampler()


@bentoml.service(name="propensity", workers=int(SETTINGS.get("workers", 1)), traffic={"timeout": 30},
                 metrics={"enabled": True}, logging={"access": {"enabled": _CFG.access_log}})
@bentoml.asgi_app(users_app, path="/users")
@bentoml.asgi_app(recommendations_app, path="/recommendations")
class PropensityService:
    """Conversion propensity for the content engine, from the live profile store."""

    def __init__(self) -> None:
        # A bento always serves the models it carries; from a checkout, the configured ones.
        champion, challenger = carried_models(PropensityService)
        self.metrics = ServiceMetrics()
        self.engine = build_engine(SETTINGS, carried=champion, carried_challenger=challenger,
                                   metrics=self.metrics, log_predictions=True)
        set_service_version()
        # One ledger location for every process: the runner resolved it; a bento resolves it the same way.
        self.ledger = open_ledger(SETTINGS.get("ledger") or resolve_ledger(store_cfg=_CFG.store))
        self.ledger_sync = LedgerSync(self.ledger)
        try:  # the store starts with every deletion of the ledger (a fresh or a flushed store)
            apply_ledger(self.engine.store, self.ledger)
        except Exception as exc:
            if not is_store_outage(exc):
                raise
            logger.warning("profile store down at start-up: answering 503 until it is back")
        # Start-up objects (MLflow, pandas, the model) never become garbage: freezing them keeps
        # every later collection from scanning millions of objects (p99 latency spikes).
        self.content_setup = _content_setup(self.engine)
        gc_policy.freeze_startup_heap()

    @bentoml.on_startup
    async def _schedule_rounds(self) -> None:
        """Collections (serving.gc_policy), metric updates (serving.metrics) and the prediction
        log's reading of queued answers (serving.predlog) run between requests on this worker's
        event loop."""
        gc_policy.schedule_collection(_CFG.gc_every_s)
        gc_policy.call_every(1.0, self.metrics.publish)
        if self.engine.prediction_log is not None:  # the log's reading steps run between requests too
            self.engine.prediction_log.attach_loop(asyncio.get_running_loop())

    @bentoml.on_shutdown
    def _close_prediction_log(self) -> None:
        """Write the prediction log's pending records and counts before the worker exits."""
        self.metrics.publish()
        if self.engine.prediction_log is not None:
            self.engine.prediction_log.close()

    def __is_ready__(self) -> bool:
        return self.engine.store.ping()

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """P(convert) for a user (or raw features), with segment, journey stage, reasons and decision.

        Scope: ``predict``."""
        # One body model, not keyword parameters: BentoML inspects the method's signature on every
        # call, and its keyword path reads a deprecated pydantic attribute (a warning per request).
        try:
            self.ledger_sync.sync(self.engine.store)
            # A ready Response skips BentoML's output schema and serde step (a third of the time).
            return fast_json(await self.engine.predict_async(_engine_request(request)))
        except Exception as exc:
            return _failure(exc)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, requests: list[PredictRequest], /) -> list[PredictResponse]:
        """``/predict`` for a list of requests (at most ``max_batch``), same order. Scope: ``predict``."""
        try:
            self.ledger_sync.sync(self.engine.store)
            return fast_json(await self.engine.predict_batch_async([_engine_request(r) for r in requests]))
        except Exception as exc:
            return _failure(exc)

    @bentoml.api(route="/events")
    async def events(self, events: list[EventIn], /) -> EventsResponse:
        """Apply events to the live profiles at once, idempotently by event_id. Scope: ``ingest``."""
        try:
            self.ledger_sync.sync(self.engine.store)
            return fast_json(self.engine.ingest([e.model_dump(exclude_none=True) for e in events]))
        except Exception as exc:
            return _failure(exc)

    @users_app.put("/{user_id}", response_model=UserAttributesResponse)
    async def put_user(self, user_id: str, body: UserIn) -> Any:
        """Upsert CRM attributes (age, gender, country, loyalty_tier, signup_date, consent).

        A deleted user needs ``{"consent": true, "reconsent_reason": ...}`` (else 409). Scope: ``admin``."""
        try:
            self.ledger_sync.sync(self.engine.store)
            return self.engine.put_user(user_id, body.model_dump(exclude_unset=True), self.ledger)
        except Exception as exc:
            return _failure(exc)

    @users_app.get("/{user_id}", response_model=UserProfileResponse)
    async def get_user(self, user_id: str, as_of: str | None = Query(default=None)) -> Any:
        """The live profile and its feature vector at ``as_of`` (default now). Scope: ``admin``."""
        try:
            self.ledger_sync.sync(self.engine.store)
            return self.engine.get_user(user_id, as_of)
        except Exception as exc:
            return _failure(exc)

    @users_app.delete("/{user_id}", response_model=DeleteResponse)
    async def delete_user(self, user_id: str) -> Any:
        """Privacy deletion: record it in the forget ledger, forget the profile (admin scope)."""
        try:
            return self.engine.delete_user(user_id, self.ledger)
        except Exception as exc:
            return _failure(exc)

    # -- content: rendered components and product suggestions (logic: content/online.py) -------------

    @bentoml.api(route="/content")
    async def content(self, request: ContentRequest, /) -> ContentResponse:
        """Render content slots for a user: ``hero`` shows the decision rules' component, the other
        slots their configured component, filled with products suggested from the live profile.
        Scope: ``predict``."""
        if self.content_setup is None:
            return _content_off()
        try:
            self.ledger_sync.sync(self.engine.store)
            return fast_json(await content_answer(self.engine, self.content_setup, request.user_id,
                                                  request.context, request.slots))
        except Exception as exc:
            return _failure(exc)

    @recommendations_app.get("/", response_model=RecommendationsResponse)
    async def recommendations(self, user_id: str = Query(min_length=1, max_length=256),
                              k: int = Query(default=10, ge=1, le=200)) -> Any:
        """``k`` products for a user from the live profile (bought ones excluded) and the user's
        recommender variant; every answer logs an exposure. Scope: ``predict``."""
        if self.content_setup is None:
            return _content_off()
        try:
            self.ledger_sync.sync(self.engine.store)
            return fast_json(recommendations_answer(self.engine, self.content_setup, user_id, k))
        except Exception as exc:
            return _failure(exc)


def _content_setup(engine: Any) -> Any:
    """The content routes' start-up objects; None when ``content.enabled`` is false."""
    cfg = engine.cfg
    return load_content_setup(cfg.content, cfg.tracking_uri, cfg.rules)


def _content_off() -> Any:
    return JSONResponse(error_body("content serving is off (serving.yaml: content.enabled)", None),
                        status_code=404)


versioned(PropensityService)
cast(Any, PropensityService).add_asgi_middleware(  # the decorator made it a bentoml Service
    ProtectionMiddleware, max_request_bytes=_CFG.max_request_bytes, rate_limit=_CFG.rate_limit.enabled,
    rate_per_s=_CFG.rate_limit.rate_per_s, burst=_CFG.rate_limit.burst, max_batch=_CFG.max_batch,
    authenticator=Authenticator(load_keys(_CFG.auth.keys),
                                insecure=bool(SETTINGS.get("insecure")) or insecure_from_env()),
    shared_buckets=(_CFG.store.redis_url, _CFG.store.key_prefix) if _CFG.store.backend == "redis" else None)
cast(Any, PropensityService).add_asgi_middleware(PathAliases)  # GET /recommendations without a slash
