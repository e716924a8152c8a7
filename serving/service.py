"""The BentoML service: /predict, /predict_batch, /events, /users/{id}, plus BentoML's probes and metrics.

Start it with ``propensity serve`` (which passes its settings to the workers, see
:mod:`serving.runner`), or ``bentoml serve serving.service:PropensityService`` with the defaults
of configs/serving.yaml. Each worker loads the model, segments config and rules once, in
``__init__``; ``/readyz`` answers 200 only once that is done and the profile store answers.
Invalid requests get 4xx JSON naming the field; anything else would be a bug (500).
"""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any, cast

import bentoml
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from features.errors import DataError
from serving.loader import build_engine, resolve_config, settings_from_env
from serving.protection import ProtectionMiddleware


class PredictRequest(BaseModel):
    """One scoring request: a stored user (``user_id``), or raw ``features``; ``as_of`` for replays."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    context: dict[str, Any] = Field(default_factory=dict, description="page context: device, page_type, ...")
    features: dict[str, Any] | None = Field(default=None, description="score these raw features directly")
    as_of: datetime | None = Field(default=None, description="evaluate the profile at this time (ISO-8601)")
    debug: bool = Field(default=False, description="include the feature vector in the answer")


class EventIn(BaseModel):
    """One event of the data contract (unknown extra fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    # Strict: pydantic would otherwise turn numbers into datetimes, guessing their unit.
    timestamp: StrictStr | StrictInt | StrictFloat = Field(
        description="ISO-8601 (naive = UTC); epoch numbers only with ingest.timestamp_unit")
    event: str = Field(min_length=1)
    session_id: str | None = None
    page_type: str | None = None
    product_id: str | None = None
    category: str | None = None
    value: float | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, ge=0)
    scroll_depth: float | None = Field(default=None, ge=0, le=1)
    device: str | None = None
    source: str | None = None


class UserIn(BaseModel):
    """CRM attributes of the users contract; absent keys keep their stored value."""

    model_config = ConfigDict(extra="forbid")
    age: int | None = Field(default=None, ge=0, le=120)
    gender: str | None = None
    country: str | None = None
    loyalty_tier: str | None = None
    signup_date: str | None = Field(default=None, description="ISO date")
    consent: bool | None = None


def _bad_request(exc: DataError) -> JSONResponse:
    message = str(exc)
    field, _, problem = message.partition(": ")
    return JSONResponse({"error": message, "field": field if problem else None}, status_code=422)


users_app = FastAPI(title="propensity users")
SETTINGS = settings_from_env()
_CFG = resolve_config(SETTINGS.get("config_path"), SETTINGS.get("model_uri"), SETTINGS.get("store"))


@bentoml.service(name="propensity", workers=int(SETTINGS.get("workers", 1)), traffic={"timeout": 30},
                 metrics={"enabled": True}, logging={"access": {"enabled": _CFG.access_log}})
@bentoml.asgi_app(users_app, path="/users")
class PropensityService:
    """Conversion propensity for the content engine, from the live profile store."""

    def __init__(self) -> None:
        self.engine = build_engine(SETTINGS)
        if SETTINGS.get("forget_ledger", True):
            try:
                from features.privacy import forget_user

                self.ledger: Any = forget_user
            except ImportError:
                self.ledger = None
        else:
            self.ledger = None
        # Start-up objects (MLflow, pandas, the model) never become garbage: freezing them keeps
        # every later full collection from scanning millions of objects (p99 latency spikes).
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.engine.store.ping()

    @bentoml.api(route="/predict")
    async def predict(self, user_id: str | None = None, context: dict[str, Any] | None = None,
                      features: dict[str, Any] | None = None, as_of: datetime | None = None,
                      debug: bool = False) -> Any:
        """P(convert) for a user (or raw features), with segment, journey stage, reasons and decision."""
        try:
            # A ready Response skips BentoML's output schema and serde step (a third of the time).
            return JSONResponse(await self.engine.predict_async({
                "user_id": user_id, "context": context or {}, "features": features, "as_of": as_of,
                "debug": debug}))
        except DataError as exc:
            return _bad_request(exc)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, requests: list[PredictRequest], /) -> Any:
        """``/predict`` for a list of requests; the answers come back in the same order."""
        try:
            return JSONResponse(await self.engine.predict_batch_async([r.model_dump() for r in requests]))
        except DataError as exc:
            return _bad_request(exc)

    @bentoml.api(route="/events")
    async def events(self, events: list[EventIn], /) -> Any:
        """Apply events to the live profiles at once, idempotently by event_id."""
        try:
            return JSONResponse(self.engine.ingest([e.model_dump(exclude_none=True) for e in events]))
        except DataError as exc:
            return _bad_request(exc)

    @users_app.put("/{user_id}")
    async def put_user(self, user_id: str, body: UserIn) -> Any:
        """Upsert CRM attributes (age, gender, country, loyalty_tier, signup_date, consent)."""
        try:
            return self.engine.put_user(user_id, body.model_dump(exclude_unset=True))
        except DataError as exc:
            return _bad_request(exc)

    @users_app.get("/{user_id}")
    async def get_user(self, user_id: str, as_of: str | None = Query(default=None)) -> Any:
        """The live profile and its feature vector at ``as_of`` (default now)."""
        try:
            return self.engine.get_user(user_id, as_of)
        except DataError as exc:
            return _bad_request(exc)

    @users_app.delete("/{user_id}")
    async def delete_user(self, user_id: str) -> Any:
        """Privacy deletion: forget the profile, record it in the forget ledger."""
        return self.engine.delete_user(user_id, self.ledger)


cast(Any, PropensityService).add_asgi_middleware(  # the decorator made it a bentoml Service
    ProtectionMiddleware, max_request_bytes=_CFG.max_request_bytes, rate_limit=_CFG.rate_limit.enabled,
    rate_per_s=_CFG.rate_limit.rate_per_s, burst=_CFG.rate_limit.burst,
    client_header=_CFG.rate_limit.client_header)
