"""Bad or suspicious input files through the CLI: row-level quarantine, clear one-line errors, warnings.

Each test reproduces one finding of issues 11 (finding 9) and 16 (a CLI that guides).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from train_support import synthetic_snapshots

from features.batch.dataset import metadata_path, write_snapshot
from propensity.cli.main import cli, main

T0 = datetime(2024, 3, 1, tzinfo=UTC)
AS_OF = "2024-03-15"
ISO = "%Y-%m-%dT%H:%M:%S%z"


def events_frame(n_users: int = 6, days: int = 23) -> pl.DataFrame:
    """Daily page views per user from T0 and a purchase by every other user after the cut-off."""
    rows = []
    for u in range(n_users):
        for d in range(days):
            rows.append({"event_id": f"e{u}-{d}", "user_id": f"u{u}", "event": "page_view",
                         "timestamp": (T0 + timedelta(days=d, hours=u)).isoformat()})
        if u % 2 == 0:
            rows.append({"event_id": f"p{u}", "user_id": f"u{u}", "event": "purchase",
                         "timestamp": (T0 + timedelta(days=15, hours=1)).isoformat()})
    return pl.DataFrame(rows)


def run(args: list[str], home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``propensity ARGS`` in-process, as the console script runs it: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    return tmp_path


def features(home: Path, events: Path, *extra: str) -> list[str]:
    return ["features", "--events", str(events), "--as-of", AS_OF, "--out", str(home / "f.parquet"), *extra]


def balance(out: Path) -> dict[str, int]:
    return next(iter(json.loads(metadata_path(out).read_text())["ingest"].values()))


# --- row-level quarantine ----------------------------------------------------------------------


def test_one_non_utf8_byte_quarantines_that_row_only(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.csv"
    events_frame().write_csv(path)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"page_view", b"page_\xff\xfeview")
    path.write_bytes(b"\n".join(lines))
    code, _, err = run(features(home, path, "--config", str(cfg_with(home, max_bad_share=0.5))), home, capsys)
    assert code == 0, err
    q = pl.read_parquet(home / "f.quarantine.parquet")
    assert q.select("file", "row").to_dicts() == [{"file": str(path), "row": 2}]
    assert q["reason"][0].startswith("not UTF-8 (byte 0xff")
    counts = balance(home / "f.parquet")
    assert counts["rows_read"] == len(lines) - 2 == sum_of_parts(counts)


def test_one_broken_json_line_quarantines_that_line_only(home: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.jsonl"
    events_frame().write_ndjson(path)
    lines = path.read_text().splitlines()
    lines[5] = lines[5][:-3]  # cut off the closing brace
    lines.insert(8, "")  # blank lines are not rows
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run(features(home, path, "--config", str(cfg_with(home, max_bad_share=0.5))), home, capsys)
    assert code == 0, err
    q = pl.read_parquet(home / "f.quarantine.parquet")
    assert q["row"].to_list() == [5]
    assert q["reason"][0].startswith("broken JSON")
    counts = balance(home / "f.parquet")
    assert counts["rows_read"] == len(lines) - 1 == sum_of_parts(counts)


def test_a_ragged_csv_row_is_quarantined_and_later_bad_rows_keep_their_row_numbers(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.csv"
    soon = pl.when(pl.col("event_id") == "e0-9").then(pl.lit("soon")).otherwise(pl.col("timestamp"))
    frame = events_frame().with_columns(soon.alias("timestamp"))
    frame.write_csv(path)
    lines = path.read_text().splitlines()
    lines[2] += ",extra,fields"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run(features(home, path, "--config", str(cfg_with(home, max_bad_share=0.5))), home, capsys)
    assert code == 0, err
    q = pl.read_parquet(home / "f.quarantine.parquet").sort("row")
    assert q["row"].to_list() == [1, 9]
    assert q["reason"].to_list() == ["ragged row: 6 fields, the header has 4", "unparseable timestamp"]
    assert q["event_id"][1] == "e0-9"


# --- timestamps --------------------------------------------------------------------------------


def test_epoch_numbers_without_a_unit_fail_with_the_hint_and_pass_with_one(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.parquet"
    events_frame().with_columns(pl.col("timestamp").str.to_datetime(ISO).dt.epoch("s")).write_parquet(path)
    proc = subprocess.run([sys.executable, "-m", "propensity.cli", *features(home, path)],
                          capture_output=True,
                          text=True, env={**_env(home)})
    assert proc.returncode == 2
    assert last_line(proc.stderr).startswith("error: ") and "Traceback" not in proc.stderr
    assert "epoch numbers need --timestamp-unit s|ms|us" in proc.stderr
    code, out, err = run(features(home, path, "--timestamp-unit", "s", "--json"), home, capsys)
    assert code == 0, err
    assert json.loads(out)["quarantined"] == 0


def test_the_config_timestamp_unit_reads_milliseconds(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.csv"
    events_frame().with_columns(pl.col("timestamp").str.to_datetime(ISO).dt.epoch("ms")).write_csv(path)
    code, out, err = run(features(home, path, "--json", "--config", str(cfg_with(home, timestamp_unit="ms"))),
                         home, capsys)
    assert code == 0, err
    assert json.loads(out)["quarantined"] == 0


# --- CSV delimiters ----------------------------------------------------------------------------


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolon_and_tab_separated_csv_are_detected(home: Path, capsys: pytest.CaptureFixture[str],
                                                      separator: str) -> None:
    path = home / "events.csv"
    events_frame().write_csv(path, separator=separator)
    code, out, err = run(features(home, path, "--json"), home, capsys)
    assert code == 0, err
    assert json.loads(out)["rows"] == 6


def test_an_unknown_delimiter_is_named_in_the_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "events.csv"
    events_frame().write_csv(path, separator="|")
    code, _, err = run(features(home, path), home, capsys)
    assert code == 2
    assert last_line(err).startswith("error: ") and "Traceback" not in err
    assert "missing required column 'event_id' (read as CSV with delimiter ',')" in err
    assert "event_id|user_id" in err


# --- users files -------------------------------------------------------------------------------


def test_duplicate_users_are_a_one_line_error_naming_them(home: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)
    users = home / "users.csv"
    pl.DataFrame({"user_id": ["u0", "u1", "u0"], "consent": ["true", "true", "false"]}).write_csv(users)
    code, _, err = run(features(home, events, "--users", str(users)), home, capsys)
    assert code == 2 and last_line(err).startswith("error: ")
    assert "1 user_id(s) have several rows ('u0')" in err


def test_a_later_consent_false_wins_with_updated_at(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)
    users = home / "users.csv"
    pl.DataFrame({"user_id": ["u0", "u1", "u0"], "consent": ["true", "true", "false"],
                  "updated_at": ["2024-01-01", "2024-01-01", "2024-02-01T00:00:00Z"]}).write_csv(users)
    code, out, err = run(features(home, events, "--users", str(users), "--json"), home, capsys)
    assert code == 0, err
    assert json.loads(out)["duplicates"] == 1
    assert "u0" not in pl.read_parquet(home / "f.parquet")["user_id"].to_list()


def test_users_matching_no_event_user_give_a_warning(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)
    users = home / "users.parquet"
    pl.DataFrame({"user_id": ["x1", "x2"], "age": [30, 40]}).write_parquet(users)
    code, _, err = run(features(home, events, "--users", str(users)), home, capsys)
    assert code == 0, err
    assert f"warning: users file {users} matches no user of the events" in err


def test_an_events_file_given_as_users_is_an_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)
    code, _, err = run(features(home, events, "--users", str(events)), home, capsys)
    assert code == 2 and last_line(err).startswith("error: ")
    assert f"--users {events}: this is an events file" in err


# --- output and cut-off ------------------------------------------------------------------------


def test_an_out_extension_that_is_not_parquet_is_an_error(home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)
    args = features(home, events)
    args[args.index("--out") + 1] = str(home / "f.csv")
    code, _, err = run(args, home, capsys)
    assert code == 2 and last_line(err).startswith("error: ")
    assert "features are written as Parquet; use a .parquet file name" in err
    assert not (home / "f.csv").exists()


def test_a_cut_off_past_the_data_warns_that_labels_are_censored(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = home / "events.parquet"
    events_frame().write_parquet(events)  # data ends 2024-03-23T05:00Z
    args = features(home, events, "--json")
    args[args.index("--as-of") + 1] = "2024-03-20"
    code, out, err = run(args, home, capsys)
    assert code == 0, err
    assert json.loads(out)["label_rate"] == 0.0
    assert "warning: 1 of 1 snapshot(s)" in err and "labels are censored" in err
    assert "use --as-of 2024-03-16 or earlier" in err
    assert json.loads(out)["warnings"]
    code, out, err = run(features(home, events, "--json"), home, capsys)  # 2024-03-15 + 7d is covered
    assert "warning:" not in err and json.loads(out)["warnings"] == []


# --- the summary -------------------------------------------------------------------------------


def test_summary_and_json_report_duplicates_and_top_quarantine_reasons(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = events_frame()
    noisy = pl.concat([frame, frame.head(3),
                       frame.slice(3, 2).with_columns(pl.lit("soon").alias("timestamp"),
                                                      pl.format("x{}", pl.col("event_id")).alias("event_id")),
                       frame.slice(5, 1).with_columns(pl.lit(None, pl.String).alias("user_id"),
                                                      pl.lit("y").alias("event_id"))])
    events = home / "events.parquet"
    noisy.write_parquet(events)
    config = str(cfg_with(home, max_bad_share=0.5))
    code, out, err = run(features(home, events, "--json", "--config", config), home, capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["duplicates"] == 3
    assert doc["quarantine_reasons"] == {"unparseable timestamp": 2, "missing user_id": 1}
    code, out, err = run(features(home, events, "--config", config), home, capsys)
    assert "quarantined 3 bad rows" in out
    assert "       2  unparseable timestamp" in out and "       1  missing user_id" in out
    assert "3 duplicate rows counted once" in out


# --- training: a stray oracle.parquet ----------------------------------------------------------


def test_an_oracle_parquet_with_other_columns_does_not_stop_training(home: Path) -> None:
    (home / "data").mkdir()
    pl.DataFrame({"user_id": ["u1"], "whatever": [1.0]}).write_parquet(home / "data" / "oracle.parquet")
    snapshot = home / "snap.parquet"
    write_snapshot(synthetic_snapshots(n_users=300, n_snapshots=3, seed=2), snapshot,
                   {"as_of": [], "horizon": "7d",
                    "sources": {"events": {"path": str(home / "data" / "events.parquet")}}})
    result = CliRunner().invoke(cli, ["train", "--features", str(snapshot), "--trials", "1",
                                      "--tracking-uri", f"sqlite:///{home}/mlflow.db"])
    assert result.exit_code == 0, result.output
    assert "oracle not used" in result.stderr and "not an oracle file (missing column(s) as_of, p_true" \
        in result.stderr


def test_an_explicit_oracle_with_other_columns_is_a_one_line_error(home: Path) -> None:
    bad = home / "oracle.parquet"
    pl.DataFrame({"user_id": ["u1"], "whatever": [1.0]}).write_parquet(bad)
    snapshot = home / "snap.parquet"
    write_snapshot(synthetic_snapshots(n_users=300, n_snapshots=3, seed=2), snapshot,
                   {"as_of": [], "horizon": "7d"})
    proc = subprocess.run([sys.executable, "-m", "propensity.cli", "train", "--features", str(snapshot),
                          "--trials",
                           "1", "--tracking-uri", f"sqlite:///{home}/mlflow.db", "--oracle", str(bad)],
                          capture_output=True, text=True, env=_env(home))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "not an oracle file" in last
    assert "Traceback" not in proc.stderr


# --- helpers -----------------------------------------------------------------------------------


def sum_of_parts(counts: dict[str, int]) -> int:
    return counts["clean"] + counts["duplicates"] + counts["quarantined"]


def last_line(err: str) -> str:
    """The error line (progress lines come before it on stderr)."""
    return err.strip().splitlines()[-1]


def cfg_with(home: Path, **ingest: object) -> Path:
    path = home / "features.yaml"
    path.write_text(json.dumps({"ingest": ingest}))  # JSON is YAML
    return path


def _env(home: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PROPENSITY_HOME": str(home / "work")}
