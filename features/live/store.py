"""The live profile store: one small interface, interchangeable backends chosen in configs/serving.yaml.

:class:`ProfileStore` is what serving, the stream consumer and ``propensity forget`` talk to. Every
backend keeps these guarantees (the shared suite tests/test_profile_store.py checks them on each):

- **Idempotent by event_id**: an event delivered twice (same ``event_id``) changes the profile once.
  Deduplication remembers an id for ``dedup_ttl_days`` (a redelivery later than that counts again).
- **Exact event time**: every event of the retention period is kept with its own timestamp, so
  late and out-of-order events land in the right window. Events older than ``retention_days``
  before the newest event of the user are folded into all-history scalars
  (:class:`~features.live.profile.CompactedHistory`), which changes no feature for an ``as_of`` later
  than the compacted events plus 30 days (:meth:`UserProfile` reads say how far back is exact).
- **Read-your-writes**: once ``add_events`` / ``upsert_user`` / ``delete_user`` returns, every
  later ``get_profile`` from any client of the same store sees the change.
- **Thread safety**: one store object may be shared by the threads of a process; writes to a user
  are atomic (a reader never sees half an update). The Redis backend is also safe across processes.
- **Privacy**: ``delete_user`` removes attributes and events and leaves a tombstone; later events
  of that user are dropped and ``upsert_user`` refuses the user (:class:`ForgottenUser`) until an
  explicit re-consent (``upsert_user(..., reconsent=True)``, recorded in the forget ledger first).

Backends: :class:`InProcessProfileStore` (default, one process, not persistent) and
:class:`features.live.redis_store.RedisProfileStore` (shared by many serving replicas).
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from features.live.profile import (
    US_PER_DAY,
    CompactedHistory,
    EventRecord,
    UserProfile,
    normalize_attributes,
)
from propensity.config import StrictModel
from propensity.errors import ConfigError, DataError


class ProfileStoreConfig(StrictModel):
    """The ``store`` section of configs/serving.yaml."""

    backend: Literal["inprocess", "redis"] = "inprocess"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="propensity:", description="prefix of every Redis key")
    retention_days: float = Field(default=90.0, gt=31.0, description="events kept one by one, days")
    dedup_ttl_days: float = Field(default=90.0, gt=0, description="how long an event_id is remembered")


class ForgottenUser(DataError):
    """An upsert of a user whose privacy deletion stands (re-consent is explicit)."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user '{user_id}' was deleted (privacy); only an explicit re-consent "
                         "({\"consent\": true, \"reconsent_reason\": ...}) registers the user again")
        self.user_id = user_id


@dataclass(frozen=True)
class WriteResult:
    """Outcome of :meth:`ProfileStore.add_events`: counts of events."""

    applied: int
    duplicates: int
    dropped_deleted: int
    users: frozenset[str]


