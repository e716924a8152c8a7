"""Planted shifts of the synthetic shop (``propensity generate --shift SPEC``): what monitoring must see.

From an onset day on, one of three things changes (each keeps the oracle exact, because the
generator still knows every hidden probability):

* ``covariate:source=ads:3@40`` — the traffic of a session attribute value (``source`` or
  ``device``) grows about ``factor``-fold: new users, all landing on the onset day (a campaign
  launch: each has a session that day) and always coming through that value, with low intent
  (:data:`NEWCOMER_INTENT` times the buying and warming traits). The inputs' distribution moves;
  what a given behaviour means does not.
* ``tracking:device=mobile:scroll_depth@40`` — events of sessions with that attribute value stop
  carrying an optional field (it becomes null). Behaviour and purchases are unchanged; only what is
  recorded changes.
* ``concept:country=fr:0.5@40`` — the chance to buy of one user group (a CRM attribute) is
  multiplied by ``factor`` while its browsing looks the same: the link from inputs to outcome moves.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from propensity.config import StrictModel
from propensity.errors import ConfigError

NEWCOMER_INTENT = 0.5  # covariate shift: newcomers' beta and warmth, relative to a like-for-like user
SESSION_ATTRIBUTES = ("source", "device")
USER_ATTRIBUTES = ("gender", "country", "age_band", "loyalty_tier")
TRACKED_FIELDS = ("scroll_depth", "duration_s", "value", "page_type", "product_id", "category")


class Shift(StrictModel):
    """One planted shift (see the module docstring); ``day`` is the onset, a day index (0 = start)."""

    kind: Literal["covariate", "tracking", "concept"]
    feature: str
    value: str
    day: int = Field(ge=0)
    factor: float | None = Field(default=None, gt=0)
    field: str | None = None  # tracking: the event field that stops being sent

    @model_validator(mode="after")
    def _check(self) -> Shift:
        allowed = USER_ATTRIBUTES if self.kind == "concept" else SESSION_ATTRIBUTES
        if self.feature not in allowed:
            raise ValueError(f"a {self.kind} shift acts on one of {', '.join(allowed)}, not '{self.feature}'")
        if self.kind == "tracking":
            if self.field not in TRACKED_FIELDS:
                raise ValueError(f"a tracking shift drops one of {', '.join(TRACKED_FIELDS)}, "
                                 f"not '{self.field}'")
        elif self.factor is None:
            raise ValueError(f"a {self.kind} shift needs a factor")
        elif self.kind == "covariate" and self.factor <= 1:
            raise ValueError("a covariate shift's factor (traffic multiple) must be above 1")
        return self


def parse_shift(text: str) -> Shift:
    """``KIND:FEATURE=VALUE:ARG@DAY``: ``covariate:source=ads:3@40``,
    ``tracking:device=mobile:scroll_depth@40``, ``concept:country=fr:0.5@40``.
    Raises :class:`ConfigError` (one line) on a bad spec."""
    usage = ("expected KIND:FEATURE=VALUE:ARG@DAY, e.g. covariate:source=ads:3@40, "
             "tracking:device=mobile:scroll_depth@40 or concept:country=fr:0.5@40")
    body, at, day = text.rpartition("@")
    kind, colon, rest = body.partition(":")
    feature, eq, rest = rest.partition("=")
    value, colon2, arg = rest.partition(":")
    if not (at and colon and eq and colon2 and value and arg and day):
        raise ConfigError(f"--shift '{text}': {usage}")
    kind = kind.strip().lower()
    spec: dict[str, object] = {"kind": kind, "feature": feature.strip(), "value": value.strip().lower(),
                               "day": day.strip()}
    spec["field" if kind == "tracking" else "factor"] = arg.strip()
    try:
        return Shift.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--shift '{text}': {where + ': ' if where else ''}{message}") from None


def concept_scale(shifts: list[Shift], groups: dict[str, np.ndarray], day: int) -> np.ndarray | float:
    """Per-user multiplier of the chance to buy on ``day`` from the concept shifts (1.0 when none)."""
    scale: np.ndarray | float = 1.0
    for s in shifts:
        if s.kind == "concept" and day >= s.day:
            assert s.factor is not None
            scale = scale * np.where(groups[s.feature] == s.value, s.factor, 1.0)
    return scale
