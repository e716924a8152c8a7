"""Privacy: the forget ledger, and builds that leave out forgotten users and users without consent."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path

import polars as pl
import pytest

from features.batch.config import ledger_path, load_features_config
from features.batch.pipeline import build_features
from features.privacy import forget_user, forgotten_users
from propensity.cli.main import main
from propensity.errors import DataError

AS_OF = datetime(2024, 3, 10, tzinfo=UTC)


def _config(tmp_path: Path, ledger: Path) -> Path:
    path = tmp_path / "features.yaml"
    path.write_text(f"privacy:\n  ledger_path: {ledger}\n")
    return path


def _raw_files(tmp_path: Path) -> tuple[Path, Path]:
    users = ["alice", "bob", "carol", "dave"]
    events = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(8)],
        "user_id": users * 2,
        "timestamp": [AS_OF - timedelta(hours=h) for h in (1, 2, 3, 4, 30, 40, 50, 60)],
        "event": ["page_view"] * 8,
    })
    crm = pl.DataFrame({"user_id": users, "consent": ["true", "false", "true", None]})
    events.write_parquet(tmp_path / "events.parquet")
    crm.write_csv(tmp_path / "users.csv")
    return tmp_path / "events.parquet", tmp_path / "users.csv"


def test_forget_user_appends_to_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "deep" / "ledger.jsonl"
    record = forget_user("u1", ledger)
    forget_user("u2", ledger)
    forget_user("u1", ledger)
    assert record.user_id == "u1"
    assert record.ledger_path == ledger
    assert forgotten_users(ledger) == {"u1", "u2"}
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [line["user_id"] for line in lines] == ["u1", "u2", "u1"]
    assert datetime.fromisoformat(lines[0]["forgotten_at"]).tzinfo is not None


def test_a_missing_ledger_means_nobody_was_forgotten(tmp_path: Path) -> None:
    assert forgotten_users(tmp_path / "none.jsonl") == set()


def test_empty_user_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="user_id must not be empty"):
        forget_user("  ", tmp_path / "ledger.jsonl")


def test_a_corrupt_ledger_line_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    forget_user("u1", ledger)
    with open(ledger, "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DataError, match=r"ledger.jsonl:2: corrupt"):
        forgotten_users(ledger)


def _forget_many(args: tuple[Path, int]) -> None:
    ledger, worker = args
    for i in range(50):
        forget_user(f"w{worker}-u{i}", ledger)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    with ProcessPoolExecutor(max_workers=4, mp_context=get_context("fork")) as pool:
        list(pool.map(_forget_many, [(ledger, w) for w in range(4)]))
    lines = ledger.read_text().splitlines()
    assert len(lines) == 200
    assert forgotten_users(ledger) == {f"w{w}-u{i}" for w in range(4) for i in range(50)}


def test_default_ledger_lives_under_the_work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "home"))
    assert ledger_path(load_features_config()) == tmp_path / "home" / "privacy" / "forget_ledger.jsonl"


def test_forgotten_users_are_left_out_of_every_later_build(tmp_path: Path) -> None:
    events, users = _raw_files(tmp_path)
    config = _config(tmp_path, tmp_path / "ledger.jsonl")
    first = build_features(events, None, AS_OF, None, 2, timedelta(days=1), tmp_path / "a.parquet", config)
    assert "carol" in pl.read_parquet(first.output)["user_id"].to_list()
    forget_user("carol", tmp_path / "ledger.jsonl")
    second = build_features(events, None, AS_OF, None, 2, timedelta(days=1), tmp_path / "b.parquet", config)
    snapshot = pl.read_parquet(second.output)
    assert "carol" not in snapshot["user_id"].to_list()
    assert sorted(snapshot["user_id"].unique()) == ["alice", "bob", "dave"]
    assert second.metadata["forgotten_users_in_ledger"] == 1


def test_users_without_consent_are_left_out_of_training_snapshots(tmp_path: Path) -> None:
    events, users = _raw_files(tmp_path)
    config = _config(tmp_path, tmp_path / "ledger.jsonl")
    result = build_features(events, users, AS_OF, None, None, None, tmp_path / "f.parquet", config)
    # bob has consent false; dave has no consent value and takes the default (true).
    assert sorted(pl.read_parquet(result.output)["user_id"]) == ["alice", "carol", "dave"]
    strict = tmp_path / "strict.yaml"
    strict.write_text(f"privacy:\n  ledger_path: {tmp_path / 'ledger.jsonl'}\n"
                      "ingest:\n  consent_default: false\n")
    result = build_features(events, users, AS_OF, None, None, None, tmp_path / "g.parquet", strict)
    assert sorted(pl.read_parquet(result.output)["user_id"]) == ["alice", "carol"]


def test_forget_command_records_the_deletion_for_the_next_build(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    events, _ = _raw_files(tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    config = _config(tmp_path, ledger)
    main(["forget", "alice", "--config", str(config), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["user_id"] == "alice"
    assert out["ledger"] == str(ledger)
    assert (out["online_store"], out["removed_from_store"]) == ("inprocess", None)
    main(["features", "--events", str(events), "--as-of", "2024-03-10", "--out", str(tmp_path / "f.parquet"),
          "--config", str(config), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 3
    assert "alice" not in pl.read_parquet(tmp_path / "f.parquet")["user_id"].to_list()


@pytest.mark.redis
def test_forget_command_removes_the_user_from_a_shared_redis_store(
        tmp_path: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    from features.live.store import ProfileStoreConfig, make_profile_store

    serving = tmp_path / "serving.yaml"
    serving.write_text(f"store:\n  backend: redis\n  redis_url: {redis_url}\n"
                       f"  key_prefix: '{redis_prefix}'\n")
    store = make_profile_store(ProfileStoreConfig(backend="redis", redis_url=redis_url,
                                                  key_prefix=redis_prefix))
    try:
        store.upsert_user("alice", {"age": 30, "consent": True})
        main(["forget", "alice", "--config", str(_config(tmp_path, tmp_path / "ledger.jsonl")),
              "--serving-config", str(serving), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert (out["online_store"], out["removed_from_store"]) == ("redis", True)
        assert store.delete_user("alice") is False  # already gone
        assert forgotten_users(tmp_path / "ledger.jsonl") == {"alice"}
    finally:
        store.close()
