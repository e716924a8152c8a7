"""Names from the raw data contract (:mod:`features.contract`, the one definition) and the audit bands."""

from __future__ import annotations

from features.contract import EVENT_FIELDS, USER_FIELDS

EVENT_TYPES: tuple[str, ...] = EVENT_FIELDS["event"].values
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS.values() if f.required)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS.values() if not f.required)
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS
# Enum-like string columns: trimmed and lower-cased on ingestion.
ENUM_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS.values() if f.kind == "enum")

USER_COLUMNS: tuple[str, ...] = tuple(USER_FIELDS)
ENUM_USER_COLUMNS: tuple[str, ...] = tuple(f.name for f in USER_FIELDS.values() if f.kind == "enum")

DEVICES: tuple[str, ...] = EVENT_FIELDS["device"].values
SOURCES: tuple[str, ...] = EVENT_FIELDS["source"].values


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
