"""``configs/generate.yaml``: the settings of a synthetic shop and the ``--disparity`` flag."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from features.shop.model import group_values
from features.shop.shifts import Shift
from propensity.config import StrictModel, load_config
from propensity.errors import ConfigError


class Sale(StrictModel):
    start_day: int = Field(default=35, ge=0)
    days: int = Field(default=5, ge=0)
    traffic_boost: float = Field(default=1.3, gt=0)
    purchase_boost: float = Field(default=1.6, gt=0)


class Disparity(StrictModel):
    feature: Literal["gender", "country", "age_band", "loyalty_tier"]
    value: str
    factor: float = Field(0.3, gt=0, le=1)
    kind: Literal["intent", "tracking"] = "intent"


class GenerateConfig(StrictModel):
    """``configs/generate.yaml``."""

    users: int = Field(20000, ge=1)
    days: int = Field(60, ge=1)
    seed: int = 42
    start: date = date(2026, 9, 1)
    horizon_days: int = Field(7, ge=1)
    consent_false_share: float = Field(0.03, ge=0, le=1)
    duplicate_share: float = Field(0.01, ge=0, le=0.5)
    malformed_share: float = Field(0.005, ge=0, le=0.5)
    sale: Sale = Sale()
    disparity: Disparity | None = None
    shifts: list[Shift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.disparity is not None:
            known = group_values(self.disparity.feature)
            if known is not None and self.disparity.value not in known:
                raise ValueError(f"disparity value '{self.disparity.value}' is not a "
                                 f"{self.disparity.feature} of the shop (one of {', '.join(known)})")
        for shift in self.shifts:
            known = group_values(shift.feature)
            if known is not None and shift.value not in known:
                raise ValueError(f"shift value '{shift.value}' is not a {shift.feature} of the shop "
                                 f"(one of {', '.join(known)})")
            if shift.day >= self.days:
                raise ValueError(f"shift onset day {shift.day} is not inside the {self.days} days")
        return self


def load_generate_config(path: str | Path | None = None, **overrides: object) -> GenerateConfig:
    """``configs/generate.yaml`` (or ``path``) with CLI overrides (None values are ignored)."""
    return load_config(GenerateConfig, path, "generate.yaml", overrides=dict(overrides))


def parse_disparity(text: str) -> Disparity:
    """``[KIND:]FEATURE=VALUE[:FACTOR]``, e.g. ``country=fr:0.3`` (kind ``intent``, factor default 0.3)
    or ``tracking:country=fr:0.3``."""
    kind, colon, spec_text = text.partition(":")
    if not colon or "=" in kind:
        kind, spec_text = "", text
    feature, sep, rest = spec_text.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--disparity '{text}': expected [KIND:]FEATURE=VALUE[:FACTOR], "
                          f"e.g. country=fr:0.3 or tracking:country=fr:0.3")
    value, _, factor = rest.partition(":")
    try:
        spec = Disparity.model_validate({"feature": feature.strip(), "value": value.strip().lower(),
                                         **({"factor": factor} if factor else {}),
                                         **({"kind": kind.strip().lower()} if kind else {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--disparity '{text}': {where}: {first['msg']}") from None
    known = group_values(spec.feature)
    if known is not None and spec.value not in known:
        raise ConfigError(f"--disparity '{text}': '{spec.value}' is not a {spec.feature} of the shop "
                          f"(one of {', '.join(known)})")
    return spec

