"""Outcomes of shown products: a content exposure log + events -> one row per exposed user.

The content exposure log (:class:`content.serve.ContentExposureLog`, JSON Lines) has one row per answer
and slot: ``user_id``, ``experiment``, ``variant``, ``slot``, ``component``, ``products`` (the ids
shown) and ``time``. For each user and shown product, the window opens when the product is first
shown to the user and lasts ``window_days``:

* a **click** is a ``product_view`` of the shown product in its window;
* a **cart** is an ``add_to_cart`` of a clicked product after its first click, in the window;
* a **purchase** is a ``purchase`` of a clicked product after its first click, in the window; its
  ``value`` is the revenue.

Per user: ``clicked``, ``carted``, ``converted`` (0/1: any clicked / carted / bought shown product),
``revenue`` (sum), ``clicks`` (distinct shown products clicked), ``shown`` (distinct products shown),
and ``reached_<step>`` for the funnel (``product_view`` = clicked, ``add_to_cart`` = carted,
``purchase`` = converted). Events without ``product_id`` never count; repeated event ids count once.
"""

from __future__ import annotations

import polars as pl

from experiments.aggregate import require_columns
from experiments.exposure import _utc, exposed_users, outcome_events
from propensity.errors import DataError

CONTENT_STEPS = ("product_view", "add_to_cart", "purchase")
CONTENT_METRICS = ("clicked", "converted", "revenue")


def is_content_log(exposures: pl.DataFrame) -> bool:
    """True for a content exposure log (it lists the products shown)."""
    return "products" in exposures.columns


def shown_products(exposures: pl.DataFrame, experiment: str | None = None) -> pl.DataFrame:
    """(user_id, product_id, shown_at): each product's first showing to each user (UTC)."""
    require_columns(exposures, ["user_id", "variant", "products", "time"], "content exposure log")
    if experiment is not None:
        require_columns(exposures, ["experiment"], "content exposure log")
        exposures = exposures.filter(pl.col("experiment") == experiment)
        if exposures.is_empty():
            raise DataError(f"content exposure log has no rows for experiment '{experiment}'")
    return (exposures.with_columns(_utc(exposures, "time").alias("time"), pl.col("user_id").cast(pl.String))
            .explode("products").drop_nulls("products")
            .group_by("user_id", pl.col("products").alias("product_id"))
            .agg(pl.col("time").min().alias("shown_at")))


def content_outcomes(exposures: pl.DataFrame, events: pl.DataFrame, window_days: float = 1.0,
                     experiment: str | None = None) -> pl.DataFrame:
    """One row per exposed user: user_id, variant, first_exposure and the outcomes of the module
    docstring. DataError when a user saw two variants or a column is missing."""
    require_columns(events, ["user_id", "timestamp", "event", "product_id"], "events")
    log = exposures.rename({"time": "first_exposure"}) if "time" in exposures.columns else exposures
    if experiment is not None and "experiment" in log.columns:
        log = log.filter(pl.col("experiment") == experiment)
    users = exposed_users(log.select("user_id", "variant", "first_exposure"), None)
    shown = shown_products(exposures, experiment)
    ev, value = outcome_events(events)
    window = pl.duration(seconds=int(window_days * 86_400))
    hits = (ev.filter(pl.col("event").is_in(CONTENT_STEPS)).drop_nulls("product_id")
            .select("user_id", "product_id", "timestamp", "event", value.alias("value"))
            .join(shown, on=["user_id", "product_id"], how="inner")
            .filter((pl.col("timestamp") >= pl.col("shown_at"))
                    & (pl.col("timestamp") < pl.col("shown_at") + window)))
    first_click = (hits.filter(pl.col("event") == "product_view")
                   .group_by("user_id", "product_id").agg(pl.col("timestamp").min().alias("clicked_at")))
    after = hits.join(first_click, on=["user_id", "product_id"], how="inner").filter(
        pl.col("timestamp") >= pl.col("clicked_at"))
    per_product = after.group_by("user_id", "product_id").agg(
        (pl.col("event") == "add_to_cart").any().alias("carted"),
        (pl.col("event") == "purchase").any().alias("bought"),
        pl.when(pl.col("event") == "purchase").then(pl.col("value")).otherwise(0.0).sum().alias("revenue"))
    per_user = per_product.group_by("user_id").agg(
        pl.len().alias("clicks"), pl.col("carted").any().cast(pl.Int8), pl.col("bought").any().cast(pl.Int8)
        .alias("converted"), pl.col("revenue").sum())
    n_shown = shown.group_by("user_id").agg(pl.len().alias("shown"))
    out = (users.join(n_shown, on="user_id", how="left").join(per_user, on="user_id", how="left")
           .with_columns(pl.col("clicks", "carted", "converted", "revenue").fill_null(0))
           .with_columns((pl.col("clicks") > 0).cast(pl.Int8).alias("clicked")))
    return out.with_columns(pl.col("clicked").alias("reached_product_view"),
                            pl.col("carted").alias("reached_add_to_cart"),
                            pl.col("converted").alias("reached_purchase"))
