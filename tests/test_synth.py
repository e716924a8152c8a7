"""The synthetic shop: determinism, the data contract, noise that ingestion catches, and an oracle
whose probabilities match the purchases the shop actually generated (calibration by decile)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from features.ingest.validate import validate_events, validate_users
from features.schema import EVENT_COLUMNS, EVENT_TYPES, USER_COLUMNS, age_band
from features.shop.config import GenerateConfig, parse_disparity
from features.shop.generate import Shop, generate_shop
from propensity.cli.main import cli
from propensity.errors import ConfigError


def shop_of(**kw: object) -> Shop:
    return generate_shop(GenerateConfig.model_validate({"users": 3000, "days": 40, **kw}))


@pytest.fixture(scope="module")
def shop() -> Shop:
    return shop_of()


def clean(events: pl.DataFrame) -> pl.DataFrame:
    return validate_events(events).clean


def test_same_seed_same_shop_other_seed_other_shop(shop: Shop) -> None:
    again = shop_of()
    assert again.events.equals(shop.events) and again.users.equals(shop.users)
    assert again.oracle.equals(shop.oracle)
    other = shop_of(seed=7)
    assert not other.events.head(1000).equals(shop.events.head(1000))


def test_files_follow_the_data_contract(shop: Shop) -> None:
    assert set(EVENT_COLUMNS) <= set(shop.events.columns)
    assert shop.events.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert set(shop.users.columns) == set(USER_COLUMNS)
    events = clean(shop.events)
    assert set(events["event"].unique()) == set(EVENT_TYPES)  # the whole vocabulary occurs
    assert set(events["device"].unique()) == {"mobile", "desktop", "tablet"}
    assert events["value"].drop_nulls().min() > 0
    assert events.filter(pl.col("event").is_in(["add_to_cart", "purchase"]))["value"].null_count() == 0
    scroll = events["scroll_depth"].drop_nulls()
    assert 0 <= scroll.min() and scroll.max() <= 1
    users = validate_users(shop.users)
    assert users.quarantine.height == 0
    assert shop.users["age"].min() >= 18
    assert 0.015 < 1 - shop.users["consent"].mean() < 0.05  # a few percent without consent


def test_noise_is_what_ingestion_quarantines_and_deduplicates(shop: Shop) -> None:
    v = validate_events(shop.events)
    assert v.quarantine.height == shop.stats["malformed"] > 0
    assert v.duplicates == shop.stats["duplicates"] > 0
    assert v.clean.height == shop.stats["clean_events"]
    assert 0.005 < shop.stats["duplicates"] / shop.stats["clean_events"] < 0.02
    assert v.bad_share < 0.05  # under the default limit: the demo never fails on its own data
    reasons = " ".join(v.quarantine["reason"].to_list())
    for reason in ("user_id", "timestamp", "value negative", "scroll_depth above 1", "duration_s negative"):
        assert reason in reasons
    # a corrupted copy is never a purchase: labels cannot depend on quarantine
    assert "purchase" not in set(v.quarantine["event"].drop_nulls())


def test_sessions_end_before_midnight_and_follow_a_daily_rhythm(shop: Shop) -> None:
    events = clean(shop.events)
    days = events.group_by("session_id").agg(pl.col("timestamp").dt.date().n_unique().alias("d"))
    assert days["d"].max() == 1
    hours = events["timestamp"].dt.hour().value_counts().sort("timestamp")
    by_hour = dict(zip(hours["timestamp"].to_list(), hours["count"].to_list(), strict=True))
    assert by_hour[20] > 3 * by_hour[4]  # evenings are busy, nights quiet
    starts = events.group_by("session_id").agg(pl.col("timestamp").min().dt.date().alias("date"))
    per_date = (starts.group_by("date").len()
                .filter(pl.col("date") < shop.config.start + timedelta(days=shop.config.sale.start_day))
                .group_by(pl.col("date").dt.weekday() >= 6).agg(pl.col("len").mean()))
    mean = dict(per_date.iter_rows())  # sessions per date, weekend vs weekday, before the sale
    assert mean[True] > 1.04 * mean[False]


def test_a_purchase_ends_a_funnel_in_its_session(shop: Shop) -> None:
    events = clean(shop.events).sort("session_id", "timestamp", "event_id")
    before = events.with_columns(prev=pl.col("event").shift(1).over("session_id"))
    assert (before.filter(pl.col("event") == "purchase")["prev"] == "checkout_start").all()


def observed_labels(shop: Shop, horizon_days: int) -> pl.DataFrame:
    """label per (user, as_of) straight from the generated purchase events."""
    purchases = clean(shop.events).filter(pl.col("event") == "purchase").select("user_id", "timestamp")
    keys = shop.oracle.select("user_id", "as_of")
    hits = (keys.join(purchases, on="user_id")
            .filter((pl.col("timestamp") >= pl.col("as_of"))
                    & (pl.col("timestamp") < pl.col("as_of") + timedelta(days=horizon_days)))
            .select("user_id", "as_of").unique().with_columns(label=pl.lit(1)))
    return keys.join(hits, on=["user_id", "as_of"], how="left").with_columns(pl.col("label").fill_null(0))


def test_oracle_probabilities_match_the_purchases_the_shop_made(shop: Shop) -> None:
    # Calibration by decile: if p_true is the exact probability, the share of (user, as_of) with a
    # purchase in the horizon equals the mean p_true in every decile, up to binomial noise.
    labels = observed_labels(shop, 7)
    joined = shop.oracle.join(labels, on=["user_id", "as_of"])
    assert joined.height == shop.oracle.height == 3000 * (40 - 7)
    assert 0.05 < joined["label"].mean() < 0.15  # label rate in the intended range
    deciles = joined.with_columns(q=(pl.col("p_true").rank("ordinal") * 10 // (joined.height + 1)))
    table = deciles.group_by("q").agg(p=pl.col("p_true").mean(), y=pl.col("label").mean(), n=pl.len())
    for row in table.iter_rows(named=True):
        # rows of one user are correlated across as_of: count each user once for a conservative SE
        se = np.sqrt(max(row["p"] * (1 - row["p"]), 1e-4) / min(row["n"], 3000))
        assert abs(row["y"] - row["p"]) < 4 * se + 0.003, row
    # and the oracle separates: top decile converts several times more than the bottom
    assert table.sort("q")["y"][-1] > 5 * table.sort("q")["y"][0]


def test_groups_differ_and_a_disparity_makes_one_group_convert_much_less(shop: Shop) -> None:
    rates = observed_labels(shop, 7).join(shop.users, on="user_id").group_by("loyalty_tier").agg(
        pl.col("label").mean())
    tier = dict(rates.iter_rows())
    assert tier["gold"] > 1.3 * tier["none"]
    skewed = shop_of(disparity={"feature": "country", "value": "fr", "factor": 0.3})
    country = dict(observed_labels(skewed, 7).join(skewed.users, on="user_id")
                   .group_by(pl.col("country") == "fr").agg(pl.col("label").mean()).iter_rows())
    assert country[True] < 0.5 * country[False]


def test_a_tracking_disparity_hides_clicks_but_not_conversions(shop: Shop) -> None:
    """kind tracking: the same users and purchases as the plain shop (same seed), but only ~10% of
    the group's client-side events are recorded; the other groups' events are untouched."""
    lossy = shop_of(disparity={"feature": "country", "value": "fr", "factor": 0.1, "kind": "tracking"})
    assert lossy.users.equals(shop.users) and lossy.oracle.equals(shop.oracle)

    def counts(s: Shop) -> dict[tuple[bool, bool], int]:
        frame = clean(s.events).join(s.users, on="user_id").group_by(
            pl.col("country") == "fr", pl.col("event") == "purchase").len()
        return {(fr, buy): n for fr, buy, n in frame.iter_rows()}

    plain, lost = counts(shop), counts(lossy)
    assert lost[(True, True)] == plain[(True, True)]  # every purchase is still recorded
    assert lost[(False, False)] == plain[(False, False)] and lost[(False, True)] == plain[(False, True)]
    share = lost[(True, False)] / plain[(True, False)]
    assert abs(share - 0.1) < 0.01


def test_age_bands_of_generated_users_are_audit_bands(shop: Shop) -> None:
    bands = {age_band(int(a)) for a in shop.users["age"]}
    assert bands <= {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"} and len(bands) == 6


@pytest.mark.parametrize(("text", "message"), [
    ("country", "expected \\[KIND:\\]FEATURE=VALUE"),
    ("leaky:country=fr", "kind"),
    ("country=xx", "'xx' is not a country"),
    ("gender=female:2", "factor"),
    ("height=tall", "feature"),
])
def test_bad_disparity_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_disparity(text)


def test_cli_generate_json_and_files(tmp_path) -> None:
    out = tmp_path / "shop"
    result = CliRunner().invoke(cli, ["generate", "--users", "200", "--days", "15", "--out", str(out),
                                      "--seed", "3", "--start", "2025-01-06", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["users"] == 200 and payload["days"] == 15
    events = pl.read_parquet(out / "events.parquet")
    assert events.height == payload["events"]
    assert clean(events)["timestamp"].min().date() >= date(2025, 1, 6)
    assert pl.read_parquet(out / "oracle.parquet").height == 200 * (15 - 7)
    manifest = json.loads((out / "shop.json").read_text())
    assert manifest["config"]["seed"] == 3

    bad = CliRunner().invoke(cli, ["generate", "--users", "10", "--out", str(out), "--disparity", "x"])
    assert bad.exit_code != 0
    assert "Traceback" not in bad.output
