"""Simulated visitors who respond to shown products by their true tastes (pure functions).

A visitor shown products ``j = 1..k`` whose true next-purchase probabilities (the shop's product
oracle, :mod:`features.shop.catalogue`) are ``p_j``:

* clicks product ``j`` with probability ``1 - exp(-click_scale * p_j)`` (independently): a product
  they are likely to buy anyway is likely to be clicked, one outside their tastes almost never;
* after a click, adds it to the cart with probability ``cart_rate``, and after that buys it with
  probability ``purchase_rate`` (at the product's price).

So a recommender that ranks the visitor's true tastes higher earns more clicks, carts and revenue;
two identical recommenders earn the same in expectation (an A/A).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from experiments.stats.proportions import two_proportion_test
from experiments.stats.summaries import ProportionSummary


@dataclass(frozen=True)
class VisitorModel:
    """How simulated visitors respond (see the module docstring)."""

    click_scale: float = 1.0
    cart_rate: float = 0.35
    purchase_rate: float = 0.5


@dataclass(frozen=True)
class Responses:
    """Per visitor and shown position (visitors x k): clicked, carted, bought."""

    clicked: np.ndarray
    carted: np.ndarray
    bought: np.ndarray

    def per_visitor(self, prices: np.ndarray) -> dict[str, np.ndarray]:
        """0/1 clicked, carted, converted and revenue per visitor (``prices``: visitors x k)."""
        return {"clicked": self.clicked.any(axis=1).astype(np.int8),
                "carted": self.carted.any(axis=1).astype(np.int8),
                "converted": self.bought.any(axis=1).astype(np.int8),
                "revenue": (self.bought * prices).sum(axis=1)}


def respond(p_shown: np.ndarray, rng: np.random.Generator, model: VisitorModel = VisitorModel()
            ) -> Responses:
    """Draw every visitor's clicks, carts and purchases of the products shown to them (``p_shown``:
    visitors x k true next-purchase probabilities; 0 where unknown)."""
    clicked = rng.random(p_shown.shape) < -np.expm1(-model.click_scale * np.asarray(p_shown, dtype=float))
    carted = clicked & (rng.random(p_shown.shape) < model.cart_rate)
    bought = carted & (rng.random(p_shown.shape) < model.purchase_rate)
    return Responses(clicked, carted, bought)


def response_events(user_ids: np.ndarray, products: np.ndarray, prices: np.ndarray, shown_at: np.ndarray,
                    responses: Responses, rng: np.random.Generator) -> pl.DataFrame:
    """The responses as events of the SPEC contract: a ``product_view`` per click (within 6 h of the
    showing), then ``add_to_cart`` (2-30 min later) and ``purchase`` (another 2-30 min, ``value`` =
    price). ``products``/``prices``: visitors x k; ``shown_at``: numpy datetime64[us] per visitor."""
    rows, cols = np.nonzero(responses.clicked)
    click_at = shown_at[rows] + (rng.uniform(60, 6 * 3600, rows.size) * 1e6).astype("timedelta64[us]")
    cart_at = click_at + (rng.uniform(120, 1800, rows.size) * 1e6).astype("timedelta64[us]")
    buy_at = cart_at + (rng.uniform(120, 1800, rows.size) * 1e6).astype("timedelta64[us]")
    parts = []
    for kind, mask, at in (("product_view", np.ones(rows.size, bool), click_at),
                           ("add_to_cart", responses.carted[rows, cols], cart_at),
                           ("purchase", responses.bought[rows, cols], buy_at)):
        r, c = rows[mask], cols[mask]
        parts.append(pl.DataFrame({
            "event_id": [f"sim-{kind}-{u}-{p}" for u, p in zip(user_ids[r], products[r, c], strict=True)],
            "user_id": user_ids[r], "timestamp": pl.Series(at[mask]).dt.replace_time_zone("UTC"),
            "event": kind, "product_id": products[r, c],
            "value": np.where(kind == "purchase", prices[r, c], np.nan)}))
    return (pl.concat(parts).with_columns(pl.col("value").fill_nan(None)).sort("timestamp"))


def aa_significance_rate(p_shown: np.ndarray, n_sims: int, alpha: float = 0.05, seed: int = 0,
                         model: VisitorModel = VisitorModel()) -> float:
    """Share of ``n_sims`` simulated A/A tests (every visitor sees the same recommender's products,
    split at random into two halves, responses drawn anew) whose click-through two-proportion test is
    significant at ``alpha``: the false-positive rate, expected to be ``alpha``."""
    rng = np.random.default_rng(seed)
    significant = 0
    for _ in range(n_sims):
        clicked: np.ndarray = np.asarray(respond(p_shown, rng, model).clicked.any(axis=1))
        arm = rng.random(len(clicked)) < 0.5
        a = ProportionSummary(int(arm.sum()), float(clicked[arm].sum()))
        b = ProportionSummary(int((~arm).sum()), float(clicked[~arm].sum()))
        significant += two_proportion_test(b, a, alpha).p_value < alpha
    return significant / n_sims
