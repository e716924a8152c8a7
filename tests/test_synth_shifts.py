"""Planted shifts of the synthetic shop: each changes what it says from its onset day, nothing before,
and the oracle stays the exact purchase probability through the shift (calibration by decile, as in
test_synth.py)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from features.ingest.validate import validate_events
from features.shop.config import GenerateConfig
from features.shop.generate import Shop, generate_shop
from features.shop.shifts import parse_shift
from propensity.errors import ConfigError

ONSET = 20


def shop_of(*shifts: str, users: int = 3000, sale: bool = False, **kw: object) -> Shop:
    cfg = {"users": users, "days": 40, "sale": {"days": 5 if sale else 0}, **kw,
           "shifts": [parse_shift(s).model_dump() for s in shifts]}
    return generate_shop(GenerateConfig.model_validate(cfg))


def clean(events: pl.DataFrame) -> pl.DataFrame:
    return validate_events(events).clean


def day_of(shop: Shop, events: pl.DataFrame) -> pl.Expr:
    return (pl.col("timestamp").dt.date() - pl.lit(shop.config.start)).dt.total_days()


def observed_labels(shop: Shop) -> pl.DataFrame:
    purchases = clean(shop.events).filter(pl.col("event") == "purchase").select("user_id", "timestamp")
    keys = shop.oracle.select("user_id", "as_of")
    hits = (keys.join(purchases, on="user_id")
            .filter((pl.col("timestamp") >= pl.col("as_of"))
                    & (pl.col("timestamp") < pl.col("as_of") + timedelta(days=7)))
            .select("user_id", "as_of").unique().with_columns(label=pl.lit(1)))
    return keys.join(hits, on=["user_id", "as_of"], how="left").with_columns(pl.col("label").fill_null(0))


def assert_oracle_calibrated(shop: Shop, rows: pl.Expr | None = None) -> None:
    """Observed purchase share equals the mean p_true per decile, up to binomial noise (one row per
    user per decile counted for the standard error, as rows of a user are correlated)."""
    joined = shop.oracle.join(observed_labels(shop), on=["user_id", "as_of"])
    if rows is not None:
        joined = joined.filter(rows)
    deciles = joined.with_columns(q=(pl.col("p_true").rank("ordinal") * 10 // (joined.height + 1)))
    table = deciles.group_by("q").agg(p=pl.col("p_true").mean(), y=pl.col("label").mean(), n=pl.len(),
                                      u=pl.col("user_id").n_unique())
    for row in table.iter_rows(named=True):
        se = np.sqrt(max(row["p"] * (1 - row["p"]), 1e-4) / row["u"])
        assert abs(row["y"] - row["p"]) < 4 * se + 0.003, row


@pytest.fixture(scope="module")
def plain() -> Shop:
    return shop_of()


def test_a_concept_shift_halves_a_groups_purchases_and_the_oracle_follows(plain: Shop) -> None:
    shifted = shop_of(f"concept:country=fr:0.5@{ONSET}")
    assert shifted.users.equals(plain.users)
    onset = pl.lit(shifted.config.start + timedelta(days=ONSET)).cast(pl.Datetime("us", "UTC"))
    after = pl.col("as_of") >= onset
    fr = plain.users.filter(pl.col("country") == "fr")["user_id"].implode()

    def p_fr(shop: Shop, when: pl.Expr) -> float:
        return float(shop.oracle.filter(when & pl.col("user_id").is_in(fr))["p_true"].mean())

    assert p_fr(shifted, ~after & (pl.col("as_of") < onset - timedelta(days=7))) == pytest.approx(
        p_fr(plain, ~after & (pl.col("as_of") < onset - timedelta(days=7))))
    assert 0.4 < p_fr(shifted, after) / p_fr(plain, after) < 0.65  # about halved (less resets after buying)
    assert_oracle_calibrated(shifted)
    assert_oracle_calibrated(shifted, after & pl.col("user_id").is_in(fr))


def test_a_covariate_shift_triples_a_sources_traffic_with_low_intent_newcomers(plain: Shop) -> None:
    shifted = shop_of(f"covariate:source=ads:3@{ONSET}")
    newcomers = shifted.users.height - plain.users.height
    assert newcomers == round(3000 * 2 * 0.15)
    events = clean(shifted.events).with_columns(day=day_of(shifted, shifted.events))
    new_ids = shifted.users["user_id"][plain.users.height:].implode()
    new_events = events.filter(pl.col("user_id").is_in(new_ids))
    assert new_events["day"].min() >= ONSET and set(new_events["source"].unique()) == {"ads"}
    ads = events.filter(pl.col("source") == "ads").group_by(pl.col("day") >= ONSET).agg(
        pl.col("session_id").n_unique() / pl.col("day").n_unique())
    per_day = dict(ads.iter_rows())
    assert 2.0 < per_day[True] / per_day[False] < 4.0  # about triples
    oracle = shifted.oracle.with_columns(new=pl.col("user_id").is_in(new_ids))
    last = (oracle.filter(pl.col("as_of") == pl.col("as_of").max())
            .group_by("new").agg(pl.col("p_true").mean()))
    mean = dict(last.iter_rows())
    assert mean[True] < 0.7 * mean[False]  # low intent
    assert_oracle_calibrated(shifted)


def test_a_tracking_shift_drops_a_field_of_one_device_from_the_onset_only(plain: Shop) -> None:
    shifted = shop_of(f"tracking:device=mobile:scroll_depth@{ONSET}")
    assert shifted.users.equals(plain.users) and shifted.oracle.equals(plain.oracle)

    def scrolls(shop: Shop) -> pl.DataFrame:
        events = clean(shop.events).with_columns(day=day_of(shop, shop.events))
        return events.group_by(pl.col("device") == "mobile", pl.col("day") >= ONSET).agg(
            pl.col("scroll_depth").count())

    before, after = (dict(((m, late), n) for m, late, n in scrolls(s).iter_rows()) for s in (plain, shifted))
    assert after[(True, True)] == 0 < before[(True, True)]
    assert after[(True, False)] == before[(True, False)]
    assert after[(False, True)] == before[(False, True)]


def test_sale_days_off_make_a_stable_period(plain: Shop) -> None:
    with_sale = shop_of(sale=True)
    assert with_sale.oracle["p_true"].mean() > plain.oracle["p_true"].mean()
    days = clean(plain.events).group_by(day_of(plain, plain.events).alias("d")).len()
    weekly = days.with_columns(w=pl.col("d") // 7).group_by("w").agg(pl.col("len").sum()).sort("w")
    counts = weekly["len"].to_list()[1:5]  # whole weeks after the first
    assert max(counts) / min(counts) < 1.1


@pytest.mark.parametrize(("text", "message"), [
    ("covariate:source=ads:3", "expected KIND"),
    ("covariate:source=ads:0.5@4", "above 1"),
    ("covariate:country=fr:3@4", "acts on one of source, device"),
    ("tracking:device=mobile:timestamp@4", "drops one of"),
    ("concept:device=mobile:0.5@4", "acts on one of gender"),
    ("concept:country=fr:x@4", "factor"),
    ("drift:country=fr:0.5@4", "kind"),
])
def test_bad_shift_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_shift(text)


def test_a_shift_must_name_a_group_and_a_day_of_the_shop() -> None:
    with pytest.raises(ValueError, match="not a country"):
        GenerateConfig.model_validate({"shifts": [parse_shift("concept:country=xx:0.5@4").model_dump()]})
    with pytest.raises(ValueError, match="onset day"):
        GenerateConfig.model_validate({"days": 10, "shifts": [parse_shift("concept:country=fr:0.5@10")
                                                                .model_dump()]})
