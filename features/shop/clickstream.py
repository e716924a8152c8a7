"""The clickstream: sessions per (user, day) from the hidden state, then the events of each session.

Visits per day follow the state (more on weekends and in the sale; a deciding user always visits),
as do session length, the mix of event types, durations and scroll depth. A purchase day ends its
last session with add_to_cart -> checkout_start -> purchase. Times of day follow a daily rhythm;
every session ends before midnight, so a day's events belong to that day.

The random draws happen in a fixed order (the order of the code below): moving one changes every
shop of a seed, which the determinism tests catch.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from features.shop.catalogue import Tastes
from features.shop.config import GenerateConfig
from features.shop.intent import sale_boost
from features.shop.model import (
    CATEGORIES,
    DEVICES,
    EVENT_MIX,
    EVENT_NAMES,
    EVENTS_PER_SESSION,
    FUNNEL_END,
    HOUR_WEIGHTS,
    PAGE_OF_EVENT,
    PAGE_VIEW_PAGES,
    SESSION_BASE,
    SOURCES,
    draw,
)


def sessions(cfg: GenerateConfig, rng: np.random.Generator, z: np.ndarray, buy: np.ndarray,
              activity: np.ndarray, arrival: np.ndarray) -> dict[str, np.ndarray]:
    n, d = z.shape
    start = np.datetime64(cfg.start)
    weekday = (start.astype("datetime64[D]").astype(np.int64) + np.arange(d) + 3) % 7  # 0 = Monday
    day_mult = np.where(weekday >= 5, 1.2, 1.0) * np.array([sale_boost(cfg, k, "traffic") for k in range(d)])
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



def _categorical(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per row from the cumulative distribution ``cum[rows]``."""
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows][:, :-1]).sum(axis=1)



def session_events(cfg: GenerateConfig, rng: np.random.Generator, s: dict[str, np.ndarray],
                   traits: dict[str, np.ndarray]) -> pl.DataFrame:
    """Events of every session ``s`` (from :func:`sessions`), with the user as an index ``u`` (joined
    to ids by :func:`finish_events`)."""
    sess, total, etype = _event_types(rng, s)
    event = np.array(EVENT_NAMES)[etype]
    state = s["state"][sess]
    dur, ts = _clock(cfg, rng, s, sess, total, state, event)
    columns = _attributes(cfg, rng, s, traits, sess, etype, event, state)
    frame = pl.DataFrame({"n": np.arange(len(event)), "u": s["user"][sess], "sess": sess, "timestamp": ts,
                          "event": event, **columns, "duration_s": dur})
    return _event_columns(frame)


def _event_types(rng: np.random.Generator, s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray,
                                                                              np.ndarray]:
    """The session of each event, the events per session and each event's type (an index of
    :data:`EVENT_NAMES`); a buying session ends with the funnel tail."""
    n_sess = len(s["user"])
    length = 1 + rng.poisson(EVENTS_PER_SESSION[s["state"]])
    total = length + 3 * s["buy"]
    sess = np.repeat(np.arange(n_sess), total)
    pos = np.arange(len(sess)) - np.repeat(np.cumsum(total) - total, total)
    mix = np.array(list(EVENT_MIX.values()), dtype=float).T  # (3 states, types)
    cum = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    etype = _categorical(rng, cum, s["state"][sess])
    tail = pos - length[sess]  # 0, 1, 2 in the purchase funnel tail
    code = {name: i for i, name in enumerate(EVENT_NAMES)}
    for i, name in enumerate(FUNNEL_END):
        etype = np.where(tail == i, code[name], etype)
    return sess, total, etype


def _clock(cfg: GenerateConfig, rng: np.random.Generator, s: dict[str, np.ndarray], sess: np.ndarray,
           total: np.ndarray, state: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durations (s) and timestamps (µs since the epoch); a session ends before midnight."""
    n_sess, n_ev = len(s["user"]), len(event)
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
    return dur, ts


def _attributes(cfg: GenerateConfig, rng: np.random.Generator, s: dict[str, np.ndarray],
                traits: dict[str, np.ndarray], sess: np.ndarray, etype: np.ndarray, event: np.ndarray,
                state: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event columns: page, product index (-1 for none), value, scroll depth, device, source."""
    n_sess, n_ev = len(s["user"]), len(event)
    device = draw(rng, DEVICES, n_sess)
    source = draw(rng, SOURCES, n_sess)
    forced_feature, forced = traits["forced_feature"][s["user"]], traits["forced"][s["user"]]
    device = np.where(forced_feature == "device", forced, device)  # covariate-shift newcomers
    source = np.where(forced_feature == "source", forced, source)
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
    return {"page_type": page, "product": np.where(product_event, product, -1),
            "value": np.where(valued, value, np.nan), "scroll_depth": np.where(scrolled, scroll, np.nan),
            "device": device[sess], "source": source[sess]}


def _event_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The contract's columns (ids, nulls for absent values) from the index-based frame."""
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


def finish_events(frame: pl.DataFrame, user_ids: pl.Series) -> pl.DataFrame:
    """Replace the user index ``u`` by the user id (second column)."""
    ids = user_ids.to_numpy()[frame["u"].to_numpy()]
    return frame.with_columns(pl.Series("user_id", ids, dtype=pl.String)).select(
        "event_id", "user_id", *[c for c in frame.columns if c not in ("event_id", "u")])
