"""The forget ledger: privacy deletions that every later feature build honours.

The ledger is a JSON Lines file, one ``{"user_id", "forgotten_at"}`` record per deletion, only ever
appended to. Each record is written with one ``write`` on a file opened in append mode under an
exclusive ``flock``, so concurrent writers (the CLI, several serving workers) never interleave
lines. Its path comes from ``privacy.ledger_path`` in ``configs/features.yaml``
(:func:`features.build_config.ledger_path`).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import DataError

if TYPE_CHECKING:
    from features.profile_store import ProfileStore


@dataclass(frozen=True)
class ForgetRecord:
    """One deletion: who, when (UTC), and the ledger it was written to."""

    user_id: str
    forgotten_at: datetime
    ledger_path: Path


def _default_ledger() -> Path:
    from features.build_config import ledger_path

    return ledger_path()


def forget_user(user_id: str, ledger_path: str | Path | None = None) -> ForgetRecord:
    """Append a deletion of ``user_id`` to the ledger (default: the configured one); concurrency-safe.

    Forgetting a user twice appends a second record; readers treat the ledger as a set.
    Raises :class:`DataError` for an empty user id or an unwritable ledger.
    """
    user_id = str(user_id).strip()
    if not user_id:
        raise DataError("forget: user_id must not be empty")
    path = Path(ledger_path) if ledger_path is not None else _default_ledger()
    record = ForgetRecord(user_id, datetime.now(UTC), path)
    line = json.dumps({"user_id": user_id, "forgotten_at": record.forgotten_at.isoformat()}) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
    except OSError as exc:
        raise DataError(f"{path}: cannot write the forget ledger ({exc.strerror})") from None
    return record


def forgotten_users(ledger_path: str | Path | None = None) -> set[str]:
    """The user ids recorded in the ledger (default: the configured one); empty when it does not exist.

    Raises :class:`DataError` naming the line for a corrupt record.
    """
    path = Path(ledger_path) if ledger_path is not None else _default_ledger()
    try:
        with open(path, encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            lines = handle.readlines()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the forget ledger ({exc.strerror})") from None
    users = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            users.add(str(json.loads(line)["user_id"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: corrupt forget ledger record") from None
    return users


@dataclass(frozen=True)
class ForgetOutcome:
    """A deletion recorded in the ledger and, when a shared online store was given, applied there.

    ``removed_from_store`` is None without a store, else whether the store held the user.
    """

    record: ForgetRecord
    removed_from_store: bool | None


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
        raise DataError(f"online store: cannot delete '{record.user_id}' ({str(exc).splitlines()[0][:200]}); "
                        f"the deletion is recorded in {record.ledger_path}") from None
    return ForgetOutcome(record, removed)
