"""A live champion/challenger A/B simulated on a synthetic shop (the demo's loop, a benchmark).

The outcome model, stated so the result can be judged:

* **Enrolment.** Every user with an event in ``[start, start + days)`` is enrolled at that first event
  and assigned by the service's own hash (:func:`serving.scoring.variant_for` with the experiment's
  salt and challenger share), so the split is the one serving would make.
* **Decision.** Each arm's model scores its users on the point-in-time snapshot at ``start`` (the
  profile the service would hold when the test opens); the top ``treat_share`` of each arm by its
  model's probability get the intervention (e.g. an incentive). Users without history at ``start``
  have no score and are not treated.
* **Response.** The shop's recorded purchases are every user's baseline. The planted response to the
  intervention follows the shop's own truth: a treated user's chance to convert within the window
  becomes ``p * (1 + uplift)``, where ``p`` is the generator's true probability (``oracle.parquet``)
  at the midnight of the exposure day; a treated user who did not buy gets an extra purchase with
  probability ``p * uplift / (1 - p)``. A model that ranks the truly likelier buyers higher treats
  them and so converts more; neither model sees ``p``.

Writes ``exposures.parquet`` in the ``ab analyze`` format (user_id, experiment, variant,
first_exposure) and ``events.parquet`` (the enrolled users' events from ``start`` on, plus the
planted ones).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from serving.scoring import variant_for


def enrol(events: pl.DataFrame, start: dt.datetime, days: float, salt: str, share: float) -> pl.DataFrame:
    """user_id, first_exposure, device and variant (champion/challenger by the serving hash)."""
    end = start + dt.timedelta(days=days)
    enrolled = (events.filter(pl.col("timestamp").is_between(start, end, closed="left"))
                .sort("timestamp", "event_id").group_by("user_id", maintain_order=True)
                .agg(pl.col("timestamp").first().alias("first_exposure"), pl.col("device").first())
                .sort("user_id"))
    if enrolled.height == 0:
        raise ValueError(f"no shop events between {start.isoformat()} and {end.isoformat()}")
    variants = [variant_for(salt, u, share) for u in enrolled.get_column("user_id").to_list()]
    return enrolled.with_columns(pl.Series("variant", variants, dtype=pl.String))


def treated_users(enrolled: pl.DataFrame, snapshot: pl.DataFrame, models: Mapping[str, Any],
                  treat_share: float) -> pl.DataFrame:
    """``enrolled`` with ``treated``: the top ``treat_share`` of each arm by its own model's score."""
    parts = []
    for variant, model in models.items():
        arm = enrolled.filter(pl.col("variant") == variant)
        rows = snapshot.join(arm.select("user_id"), on="user_id", how="inner")
        scores = rows.select("user_id").with_columns(
            pl.Series("score", np.asarray(model.predict_proba(rows), dtype=np.float64)))
        k = int(round(treat_share * arm.height))
        top = scores.sort(["score", "user_id"], descending=[True, False]).head(k).select("user_id")
        parts.append(arm.with_columns(pl.col("user_id").is_in(top.get_column("user_id").implode())
                                      .alias("treated")))
    return pl.concat(parts).sort("user_id")


def planted_purchases(units: pl.DataFrame, events: pl.DataFrame, oracle: pl.DataFrame, uplift: float,
                      window_days: float, basket: float, seed: int) -> pl.DataFrame:
    """The extra add_to_cart -> checkout_start -> purchase of treated users who did not buy (see the
    module docstring); columns of the events contract."""
    rng = np.random.default_rng(seed)
    window = dt.timedelta(days=window_days)
    purchases = events.filter(pl.col("event") == "purchase").select("user_id", "timestamp")
    exposed = pl.col("first_exposure")
    bought = (units.join(purchases, on="user_id")
              .filter(pl.col("timestamp").is_between(exposed, exposed + window, closed="left"))
              .select("user_id").unique())
    truth = oracle.select(pl.col("user_id").cast(pl.String), pl.col("as_of").dt.cast_time_unit("us")
                          .dt.replace_time_zone(None).alias("day"), "p_true")
    candidates = (units.filter(pl.col("treated")).join(bought, on="user_id", how="anti")
                  .with_columns(pl.col("first_exposure").dt.truncate("1d").dt.replace_time_zone(None)
                                .dt.cast_time_unit("us").alias("day"))
                  .join(truth, on=["user_id", "day"], how="left")
                  .with_columns(pl.col("p_true").fill_null(0.0).clip(0.0, 0.999)))
    p = candidates.get_column("p_true").to_numpy()
    extra = np.minimum(p * uplift / (1 - p), 1.0)
    chosen = candidates.filter(pl.Series(rng.random(candidates.height) < extra))
    offset = pl.Series("offset", rng.uniform(0.05, 0.95, chosen.height) * window.total_seconds() * 1e6)
    at = chosen.with_columns(offset.cast(pl.Int64)).select(
        "user_id", "device", (exposed + pl.duration(microseconds=pl.col("offset"))).alias("t"))
    steps = []
    for k, event in enumerate(("add_to_cart", "checkout_start", "purchase")):
        value = pl.lit(basket if event == "purchase" else None, dtype=pl.Float64).alias("value")
        steps.append(at.select(pl.concat_str([pl.lit(f"ab-{event}-"), pl.col("user_id")]).alias("event_id"),
                               "user_id", (pl.col("t") + pl.duration(minutes=2 * k)).alias("timestamp"),
                               pl.lit(event).alias("event"), "device", value))
    return pl.concat(steps)


def simulate_model_ab(events: pl.DataFrame, oracle: pl.DataFrame, snapshot: pl.DataFrame,
                      models: Mapping[str, Any], out_dir: str | Path, start: dt.datetime, *,
                      days: float = 7, salt: str = "propensity", share: float = 0.5,
                      experiment: str = "champion-vs-challenger",
                      treat_share: float = 0.2, uplift: float = 0.5, window_days: float = 7.0,
                      seed: int = 7) -> dict[str, Any]:
    """Run the A/B of the module docstring on clean shop ``events``; ``models`` maps ``champion`` and
    ``challenger`` to fitted models, ``snapshot`` is the point-in-time snapshot at ``start``.
    Returns the written paths and, per arm, users, treated users and planted purchases."""
    start = start.astimezone(dt.UTC)
    units = treated_users(enrol(events, start, days, salt, share), snapshot, models, treat_share)
    values = events.filter(pl.col("event") == "purchase").get_column("value").drop_nulls().to_numpy()
    basket = float(np.median(values)) if len(values) else 50.0
    planted = planted_purchases(units, events, oracle, uplift, window_days, basket, seed)
    columns = ["event_id", "user_id", "timestamp", "event", "device", "value"]
    seen = events.filter((pl.col("timestamp") >= start) & pl.col("user_id").is_in(units["user_id"].implode()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"exposures": out / "exposures.parquet", "events": out / "events.parquet"}
    units.select("user_id", pl.lit(experiment).alias("experiment"), "variant",
                 "first_exposure").write_parquet(paths["exposures"])
    pl.concat([seen.select(columns), planted.select(columns)], how="vertical_relaxed").sort(
        "timestamp").write_parquet(paths["events"])
    extra = planted.filter(pl.col("event") == "purchase").join(units.select("user_id", "variant"),
                                                               on="user_id")
    arms = {v: {"users": int((units["variant"] == v).sum()),
                "treated": int(units.filter(pl.col("variant") == v)["treated"].sum()),
                "planted_purchases": int((extra["variant"] == v).sum())} for v in models}
    return {"paths": paths, "arms": arms}
