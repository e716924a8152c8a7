"""Where generated data, the MLflow store and reports go by default."""

from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    """The work folder: ``$PROPENSITY_HOME`` or ``./work`` (git-ignored). Created on demand."""
    path = Path(os.environ.get("PROPENSITY_HOME", "work"))
    path.mkdir(parents=True, exist_ok=True)
    return path