class ProfileStore(abc.ABC):
    """Per-user live profiles: CRM attributes and the events needed to compute every feature online."""

    def __init__(self, retention_days: float = 90.0, dedup_ttl_days: float = 90.0) -> None:
        self.retention_us = int(retention_days * US_PER_DAY)
        self.dedup_ttl_s = max(1, int(dedup_ttl_days * 86_400))

    @abc.abstractmethod
    def add_events(self, events: Iterable[tuple[str, EventRecord]]) -> WriteResult:
        """Apply normalised ``(user_id, record)`` events; duplicates by event_id are skipped."""

    @abc.abstractmethod
    def get_profile(self, user_id: str) -> UserProfile:
        """The user's profile (an empty one, ``known`` false, for a user never seen)."""

    @abc.abstractmethod
    def version(self, user_id: str) -> int:
        """A number that grows on every write to the user (0 for an unknown user)."""

    @abc.abstractmethod
    def upsert_user(self, user_id: str, attributes: Mapping[str, Any], *,
                    reconsent: bool = False) -> UserProfile:
        """Merge CRM attributes (keys of the users contract) into the profile.

        A deleted user raises :class:`ForgottenUser` unless ``reconsent`` (which clears the tombstone).
        """

    @abc.abstractmethod
    def delete_user(self, user_id: str) -> bool:
        """Forget the user's attributes and events, leave a tombstone; True when anything was stored."""

    @abc.abstractmethod
    def count_users(self) -> int:
        """Number of users with a stored profile (tombstones excluded)."""

    def ping(self) -> bool:
        """True when the backend answers (readiness)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release in memory
        """Release connections."""

    def upsert_users(self, rows: Iterable[Mapping[str, Any]], skip: frozenset[str] = frozenset()) -> int:
        """Upsert many CRM rows (each with ``user_id``); returns how many were stored.

        Users in ``skip`` (the forget ledger) and users with a deletion tombstone are left out.
        """
        n = 0
        for row in rows:
            user_id = str(row["user_id"])
            if user_id in skip:
                continue
            try:
                self.upsert_user(user_id, {k: v for k, v in row.items() if k != "user_id"})
            except ForgottenUser:
                continue
            n += 1
        return n


def compact(events: list[EventRecord], compacted: CompactedHistory,
            retention_us: int) -> tuple[list[EventRecord], bool]:
    """Fold events older than ``retention_us`` before the newest one into ``compacted`` (in place).

    Returns the retained events and whether anything was folded.
    """
    if not events:
        return events, False
    newest = max(r.ts for r in events)
    if compacted.last_ts is not None:
        newest = max(newest, compacted.last_ts)
    cutoff = newest - retention_us
    old = [r for r in events if r.ts < cutoff]
    if not old:
        return events, False
    for rec in old:
        compacted.fold(rec)
    return [r for r in events if r.ts >= cutoff], True


class _UserState:
    __slots__ = ("attributes", "events", "compacted", "version")

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}
        self.events: list[EventRecord] = []
        self.compacted = CompactedHistory()
        self.version = 0


class InProcessProfileStore(ProfileStore):
    """Profiles in this process's memory: fast, not shared, lost on exit. Thread-safe with one lock."""

    def __init__(self, retention_days: float = 90.0, dedup_ttl_days: float = 90.0) -> None:
        super().__init__(retention_days, dedup_ttl_days)
        self._lock = threading.Lock()
        self._users: dict[str, _UserState] = {}
        self._deleted: dict[str, int] = {}  # tombstones: user_id -> version of the deletion
        self._seen: dict[str, float] = {}  # event_id -> expiry (monotonic seconds)
        self._writes = 0
        self._clock = 0  # global write counter: versions never repeat, even across a deletion

    def add_events(self, events: Iterable[tuple[str, EventRecord]]) -> WriteResult:
        applied = duplicates = dropped = 0
        touched: set[str] = set()
        now = time.monotonic()
        with self._lock:
            for user_id, rec in events:
                expiry = self._seen.get(rec.event_id)
                if expiry is not None and expiry > now:
                    duplicates += 1
                    continue
                self._seen[rec.event_id] = now + self.dedup_ttl_s
                if user_id in self._deleted:
                    dropped += 1
                    continue
                state = self._users.get(user_id)
                if state is None:
                    state = self._users[user_id] = _UserState()
                state.events.append(rec)
                self._clock += 1
                state.version = self._clock
                touched.add(user_id)
                applied += 1
            for user_id in touched:
                state = self._users[user_id]
                state.events, _ = compact(state.events, state.compacted, self.retention_us)
            self._writes += 1
            if self._writes % 10_000 == 0:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
        return WriteResult(applied, duplicates, dropped, frozenset(touched))

    def get_profile(self, user_id: str) -> UserProfile:
        with self._lock:
            if user_id in self._deleted:
                return UserProfile(user_id, version=self._deleted[user_id], deleted=True)
            state = self._users.get(user_id)
            if state is None:
                return UserProfile(user_id)
            # The list is copied so a concurrent writer cannot change what the caller iterates.
            return UserProfile(user_id, dict(state.attributes), list(state.events),
                               CompactedHistory(**state.compacted.to_dict()), state.version)

    def version(self, user_id: str) -> int:
        state = self._users.get(user_id)
        if state is not None:
            return state.version
        return self._deleted.get(user_id, 0)

    def upsert_user(self, user_id: str, attributes: Mapping[str, Any], *,
                    reconsent: bool = False) -> UserProfile:
        clean = normalize_attributes(attributes)
        with self._lock:
            if user_id in self._deleted and not reconsent:
                raise ForgottenUser(user_id)
            self._deleted.pop(user_id, None)
            state = self._users.get(user_id)
            if state is None:
                state = self._users[user_id] = _UserState()
            state.attributes.update(clean)
            self._clock += 1
            state.version = self._clock
        return self.get_profile(user_id)

    def delete_user(self, user_id: str) -> bool:
        with self._lock:
            existed = self._users.pop(user_id, None) is not None
            self._clock += 1
            self._deleted[user_id] = self._clock
        return existed

    def count_users(self) -> int:
        return len(self._users)


def make_profile_store(cfg: ProfileStoreConfig) -> ProfileStore:
    """The backend named in the config (``inprocess`` or ``redis``)."""
    if cfg.backend == "inprocess":
        return InProcessProfileStore(cfg.retention_days, cfg.dedup_ttl_days)
    if cfg.backend == "redis":
        from features.live.redis_store import RedisProfileStore

        return RedisProfileStore(cfg.redis_url, cfg.key_prefix, cfg.retention_days, cfg.dedup_ttl_days)
    raise ConfigError(f"store.backend: unknown backend '{cfg.backend}'")
