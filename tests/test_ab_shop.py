"""An experiment on a synthetic shop's own users and events (the demo's A/B stage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from experiments import demo_experiment
from experiments.simulate import simulate_on_shop
from features.ingest.validate import validate_events
from features.shop.config import GenerateConfig
from features.shop.generate import generate_shop

START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop() -> tuple[pl.DataFrame, pl.DataFrame]:
    generated = generate_shop(GenerateConfig.model_validate({"users": 4000, "days": 44, "seed": 3}))
    return validate_events(generated.events, source="shop").clean, generated.users


def _conversion(exposures: pl.DataFrame, events: pl.DataFrame) -> dict[str, float]:
    bought = (exposures.join(events.filter(pl.col("event") == "purchase"), on="user_id")
              .filter(pl.col("timestamp").is_between(pl.col("first_exposure"),
                                                     pl.col("first_exposure") + timedelta(days=7),
                                                     closed="left"))
              .select("user_id").unique().with_columns(bought=pl.lit(True)))
    rates = (exposures.join(bought, on="user_id", how="left").group_by("variant")
             .agg(pl.col("bought").fill_null(False).mean()))
    return dict(rates.iter_rows())


def test_enrolment_outcomes_and_planted_lift(shop, tmp_path) -> None:
    events, users = shop
    start = datetime(2026, 10, 1, tzinfo=UTC)
    paths = simulate_on_shop(events, users, tmp_path, {"A": 0.0, "B": 1.0}, start, days=14, seed=1)
    exposures = pl.read_parquet(paths["exposures"])
    out_events = pl.read_parquet(paths["events"])
    in_window = events.filter(pl.col("timestamp").is_between(start, start + timedelta(days=14),
                                                             closed="left"))
    assert set(exposures["user_id"]) == set(in_window["user_id"])  # everyone seen is enrolled, once
    assert exposures["user_id"].is_unique().all()
    first = in_window.group_by("user_id").agg(pl.col("timestamp").min())
    joined = exposures.join(first, on="user_id")
    assert joined.filter(pl.col("first_exposure") != pl.col("timestamp")).is_empty()
    counts = dict(exposures.group_by("variant").len().iter_rows())
    assert abs(counts["A"] - counts["B"]) < 0.1 * exposures.height
    # the shop's own events are all kept; B gets extra funnels only
    planted = out_events.filter(pl.col("event_id").str.starts_with("sim-"))
    assert set(planted["user_id"]) <= set(exposures.filter(pl.col("variant") == "B")["user_id"])
    assert out_events.height - planted.height == events.filter(
        (pl.col("timestamp") >= start) & pl.col("user_id").is_in(exposures["user_id"].implode())).height
    rates = _conversion(exposures, out_events)
    assert rates["B"] == pytest.approx(2 * rates["A"], rel=0.25)  # planted: +100% relative
    plain = _conversion(exposures, events)
    assert plain["B"] == pytest.approx(plain["A"], rel=0.25)  # before planting: the same shop
    attributes = pl.read_parquet(paths["attributes"])
    user = attributes.sort("pre_revenue", descending=True)["user_id"][0]
    expected = events.filter((pl.col("user_id") == user) & (pl.col("event") == "purchase")
                             & (pl.col("timestamp") < exposures.filter(pl.col("user_id") == user)
                                ["first_exposure"][0]))["value"].sum()
    assert attributes.filter(pl.col("user_id") == user)["pre_revenue"][0] == pytest.approx(expected)


def test_demo_experiment_on_the_shop_finds_the_planted_lift(shop, tmp_path) -> None:
    events, users = shop
    config = tmp_path / "experiments.yaml"
    config.write_text("demo:\n  variants: {A: 0.0, B: 1.0}\n")
    result = demo_experiment(tmp_path / "exp", config, shop=(events, users, START))
    verdict = next(v for v in result["verdicts"] if v.startswith("B lifts converted"))
    assert verdict.endswith(": significant")
    assert (tmp_path / "exp" / "experiment_report.html").stat().st_size > 10_000
