"""The feature registry: every column of a snapshot, with its meaning, window and unit.

The definitions live in :mod:`features.definitions` (declarative specs plus named special cases);
the batch pipeline (:mod:`features.batch.snapshot`) and the live profile (:mod:`features.live.profile`)
both evaluate them; ``docs/FEATURES.md`` is generated from them (``python -m features.registry``).

Conventions (all windows end at ``as_of`` exclusive: an event counts in window W when
``as_of - W <= timestamp < as_of``):
- counts are float64 (so one dtype flows to the model), 0 when nothing happened;
- recency and averages are null (NaN) when the thing never happened, never a magic number;
- categoricals are strings, null when unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from features.definitions import BUILTIN, WINDOWS_DAYS, Feature

if TYPE_CHECKING:
    from features.feature_set import FeatureSet

KEY_COLUMNS: tuple[str, ...] = ("user_id", "as_of")
LABEL_COLUMN = "label"
__all__ = ["WINDOWS_DAYS", "Feature", "FEATURES", "FEATURE_NAMES", "model_features", "markdown_table"]

# The built-in features, in snapshot column order (features/definitions.py holds their definitions).
FEATURES: tuple[Feature, ...] = tuple(e.feature for e in BUILTIN)

# Segment columns (features/segments/: engagement.py, journey.py, segmenter.py). Not part of
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


def model_features(include_sensitive: bool = False, columns: Iterable[str] | None = None,
                   feature_set: FeatureSet | None = None) -> list[str]:
    """Feature columns a model is trained on; sensitive attributes only when asked for.

    The features of ``feature_set`` (a snapshot's own definitions), else the built-ins plus the
    features added in configs/features.yaml. With ``columns`` (a frame's column names), the segment
    columns present there are appended.
    """
    from features.feature_set import active_feature_set

    fs = feature_set or active_feature_set()
    names = [f.name for f in fs.features if include_sensitive or not f.sensitive]
    if columns is not None:
        present = set(columns)
        names += [name for name in SEGMENT_FEATURE_NAMES if name in present]
    return names


def _definition(name: str) -> str:
    """The declarative definition of a built-in feature, as one short line."""
    from features.definitions import FeatureSpec

    entry = _BY_ENTRY.get(name)
    if not isinstance(entry, FeatureSpec):
        return "special case (`features/special.py`)" if entry is not None else "segments"
    parts = [f"`{entry.aggregate}`" + (f"(`{entry.column}`)" if entry.column else "")]
    if entry.value is not None:
        parts.append(f"= '{entry.value}'")
    if entry.events:
        parts.append("of " + ", ".join(entry.events))
    parts += [f"where {f} in {{{', '.join(v)}}}" for f, v in entry.where]
    return " ".join(parts)


_BY_ENTRY = {e.name: e for e in BUILTIN}


def markdown_table() -> str:
    """The built-in feature definitions as a Markdown table (docs/FEATURES.md)."""
    lines = [
        "# Feature registry",
        "",
        "Generated from the feature definitions (`features/definitions.py`) by "
        "`python -m features.registry > docs/FEATURES.md`. Add features in `configs/features.yaml` "
        "(`features:`, see the README).",
        "Windows end at `as_of`, exclusive: an event counts in window W when "
        "`as_of - W <= timestamp < as_of`. Snapshot keys: `user_id`, `as_of`; label: `label` "
        "(a purchase in `[as_of, as_of + horizon)`).",
        "",
        "| name | meaning | definition | window | unit | kind | sensitive |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in FEATURES + SEGMENT_FEATURES:
        sensitive = "yes" if f.sensitive else ""
        lines.append(f"| `{f.name}` | {f.meaning} | {_definition(f.name)} | {f.window} | {f.unit} | {f.kind} "
                     f"| {sensitive} |")
    lines += ["", "The `segments` rows (`engagement_score`, `journey_stage`, `segment`, `cluster`) come "
              "from `configs/segments.yaml` and the fitted segmenter (`propensity segment`); they are model "
              "inputs only when a snapshot carries them (`model_features(columns=...)`)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
