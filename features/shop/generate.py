"""A synthetic shop: users, clickstream events and the true conversion probability (the oracle).

The generative model (all of it vectorised over users with NumPy; one loop over days):

* **Users** have CRM attributes (age, gender, country, loyalty tier, signup date, consent) and two
  hidden traits: ``activity`` (how often they visit) and ``beta`` (how readily they buy). Loyalty
  tier raises ``beta`` and warmth clearly; age band, gender and country shift them mildly, so a
  fairness audit measures real but small group differences. ``disparity`` plants one named group:
  ``kind: intent`` makes it convert much less (lower warmth and ``beta``: a true difference in
  outcomes); ``kind: tracking`` keeps its behaviour and outcomes but records only a share
  ``factor`` of its client-side events (purchases are server-side and always recorded), so a model
  trained on the clickstream under-rates the group: a disparity of the model, not of the world.
* **Latent intent** is a daily Markov chain per user over three states: 0 browsing, 1 considering,
  2 deciding. ``P(0->1) = warmth``, ``P(1->2) = commit``; a purchase resets the next day to
  browsing. On a day in state ``s`` the user buys with probability
  ``HAZARD[s] * beta * sale_boost(day)``.
* **Sessions and events** follow the state: visits per day (more on weekends and in the sale;
  a deciding user always visits), session length, the mix of event types (browsing is mostly page
  views and content; deciding has carts and checkouts), durations and scroll depth. A purchase day
  ends its last session with add_to_cart -> checkout_start -> purchase. Times of day follow a
  daily rhythm; every session ends before midnight, so a day's events belong to that day.
* **Noise**: a share of events is delivered twice (same ``event_id``) and a share of extra
  corrupted rows (missing ids or timestamp, negative value or duration, scroll depth above 1) is
  mixed in; ingestion must de-duplicate and quarantine them. Corrupted rows are copies of
  non-purchase events, so they never change a label.
* **Oracle**: ``p_true`` at every midnight ``as_of`` (while ``as_of + horizon`` is inside the
  data) is the exact probability of a purchase in ``[as_of, as_of + horizon)`` given the hidden
  state on the eve of ``as_of`` and the user's hidden traits, computed by propagating the chain
  (forward algorithm, no sampling). Its AUC is the best any model can reach.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, ValidationError, model_validator

from features.schema import age_band
from features.shop.catalogue import Tastes, write_catalogue
from features.shop.shifts import NEWCOMER_INTENT, Shift, concept_scale
from propensity.config import StrictModel, load_config
from propensity.errors import ConfigError

# --- the hidden model (documented above; constants, not config: they define what "the shop" is) ---
HAZARD = np.array([0.0015, 0.012, 0.16])  # P(buy today | state), before beta and the sale boost
SESSION_BASE = np.array([0.10, 0.0, 0.0])  # visits/day in state 0 (scaled by activity); 1 and 2 visit daily
EVENTS_PER_SESSION = np.array([2.0, 4.0, 6.0])  # mean extra events after the first
EVENT_MIX: dict[str, tuple[float, float, float]] = {  # share of each event type per state
    "page_view": (0.42, 0.22, 0.14),
    "product_view": (0.16, 0.40, 0.34),
    "scroll": (0.14, 0.08, 0.04),
    "search": (0.08, 0.12, 0.08),
    "video_play": (0.07, 0.03, 0.02),
    "newsletter_signup": (0.015, 0.01, 0.005),
    "whitepaper_download": (0.015, 0.015, 0.005),
    "add_to_cart": (0.01, 0.06, 0.22),
    "remove_from_cart": (0.0, 0.02, 0.05),
    "checkout_start": (0.0, 0.02, 0.10),
}
FUNNEL_END = ("add_to_cart", "checkout_start", "purchase")
EVENT_NAMES: tuple[str, ...] = (*EVENT_MIX, "purchase")
PAGE_OF_EVENT = {"product_view": "product", "add_to_cart": "product", "remove_from_cart": "cart",
                 "checkout_start": "checkout", "purchase": "checkout", "search": "category",
                 "video_play": "content", "newsletter_signup": "content", "whitepaper_download": "content"}
PAGE_VIEW_PAGES = ("home", "category", "content")
CATEGORIES = ("shoes", "apparel", "outdoor", "home", "beauty", "electronics", "books", "toys")
DEVICES = (("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.10))
SOURCES = (("direct", 0.30), ("search", 0.30), ("social", 0.15), ("email", 0.10), ("ads", 0.15))
GENDERS = (("female", 0.49), ("male", 0.48), ("other", 0.03))
COUNTRIES = (("de", 0.30), ("fr", 0.20), ("gb", 0.20), ("es", 0.15), ("it", 0.15))
TIERS = (("none", 0.50), ("bronze", 0.28), ("silver", 0.15), ("gold", 0.07))
# log-scale effects on beta (buying) and warmth (intent); small for demographic groups
TIER_EFFECT = {"none": 0.0, "bronze": 0.2, "silver": 0.4, "gold": 0.6}
GENDER_EFFECT = {"female": 0.03, "male": -0.03, "other": 0.0}
COUNTRY_EFFECT = {"de": 0.04, "fr": -0.02, "gb": 0.02, "es": -0.03, "it": -0.01}
AGE_EFFECT = {"under-18": -0.05, "18-24": -0.05, "25-34": 0.04, "35-44": 0.05, "45-54": 0.02,
              "55-64": -0.02, "65+": -0.05}
HOUR_WEIGHTS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4,
                         5, 4.5, 4, 4, 4, 4.5, 5.5, 6.5, 7, 6, 4, 2], dtype=float)
BURN_IN_DAYS = 30  # the chain runs this long before the first day, so day 0 is not a cold start

Progress = Callable[[str], None]


class Sale(StrictModel):
    start_day: int = Field(default=35, ge=0)
    days: int = Field(default=5, ge=0)
    traffic_boost: float = Field(default=1.3, gt=0)
    purchase_boost: float = Field(default=1.6, gt=0)


class Disparity(StrictModel):
    feature: Literal["gender", "country", "age_band", "loyalty_tier"]
    value: str
    factor: float = Field(0.3, gt=0, le=1)
    kind: Literal["intent", "tracking"] = "intent"


class GenerateConfig(StrictModel):
    """``configs/generate.yaml``."""

    users: int = Field(20000, ge=1)
    days: int = Field(60, ge=1)
    seed: int = 42
    start: date = date(2026, 9, 1)
    horizon_days: int = Field(7, ge=1)
    consent_false_share: float = Field(0.03, ge=0, le=1)
    duplicate_share: float = Field(0.01, ge=0, le=0.5)
    malformed_share: float = Field(0.005, ge=0, le=0.5)
    sale: Sale = Sale()
    disparity: Disparity | None = None
    shifts: list[Shift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.disparity is not None:
            known = _group_values(self.disparity.feature)
            if known is not None and self.disparity.value not in known:
                raise ValueError(f"disparity value '{self.disparity.value}' is not a "
                                 f"{self.disparity.feature} of the shop (one of {', '.join(known)})")
        for shift in self.shifts:
            known = _group_values(shift.feature)
            if known is not None and shift.value not in known:
                raise ValueError(f"shift value '{shift.value}' is not a {shift.feature} of the shop "
                                 f"(one of {', '.join(known)})")
            if shift.day >= self.days:
                raise ValueError(f"shift onset day {shift.day} is not inside the {self.days} days")
        return self


def _group_values(feature: str) -> list[str] | None:
    table = {"gender": GENDERS, "country": COUNTRIES, "loyalty_tier": TIERS, "device": DEVICES,
             "source": SOURCES}
    if feature in table:
        return [name for name, _ in table[feature]]
    if feature == "age_band":
        return list(AGE_EFFECT)
    return None


def load_generate_config(path: str | Path | None = None, **overrides: object) -> GenerateConfig:
    """``configs/generate.yaml`` (or ``path``) with CLI overrides (None values are ignored)."""
    return load_config(GenerateConfig, path, "generate.yaml", overrides=dict(overrides))


def parse_disparity(text: str) -> Disparity:
    """``[KIND:]FEATURE=VALUE[:FACTOR]``, e.g. ``country=fr:0.3`` (kind ``intent``, factor default 0.3)
    or ``tracking:country=fr:0.3``."""
    kind, colon, spec_text = text.partition(":")
    if not colon or "=" in kind:
        kind, spec_text = "", text
    feature, sep, rest = spec_text.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--disparity '{text}': expected [KIND:]FEATURE=VALUE[:FACTOR], "
                          f"e.g. country=fr:0.3 or tracking:country=fr:0.3")
    value, _, factor = rest.partition(":")
    try:
        spec = Disparity.model_validate({"feature": feature.strip(), "value": value.strip().lower(),
                                         **({"factor": factor} if factor else {}),
                                         **({"kind": kind.strip().lower()} if kind else {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--disparity '{text}': {where}: {first['msg']}") from None
    known = _group_values(spec.feature)
    if known is not None and spec.value not in known:
        raise ConfigError(f"--disparity '{text}': '{spec.value}' is not a {spec.feature} of the shop "
                          f"(one of {', '.join(known)})")
    return spec


@dataclass
class Shop:
    """A generated shop: raw ``events`` (with duplicates and bad rows), ``users`` and ``oracle``."""

    events: pl.DataFrame
    users: pl.DataFrame
    oracle: pl.DataFrame
    config: GenerateConfig
    stats: dict[str, float | int]


@dataclass
class ShopFiles:
    events: Path
    users: Path
    oracle: Path
    manifest: Path
    stats: dict[str, float | int]

    def summary(self) -> dict[str, object]:
        return {"events": str(self.events), "users": str(self.users), "oracle": str(self.oracle),
                "manifest": str(self.manifest), **self.stats}


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names = np.array([name for name, _ in table])
    p = np.array([w for _, w in table], dtype=float)
    return names[rng.choice(len(names), size=n, p=p / p.sum())]


def _categorical(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per row from the cumulative distribution ``cum[rows]``."""
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows][:, :-1]).sum(axis=1)


