"""The answers of the HTTP service as typed models: the OpenAPI document describes every one of them.

The routes declare these models (BentoML builds the schema from the return annotation) but send the
engine's dicts through :func:`fast_json`, which skips pydantic validation and BentoML's serde on
the hot path; ``tests/test_serving_responses.py`` checks that every answer validates against its
model, so the schema and the bytes cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.responses import Response

Source = Literal["profile", "features", "cold_start", "no_consent", "deleted"]


class Reason(BaseModel):
    """One feature's contribution to the score (log-odds; positive raises the probability)."""

    feature: str
    contribution: float


class ModelRef(BaseModel):
    """The registered model that answered."""

    name: str
    version: str


class PredictResponse(BaseModel):
    """The answer of ``/predict``: the score, the user's segment and journey stage, reasons, decision."""

    model_config = ConfigDict(protected_namespaces=())
    user_id: str | None
    probability: float = Field(ge=0, le=1, description="P(convert within the horizon), share 0..1")
    segment: str | None = Field(description="engagement segment (null when not personalized)")
    cluster: str | int | None = Field(default=None, description="behavioural cluster (a segmenter)")
    journey_stage: str | None
    engagement_score: float | None
    reasons: list[Reason] = Field(description="top feature contributions; empty when not personalized")
    model: ModelRef
    variant: str = Field(description="champion or challenger")
    decision: str = Field(description="what the decision rules chose for this page view")
    personalized: bool = Field(description="false for cold-start, no-consent and deleted users")
    source: Source = Field(description="where the features came from")
    features: dict[str, Any] | None = Field(default=None, description="the feature vector (debug only)")
    worker_pid: int | None = Field(default=None, description="the answering worker (debug only)")


class EventsResponse(BaseModel):
    """The outcome of ``/events``: how many were received, applied, duplicates, dropped."""

    received: int
    applied: int
    duplicates: int = Field(description="event ids seen before (counted once)")
    dropped_deleted: int = Field(description="events of users deleted for privacy")


class UserAttributesResponse(BaseModel):
    """The stored CRM attributes after ``PUT /users/{user_id}``."""

    user_id: str
    attributes: dict[str, Any]


class UserProfileResponse(BaseModel):
    """The live profile of ``GET /users/{user_id}``."""

    user_id: str
    known: bool
    deleted: bool
    consent: bool
    attributes: dict[str, Any]
    events_retained: int
    events_compacted: int
    version: int | str
    features: dict[str, Any] | None = Field(description="the feature vector at as_of (null: unknown user)")


class DeleteResponse(BaseModel):
    """The outcome of ``DELETE /users/{user_id}``."""

    user_id: str
    deleted: bool
    existed: bool = Field(description="whether the store held the user")


class ErrorResponse(BaseModel):
    """Every 4xx answer: the message and the field at fault (null when no single field is)."""

    error: str
    field: str | None


class FastJSONResponse(Response):
    """Compact UTF-8 JSON by pydantic-core's serializer (~4x the standard library's encoder; a float
    that is not finite becomes null, as pydantic writes it)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_json(content)


def fast_json(content: Any, status_code: int = 200) -> Any:
    """An already-serialized answer (typed ``Any``: routes declare their model for the schema)."""
    return FastJSONResponse(content, status_code=status_code)
