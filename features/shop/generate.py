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

Where each part lives: :mod:`~features.shop.model` (the constants above), :mod:`~features.shop.config`,
:mod:`~features.shop.users`, :mod:`~features.shop.intent`, :mod:`~features.shop.clickstream`,
:mod:`~features.shop.recording` (tracking loss and noise), :mod:`~features.shop.oracle`; this module
runs them in order (the order of the random draws is part of what a seed means) and writes the files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features.shop.catalogue import write_catalogue
from features.shop.clickstream import finish_events, session_events, sessions
from features.shop.config import GenerateConfig, load_generate_config
from features.shop.intent import simulate_intent, transitions
from features.shop.model import CATEGORIES
from features.shop.oracle import oracle_probabilities
from features.shop.recording import add_noise, lose_tracking, stop_tracking
from features.shop.users import add_newcomers, make_users
from propensity.progress import Progress, Tracker

# Progress units of each part, about its share of the run time (measured at 8,000 users x 60 days).
UNITS = {"intent": 2, "clickstream": 10, "noise": 2, "oracle": 1, "write": 3, "catalogue": 7}
SHOP_UNITS = UNITS["intent"] + UNITS["clickstream"] + UNITS["noise"] + UNITS["oracle"]
WRITE_UNITS = UNITS["write"] + UNITS["catalogue"]


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



def generate_shop(cfg: GenerateConfig | None = None, progress: Progress | None = None) -> Shop:
    """Generate a shop from ``cfg`` (default ``configs/generate.yaml``); deterministic by ``cfg.seed``.

    ``progress`` receives :class:`~propensity.progress.Step` messages and two summary lines.
    """
    return _generate_shop(cfg or load_generate_config(), Tracker(progress, SHOP_UNITS, prefix="generate"))


def _generate_shop(cfg: GenerateConfig, track: Tracker) -> Shop:
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    track.begin(f"simulating {cfg.users} users over {cfg.days} days")
    users, traits = make_users(cfg, rng)
    users, traits = add_newcomers(cfg, rng, users, traits)
    user_ids = users["user_id"]
    trans = transitions(traits)
    z, buy, _ = simulate_intent(cfg, rng, trans, traits)
    track.advance(UNITS["intent"])
    track.note(f"{users.height} users x {cfg.days} days simulated, {int(buy.sum())} purchases")
    track.begin("drawing the clickstream")
    visits = sessions(cfg, rng, z, buy, traits["activity"], traits["arrival"])
    events = finish_events(session_events(cfg, rng, visits, traits), user_ids)
    if cfg.disparity is not None and cfg.disparity.kind == "tracking":
        events = lose_tracking(cfg.disparity.factor, rng, events, user_ids.filter(traits["planted"]))
    events = stop_tracking(cfg, events)
    clean_rows = events.height
    track.advance(UNITS["clickstream"])
    track.note(f"{clean_rows} events in {len(visits['user'])} sessions")
    track.begin("adding duplicates and corrupted rows")
    events, n_dup, n_bad = add_noise(cfg, rng, events)
    track.advance(UNITS["noise"])
    track.begin("computing the oracle")
    oracle = oracle_probabilities(cfg, trans, traits, z, buy, user_ids)
    track.advance(UNITS["oracle"])
    stats: dict[str, float | int] = {
        "users": users.height, "days": cfg.days, "seed": cfg.seed, "events": events.height,
        "clean_events": clean_rows, "duplicates": n_dup, "malformed": n_bad,
        "purchases": int(buy.sum()), "consent_false": int((~users["consent"]).sum()),
        "oracle_rows": oracle.height,
        "oracle_mean_p": float(oracle["p_true"].to_numpy().mean()) if oracle.height else float("nan"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Shop(events, users, oracle, cfg, stats)


def write_shop(shop: Shop, out_dir: str | Path, progress: Progress | None = None) -> ShopFiles:
    """Write events.parquet, users.parquet, oracle.parquet, the catalogue files and shop.json (config
    and counts)."""
    return _write_shop(shop, out_dir, Tracker(progress, WRITE_UNITS, prefix="generate"))


def _write_shop(shop: Shop, out_dir: str | Path, track: Tracker) -> ShopFiles:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ShopFiles(out / "events.parquet", out / "users.parquet", out / "oracle.parquet",
                      out / "shop.json", dict(shop.stats))
    track.begin("writing events, users and oracle")
    shop.events.write_parquet(paths.events)
    shop.users.write_parquet(paths.users)
    shop.oracle.write_parquet(paths.oracle)
    track.advance(UNITS["write"])
    track.begin("writing the catalogue and its oracle")
    write_catalogue(shop.config.seed, shop.users["user_id"].to_list(), CATEGORIES, out)
    track.advance(UNITS["catalogue"])
    paths.manifest.write_text(json.dumps({"config": shop.config.model_dump(mode="json"), "stats": shop.stats},
                                         indent=2) + "\n")
    return paths


def generate(out_dir: str | Path, cfg: GenerateConfig | None = None,
             progress: Progress | None = None) -> ShopFiles:
    """Generate and write a shop: the stage behind ``propensity generate``. ``progress`` receives
    :class:`~propensity.progress.Step` messages over both parts (their ETA is meaningful) and two
    summary lines."""
    track = Tracker(progress, SHOP_UNITS + WRITE_UNITS, prefix="generate")
    files = _write_shop(_generate_shop(cfg or load_generate_config(), track), out_dir, track)
    track.finish("shop written")
    return files
