"""A self-contained simulated experiment on a synthetic shop (for the demo and the benchmark).

Units are users enrolled at their first exposure during ``days`` days. Each has a device, a
pre-period spend (the CUPED covariate) and a purchase propensity that grows with pre-period
spend; a variant multiplies the propensity by ``1 + lift``. Revenue is the basket value of a
purchase (0 without one), correlated with pre-period spend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def simulate_units(n_users: int, lifts: Mapping[str, float], days: int = 14, seed: int = 7,
                   base_rate: float = 0.08) -> pl.DataFrame:
    """One row per user: user_id, variant, first_exposure (UTC), device, pre_revenue, converted, revenue.

    ``lifts`` maps variant name -> relative lift of the purchase propensity (the first is the
    control, normally 0); users are split equally. ``base_rate`` is the control's mean conversion.
    """
    rng = np.random.default_rng(seed)
    names = list(lifts)
    variant = rng.integers(0, len(names), n_users)
    device = rng.choice(np.array(["mobile", "desktop", "tablet"]), n_users, p=[0.6, 0.32, 0.08])
    pre = rng.gamma(0.6, 40.0, n_users) * (rng.random(n_users) < 0.5)
    propensity = base_rate * (0.6 + 0.8 * (pre > 0)) * np.where(device == "desktop", 1.2, 0.92)
    lift = np.array([lifts[n] for n in names])[variant]
    converted = rng.random(n_users) < np.clip(propensity * (1 + lift), 0, 1)
    revenue = np.where(converted, rng.gamma(2.0, 25.0, n_users) + 0.3 * pre, 0.0)
    seconds = rng.integers(0, days * 86_400, n_users)
    return pl.DataFrame({
        "user_id": [f"u{i:07d}" for i in range(n_users)],
        "variant": np.array(names)[variant],
        "first_exposure": pl.Series(np.datetime64(START.replace(tzinfo=None), "us")
                                    + seconds.astype("timedelta64[s]")).dt.replace_time_zone("UTC"),
        "device": device,
        "pre_revenue": pre.round(2),
        "converted": converted.astype(np.int8),
        "revenue": revenue.round(2),
    })


def simulate_events(units: pl.DataFrame, seed: int = 7, weeks: int = 4) -> pl.DataFrame:
    """Events in the SPEC contract for simulated ``units``: the funnel steps after first exposure
    (a converted unit goes through product_view -> add_to_cart -> checkout_start -> purchase within
    six days, carrying its revenue) and returning page views in the ``weeks`` after exposure."""
    rng = np.random.default_rng(seed + 1)
    n = units.height
    t0 = units["first_exposure"].dt.replace_time_zone(None).to_numpy().astype("datetime64[us]")
    converted = units["converted"].to_numpy() == 1
    view = converted | (rng.random(n) < 0.6)
    cart = converted | (view & (rng.random(n) < 0.25))
    checkout = converted | (cart & (rng.random(n) < 0.3))
    parts = []
    offset = np.zeros(n)
    for step, reached in (("product_view", view), ("add_to_cart", cart), ("checkout_start", checkout),
                          ("purchase", converted)):
        offset = offset + rng.uniform(0.01, 1.4, n) * 86_400
        idx = np.flatnonzero(reached)
        parts.append((idx, offset[idx], step))
    for k in range(weeks):
        idx = np.flatnonzero(rng.random(n) < 0.45 * 0.7**k)
        when = (7 * k + rng.uniform(0, 7, idx.size)) * 86_400
        parts.append((idx, when, "page_view"))
        if k > 0:  # repeat purchases after the conversion window
            buy = rng.random(idx.size) < 0.12
            parts.append((idx[buy], when[buy] + 600, "purchase"))
    idx = np.concatenate([p[0] for p in parts])
    secs = np.concatenate([p[1] for p in parts]).astype(np.int64)
    names = np.concatenate([np.full(p[0].size, p[2]) for p in parts])
    value = np.where(names == "purchase", units["revenue"].to_numpy()[idx], np.nan)
    return pl.DataFrame({
        "event_id": [f"e{i:08d}" for i in range(idx.size)],
        "user_id": units["user_id"].to_numpy()[idx],
        "timestamp": pl.Series(t0[idx] + secs.astype("timedelta64[s]")).dt.replace_time_zone("UTC"),
        "event": names,
        "value": value,
    }).with_columns(pl.col("value").fill_nan(None)).sort("timestamp")


def simulate_experiment(out_dir: str | Path, n_users: int = 30_000,
                        lifts: Mapping[str, float] | None = None, days: int = 14,
                        seed: int = 7) -> dict[str, Path]:
    """Write ``units.parquet`` (:func:`simulate_units`), ``exposures.parquet`` (user_id, experiment,
    variant, first_exposure) and ``events.parquet`` (:func:`simulate_events`) into ``out_dir``.

    Returns the paths keyed "units", "exposures", "events".
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = simulate_units(n_users, lifts or {"A": 0.0, "B": 0.12, "C": 0.02}, days, seed)
    paths = {"units": out / "units.parquet", "exposures": out / "exposures.parquet",
             "events": out / "events.parquet"}
    frame.write_parquet(paths["units"])
    frame.select("user_id", pl.lit("demo_checkout").alias("experiment"), "variant",
                 "first_exposure").write_parquet(paths["exposures"])
    simulate_events(frame, seed).write_parquet(paths["events"])
    return paths


