"""Typed settings of content serving (the ``content`` section of ``configs/serving.yaml``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from propensity.config import StrictModel


class ContentServingConfig(StrictModel):
    """``POST /content`` and ``GET /recommendations``: which recommenders, split how, logged where."""

    enabled: bool = Field(default=False, description="serve /content and /recommendations (else 404)")
    recommenders: dict[str, str] = Field(
        default_factory=lambda: {"item_knn": "models:/propensity-recommender@item_knn",
                                 "content": "models:/propensity-recommender@content"},
        description="variant -> recommender (MLflow URI, or a RecommenderModel joblib file)")
    shares: dict[str, float] = Field(default_factory=dict,
                                     description="variant -> share of users; empty = equal shares")
    salt: str = Field(default="recommenders", min_length=1,
                      description="hash salt of the recommender split (not the model split's)")
    experiment: str = Field(default="recommenders", min_length=1, description="name in the exposure log")
    catalogue: str | None = Field(default=None, description="catalogue.parquet; null = <work_dir>/shop/")
    components: str | None = Field(default=None, description="components YAML; null = configs/content.yaml")
    exposure_log: str | None = Field(default=None,
                                     description="JSONL path; null = <work_dir>/content_exposures.jsonl")
    slots: dict[str, str] = Field(
        default_factory=lambda: {"sidebar": "educational_content", "carousel": "recommended_products"},
        description="slot -> component; the 'hero' slot takes the decision rules' component")
    max_k: int = Field(default=50, ge=1, le=200, description="most products /recommendations returns")

    @model_validator(mode="after")
    def _shares_name_variants(self) -> ContentServingConfig:
        if self.enabled and not self.recommenders:
            raise ValueError("recommenders: at least one variant is needed when content is enabled")
        unknown = sorted(set(self.shares) - set(self.recommenders))
        if unknown:
            raise ValueError(f"shares: '{unknown[0]}' is not a variant of recommenders")
        if self.shares and (set(self.shares) != set(self.recommenders)
                            or abs(sum(self.shares.values()) - 1.0) > 1e-6):
            raise ValueError("shares: give every variant a share, summing to 1")
        if "hero" in self.slots:
            raise ValueError("slots: 'hero' always shows the decision rules' component")
        return self
