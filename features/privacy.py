"""The forget ledger: privacy deletions (and explicit re-consents) that every path honours.

A deleted user stays deleted for the online store (events dropped, upserts and preloads refused),
for batch builds (left out of snapshots and quarantine files) until an explicit re-consent, which
is recorded here too. Readers replay the ledger: a user is forgotten when their latest record is a
deletion.

Where the ledger lives is resolved once, the same way in every process (:func:`resolve_ledger`):

- ``privacy.ledger_path`` in configs/features.yaml when set (a file path, made absolute, or a
  ``redis://`` / ``rediss://`` URL);
- else, when the online store (configs/serving.yaml) is Redis, in that Redis under the store's
  key prefix, so every machine and every batch build sees the same deletions;
- else the file ``<work_dir>/privacy/forget_ledger.jsonl`` (absolute).

The file ledger is JSON Lines, only ever appended to, one ``write`` per record under an exclusive
``flock`` (concurrent writers never interleave lines). The Redis ledger is a set of forgotten ids
(``P forgotten``) plus an append-only stream of the records (``P ledger``), written together.
"""

from __future__ import annotations

import abc
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.live.store import ForgottenUser
from propensity.errors import DataError, StoreUnavailable
from propensity.redact import redact

if TYPE_CHECKING:
    from features.batch.config import FeaturesConfig
    from features.live.store import ProfileStore, ProfileStoreConfig

__all__ = ["ForgetLedger", "FileLedger", "RedisLedger", "ForgottenUser", "ForgetRecord", "resolve_ledger",
           "open_ledger", "forget_user", "forgotten_users", "forget_everywhere", "reconsent_everywhere"]


@dataclass(frozen=True)
class ForgetRecord:
    """One deletion (or re-consent, with its reason): who, when (UTC), and where it was recorded."""

    user_id: str
    forgotten_at: datetime
    ledger_path: Path | str
    action: str = "forget"
    reason: str | None = None


def _user(user_id: str) -> str:
    user_id = str(user_id).strip()
    if not user_id:
        raise DataError("forget: user_id must not be empty")
    return user_id


class ForgetLedger(abc.ABC):
    """Append-only record of deletions and re-consents; ``location`` names it (no secrets)."""

    location: Path | str

    def forget(self, user_id: str) -> ForgetRecord:
        """Record a deletion of ``user_id``."""
        record = ForgetRecord(_user(user_id), datetime.now(UTC), self.location)
        self._append(record)
        return record

    def reconsent(self, user_id: str, reason: str) -> ForgetRecord:
        """Record an explicit re-consent (``reason`` is required: who asked, and why)."""
        if not str(reason or "").strip():
            raise DataError("reconsent_reason: required to register a deleted user again")
        record = ForgetRecord(_user(user_id), datetime.now(UTC), self.location, "reconsent",
                              str(reason).strip()[:500])
        self._append(record)
        return record

    @abc.abstractmethod
    def _append(self, record: ForgetRecord) -> None: ...

    @abc.abstractmethod
    def forgotten(self) -> set[str]:
        """The users whose latest record is a deletion."""

    def is_forgotten(self, user_id: str) -> bool:
        return user_id in self.forgotten()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _line(record: ForgetRecord) -> dict[str, Any]:
    if record.action == "forget":
        return {"user_id": record.user_id, "forgotten_at": record.forgotten_at.isoformat()}
    return {"user_id": record.user_id, "action": record.action, "at": record.forgotten_at.isoformat(),
            "reason": record.reason}


