"""Old module names of classes that saved models and segmenters may hold (before features/ was
carved into sub-packages), so a pickle written by an earlier version still loads."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# old module -> its new home (only modules whose objects end up inside a saved model or segmenter)
MOVED: dict[str, str] = {
    "features.segmenter": "features.segments.segmenter",
    "features.segment_config": "features.segments.config",
    "features.clusters": "features.segments.clusters",
    "features.engagement": "features.segments.engagement",
    "features.journey": "features.segments.journey",
    "features.config": "propensity.config",
    "features.errors": "propensity.errors",
}


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """While unpickling: the old module names resolve to the new modules (nothing else changes)."""
    added = []
    for old, new in MOVED.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
            added.append(old)
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)