def simulate_on_shop(events: pl.DataFrame, users: pl.DataFrame, out_dir: str | Path,
                     lifts: Mapping[str, float], exposure_start: dt.datetime, days: int = 14,
                     window_days: float = 7.0, seed: int = 7) -> dict[str, Path]:
    """An experiment run on a synthetic shop's own users and events (``features.shop.generate``).

    Every user with an event in ``[exposure_start, exposure_start + days)`` is enrolled at that
    first event (its device is the one they saw the variant on) and assigned a variant at random,
    equal shares. Outcomes are the shop's recorded events; a treatment's effect is planted on top:
    of its users without a purchase within ``window_days`` of exposure, a share gets an extra
    add_to_cart -> checkout_start -> purchase, sized so that the variant's expected conversion is
    the enrolled users' rate times ``1 + lift``. ``pre_revenue`` (the CUPED covariate) is each
    user's recorded spend before exposure. ``events`` must be clean (deduplicated, valid).

    Writes ``exposures.parquet`` (user_id, experiment, variant, first_exposure), ``events.parquet``
    (the enrolled users' events from ``exposure_start`` on, plus the planted ones) and
    ``attributes.parquet`` (user_id, device, country, loyalty_tier, pre_revenue); returns their paths.
    """
    rng = np.random.default_rng(seed)
    names = list(lifts)
    start = exposure_start.astimezone(dt.UTC)
    end, window = start + dt.timedelta(days=days), dt.timedelta(days=window_days)
    enrolled = _enrol(events, start, end, names, rng)
    purchases = events.filter(pl.col("event") == "purchase").select("user_id", "timestamp", "value")
    exposed_purchases = enrolled.join(purchases, on="user_id")
    planted = _planted_purchases(enrolled, exposed_purchases, purchases, lifts, window, rng)
    columns = ["event_id", "user_id", "timestamp", "event", "device", "value"]
    seen = events.filter((pl.col("timestamp") >= start)
                         & pl.col("user_id").is_in(enrolled["user_id"].implode()))
    out_events = pl.concat([seen.select(columns), *planted], how="vertical_relaxed").sort("timestamp")
    pre = (exposed_purchases
           .filter(pl.col("timestamp") < pl.col("first_exposure"))
           .group_by("user_id").agg(pl.col("value").sum().alias("pre_revenue")))
    attributes = (enrolled.select("user_id", "device")
                  .join(users.select("user_id", "country", "loyalty_tier"), on="user_id", how="left")
                  .join(pre, on="user_id", how="left")
                  .with_columns(pl.col("pre_revenue").fill_null(0.0)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"exposures": out / "exposures.parquet", "events": out / "events.parquet",
             "attributes": out / "attributes.parquet"}
    enrolled.select("user_id", pl.lit("demo_shop").alias("experiment"), "variant",
                    "first_exposure").write_parquet(paths["exposures"])
    out_events.write_parquet(paths["events"])
    attributes.write_parquet(paths["attributes"])
    return paths


def _enrol(events: pl.DataFrame, start: dt.datetime, end: dt.datetime, names: list[str],
           rng: np.random.Generator) -> pl.DataFrame:
    """Users with an event in ``[start, end)``: first exposure at that event, its device, and a
    variant drawn at random (equal shares)."""
    enrolled = (events.filter(pl.col("timestamp").is_between(start, end, closed="left"))
                .sort("timestamp", "event_id")
                .group_by("user_id", maintain_order=True)
                .agg(pl.col("timestamp").first().alias("first_exposure"), pl.col("device").first())
                .sort("user_id"))
    if enrolled.height == 0:
        raise ValueError(f"no shop events between {start.isoformat()} and {end.isoformat()}")
    return enrolled.with_columns(
        pl.Series("variant", np.asarray(names)[rng.integers(0, len(names), enrolled.height)]))


def _planted_purchases(enrolled: pl.DataFrame, exposed_purchases: pl.DataFrame, purchases: pl.DataFrame,
                       lifts: Mapping[str, float], window: dt.timedelta,
                       rng: np.random.Generator) -> list[pl.DataFrame]:
    """The treatments' extra add_to_cart -> checkout_start -> purchase sequences: of each treatment's
    users without a purchase within ``window`` of exposure, the share that lifts its expected
    conversion to the enrolled users' rate times ``1 + lift``."""
    names = list(lifts)
    bought = (exposed_purchases
              .filter(pl.col("timestamp").is_between(pl.col("first_exposure"),
                                                     pl.col("first_exposure") + window, closed="left"))
              .select("user_id").unique())
    base = bought.height / enrolled.height
    values = purchases["value"].drop_nulls().to_numpy()
    basket = float(np.median(values)) if len(values) else 50.0
    candidates = enrolled.join(bought, on="user_id", how="anti")
    planted = []
    for name in names[1:]:
        lift = lifts[name]
        share = min(max(lift * base / (1 - base), 0.0), 1.0) if base < 1 else 0.0
        rows = candidates.filter(pl.col("variant") == name)
        chosen = rows.filter(pl.Series(rng.random(rows.height) < share))
        offset_us = rng.uniform(0.05, 0.95, chosen.height) * window.total_seconds() * 1e6
        at = chosen.with_columns(pl.Series("offset", offset_us).cast(pl.Int64)).select(
            "user_id", "device",
            (pl.col("first_exposure") + pl.duration(microseconds=pl.col("offset"))).alias("t"))
        for k, event in enumerate(("add_to_cart", "checkout_start", "purchase")):
            planted.append(at.select(
                pl.concat_str([pl.lit(f"sim-{name}-{event}-"), pl.col("user_id")]).alias("event_id"),
                "user_id", (pl.col("t") + pl.duration(minutes=2 * k)).alias("timestamp"),
                pl.lit(event).alias("event"), "device",
                pl.lit(basket if event == "purchase" else None, dtype=pl.Float64).alias("value")))
    return planted
