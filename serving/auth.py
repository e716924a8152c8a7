"""API keys and scopes of the HTTP service.

A key is a random secret the client sends as ``Authorization: Bearer KEY``. The service only
stores its SHA-256 (hex) with a client name and scopes, as entries ``name:scope+scope:sha256hex``,
from ``PROPENSITY_API_KEYS`` (comma-separated; when set it replaces the config) or ``auth.keys`` in
configs/serving.yaml. Scopes: ``predict`` (/predict, /predict_batch, /content, /recommendations),
``ingest`` (/events) and ``admin`` (/users). Probes, /metrics and the OpenAPI page are open.

Without any key the service answers loopback clients only (see :func:`is_loopback`), unless it was
started insecure (``--insecure`` / ``PROPENSITY_INSECURE=1``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from propensity.errors import ConfigError

SCOPES = ("predict", "ingest", "admin")
ENV_KEYS = "PROPENSITY_API_KEYS"
ENV_INSECURE = "PROPENSITY_INSECURE"
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/",
                        "/docs"})
# path prefix -> scope; the first match wins, anything else needs admin.
_ROUTE_SCOPES: tuple[tuple[str, str], ...] = (
    ("/predict_batch", "predict"), ("/predict", "predict"), ("/content", "predict"),
    ("/recommendations", "predict"), ("/events", "ingest"), ("/users", "admin"),
)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ApiKey:
    """A client: its name (rate limits and logs use it), its scopes and the SHA-256 of its secret."""

    name: str
    scopes: frozenset[str]
    sha256: str

    def entry(self) -> str:
        """The ``name:scope+scope:sha256hex`` line that configures this key."""
        return f"{self.name}:{'+'.join(s for s in SCOPES if s in self.scopes)}:{self.sha256}"


def hash_key(secret: str) -> str:
    """The SHA-256 hex digest stored for a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str, where: str = "scopes") -> frozenset[str]:
    """``predict,ingest`` or ``predict+ingest`` as a set; :class:`ConfigError` names an unknown scope."""
    scopes = frozenset(s.strip() for s in re.split(r"[+,]", text) if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise ConfigError(f"{where}: unknown scope '{unknown[0] if unknown else text}' "
                          f"(use {', '.join(SCOPES)})")
    return scopes


def parse_key(entry: str, where: str = "auth.keys") -> ApiKey:
    """One ``name:scope+scope:sha256hex`` entry; the message never repeats the hash."""
    parts = entry.strip().split(":")
    if len(parts) != 3:
        raise ConfigError(f"{where}: expected 'name:scope+scope:sha256hex', got {len(parts)} fields")
    name, scopes, digest = parts
    if not _NAME.match(name):
        raise ConfigError(f"{where}: key name must be 1-64 letters, digits, '_', '.' or '-'")
    if not _HEX.match(digest.lower()):
        raise ConfigError(f"{where}: key '{name}' needs a 64-digit hex SHA-256, not the key itself")
    return ApiKey(name, parse_scopes(scopes, f"{where} '{name}'"), digest.lower())


def load_keys(config_entries: Iterable[str] = ()) -> list[ApiKey]:
    """The configured keys: ``PROPENSITY_API_KEYS`` when set (even empty), else the config's entries."""
    raw = os.environ.get(ENV_KEYS)
    if raw is not None:
        return [parse_key(e, ENV_KEYS) for e in raw.split(",") if e.strip()]
    return [parse_key(e) for e in config_entries]


def new_key(name: str, scopes: str) -> tuple[str, ApiKey]:
    """A fresh secret (shown once) and the key entry that accepts it."""
    if not _NAME.match(name):
        raise ConfigError("--name: 1-64 letters, digits, '_', '.' or '-'")
    secret = "pk_" + secrets.token_urlsafe(32)
    return secret, ApiKey(name, parse_scopes(scopes, "--scopes"), hash_key(secret))


def insecure_from_env() -> bool:
    """True when ``PROPENSITY_INSECURE`` asks to serve without keys on any address."""
    return os.environ.get(ENV_INSECURE, "").strip().lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def scope_for(path: str) -> str | None:
    """The scope a path needs; None for the open paths (probes, metrics, docs)."""
    if path in OPEN_PATHS or path.startswith("/docs"):
        return None
    for prefix, scope in _ROUTE_SCOPES:
        if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
            return scope
    return "admin"


@dataclass(frozen=True)
class Decision:
    """Outcome of :meth:`Authenticator.check`: the client name, or an HTTP status and message."""

    client: str | None
    status: int = 200
    error: str = ""


class Authenticator:
    """Checks the Bearer key of a request against the configured keys and the route's scope."""

    def __init__(self, keys: Iterable[ApiKey], insecure: bool = False) -> None:
        self.keys = {k.sha256: k for k in keys}
        self.insecure = insecure

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, path: str, authorization: str | None, peer: str | None,
              needed: str | None = "") -> Decision:
        """Who is calling and whether they may: 401 without a valid key, 403 for a wrong scope.

        ``needed`` is the path's scope when the caller already has it (:func:`scope_for`)."""
        needed = scope_for(path) if needed == "" else needed
        if not self.keys:
            if needed is not None and not self.insecure and not is_loopback(peer or ""):
                return Decision(None, 403, "no API keys are configured: only loopback clients are served")
            return Decision(peer or "anonymous")
        key = self._lookup(authorization)
        if needed is None:
            return Decision(key.name if key else (peer or "anonymous"))
        if key is None:
            return Decision(None, 401, "missing or unknown API key (send 'Authorization: Bearer KEY')")
        if needed not in key.scopes:
            return Decision(None, 403, f"API key '{key.name}' lacks the '{needed}' scope")
        return Decision(key.name)

    def _lookup(self, authorization: str | None) -> ApiKey | None:
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_key(token.strip())
        for stored, key in self.keys.items():  # constant-time comparison of the digests
            if hmac.compare_digest(stored, digest):
                return key
        return None
