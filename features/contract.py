"""The raw data contract, once: every event and user field with its type, bounds and normalisation.

Everything else is derived from :data:`EVENT_FIELDS` and :data:`USER_FIELDS`: the canonical Polars
schemas and the row checks (quarantine reasons) of :mod:`features.ingest.validate`, the online
``normalize_event`` / ``normalize_attributes`` of :mod:`features.live.profile`, the pydantic request
bodies of the service (:mod:`serving.requests`, so OpenAPI shows the same constraints) and the
contract tables of the README (``python -m features.contract``).

Normalisation rules: ``enum`` strings are trimmed and lower-cased; ``id`` and ``string`` values are
kept verbatim; a blank string means missing. The users' ``age`` range comes from
``ingest.age_min`` / ``ingest.age_max`` of ``configs/features.yaml`` (:func:`age_range`), the same
for the batch build, the live profile and HTTP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

MAX_ID_LENGTH = 256  # characters of an id or a free string (event_id, user_id, session_id, ...)


@dataclass(frozen=True)
class Field:
    """One field of the contract.

    ``kind``: id | string | enum | float | int | bool | date | timestamp; ``low``/``high``: the
    inclusive range of a number; ``values``: the known values of an enum (others are kept);
    ``max_length``: characters of a string.
    """

    name: str
    kind: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()
    max_length: int | None = None
    doc: str = ""

    def normalise(self, text: str) -> str:
        """A string value as stored: enums trimmed and lower-cased, other strings verbatim."""
        return text.strip().lower() if self.kind == "enum" else text

    @property
    def is_string(self) -> bool:
        return self.kind in ("id", "string", "enum")

    def check_number(self, number: float) -> str | None:
        """The reason a number breaks the contract, or None (the ingestion quarantine wording)."""
        if not math.isfinite(number):
            return f"{self.name} not finite"
        if self.low is not None and number < self.low:
            return f"{self.name} negative" if self.low == 0 else f"{self.name} below {self.low:g}"
        if self.high is not None and number > self.high:
            return f"{self.name} above {self.high:g}"
        return None


def _id(name: str, required: bool = False, doc: str = "") -> Field:
    return Field(name, "id", required, max_length=MAX_ID_LENGTH, doc=doc)


EVENT_FIELDS: dict[str, Field] = {f.name: f for f in (
    _id("event_id", True, "unique; a repeated id is a duplicate delivery and counts once"),
    _id("user_id", True),
    Field("timestamp", "timestamp", True, doc="ISO-8601 with offset; naive means UTC"),
    Field("event", "enum", True, values=(
        "page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "purchase",
        "newsletter_signup", "whitepaper_download", "video_play", "search", "scroll"),
        max_length=MAX_ID_LENGTH, doc="other names are kept"),
    _id("session_id"),
    Field("page_type", "enum", values=("home", "category", "product", "cart", "checkout", "content"),
          max_length=MAX_ID_LENGTH),
    _id("product_id"),
    Field("category", "string", max_length=MAX_ID_LENGTH),
    Field("value", "float", low=0.0, doc="money, for add_to_cart / purchase"),
    Field("duration_s", "float", low=0.0, doc="seconds on the page"),
    Field("scroll_depth", "float", low=0.0, high=1.0, doc="share 0..1"),
    Field("device", "enum", values=("mobile", "desktop", "tablet"), max_length=MAX_ID_LENGTH),
    Field("source", "enum", values=("direct", "search", "social", "email", "ads"), max_length=MAX_ID_LENGTH),
)}

USER_FIELDS: dict[str, Field] = {f.name: f for f in (
    _id("user_id", True),
    Field("age", "int", low=0, high=120, doc="whole years; range from configs/features.yaml ingest"),
    Field("gender", "enum", max_length=MAX_ID_LENGTH),
    Field("country", "enum", max_length=MAX_ID_LENGTH),
    Field("loyalty_tier", "enum", max_length=MAX_ID_LENGTH),
    Field("signup_date", "date", doc="ISO date"),
    Field("consent", "bool", doc="personalization consent; absent: configurable default"),
)}

# Columns of a users file that describe a row rather than the user: not attributes, never stored on
# the profile or used as features. ``updated_at``: several rows of one user are an error unless this
# column is present, then the latest row wins (the one timestamp rule of features.ingest.eventtime).
USER_ROW_FIELDS: dict[str, Field] = {f.name: f for f in (
    Field("updated_at", "timestamp", doc="optional; with several rows of one user the latest wins"),
)}
UPDATED_AT = "updated_at"


@lru_cache(maxsize=8)
def _configured_age_range(config_dir: str) -> tuple[int, int]:
    from features.batch.config import load_features_config
    from propensity.errors import ConfigError

    try:
        ingest = load_features_config(None).ingest
    except ConfigError:  # no configs/ next to the code (a bare install): the contract's own range
        return int(USER_FIELDS["age"].low or 0), int(USER_FIELDS["age"].high or 120)
    return ingest.age_min, ingest.age_max


def age_range() -> tuple[int, int]:
    """``(age_min, age_max)`` years of ``configs/features.yaml`` (``$PROPENSITY_CONFIG_DIR`` honoured)."""
    from propensity.config import config_dir

    return _configured_age_range(str(config_dir()))


def user_fields(ages: tuple[int, int] | None = None) -> dict[str, Field]:
    """:data:`USER_FIELDS` with the age range of the configuration (or ``ages``)."""
    low, high = ages if ages is not None else age_range()
    return {**USER_FIELDS, "age": replace(USER_FIELDS["age"], low=low, high=high)}


def markdown_tables() -> str:
    """The contract as Markdown tables (the README's contract section)."""
    def rows(fields: dict[str, Field]) -> list[str]:
        out = ["| field | type | required | allowed | notes |", "|---|---|---|---|---|"]
        for f in fields.values():
            allowed = []
            if f.low is not None or f.high is not None:
                allowed.append(f"[{_g(f.low)}, {_g(f.high)}]")
            if f.values:
                allowed.append(", ".join(f.values) + " (others kept)")
            if f.max_length:
                allowed.append(f"≤ {f.max_length} chars")
            norm = {"enum": "trimmed, lower-cased", "id": "verbatim", "string": "verbatim"}.get(f.kind, "")
            notes = "; ".join(x for x in (norm, f.doc) if x)
            required = "yes" if f.required else ""
            out.append(f"| `{f.name}` | {f.kind} | {required} | {'; '.join(allowed)} | {notes} |")
        return out

    return "\n".join(["events:", "", *rows(EVENT_FIELDS), "", "users:", "", *rows(USER_FIELDS),
                      *rows(USER_ROW_FIELDS)[2:]]) + "\n"


def _g(x: float | None) -> str:
    return "∞" if x is None else f"{x:g}"


def describe_value(value: Any) -> str:
    """A short repr for error messages (long strings cut)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


if __name__ == "__main__":
    print(markdown_tables(), end="")
