"""The feature registry: every column of a snapshot, with its meaning, window and unit.

This is the single definition of what a feature means. The batch pipeline
(:mod:`features.snapshot`) and the live profile store (serving) both compute exactly these
columns; ``docs/FEATURES.md`` is generated from this table (``python -m features.registry``).

Conventions (all windows end at ``as_of`` exclusive: an event counts in window W when
``as_of - W <= timestamp < as_of``):
- counts are float64 (so one dtype flows to the model), 0 when nothing happened;
- recency and averages are null (NaN) when the thing never happened, never a magic number;
- categoricals are strings, null when unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from features.schema import DEVICES, EVENT_TYPES, SOURCES

WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)

KEY_COLUMNS: tuple[str, ...] = ("user_id", "as_of")
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    window: str  # "1d", "7d", "30d", "all history", "static"
    unit: str
    kind: str = "numeric"  # "numeric" or "categorical"
    sensitive: bool = False  # a protected attribute: used by the audit, excluded from models by default
    group: str = "behaviour"


def _event_counts() -> list[Feature]:
    out = []
    for w in WINDOWS_DAYS:
        for ev in EVENT_TYPES:
            out.append(Feature(f"{ev}_{w}d", f"number of '{ev}' events", f"{w}d", "events", group="counts"))
        out.append(Feature(f"events_{w}d", "number of events of any type (unknown types included)", f"{w}d",
                           "events", group="counts"))
        out.append(Feature(f"sessions_{w}d", "number of distinct non-null session_id values", f"{w}d",
                           "sessions", group="counts"))
    return out


FEATURES: tuple[Feature, ...] = tuple(
    _event_counts()
    + [
        Feature("days_since_last_event", "as_of minus the latest event before as_of", "all history", "days",
                group="recency"),
        Feature("days_since_last_add_to_cart", "as_of minus the latest add_to_cart; null if none",
                "all history", "days", group="recency"),
        Feature("days_since_last_purchase", "as_of minus the latest purchase; null if none", "all history",
                "days", group="recency"),
        Feature("days_since_first_event", "as_of minus the first event (how long we have known the user)",
                "all history", "days", group="recency"),
        Feature("product_time_s_30d", "sum of duration_s over events with page_type 'product'", "30d",
                "seconds", group="engagement"),
        Feature("avg_duration_s_30d", "mean duration_s over events with a duration; null if none", "30d",
                "seconds", group="engagement"),
        Feature("avg_scroll_depth_30d", "mean scroll_depth over events with a scroll depth; null if none",
                "30d", "share 0..1", group="engagement"),
        Feature("cart_value_30d", "sum of value over add_to_cart events", "30d", "currency", group="value"),
        Feature("purchase_value_30d", "sum of value over purchase events", "30d", "currency", group="value"),
        Feature("purchases_total", "number of purchase events in all history", "all history", "events",
                group="value"),
        Feature("purchase_value_total", "sum of value over all purchase events", "all history", "currency",
                group="value"),
        Feature("cart_open", "1 when the latest add_to_cart is later than the latest purchase (an abandoned "
                "or pending cart), else 0", "all history", "flag 0/1", group="cart"),
        Feature("hours_since_cart_abandoned", "as_of minus the latest add_to_cart when cart_open, else null",
                "all history", "hours", group="cart"),
        Feature("cart_abandon_rate_30d",
                "share of sessions with an add_to_cart but no purchase among sessions "
                "with an add_to_cart; null if none", "30d", "share 0..1", group="cart"),
    ]
    + [Feature(f"device_share_{d}_30d", f"share of events from device '{d}' among events with a device; "
               "null if none", "30d", "share 0..1", group="mix") for d in DEVICES]
    + [Feature(f"source_share_{s}_30d", f"share of events from source '{s}' among events with a source; "
               "null if none", "30d", "share 0..1", group="mix") for s in SOURCES]
    + [
        Feature("age", "age from the CRM", "static", "years", sensitive=True, group="profile"),
        Feature("age_band", "audit band of age (18-24, ..., 65+)", "static", "band", kind="categorical",
                sensitive=True, group="profile"),
        Feature("gender", "gender from the CRM", "static", "category", kind="categorical", sensitive=True,
                group="profile"),
        Feature("country", "country from the CRM", "static", "ISO code", kind="categorical", sensitive=True,
                group="profile"),
        Feature("loyalty_tier", "loyalty tier from the CRM", "static", "category", kind="categorical",
                group="profile"),
        Feature("tenure_days", "as_of minus signup_date; null if unknown", "static", "days", group="profile"),
    ]
)

# Segment columns (features/engagement.py, features/journey.py, features/segmenter.py). Not part of
# FEATURE_NAMES (the snapshot builder's contract): a model uses them only when a frame carries them.
SEGMENT_FEATURES: tuple[Feature, ...] = (
    Feature("engagement_score", "sum of behaviour weights (configs/segments.yaml), each halved every "
            "half_life_days before as_of; abandoned carts count negative", "all history (decayed)", "points",
            group="segments"),
    Feature("journey_stage", "stage of the journey state machine at as_of (awareness, consideration, "
            "decision, retention, at_risk, lapsed)", "all history", "stage", kind="categorical",
            group="segments"),
    Feature("segment", "engagement segment: engagement_score mapped by the configured thresholds",
            "all history (decayed)", "segment", kind="categorical", group="segments"),
    Feature("cluster", "behavioural cluster of the fitted segmenter ('0', '1', ...; 'noise' = DBSCAN noise)",
            "30d and all history", "cluster id", kind="categorical", group="segments"),
)
SEGMENT_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in SEGMENT_FEATURES)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "categorical")
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "numeric")
SENSITIVE_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.sensitive)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def model_features(include_sensitive: bool = False, columns: Iterable[str] | None = None) -> list[str]:
    """Feature columns a model is trained on; sensitive attributes only when asked for.

    With ``columns`` (a frame's column names), the segment columns present there are appended.
    """
    names = [f.name for f in FEATURES if include_sensitive or not f.sensitive]
    if columns is not None:
        present = set(columns)
        names += [name for name in SEGMENT_FEATURE_NAMES if name in present]
    return names


def markdown_table() -> str:
    """The registry as a Markdown table (docs/FEATURES.md)."""
    lines = [
        "# Feature registry",
        "",
        "Generated from `features/registry.py` by `python -m features.registry > docs/FEATURES.md`.",
        "Windows end at `as_of`, exclusive: an event counts in window W when "
        "`as_of - W <= timestamp < as_of`. Snapshot keys: `user_id`, `as_of`; label: `label` "
        "(a purchase in `[as_of, as_of + horizon)`).",
        "",
        "| name | meaning | window | unit | kind | sensitive |",
        "|---|---|---|---|---|---|",
    ]
    for f in FEATURES + SEGMENT_FEATURES:
        lines.append(f"| `{f.name}` | {f.meaning} | {f.window} | {f.unit} | {f.kind} | "
                     f"{'yes' if f.sensitive else ''} |")
    lines += ["", "The `segments` rows (`engagement_score`, `journey_stage`, `segment`, `cluster`) come "
              "from `configs/segments.yaml` and the fitted segmenter (`propensity segment`); they are model "
              "inputs only when a snapshot carries them (`model_features(columns=...)`)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