def _make_users(cfg: GenerateConfig, rng: np.random.Generator, n: int | None = None,
                first_id: int = 0) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    n = cfg.users if n is None else n
    age = np.clip(np.round(18 + rng.gamma(2.2, 9.0, n)), 18, 90).astype(np.int64)
    gender = _choice(rng, GENDERS, n)
    country = _choice(rng, COUNTRIES, n)
    tier = _choice(rng, TIERS, n)
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


def _add_newcomers(cfg: GenerateConfig, rng: np.random.Generator, users: pl.DataFrame,
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
        new_users, new = _make_users(cfg, rng, n_new, first_id=users.height)
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


def _purchase_scale(cfg: GenerateConfig, traits: dict[str, np.ndarray], day: int) -> np.ndarray:
    """Per-user multiplier of the chance to buy on ``day``: the sale, arrival (0 before it) and
    the concept shifts. Negative days are the burn-in."""
    sale = _sale_boost(cfg, day, "purchase") if day >= 0 else 1.0
    alive = (traits["arrival"] <= max(day, 0)).astype(np.float64)
    return alive * sale * concept_scale(cfg.shifts, traits, day)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    digits = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str([pl.lit(prefix), digits])).to_series()


def _transitions(traits: dict[str, np.ndarray]) -> np.ndarray:
    """Per-user day-to-day transition matrices, shape (n, 3, 3); rows sum to 1."""
    w, c = traits["warmth"], traits["commit"]
    n = len(w)
    p = np.zeros((n, 3, 3))
    p[:, 0, 0], p[:, 0, 1] = 1 - w, w
    p[:, 1, 0], p[:, 1, 2] = 0.15, c
    p[:, 1, 1] = 1 - 0.15 - c
    p[:, 2, 0], p[:, 2, 1], p[:, 2, 2] = 0.15, 0.35, 0.50
    return p


