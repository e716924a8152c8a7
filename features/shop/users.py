"""The shop's users: CRM attributes, the hidden traits that drive them, and covariate-shift newcomers.

``traits`` (one array per user) hold ``activity`` (how often a user visits), ``beta`` (how readily
they buy), ``warmth`` and ``commit`` (the intent chain's transitions), ``planted`` (in the
disparity's group), ``arrival`` (first day, 0 for everyone but newcomers) and the group attributes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.schema import age_band
from features.shop.config import GenerateConfig
from features.shop.model import (
    AGE_EFFECT,
    COUNTRIES,
    COUNTRY_EFFECT,
    DEVICES,
    GENDER_EFFECT,
    GENDERS,
    SOURCES,
    TIER_EFFECT,
    TIERS,
    draw,
)
from features.shop.shifts import NEWCOMER_INTENT


def make_users(cfg: GenerateConfig, rng: np.random.Generator, n: int | None = None,
                first_id: int = 0) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    n = cfg.users if n is None else n
    age = np.clip(np.round(18 + rng.gamma(2.2, 9.0, n)), 18, 90).astype(np.int64)
    gender = draw(rng, GENDERS, n)
    country = draw(rng, COUNTRIES, n)
    tier = draw(rng, TIERS, n)
    band = np.array([age_band(int(a)) for a in range(0, 91)])[age]
    signup = np.datetime64(cfg.start) - rng.integers(1, 3 * 365, n).astype("timedelta64[D]")
    consent = rng.random(n) >= cfg.consent_false_share
    group = (np.vectorize(TIER_EFFECT.get)(tier) + np.vectorize(GENDER_EFFECT.get)(gender)
             + np.vectorize(COUNTRY_EFFECT.get)(country) + np.vectorize(AGE_EFFECT.get)(band))
    beta = np.exp(group + 0.1 * rng.standard_normal(n))
    warmth = np.clip(0.05 * np.exp(0.8 * group + 0.1 * rng.standard_normal(n)), 0.005, 0.4)
    commit = np.clip(0.16 * np.exp(0.5 * group + 0.1 * rng.standard_normal(n)), 0.02, 0.5)
    activity = np.exp(0.5 * rng.standard_normal(n) - 0.125)
    planted = np.zeros(n, dtype=bool)  # the disparity's group, whatever its kind
    if cfg.disparity is not None:
        values = {"gender": gender, "country": country, "age_band": band, "loyalty_tier": tier}
        planted = values[cfg.disparity.feature] == cfg.disparity.value
        if cfg.disparity.kind == "intent":
            beta = np.where(planted, beta * cfg.disparity.factor, beta)
            warmth = np.where(planted, warmth * cfg.disparity.factor, warmth)
    users = pl.DataFrame({
        "user_id": _ids("u", np.arange(first_id, first_id + n), 6),
        "age": age, "gender": gender, "country": country, "loyalty_tier": tier,
        "signup_date": signup.astype("datetime64[D]"), "consent": consent,
    }).with_columns(pl.col("signup_date").cast(pl.Date))
    traits = {"beta": beta, "warmth": warmth, "commit": commit, "activity": activity, "planted": planted,
              "arrival": np.zeros(n, dtype=np.int64), "gender": gender, "country": country,
              "age_band": band, "loyalty_tier": tier}
    return users, traits


def add_newcomers(cfg: GenerateConfig, rng: np.random.Generator, users: pl.DataFrame,
                   traits: dict[str, np.ndarray]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """Covariate shifts: low-intent users who arrive on the onset day through one source/device
    value, about ``(factor - 1) * share(value) * users`` of them (so that value's traffic grows
    about ``factor``-fold). ``traits["forced"]`` holds each user's forced value ('' for none)."""
    traits["forced_feature"] = np.full(users.height, "", dtype=object)
    traits["forced"] = np.full(users.height, "", dtype=object)
    for shift in (s for s in cfg.shifts if s.kind == "covariate"):
        assert shift.factor is not None
        table = dict(SOURCES if shift.feature == "source" else DEVICES)
        n_new = int(round(cfg.users * (shift.factor - 1) * table[shift.value]))
        if n_new == 0:
            continue
        new_users, new = make_users(cfg, rng, n_new, first_id=users.height)
        new["beta"] = new["beta"] * NEWCOMER_INTENT
        new["warmth"] = new["warmth"] * NEWCOMER_INTENT
        new["arrival"] = np.full(n_new, shift.day, dtype=np.int64)
        new["forced_feature"] = np.full(n_new, shift.feature, dtype=object)
        new["forced"] = np.full(n_new, shift.value, dtype=object)
        arrived = np.datetime64(cfg.start) + np.timedelta64(shift.day, "D")
        new_users = new_users.with_columns(pl.lit(arrived).cast(pl.Date).alias("signup_date"))
        users = pl.concat([users, new_users])
        traits = {k: np.concatenate([traits[k], new[k]]) for k in traits}
    return users, traits



def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    digits = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str([pl.lit(prefix), digits])).to_series()

