"""Secrets out of every message: passwords in URLs and ``password=`` style query parameters.

Used wherever a URL reaches a human or a file: error messages, ``--json`` output, printed
commands, artefacts logged to MLflow.
"""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@host  ->  scheme://user:***@host  (also scheme://:password@host)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s]*):(?P<secret>[^@/\s]+)@")
# ?password=...&  (query parameters that carry secrets)
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|api_key|access_key)=)"
                           r"(?P<secret>[^&;\s]+)", re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with every URL password and secret query parameter replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('head')}{MASK}", text)


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with :func:`redact` applied to every string."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
