"""The raw data contract of ../shared/SPEC.md as constants, shared by ingestion, features and serving."""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
    "newsletter_signup",
    "whitepaper_download",
    "video_play",
    "search",
    "scroll",
)

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "timestamp", "event")
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = (
    "session_id",
    "page_type",
    "product_id",
    "category",
    "value",
    "duration_s",
    "scroll_depth",
    "device",
    "source",
)
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS
# Enum-like string columns: trimmed and lower-cased on ingestion.
ENUM_EVENT_COLUMNS: tuple[str, ...] = ("event", "page_type", "device", "source")

USER_COLUMNS: tuple[str, ...] = (
    "user_id", "age", "gender", "country", "loyalty_tier", "signup_date", "consent",
)
ENUM_USER_COLUMNS: tuple[str, ...] = ("gender", "country", "loyalty_tier")

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
SOURCES: tuple[str, ...] = ("direct", "search", "social", "email", "ads")

# Audit bands of SPEC: 18-24, 25-34, 35-44, 45-54, 55-64, 65+ (ages under 18 are "under-18").
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 17, "under-18"),
    (18, 24, "18-24"),
    (25, 34, "25-34"),
    (35, 44, "35-44"),
    (45, 54, "45-54"),
    (55, 64, "55-64"),
    (65, 200, "65+"),
)


def age_band(age: int | None) -> str | None:
    """The audit band of an age in years; ``None`` for a missing age."""
    if age is None:
        return None
    for low, high, name in AGE_BANDS:
        if low <= age <= high:
            return name
    return None
