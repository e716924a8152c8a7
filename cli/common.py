"""Small helpers shared by the CLI modules: JSON output and human summaries. No stage logic."""

from __future__ import annotations

import json
import math
from typing import Any

import click


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON document on stdout (NaN and inf become null)."""
    click.echo(json.dumps(_clean(payload), indent=2, default=str))


def info(message: str) -> None:
    """A progress or summary line for humans, on stderr so --json stdout stays machine-readable."""
    click.echo(message, err=True)