def _sale_boost(cfg: GenerateConfig, day: int, kind: Literal["traffic", "purchase"]) -> float:
    in_sale = cfg.sale.start_day <= day < cfg.sale.start_day + cfg.sale.days
    if not in_sale:
        return 1.0
    return cfg.sale.traffic_boost if kind == "traffic" else cfg.sale.purchase_boost


def _simulate_intent(cfg: GenerateConfig, rng: np.random.Generator, trans: np.ndarray,
                     traits: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hidden state and purchases per (user, day); also the state entering day 0."""
    beta = traits["beta"]
    n, d = len(beta), cfg.days
    cum = np.cumsum(trans, axis=2)
    idx = np.arange(n)
    state = np.zeros(n, dtype=np.int64)
    for _ in range(BURN_IN_DAYS):  # burn-in: no events, no purchases recorded
        state = (rng.random(n)[:, None] >= cum[idx, state][:, :-1]).sum(axis=1)
        bought = rng.random(n) < HAZARD[state] * beta * _purchase_scale(cfg, traits, -1)
        state = np.where(bought, 0, state)
    entering = state.copy()
    z = np.zeros((n, d), dtype=np.int8)
    buy = np.zeros((n, d), dtype=bool)
    for day in range(d):
        state = (rng.random(n)[:, None] >= cum[idx, state][:, :-1]).sum(axis=1)
        bought = rng.random(n) < np.minimum(HAZARD[state] * beta * _purchase_scale(cfg, traits, day), 1.0)
        z[:, day], buy[:, day] = state, bought
        state = np.where(bought, 0, state)
    return z, buy, entering


def _oracle(cfg: GenerateConfig, trans: np.ndarray, traits: dict[str, np.ndarray], z: np.ndarray,
            buy: np.ndarray, user_ids: pl.Series) -> pl.DataFrame:
    """Exact P(purchase in [as_of, as_of + horizon)) at every midnight as_of = start + k days."""
    beta = traits["beta"]
    n, h = len(beta), cfg.horizon_days
    ks = list(range(1, cfg.days - h + 1))
    start = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC)
    frames = []
    for k in ks:
        prev = np.where(buy[:, k - 1], 0, z[:, k - 1])
        v = np.zeros((n, 3))
        v[np.arange(n), prev] = 1.0
        for day in range(k, k + h):
            scale = _purchase_scale(cfg, traits, day)
            hazard = np.minimum(HAZARD[None, :] * beta[:, None] * scale[:, None], 1.0)
            v = np.einsum("ni,nij->nj", v, trans) * (1.0 - hazard)
        frames.append(pl.DataFrame({"user_id": user_ids, "p_true": 1.0 - v.sum(axis=1)})
                      .with_columns(pl.lit(start + timedelta(days=k)).cast(pl.Datetime("us", "UTC"))
                                    .alias("as_of")))
    if not frames:
        return pl.DataFrame(schema={"user_id": pl.String, "as_of": pl.Datetime("us", "UTC"),
                                    "p_true": pl.Float64})
    return pl.concat(frames).select("user_id", "as_of", "p_true")


def _sessions(cfg: GenerateConfig, rng: np.random.Generator, z: np.ndarray, buy: np.ndarray,
              activity: np.ndarray, arrival: np.ndarray) -> dict[str, np.ndarray]:
    n, d = z.shape
    start = np.datetime64(cfg.start)
    weekday = (start.astype("datetime64[D]").astype(np.int64) + np.arange(d) + 3) % 7  # 0 = Monday
    day_mult = np.where(weekday >= 5, 1.2, 1.0) * np.array([_sale_boost(cfg, k, "traffic") for k in range(d)])
    rate = SESSION_BASE[z] * np.where(z == 1, 1.0, activity[:, None])
    rate = rate * day_mult[None, :]
    count = rng.poisson(rate)
    considering = z == 1
    busy = activity[:, None] * day_mult[None, :]
    count = np.where(considering, 1 + rng.poisson(0.3 * busy, size=z.shape), count)
    deciding = z == 2
    count = np.where(deciding, 1 + rng.poisson(0.5 * busy, size=z.shape), count)
    count = np.where(buy, np.maximum(count, 1), count)
    days = np.arange(d)[None, :]
    count = np.where(days >= arrival[:, None], count, 0)  # no visits before arriving
    landing = (days == arrival[:, None]) & (arrival[:, None] > 0)  # a newcomer lands on its arrival day
    count = np.where(landing, np.maximum(count, 1), count)
    flat = count.ravel()
    cell = np.repeat(np.arange(n * d), flat)
    first = np.repeat(np.cumsum(flat) - flat, flat)
    j = np.arange(len(cell)) - first
    last = j == np.repeat(flat, flat) - 1
    user, day = np.divmod(cell, d)
    return {"user": user, "day": day, "state": z.ravel()[cell].astype(np.int64),
            "buy": buy.ravel()[cell] & last}


def _events(cfg: GenerateConfig, rng: np.random.Generator, s: dict[str, np.ndarray],
            traits: dict[str, np.ndarray]) -> pl.DataFrame:
    """Events of every session, with the user as an index ``u`` (joined to ids afterwards)."""
    n_sess = len(s["user"])
    length = 1 + rng.poisson(EVENTS_PER_SESSION[s["state"]])
    total = length + 3 * s["buy"]
    sess = np.repeat(np.arange(n_sess), total)
    pos = np.arange(len(sess)) - np.repeat(np.cumsum(total) - total, total)
    state = s["state"][sess]
    mix = np.array(list(EVENT_MIX.values()), dtype=float).T  # (3 states, types)
    cum = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    etype = _categorical(rng, cum, state)
    tail = pos - length[sess]  # 0, 1, 2 in the purchase funnel tail
    names = np.array(EVENT_NAMES)
    code = {name: i for i, name in enumerate(EVENT_NAMES)}
    for i, name in enumerate(FUNNEL_END):
        etype = np.where(tail == i, code[name], etype)
    event = names[etype]
    n_ev = len(event)
    # durations (s) and the session clock; a session ends before midnight
    dur = np.round(np.exp(np.log(12.0) + 0.35 * state + 0.8 * rng.standard_normal(n_ev)), 1)
    dur = np.where(event == "product_view", np.round(dur * 2.0, 1), dur)
    dur = np.minimum(dur, 1800.0)
    step = dur + rng.exponential(4.0, n_ev)
    csum = np.cumsum(step)
    offsets = np.cumsum(total) - total
    before = np.concatenate([[0.0], csum])[offsets]
    clock = np.concatenate([[0.0], csum])[np.arange(n_ev)] - before[sess]  # seconds since session start
    span = np.concatenate([[0.0], csum])[offsets + total] - before
    hour = rng.choice(24, size=n_sess, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    sec = np.minimum(hour * 3600.0 + rng.random(n_sess) * 3600.0, np.maximum(86399.0 - span, 0.0))
    day0_us = np.datetime64(cfg.start, "us").astype(np.int64)
    ts = (day0_us + s["day"][sess] * 86_400_000_000 + np.round((sec[sess] + clock) * 1e6)).astype(np.int64)
    # session attributes
    device = _choice(rng, DEVICES, n_sess)
    source = _choice(rng, SOURCES, n_sess)
    forced_feature, forced = traits["forced_feature"][s["user"]], traits["forced"][s["user"]]
    device = np.where(forced_feature == "device", forced, device)  # covariate-shift newcomers
    source = np.where(forced_feature == "source", forced, source)
    # page, product, value, scroll
    page = np.array([PAGE_OF_EVENT.get(name, "") for name in EVENT_NAMES])[etype]
    viewed = rng.choice(len(PAGE_VIEW_PAGES), size=n_ev)
    page = np.where((event == "page_view") | (event == "scroll"), np.array(PAGE_VIEW_PAGES)[viewed], page)
    product_event = np.isin(event, ["product_view", "add_to_cart", "remove_from_cart", "purchase"])
    rng.integers(0, 2000, n_ev)  # no longer used, still drawn: the later columns of a seed stay unchanged
    n_users = len(traits["forced"])  # covariate-shift newcomers included
    product = Tastes.draw(cfg.seed, n_users, len(CATEGORIES)).choose(s["user"][sess], cfg.seed)
    product = np.where(event == "purchase", np.roll(product, 2), product)  # buys what the funnel carted
    valued = (event == "add_to_cart") | (event == "purchase")
    value = np.round(np.exp(np.where(event == "purchase", 4.0, 3.5) + 0.6 * rng.standard_normal(n_ev)), 2)
    scrolled = np.isin(event, ["page_view", "product_view", "scroll"])
    scroll = np.round(rng.beta(2.0 + state, 2.0), 3)
    frame = pl.DataFrame({
        "n": np.arange(n_ev),
        "u": s["user"][sess],
        "sess": sess,
        "timestamp": ts,
        "event": event,
        "page_type": page,
        "product": np.where(product_event, product, -1),
        "value": np.where(valued, value, np.nan),
        "duration_s": dur,
        "scroll_depth": np.where(scrolled, scroll, np.nan),
        "device": device[sess],
        "source": source[sess],
    })
    return frame.select(
        pl.concat_str([pl.lit("e"), pl.col("n").cast(pl.String).str.zfill(9)]).alias("event_id"),
        pl.col("timestamp").cast(pl.Datetime("us", "UTC")),
        "event",
        pl.concat_str([pl.lit("s"), pl.col("sess").cast(pl.String).str.zfill(8)]).alias("session_id"),
        pl.when(pl.col("page_type") != "").then(pl.col("page_type")).alias("page_type"),
        pl.when(pl.col("product") >= 0).then(pl.concat_str([pl.lit("p"), pl.col("product").cast(pl.String)
                                                            .str.zfill(4)])).alias("product_id"),
        pl.when(pl.col("product") >= 0)
        .then(pl.col("product").mod(len(CATEGORIES)).replace_strict(dict(enumerate(CATEGORIES)),
                                                                    return_dtype=pl.String))
        .alias("category"),
        pl.col("value").fill_nan(None),
        "duration_s",
        pl.col("scroll_depth").fill_nan(None),
        "device", "source", "u",
    )


def _finish_events(frame: pl.DataFrame, user_ids: pl.Series) -> pl.DataFrame:
    ids = user_ids.to_numpy()[frame["u"].to_numpy()]
    return frame.with_columns(pl.Series("user_id", ids, dtype=pl.String)).select(
        "event_id", "user_id", *[c for c in frame.columns if c not in ("event_id", "u")])


def _lose_tracking(factor: float, rng: np.random.Generator, events: pl.DataFrame,
                   group: pl.Series) -> pl.DataFrame:
    """Keep only a share ``factor`` of the client-side events of the users in ``group`` (their
    purchases all stay)."""
    in_group = events["user_id"].is_in(group.implode()).to_numpy()
    keep = ~in_group | (events["event"] == "purchase").to_numpy() | (rng.random(events.height) < factor)
    return events.filter(pl.Series(keep))


def _stop_tracking(cfg: GenerateConfig, events: pl.DataFrame) -> pl.DataFrame:
    """Tracking shifts: from the onset day, events of sessions with the attribute value lose the field."""
    day0 = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC)
    for shift in (s for s in cfg.shifts if s.kind == "tracking"):
        assert shift.field is not None
        onset = day0 + timedelta(days=shift.day)
        lost = (pl.col(shift.feature) == shift.value) & (pl.col("timestamp") >= onset)
        events = events.with_columns(pl.when(lost).then(None).otherwise(pl.col(shift.field))
                                     .alias(shift.field))
    return events


def _noise(cfg: GenerateConfig, rng: np.random.Generator,
           events: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Append duplicate deliveries and corrupted rows, then order by time (bad timestamps last)."""
    n = events.height
    n_dup = int(round(cfg.duplicate_share * n))
    n_bad = int(round(cfg.malformed_share * n))
    dups = events[np.sort(rng.choice(n, size=n_dup, replace=False))] if n_dup else events.clear()
    candidates = np.flatnonzero(events["event"].to_numpy() != "purchase")
    bad = events[np.sort(rng.choice(candidates, size=min(n_bad, len(candidates)), replace=False))] \
        if n_bad else events.clear()
    kind = rng.integers(0, 5, bad.height)
    kinds = pl.Series("kind", kind)
    bad = bad.with_columns(kinds).with_columns(
        pl.concat_str([pl.lit("x"), pl.int_range(pl.len()).cast(pl.String).str.zfill(8)]).alias("event_id"),
        pl.when(pl.col("kind") == 0).then(None).otherwise(pl.col("user_id")).alias("user_id"),
        pl.when(pl.col("kind") == 1).then(None).otherwise(pl.col("timestamp")).alias("timestamp"),
        pl.when(pl.col("kind") == 2).then(-pl.col("value").fill_null(9.99)).otherwise(pl.col("value"))
        .alias("value"),
        pl.when(pl.col("kind") == 3).then(1.0 + pl.col("scroll_depth").fill_null(0.5))
        .otherwise(pl.col("scroll_depth")).alias("scroll_depth"),
        pl.when(pl.col("kind") == 4).then(-1.0 - pl.col("duration_s")).otherwise(pl.col("duration_s"))
        .alias("duration_s"),
    ).drop("kind")
    out = pl.concat([events, dups, bad]).sort("timestamp", nulls_last=True, maintain_order=True)
    return out, n_dup, bad.height


def generate_shop(cfg: GenerateConfig | None = None, progress: Progress | None = None) -> Shop:
    """Generate a shop from ``cfg`` (default ``configs/generate.yaml``); deterministic by ``cfg.seed``."""
    cfg = cfg or load_generate_config()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    users, traits = _make_users(cfg, rng)
    users, traits = _add_newcomers(cfg, rng, users, traits)
    user_ids = users["user_id"]
    trans = _transitions(traits)
    z, buy, _ = _simulate_intent(cfg, rng, trans, traits)
    say(f"generate: {users.height} users x {cfg.days} days simulated, {int(buy.sum())} purchases")
    sessions = _sessions(cfg, rng, z, buy, traits["activity"], traits["arrival"])
    events = _finish_events(_events(cfg, rng, sessions, traits), user_ids)
    if cfg.disparity is not None and cfg.disparity.kind == "tracking":
        events = _lose_tracking(cfg.disparity.factor, rng, events, user_ids.filter(traits["planted"]))
    events = _stop_tracking(cfg, events)
    clean_rows = events.height
    say(f"generate: {clean_rows} events in {len(sessions['user'])} sessions")
    events, n_dup, n_bad = _noise(cfg, rng, events)
    oracle = _oracle(cfg, trans, traits, z, buy, user_ids)
    stats: dict[str, float | int] = {
        "users": users.height, "days": cfg.days, "seed": cfg.seed, "events": events.height,
        "clean_events": clean_rows, "duplicates": n_dup, "malformed": n_bad,
        "purchases": int(buy.sum()), "consent_false": int((~users["consent"]).sum()),
        "oracle_rows": oracle.height,
        "oracle_mean_p": float(oracle["p_true"].to_numpy().mean()) if oracle.height else float("nan"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Shop(events, users, oracle, cfg, stats)


def write_shop(shop: Shop, out_dir: str | Path) -> ShopFiles:
    """Write events.parquet, users.parquet, oracle.parquet and shop.json (config and counts)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ShopFiles(out / "events.parquet", out / "users.parquet", out / "oracle.parquet",
                      out / "shop.json", dict(shop.stats))
    shop.events.write_parquet(paths.events)
    shop.users.write_parquet(paths.users)
    shop.oracle.write_parquet(paths.oracle)
    write_catalogue(shop.config.seed, shop.users["user_id"].to_list(), CATEGORIES, out)
    paths.manifest.write_text(json.dumps({"config": shop.config.model_dump(mode="json"), "stats": shop.stats},
                                         indent=2) + "\n")
    return paths


def generate(out_dir: str | Path, cfg: GenerateConfig | None = None,
             progress: Progress | None = None) -> ShopFiles:
    """Generate and write a shop: the stage behind ``propensity generate``."""
    return write_shop(generate_shop(cfg, progress), out_dir)
