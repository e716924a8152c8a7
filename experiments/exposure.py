"""Exposure log + outcome events (SPEC events contract) -> one row per exposed user.

Exposure log columns: ``user_id``, ``variant``, ``first_exposure`` (time) and optionally
``experiment``; or what the service writes (a ``time`` per answer: the prediction log, or the
JSON Lines exposure log), whose first time per user, experiment and variant is the first exposure
(:func:`first_exposures`). A conversion is a ``purchase`` event in [first exposure, first exposure + window).
Events before the first exposure never count; repeated ``event_id`` values count once.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from experiments.aggregate import require_columns
from propensity.errors import DataError

FUNNEL_STEPS = ("product_view", "add_to_cart", "checkout_start", "purchase")


def _utc(frame: pl.DataFrame, col: str) -> pl.Expr:
    dtype = frame.schema[col]
    expr = pl.col(col)
    if dtype == pl.String:
        return expr.str.to_datetime(time_zone="UTC", strict=False).dt.cast_time_unit("us")
    if isinstance(dtype, pl.Datetime):
        expr = expr.dt.cast_time_unit("us")
        if dtype.time_zone is None:
            return expr.dt.replace_time_zone("UTC")
        return expr.dt.convert_time_zone("UTC")
    raise DataError(f"column '{col}' is not a timestamp (type {dtype})")


def first_exposures(log: pl.DataFrame) -> pl.DataFrame:
    """An exposure table from a log of answers (``user_id``, ``variant``, ``time``, optionally
    ``experiment``): one row per user, experiment and variant with ``first_exposure`` = its earliest
    ``time``. Answers outside any experiment (null ``experiment``, or no user) are left out; a table
    that already has ``first_exposure`` is returned as it is."""
    if "first_exposure" in log.columns:
        return log
    require_columns(log, ["user_id", "variant", "time"], "exposure log")
    keys = ["user_id", "experiment", "variant"] if "experiment" in log.columns else ["user_id", "variant"]
    enrolled = log.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
    if enrolled.is_empty():
        raise DataError("exposure log: no answer was given inside an experiment "
                        "(serving experiment.enabled was off while it was written)")
    return (enrolled.with_columns(_utc(enrolled, "time").alias("time"))
            .group_by(keys).agg(pl.col("time").min().alias("first_exposure")).sort("first_exposure"))


def exposed_users(exposures: pl.DataFrame, experiment: str | None = None) -> pl.DataFrame:
    """One row per user (user_id, variant, first_exposure UTC); DataError if a user saw two variants."""
    require_columns(exposures, ["user_id", "variant", "first_exposure"], "exposure log")
    if experiment is not None:
        require_columns(exposures, ["experiment"], "exposure log")
        exposures = exposures.filter(pl.col("experiment") == experiment)
        if exposures.is_empty():
            raise DataError(f"exposure log has no rows for experiment '{experiment}'")
    users = (exposures.with_columns(_utc(exposures, "first_exposure"), pl.col("variant").cast(pl.String),
                                    pl.col("user_id").cast(pl.String))
             .group_by("user_id").agg(pl.col("variant").n_unique().alias("_variants"),
                                      pl.col("variant").first(), pl.col("first_exposure").min()))
    crossed = users.filter(pl.col("_variants") > 1).height
    if crossed:
        raise DataError(f"{crossed} users appear in more than one variant of the exposure log")
    return users.drop("_variants").sort("user_id")


def outcome_events(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.Expr]:
    """``events`` ready to join outcomes from: UTC timestamps, string user ids, one row per event_id
    (a repeated delivery counts once); and the money expression (``value``, 0 when absent)."""
    ev = events.with_columns(_utc(events, "timestamp").alias("timestamp"), pl.col("user_id").cast(pl.String))
    if "event_id" in ev.columns:
        ev = ev.unique(subset="event_id", keep="first")
    value = pl.col("value").cast(pl.Float64).fill_null(0.0) if "value" in ev.columns else pl.lit(0.0)
    return ev, value


def outcomes_from_exposures(exposures: pl.DataFrame, events: pl.DataFrame, window_days: float = 7.0,
                            experiment: str | None = None,
                            steps: Sequence[str] = FUNNEL_STEPS) -> pl.DataFrame:
    """Exposed users with ``converted`` (0/1), ``revenue`` (sum of purchase values in the window) and
    one 0/1 column ``reached_<step>`` per funnel step (the step's event happened in the window)."""
    require_columns(events, ["user_id", "timestamp", "event"], "events")
    users = exposed_users(exposures, experiment)
    ev, value = outcome_events(events)
    window = pl.duration(seconds=int(window_days * 86_400))
    joined = (ev.select("user_id", "timestamp", "event", value.alias("value"))
              .join(users.select("user_id", "first_exposure"), on="user_id", how="inner")
              .filter((pl.col("timestamp") >= pl.col("first_exposure"))
                      & (pl.col("timestamp") < pl.col("first_exposure") + window)))
    purchase = pl.col("event") == "purchase"
    per_user = joined.group_by("user_id").agg(
        purchase.any().cast(pl.Int8).alias("converted"),
        pl.when(purchase).then(pl.col("value")).otherwise(0.0).sum().alias("revenue"),
        *[(pl.col("event") == s).any().cast(pl.Int8).alias(f"reached_{s}") for s in steps])
    filled = ["converted", "revenue", *(f"reached_{s}" for s in steps)]
    return users.join(per_user, on="user_id", how="left").with_columns(pl.col(filled).fill_null(0))


def cohort_activity(users: pl.DataFrame, events: pl.DataFrame, weeks: int = 4) -> pl.DataFrame:
    """Per variant and week k after first exposure (0-based): users, share returning (any event),
    share purchasing, and ``complete_share``: the share 0..1 of the variant's users whose week lies
    wholly before the end of the events (below 1 = censored).
    ``users`` is the output of :func:`exposed_users` or :func:`outcomes_from_exposures`."""
    ev = events.with_columns(_utc(events, "timestamp").alias("timestamp"), pl.col("user_id").cast(pl.String))
    since = (pl.col("timestamp") - pl.col("first_exposure")).dt.total_seconds()
    week = (since // (7 * 86_400)).cast(pl.Int64)
    active = (ev.select("user_id", "timestamp", "event")
              .join(users.select("user_id", "variant", "first_exposure"), on="user_id", how="inner")
              .with_columns(week.alias("week")).filter((pl.col("week") >= 0) & (pl.col("week") < weeks))
              .group_by("variant", "week", "user_id")
              .agg((pl.col("event") == "purchase").any().alias("purchased")))
    sizes = users.group_by("variant").agg(pl.len().alias("users"))
    grid = sizes.join(pl.DataFrame({"week": list(range(weeks))}), how="cross")
    counts = active.group_by("variant", "week").agg(pl.len().alias("returning"),
                                                   pl.col("purchased").sum().alias("purchasing"))
    # A week is censored for a user when the data ends before it does (complete_share < 1).
    end = ev["timestamp"].max()
    ends = (pl.col("first_exposure") + pl.duration(days=7 * (pl.col("week") + 1))) <= pl.lit(end)
    complete = (users.select("variant", "first_exposure").join(grid.select("week").unique(), how="cross")
                .group_by("variant", "week").agg(ends.mean().alias("complete_share")))
    return (grid.join(counts, on=["variant", "week"], how="left").fill_null(0)
            .join(complete, on=["variant", "week"], how="left")
            .with_columns((pl.col("returning") / pl.col("users")).alias("returning_share"),
                          (pl.col("purchasing") / pl.col("users")).alias("purchasing_share"))
            .sort("variant", "week"))