class FileLedger(ForgetLedger):
    """The ledger as a JSON Lines file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self.location = self.path

    def _append(self, record: ForgetRecord) -> None:
        line = json.dumps(_line(record)) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        except OSError as exc:
            raise DataError(f"{self.path}: cannot write the forget ledger ({exc.strerror})") from None

    def forgotten(self) -> set[str]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                lines = handle.readlines()
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read the forget ledger ({exc.strerror})") from None
        users: set[str] = set()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                user, action = str(data["user_id"]), data.get("action", "forget")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise DataError(f"{self.path}:{number}: corrupt forget ledger record") from None
            if action == "reconsent":
                users.discard(user)
            else:
                users.add(user)
        return users


class RedisLedger(ForgetLedger):
    """The ledger in Redis: set ``P forgotten`` + stream ``P ledger`` (see the module docstring)."""

    def __init__(self, url: str, key_prefix: str = "propensity:") -> None:
        import redis

        self._r: Any = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0,
                                            socket_timeout=5.0)
        self.prefix = key_prefix
        self.location = f"{redact(url)} (keys {key_prefix}forgotten, {key_prefix}ledger)"

    def _append(self, record: ForgetRecord) -> None:
        import redis

        fields = {k: ("" if v is None else str(v)) for k, v in _line(record).items()}
        pipe = self._r.pipeline(transaction=True)
        if record.action == "forget":
            pipe.sadd(f"{self.prefix}forgotten", record.user_id)
        else:
            pipe.srem(f"{self.prefix}forgotten", record.user_id)
        pipe.xadd(f"{self.prefix}ledger", fields)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            problem = redact(str(exc))[:200]
            down = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
            message = f"forget ledger: Redis at {self.location} failed ({problem})"
            raise (StoreUnavailable if down else DataError)(message) from None

    def forgotten(self) -> set[str]:
        return set(self._r.smembers(f"{self.prefix}forgotten"))

    def is_forgotten(self, user_id: str) -> bool:
        return bool(self._r.sismember(f"{self.prefix}forgotten", user_id))

    def close(self) -> None:
        self._r.close()


def _default_store_config() -> ProfileStoreConfig | None:
    try:
        from serving.config import load_serving_config
    except ImportError:  # a features-only install has no serving stage
        return None
    return load_serving_config().store


def resolve_ledger(features_cfg: FeaturesConfig | None = None,
                   store_cfg: ProfileStoreConfig | None = None) -> str:
    """Where the ledger lives (see the module docstring): an absolute file path or a Redis spec
    ``redis://...#<key prefix>``. ``None`` arguments load the default configs."""
    from features.batch.config import load_features_config
    from propensity.paths import work_dir

    cfg = features_cfg if features_cfg is not None else load_features_config()
    explicit = cfg.privacy.ledger_path
    if explicit:
        if explicit.startswith(("redis://", "rediss://")):
            return explicit if "#" in explicit else f"{explicit}#propensity:"
        return str(Path(explicit).expanduser().absolute())
    store = store_cfg if store_cfg is not None else _default_store_config()
    if store is not None and store.backend == "redis":
        return f"{store.redis_url}#{store.key_prefix}"
    return str((work_dir() / "privacy" / "forget_ledger.jsonl").absolute())


def open_ledger(location: str | Path | None = None) -> ForgetLedger:
    """The ledger at ``location`` (a path or a :func:`resolve_ledger` spec; None resolves it)."""
    spec = str(location) if location is not None else resolve_ledger()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        url, _, prefix = spec.partition("#")
        return RedisLedger(url, prefix or "propensity:")
    return FileLedger(spec)


def forget_user(user_id: str, ledger_path: str | Path | None = None) -> ForgetRecord:
    """Append a deletion of ``user_id`` to the ledger (default: the resolved one); concurrency-safe.

    Forgetting a user twice appends a second record; readers treat the ledger as a set.
    Raises :class:`DataError` for an empty user id or an unwritable ledger.
    """
    ledger = open_ledger(ledger_path)
    try:
        return ledger.forget(user_id)
    finally:
        ledger.close()


