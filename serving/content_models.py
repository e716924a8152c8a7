"""Requests and answers of the content routes as typed models (the OpenAPI document shows them).

Like :mod:`serving.responses`, the routes declare these models and send the dicts of
:mod:`content.online` through ``fast_json``; tests validate the answers against the models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ContentRequest(BaseModel):
    """``POST /content``: the user, the page context and the slots to fill."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256)
    context: dict[str, Any] = Field(default_factory=dict, description="page context: device, page_type, ...")
    slots: list[str] = Field(default_factory=lambda: ["hero"], min_length=1, max_length=10,
                             description="'hero' (the decision rules' component) and configured slots")


class ScoredProduct(BaseModel):
    """A suggested product and its recommender score (higher = better)."""

    product_id: str
    score: float


class SlotAnswer(BaseModel):
    """One rendered slot: the component, its HTML, the products it shows, the rule, the variant."""

    slot: str
    component: str
    html: str = Field(description="rendered in the sandbox, HTML-escaped values")
    products: list[ScoredProduct] = Field(description="the products the component shows, best first")
    rule: str | None = Field(description="the decision rule that chose the hero component; null otherwise")
    variant: str = Field(description="the recommender variant of this user (hash split)")


class ContentResponse(BaseModel):
    """The answer of ``POST /content``."""

    user_id: str
    slots: list[SlotAnswer]


class RecommendedProduct(ScoredProduct):
    """A suggested product with its catalogue details."""

    name: str | None = None
    category: str | None = None
    price: float | None = Field(default=None, description="EUR")
    image_url: str | None = None


class RecommendationsResponse(BaseModel):
    """The answer of ``GET /recommendations``."""

    user_id: str
    products: list[RecommendedProduct]
    variant: str = Field(description="the recommender variant of this user (hash split)")
