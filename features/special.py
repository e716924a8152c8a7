"""The named special features, batch (Polars) and online (Python) side by side, used by both paths.

- cart state: ``cart_open``, ``hours_since_cart_abandoned`` (from the latest add_to_cart and the
  latest purchase, all history) and ``cart_abandon_rate_30d`` (a per-session question);
- CRM attributes: ``age``, ``age_band``, ``gender``, ``country``, ``loyalty_tier``, ``tenure_days``.

Their documentation rows are :data:`features.definitions.CART_FEATURES` and ``PROFILE_FEATURES``.
Times are integer microseconds since the epoch; ``as_of - timestamp`` is an event's age.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import polars as pl

from features.batch.evaluate import per_unit
from features.schema import AGE_BANDS, age_band

US_PER_DAY = 86_400_000_000
CART_WINDOW_DAYS = 30  # the window of cart_abandon_rate_30d
US_PER_HOUR = 3_600_000_000
NAN = math.nan
_EV = pl.col("event")
_ATC = _EV == "add_to_cart"
_PURCHASE = _EV == "purchase"
_AGE = "__age_us"  # as_of minus timestamp, µs (> 0 for history), a column of the batch history frame


# -- cart state ---------------------------------------------------------------------------------

def cart_aggregates() -> list[pl.Expr]:
    """Per-user aggregates over the history frame the cart features need (hidden columns)."""
    age = pl.col(_AGE)
    return [age.filter(_ATC).min().alias("__last_atc_age"),
            age.filter(_PURCHASE).min().alias("__last_purchase_age")]


def cart_sessions(history: pl.LazyFrame) -> pl.LazyFrame:
    """Per-user 30-day sessions with an add_to_cart, and those of them without a purchase.

    Only cart and purchase events with a session in the window take part, so the (user, session)
    grouping runs over a small share of the events.
    """
    in_session = ((pl.col(_AGE) <= CART_WINDOW_DAYS * US_PER_DAY) & pl.col("session_id").is_not_null()
                  & (_ATC | _PURCHASE))
    sessions = (history.filter(in_session).group_by("user_id", "session_id")
                .agg(_ATC.any().alias("__cart"), _PURCHASE.any().alias("__bought"))
                .filter(pl.col("__cart")))
    return sessions.group_by("user_id").agg(
        pl.col("__cart").sum().cast(pl.Float64).alias("__cart_sessions"),
        (~pl.col("__bought")).sum().cast(pl.Float64).alias("__abandoned_sessions"),
    )


def cart_columns() -> dict[str, pl.Expr]:
    """The cart features from the hidden columns of :func:`cart_aggregates` and :func:`cart_sessions`."""
    atc, buy = pl.col("__last_atc_age"), pl.col("__last_purchase_age")
    cart_open = atc.is_not_null() & (buy.is_null() | (atc < buy))
    den = pl.col("__cart_sessions")
    return {
        "cart_open": cart_open.cast(pl.Float64),
        "hours_since_cart_abandoned": pl.when(cart_open).then(per_unit(atc, US_PER_HOUR)),
        "cart_abandon_rate_30d": pl.when(den > 0).then(pl.col("__abandoned_sessions") / den).otherwise(None),
    }


def online_cart_rate(events: Iterable[Any], as_of_us: int) -> float:
    """``cart_abandon_rate_30d`` of one profile: of the sessions with an add_to_cart in the 30 days
    before ``as_of``, the share without a purchase (``events`` are records: ``ts``, ``event``,
    ``session_id``); NaN without such sessions."""
    start30 = as_of_us - CART_WINDOW_DAYS * US_PER_DAY
    carts: set[str] = set()
    bought: set[str] = set()
    for rec in events:
        kind = rec.event
        if (kind == "add_to_cart" or kind == "purchase") and start30 <= rec.ts < as_of_us \
                and rec.session_id is not None:
            (carts if kind == "add_to_cart" else bought).add(rec.session_id)
    return len(carts - bought) / len(carts) if carts else NAN


def online_cart_hours(rate: float, as_of_us: int, last_atc: int | None,
                      last_buy: int | None) -> dict[str, float]:
    """The cart features of one profile: ``rate`` is :func:`online_cart_rate`, ``last_atc`` /
    ``last_buy`` the latest add_to_cart / purchase before as_of."""
    hours = NAN
    if last_atc is not None and (last_buy is None or last_atc > last_buy):
        hours = (as_of_us - last_atc) / US_PER_HOUR
    return {
        "cart_open": 0.0 if math.isnan(hours) else 1.0,
        "hours_since_cart_abandoned": hours,
        "cart_abandon_rate_30d": rate,
    }


# -- CRM attributes -----------------------------------------------------------------------------

def _age_band(age: pl.Expr) -> pl.Expr:
    """The audit band of :data:`features.schema.AGE_BANDS` as an expression (null outside every band)."""
    band = pl.lit(None, pl.String)
    for low, high, name in reversed(AGE_BANDS):
        band = pl.when((age >= low) & (age <= high)).then(pl.lit(name)).otherwise(band)
    return band


def profile_columns(as_of_us: int) -> dict[str, pl.Expr]:
    """The CRM features over the joined users columns (``age``, ``signup_date``, ...)."""
    signup_us = pl.col("signup_date").cast(pl.Datetime("us")).cast(pl.Int64)
    age = pl.col("age").cast(pl.Float64)
    return {
        "age": age,
        "age_band": _age_band(age),
        # A signup after as_of is not known at as_of: no tenure then.
        "tenure_days": pl.when(signup_us <= as_of_us).then(per_unit(as_of_us - signup_us, US_PER_DAY)),
    }


@lru_cache(maxsize=65536)
def _midnight_us(day: str) -> int:
    """UTC midnight of an ISO date in epoch microseconds (parsed once per distinct date: every
    request of a user reads its signup date)."""
    moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return int(moment.timestamp()) * 1_000_000


def profile_attributes(attrs: Mapping[str, Any], as_of_us: int) -> dict[str, Any]:
    """The static CRM features (age, age_band, gender, country, loyalty_tier, tenure_days)."""
    age = attrs.get("age")
    signup = attrs.get("signup_date")
    tenure = NAN
    if signup is not None:
        signup_us = _midnight_us(signup)
        if signup_us <= as_of_us:  # a signup after as_of is not known at as_of
            tenure = (as_of_us - signup_us) / US_PER_DAY
    return {
        "age": float(age) if age is not None else NAN,
        "age_band": age_band(age) if age is not None else None,
        "gender": attrs.get("gender"),
        "country": attrs.get("country"),
        "loyalty_tier": attrs.get("loyalty_tier"),
        "tenure_days": tenure,
    }
