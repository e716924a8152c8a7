"""Dataset versions and the feature stage: sidecar metadata, digests, read_snapshot, the CLI."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.batch.dataset import content_digest, metadata_path, read_snapshot
from features.batch.pipeline import build_features
from features.registry import FEATURE_NAMES
from propensity.cli.main import main
from propensity.errors import DataError

AS_OF = datetime(2024, 3, 10, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "features.yaml"
    path.write_text(f"privacy:\n  ledger_path: {tmp_path / 'ledger.jsonl'}\n")
    return path


def _events_csv(tmp_path: Path, bad_rows: int = 0) -> Path:
    rows = [{"event_id": f"e{i}", "user_id": f"u{i % 5}",
             "timestamp": (AS_OF - timedelta(hours=3 * i - 20)).isoformat(),
             "event": "purchase" if i % 4 == 0 else "page_view", "value": "12.5"} for i in range(40)]
    rows.append(dict(rows[0]))  # a duplicate delivery
    rows += [{"event_id": f"bad{i}", "user_id": "u1", "timestamp": "not a time", "event": "page_view",
              "value": "1"} for i in range(bad_rows)]
    path = tmp_path / "events.csv"
    pl.DataFrame(rows).write_csv(path)
    return path


def test_snapshot_is_written_with_its_metadata(tmp_path: Path, config: Path) -> None:
    events = _events_csv(tmp_path)
    result = build_features(events, None, AS_OF, timedelta(days=2), 2, timedelta(days=1),
                            tmp_path / "F.parquet", config)
    assert result.metadata_path == tmp_path / "F.meta.json"
    meta = json.loads(result.metadata_path.read_text())
    frame = pl.read_parquet(result.output)
    assert meta["as_of"] == [(AS_OF - timedelta(days=1)).isoformat(), AS_OF.isoformat()]
    assert (meta["horizon"], meta["horizon_seconds"]) == ("2d", 172800.0)
    assert meta["rows"] == frame.height == result.rows
    assert meta["users"] == 5
    assert meta["label_rate"] == pytest.approx(frame["label"].mean())
    assert meta["features"] == [*FEATURE_NAMES, "engagement_score", "journey_stage"]
    assert meta["engine"] == "local"
    assert meta["digest"] == content_digest(frame) == result.digest
    assert meta["sources"]["events"]["sha256"] == hashlib.sha256(events.read_bytes()).hexdigest()
    assert meta["sources"]["users"] is None
    assert meta["ingest"][str(events)] == {"rows_read": 41, "clean": 40, "duplicates": 1, "quarantined": 0}


def test_same_data_gives_the_same_digest(tmp_path: Path, config: Path) -> None:
    events = _events_csv(tmp_path)
    a = build_features(events, None, AS_OF, None, None, None, tmp_path / "a.parquet", config)
    b = build_features(events, None, AS_OF, None, None, None, tmp_path / "b.parquet", config)
    assert a.digest == b.digest
    frame = pl.read_parquet(a.output)
    assert content_digest(frame.reverse()) == a.digest
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(1.5).otherwise(pl.col("age"))
                                 .alias("age"))
    assert content_digest(changed) != a.digest
    assert content_digest(frame.with_columns(pl.lit(None, pl.Float64).alias("age"))) == a.digest  # all null


def test_read_snapshot_returns_the_frame_and_metadata(tmp_path: Path, config: Path) -> None:
    result = build_features(_events_csv(tmp_path), None, AS_OF, None, None, None, tmp_path / "F.parquet",
                            config)
    frame, meta = read_snapshot(result.output, verify=True)
    assert frame.height == result.rows
    assert meta["digest"] == result.digest


def test_read_snapshot_detects_a_changed_file(tmp_path: Path, config: Path) -> None:
    result = build_features(_events_csv(tmp_path), None, AS_OF, None, None, None, tmp_path / "F.parquet",
                            config)
    tampered = pl.read_parquet(result.output).with_columns(pl.lit(0, pl.Int64).alias("label"))
    tampered.write_parquet(result.output)
    read_snapshot(result.output)
    with pytest.raises(DataError, match="does not match the digest"):
        read_snapshot(result.output, verify=True)


def test_read_snapshot_without_metadata_is_a_data_error(tmp_path: Path) -> None:
    pl.DataFrame({"user_id": ["u"]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"x.meta.json: snapshot metadata not found"):
        read_snapshot(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="snapshot file not found"):
        read_snapshot(tmp_path / "missing.parquet")
    assert metadata_path("dir/F.parquet") == Path("dir/F.meta.json")


def test_bad_rows_are_quarantined_and_reported(tmp_path: Path, config: Path) -> None:
    result = build_features(_events_csv(tmp_path, bad_rows=2), None, AS_OF, None, None, None,
                            tmp_path / "F.parquet", config)
    assert result.quarantined == 2
    assert result.quarantine_path == tmp_path / "F.quarantine.parquet"
    quarantine = pl.read_parquet(result.quarantine_path)
    assert quarantine["reason"].to_list() == ["unparseable timestamp"] * 2
    assert quarantine["row"].to_list() == [41, 42]


def test_too_many_bad_rows_fail_after_writing_the_quarantine(tmp_path: Path, config: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    events = _events_csv(tmp_path, bad_rows=5)  # 5 of 46 rows: share 0.109 > 0.05
    with pytest.raises(SystemExit) as exc:
        main(["features", "--events", str(events), "--as-of", "2024-03-10", "--out",
              str(tmp_path / "F.parquet"), "--config", str(config)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ")
    assert "share 0.109 > limit 0.050" in err
    assert "F.quarantine.parquet" in err
    assert (tmp_path / "F.quarantine.parquet").exists()
    assert not (tmp_path / "F.parquet").exists()


def test_features_command_json_has_exactly_the_documented_keys(tmp_path: Path, config: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    main(["features", "--events", str(_events_csv(tmp_path, bad_rows=1)), "--as-of", "2024-03-10T00:00:00",
          "--horizon", "36h", "--snapshots", "2", "--every", "1d", "--out", str(tmp_path / "F.parquet"),
          "--config", str(config), "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) == {"output", "rows", "users", "label_rate", "quarantined", "quarantine_path",
                        "quarantine_reasons", "duplicates", "digest", "paths", "seconds", "warnings"}
    assert out["paths"]["snapshot"] == out["output"] and out["paths"]["quarantine"] == out["quarantine_path"]
    assert out["quarantined"] == 1
    assert out["quarantine_path"] == str(tmp_path / "F.quarantine.parquet")
    assert "clean events" in captured.err  # progress notes go to stderr
    assert json.loads((tmp_path / "F.meta.json").read_text())["horizon"] == "36h"


def test_features_command_prints_a_human_summary(tmp_path: Path, config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    main(["features", "--events", str(_events_csv(tmp_path)), "--as-of", "2024-03-10",
          "--out", str(tmp_path / "F.parquet"), "--config", str(config)])
    out = capsys.readouterr().out
    assert "wrote 5 rows (5 users, label rate" in out
    assert "quarantined 0 bad rows" in out


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--horizon", "7x", "'7x' is not a duration"),
    ("--horizon", "0d", "duration must be positive"),
    ("--as-of", "March 10", "'March 10' is not an ISO-8601 date"),
])
def test_bad_flags_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str,
                                    message: str) -> None:
    args = {"--events": "e.csv", "--as-of": "2024-03-10", "--out": str(tmp_path / "F.parquet"), flag: value}
    with pytest.raises(SystemExit) as exc:
        main(["features", *[x for kv in args.items() for x in kv]])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_config_key_names_the_key_and_file(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "features.yaml"
    bad.write_text("engine: local\nhorizn: 7d\n")
    with pytest.raises(SystemExit):
        main(["features", "--events", str(_events_csv(tmp_path)), "--as-of", "2024-03-10",
              "--out", str(tmp_path / "F.parquet"), "--config", str(bad)])
    assert f"error: {bad}: unknown key 'horizn'" in capsys.readouterr().err


def test_feature_build_ignores_every_event_at_or_after_the_latest_as_of(tmp_path: Path, config: Path) -> None:
    """Leakage, end to end: the whole build (registry features, engagement score, journey stage) on a
    generated shop equals the build on the same events cut at the latest ``as_of``; only labels move."""
    from features.shop.config import GenerateConfig
    from features.shop.generate import generate_shop

    shop = generate_shop(GenerateConfig.model_validate(
        {"users": 400, "days": 30, "seed": 11, "malformed_share": 0, "duplicate_share": 0}))
    as_of = datetime(2026, 9, 24, tzinfo=UTC)
    shop.users.write_parquet(tmp_path / "users.parquet")
    shop.events.write_parquet(tmp_path / "all.parquet")
    past = shop.events.filter(pl.col("timestamp") < as_of)
    assert past.height < shop.events.height
    past.write_parquet(tmp_path / "past.parquet")
    built = {name: pl.read_parquet(build_features(tmp_path / f"{name}.parquet", tmp_path / "users.parquet",
                                                  as_of, timedelta(days=7), 3, timedelta(days=7),
                                                  tmp_path / f"F_{name}.parquet", config).output)
             for name in ("all", "past")}
    full, cut = built["all"], built["past"]
    assert {"engagement_score", "journey_stage"} <= set(full.columns)
    # exact for every column; float sums (the decayed engagement score) to summation-order noise
    assert_frame_equal(full.drop("label"), cut.drop("label"), check_exact=False, rtol=1e-12, atol=1e-9)
    latest = pl.col("as_of") == pl.col("as_of").max()
    assert full.filter(latest)["label"].sum() > 0 and cut.filter(latest)["label"].sum() == 0
    assert full.filter(~latest)["label"].equals(cut.filter(~latest)["label"])
