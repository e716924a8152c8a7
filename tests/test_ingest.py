"""Ingestion: reading by extension, normalisation, de-duplication, validation and quarantine."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.ingest.tables import EVENT_SCHEMA, USER_SCHEMA, read_table
from features.ingest.validate import (
    check_bad_share,
    ingest_events,
    validate_events,
    validate_users,
    write_quarantine,
)
from propensity.errors import DataError


def _events(**overrides: list) -> pl.DataFrame:
    base = {
        "event_id": ["e1", "e2", "e3"],
        "user_id": ["u1", "u1", "u2"],
        "timestamp": ["2024-03-01T10:00:00+00:00", "2024-03-01T11:00:00+00:00", "2024-03-02T09:30:00+00:00"],
        "event": ["page_view", "add_to_cart", "purchase"],
        "value": [None, "19.5", "19.5"],
    }
    base.update(overrides)
    return pl.DataFrame(base, schema={k: pl.String for k in base})


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
         micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- reading ---------------------------------------------------------------------------------------


def test_parquet_csv_and_jsonl_give_the_same_clean_events(tmp_path: Path) -> None:
    raw = _events()
    raw.write_parquet(tmp_path / "e.parquet")
    raw.write_csv(tmp_path / "e.csv")
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in raw.to_dicts()) + "\n")
    frames = [validate_events(read_table(tmp_path / f"e.{ext}")).clean for ext in ("parquet", "csv", "jsonl")]
    assert frames[0].height == 3
    assert frames[0].equals(frames[1])
    assert frames[0].equals(frames[2])
    assert dict(frames[0].schema) == EVENT_SCHEMA


def test_unsupported_extension_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="events.xlsx.*unsupported"):
        read_table(path)


def test_missing_file_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.parquet: file not found"):
        read_table(tmp_path / "nope.parquet")


@pytest.mark.parametrize("name", ["broken.parquet", "broken.jsonl"])
def test_corrupt_file_is_a_one_line_data_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 this is not {valid\n")
    with pytest.raises(DataError) as exc:
        read_table(path)
    assert name in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_required_column_names_the_column_and_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    _events().drop("timestamp").write_csv(path)
    with pytest.raises(DataError, match=r"e\.csv: missing required column 'timestamp'"):
        ingest_events(path)


def test_unknown_extra_columns_are_ignored() -> None:
    clean = validate_events(_events().with_columns(pl.lit("x").alias("campaign"))).clean
    assert "campaign" not in clean.columns
    assert clean.height == 3


# --- normalisation ---------------------------------------------------------------------------------


def test_timestamps_are_normalised_to_utc_microseconds() -> None:
    raw = _events(event_id=["a", "b", "c", "d", "e"], user_id=["u"] * 5, event=["page_view"] * 5,
                  value=[None] * 5,
                  timestamp=["2024-03-01T12:00:00+02:00", "2024-03-01T10:00:00Z", "2024-03-01 10:00:00",
                             "2024-03-01", "2024-03-01T10:00:00.250-01:30"])
    ts = validate_events(raw).clean["timestamp"].to_list()
    assert ts == [_utc(2024, 3, 1, 10), _utc(2024, 3, 1, 10), _utc(2024, 3, 1, 10), _utc(2024, 3, 1),
                  _utc(2024, 3, 1, 11, 30, 0, 250000)]


def test_datetime_columns_in_other_zones_or_naive_become_utc() -> None:
    zoned = pl.Series([datetime(2024, 3, 1, 12)]).dt.replace_time_zone("Europe/Berlin")
    naive = pl.Series([datetime(2024, 3, 1, 12)]).cast(pl.Datetime("ns"))
    for column, expected in ((zoned, _utc(2024, 3, 1, 11)), (naive, _utc(2024, 3, 1, 12))):
        raw = pl.DataFrame({"event_id": ["a"], "user_id": ["u"], "event": ["x"], "timestamp": column})
        clean = validate_events(raw).clean
        assert clean.schema["timestamp"] == pl.Datetime("us", "UTC")
        assert clean["timestamp"].to_list() == [expected]


def test_enum_strings_are_trimmed_and_lower_cased() -> None:
    raw = _events(event=[" Page_View", "ADD_TO_CART ", "purchase"]).with_columns(
        pl.Series("device", [" Mobile", "DESKTOP", None]), pl.Series("source", ["Email ", "ads", ""]))
    clean = validate_events(raw).clean
    assert clean["event"].to_list() == ["page_view", "add_to_cart", "purchase"]
    assert clean["device"].to_list() == ["mobile", "desktop", None]
    assert clean["source"].to_list() == ["email", "ads", None]


def test_duplicate_event_ids_keep_the_first_occurrence_and_are_counted() -> None:
    raw = _events(event_id=["e1", "e1", "e2"], event=["page_view", "purchase", "search"])
    result = validate_events(raw)
    assert result.duplicates == 1
    assert result.clean["event"].to_list() == ["page_view", "search"]
    assert result.quarantine.height == 0


# --- validation and quarantine ---------------------------------------------------------------------


@pytest.mark.parametrize(("column", "bad", "reason"), [
    ("event_id", None, "missing event_id"),
    ("user_id", "  ", "missing user_id"),
    ("event", None, "missing event"),
    ("timestamp", None, "missing timestamp"),
    ("timestamp", "yesterday", "unparseable timestamp"),
    ("timestamp", "2024-02-30T10:00:00", "unparseable timestamp"),
    ("value", "-0.01", "value negative"),
    ("value", "ten", "value not numeric"),
    ("value", "inf", "value not finite"),
    ("duration_s", "-3", "duration_s negative"),
    ("scroll_depth", "1.2", "scroll_depth above 1"),
    ("scroll_depth", "-0.1", "scroll_depth negative"),
])
def test_bad_rows_go_to_quarantine_with_a_reason(column: str, bad: str | None, reason: str) -> None:
    raw = _events().with_columns(pl.lit("10").alias("duration_s"), pl.lit("0.5").alias("scroll_depth"))
    raw = raw.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(bad, pl.String))
                           .otherwise(pl.col(column)).alias(column))
    result = validate_events(raw)
    assert result.clean["event_id"].to_list() == ["e1", "e3"]
    assert result.quarantine["row"].to_list() == [1]
    assert result.quarantine["reason"].to_list() == [reason]
    assert result.quarantine[column].to_list() == [bad]


def test_quarantine_keeps_the_raw_value_and_every_reason() -> None:
    raw = _events(timestamp=["2024-03-01", "soon", "2024-03-01"], value=[None, "-5", None])
    q = validate_events(raw, source="in.csv").quarantine
    assert q.select("file", "row", "timestamp", "value", "reason").to_dicts() == [
        {"file": "in.csv", "row": 1, "timestamp": "soon", "value": "-5",
         "reason": "unparseable timestamp; value negative"}]


def test_share_of_bad_rows_above_the_limit_is_a_data_error() -> None:
    raw = _events(event_id=["e1", None, "e3"])
    result = validate_events(raw, source="events.csv")
    check_bad_share(result, max_bad_share=0.5)
    with pytest.raises(DataError, match=r"events.csv: 1 of 3 rows are bad \(share 0.333 > limit 0.050\)"):
        check_bad_share(result, max_bad_share=0.05)


def test_write_quarantine_writes_all_sources_and_removes_a_stale_file(tmp_path: Path) -> None:
    bad_events = validate_events(_events(event_id=["e1", None, "e3"]), source="e.csv")
    bad_users = validate_users(pl.DataFrame({"user_id": ["u1"], "age": ["old"]}), source="u.csv")
    path = tmp_path / "q.parquet"
    assert write_quarantine([bad_events, bad_users], path) == 2
    assert sorted(pl.read_parquet(path)["file"].to_list()) == ["e.csv", "u.csv"]
    assert write_quarantine([validate_events(_events())], path) == 0
    assert not path.exists()


# --- users -----------------------------------------------------------------------------------------


def test_users_are_normalised_and_validated() -> None:
    raw = pl.DataFrame({
        "user_id": ["a", "b", "c", "d", "e", "a"],
        "age": ["34", "34.5", "-1", "130", None, "20"],
        "gender": [" Female", "male", None, None, None, None],
        "country": ["DE ", "fr", None, None, None, None],
        "consent": ["yes", "false", "1", "0", "maybe", None],
        "signup_date": ["2023-01-05", "2023-02-01T10:00:00Z", None, None, None, "never"],
    })
    result = validate_users(raw)
    assert dict(result.clean.schema) == USER_SCHEMA
    assert result.clean.to_dicts() == [{"user_id": "a", "age": 34, "gender": "female", "country": "de",
                                        "loyalty_tier": None, "signup_date": datetime(2023, 1, 5).date(),
                                        "consent": True}]
    reasons = dict(zip(result.quarantine["user_id"], result.quarantine["reason"], strict=True))
    assert reasons["b"] == "age not a whole number in [0, 120]"
    assert reasons["c"] == "age not a whole number in [0, 120]"
    assert reasons["d"] == "age not a whole number in [0, 120]"
    assert reasons["e"] == "consent not a boolean"
    assert reasons["a"] == "unparseable signup_date"


@pytest.mark.parametrize("default", [True, False])
def test_absent_or_null_consent_takes_the_configured_default(default: bool) -> None:
    absent = validate_users(pl.DataFrame({"user_id": ["a"]}), consent_default=default).clean
    null = validate_users(pl.DataFrame({"user_id": ["a"], "consent": [None]}, schema={"user_id": pl.String,
                                                                                   "consent": pl.Boolean}),
                          consent_default=default).clean
    assert absent["consent"].to_list() == [default]
    assert null["consent"].to_list() == [default]


def test_duplicate_user_ids_without_updated_at_are_an_error_naming_them() -> None:
    raw = pl.DataFrame({"user_id": ["a", "a", "b", "c", "c"], "age": ["30", "40", "20", "x", "50"]})
    with pytest.raises(DataError, match=r"u\.csv: 1 user_id\(s\) have several rows \('a'\).*updated_at"):
        validate_users(raw, source="u.csv")  # c's first row is bad (quarantined): c has one valid row


def test_with_updated_at_the_latest_row_wins_and_a_later_consent_false_wins() -> None:
    raw = pl.DataFrame({"user_id": ["a", "a", "b", "a", "b"],
                        "consent": ["true", "false", "yes", "yes", "no"],
                        "updated_at": ["2024-01-01", "2024-03-01T00:00:00Z", "2024-01-01", "2024-02-01",
                                       "2023-12-31T23:00:00-02:00"]})  # b: 2024-01-01T01:00Z wins
    result = validate_users(raw)
    consents = dict(zip(result.clean["user_id"], result.clean["consent"], strict=True))
    assert consents == {"a": False, "b": False}
    assert result.duplicates == 3
    assert result.clean.height + result.duplicates + result.quarantine.height == raw.height
    assert dict(result.clean.schema) == USER_SCHEMA


def test_an_unparseable_updated_at_is_quarantined_and_never_wins() -> None:
    raw = pl.DataFrame({"user_id": ["a", "a"], "consent": ["true", "false"],
                        "updated_at": ["2024-01-01", "tomorrow"]})
    result = validate_users(raw)
    assert result.clean["consent"].to_list() == [True]
    assert result.quarantine["reason"].to_list() == ["unparseable updated_at"]


# --- property-based: random malformed rows ---------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
_maybe_id = st.one_of(st.none(), st.sampled_from(["e1", "e2", "e3", " ", "", "E1"]), _text)
_timestamp = st.one_of(st.none(), _text, st.sampled_from(
    ["2024-03-01T10:00:00+02:00", "2024-03-01", "2024-03-01 10:00:00Z", "2024-13-01", "2024-03-01T25:00:00"]))
_number = st.one_of(st.none(), _text,
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["0", "1", "-1", "0.5", "1e3", " 2 ", "nan"]))


@st.composite
def _raw_rows(draw: st.DrawFn) -> list[dict[str, str | None]]:
    row = st.fixed_dictionaries({
        "event_id": _maybe_id, "user_id": _maybe_id, "timestamp": _timestamp,
        "event": st.one_of(st.none(), st.sampled_from(["page_view", " PURCHASE ", ""]), _text),
        "value": _number, "duration_s": _number, "scroll_depth": _number,
        "device": st.one_of(st.none(), _text), "junk": st.one_of(st.none(), _text),
    })
    return draw(st.lists(row, max_size=25))


def _assert_every_row_accounted_for(raw: pl.DataFrame) -> None:
    try:
        result = validate_events(raw)
    except DataError:
        return
    assert result.rows_read == raw.height
    assert result.clean.height + result.duplicates + result.quarantine.height == raw.height
    assert result.clean["event_id"].is_unique().all()
    assert (result.quarantine["reason"] != "").all()
    required = result.clean.select("event_id", "user_id", "timestamp", "event")
    assert required.null_count().sum_horizontal().item() == 0
    for column, low, high in (("value", 0, math.inf), ("duration_s", 0, math.inf), ("scroll_depth", 0, 1)):
        values = result.clean[column].drop_nulls()
        assert values.is_finite().all()
        assert ((values >= low) & (values <= high)).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_rows())
def test_every_malformed_row_is_clean_duplicate_or_quarantined(rows: list[dict[str, str | None]]) -> None:
    schema = {name: pl.String for name in ("event_id", "user_id", "timestamp", "event", "value", "duration_s",
                                           "scroll_depth", "device", "junk")}
    _assert_every_row_accounted_for(pl.DataFrame(rows, schema=schema))


_json_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                        st.floats(allow_nan=False, allow_infinity=False, width=32), _text)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({
    "event_id": _json_value, "user_id": _json_value, "timestamp": st.one_of(_timestamp, _json_value),
    "event": _json_value, "value": _json_value, "scroll_depth": _json_value}), min_size=1, max_size=15))
def test_mixed_type_json_lines_only_ever_raise_data_error(tmp_path_factory: pytest.TempPathFactory,
                                                         rows: list[dict[str, object]]) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        raw = read_table(path)
    except DataError:
        return
    _assert_every_row_accounted_for(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({
    "user_id": st.one_of(st.none(), st.sampled_from(["a", "b", " ", ""]), _text),
    "age": _number, "consent": st.one_of(st.none(), st.sampled_from(["yes", "No", "1", "maybe"]), _text),
    "signup_date": _timestamp, "country": st.one_of(st.none(), _text)}), max_size=20))
def test_every_malformed_user_row_is_clean_duplicate_or_quarantined(
        rows: list[dict[str, str | None]]) -> None:
    raw = pl.DataFrame(rows, schema={k: pl.String for k in ("user_id", "age", "consent", "signup_date",
                                                            "country")})
    try:
        result = validate_users(raw, consent_default=False)
    except DataError as exc:  # several valid rows of one user and no updated_at column
        assert "have several rows" in str(exc)
        return
    assert result.duplicates == 0
    assert result.clean.height + result.duplicates + result.quarantine.height == raw.height
    assert result.clean["user_id"].is_unique().all()
    assert result.clean["consent"].null_count() == 0
    ages = result.clean["age"].drop_nulls()
    assert ((ages >= 0) & (ages <= 120)).all()