def forgotten_users(ledger_path: str | Path | None = None) -> set[str]:
    """The users currently forgotten (default: the resolved ledger); empty when there is no ledger.

    Raises :class:`DataError` naming the line for a corrupt record.
    """
    ledger = open_ledger(ledger_path)
    try:
        return ledger.forgotten()
    finally:
        ledger.close()


@dataclass(frozen=True)
class ForgetOutcome:
    """A deletion recorded in the ledger and, when a shared online store was given, applied there.

    ``removed_from_store`` is None without a store, else whether the store held the user.
    """

    record: ForgetRecord
    removed_from_store: bool | None


def _store_failure(action: str, user_id: str, exc: Exception, where: str | Path) -> DataError:
    return DataError(f"online store: cannot {action} '{user_id}' ({redact(str(exc).splitlines()[0])[:200]}); "
                     f"the ledger record is kept in {where}")


def forget_everywhere(user_id: str, ledger_path: str | Path | None = None,
                      store: ProfileStore | None = None) -> ForgetOutcome:
    """Record the deletion in the ledger first (durable), then delete the user from ``store``.

    Raises :class:`DataError` when the store cannot be reached; the ledger record stays, so later
    feature builds still leave the user out.
    """
    record = forget_user(user_id, ledger_path)
    if store is None:
        return ForgetOutcome(record, None)
    try:
        removed = store.delete_user(record.user_id)
    except Exception as exc:  # backend clients (redis, ...) raise their own error types
        raise _store_failure("delete", record.user_id, exc, record.ledger_path) from None
    return ForgetOutcome(record, removed)


def reconsent_everywhere(user_id: str, reason: str, ledger_path: str | Path | None = None,
                         store: ProfileStore | None = None,
                         attributes: dict[str, Any] | None = None) -> ForgetRecord:
    """Record an explicit re-consent, then register the user again in ``store`` with consent true."""
    ledger = open_ledger(ledger_path)
    try:
        record = ledger.reconsent(user_id, reason)
    finally:
        ledger.close()
    if store is not None:
        try:
            store.upsert_user(record.user_id, {**(attributes or {}), "consent": True}, reconsent=True)
        except DataError:
            raise
        except Exception as exc:
            raise _store_failure("re-register", record.user_id, exc, record.ledger_path) from None
    return record


def apply_ledger(store: ProfileStore, ledger: ForgetLedger) -> int:
    """Tombstone every forgotten user in ``store`` that is not yet deleted there; returns how many.

    A fresh in-process store (a restarted service) starts with the ledger's deletions.
    """
    n = 0
    for user_id in ledger.forgotten():
        if not store.get_profile(user_id).deleted:
            store.delete_user(user_id)
            n += 1
    return n


class LedgerSync:
    """Keeps a running service's store in step with a file ledger other processes append to
    (``propensity forget`` next to a service with an in-process store).

    :meth:`sync` costs one ``stat`` when nothing changed. A Redis ledger needs no syncing: every
    writer tombstones the shared store itself.
    """

    def __init__(self, ledger: ForgetLedger) -> None:
        self.ledger = ledger
        self._seen: tuple[int, int] | None = None

    def sync(self, store: ProfileStore) -> int:
        """Tombstone users forgotten since the last call; returns how many."""
        if not isinstance(self.ledger, FileLedger):
            return 0
        try:
            stat = os.stat(self.ledger.path)  # every request: the bare call, not pathlib's
        except FileNotFoundError:
            return 0
        mark = (stat.st_mtime_ns, stat.st_size)
        if mark == self._seen:
            return 0
        self._seen = mark
        return apply_ledger(store, self.ledger)


def scrub_forgotten(frame: Any, forgotten: set[str]) -> Any:
    """A Polars frame without the rows of forgotten users (for quarantine files)."""
    import polars as pl

    if not forgotten or "user_id" not in frame.columns:
        return frame
    ids = pl.col("user_id").cast(pl.String, strict=False).str.strip_chars()
    return frame.filter(~ids.is_in(sorted(forgotten)).fill_null(False))
