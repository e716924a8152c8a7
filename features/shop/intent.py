"""Latent intent: each user's daily Markov chain over browsing (0), considering (1), deciding (2).

``P(0->1) = warmth``, ``P(1->2) = commit``; a purchase resets the next day to browsing. On a day in
state ``s`` a user buys with probability ``HAZARD[s] * beta * purchase_scale(day)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from features.shop.config import GenerateConfig
from features.shop.model import BURN_IN_DAYS, HAZARD
from features.shop.shifts import concept_scale


def transitions(traits: dict[str, np.ndarray]) -> np.ndarray:
    """Per-user day-to-day transition matrices, shape (n, 3, 3); rows sum to 1."""
    w, c = traits["warmth"], traits["commit"]
    n = len(w)
    p = np.zeros((n, 3, 3))
    p[:, 0, 0], p[:, 0, 1] = 1 - w, w
    p[:, 1, 0], p[:, 1, 2] = 0.15, c
    p[:, 1, 1] = 1 - 0.15 - c
    p[:, 2, 0], p[:, 2, 1], p[:, 2, 2] = 0.15, 0.35, 0.50
    return p


def sale_boost(cfg: GenerateConfig, day: int, kind: Literal["traffic", "purchase"]) -> float:
    in_sale = cfg.sale.start_day <= day < cfg.sale.start_day + cfg.sale.days
    if not in_sale:
        return 1.0
    return cfg.sale.traffic_boost if kind == "traffic" else cfg.sale.purchase_boost



def purchase_scale(cfg: GenerateConfig, traits: dict[str, np.ndarray], day: int) -> np.ndarray:
    """Per-user multiplier of the chance to buy on ``day``: the sale, arrival (0 before it) and
    the concept shifts. Negative days are the burn-in."""
    sale = sale_boost(cfg, day, "purchase") if day >= 0 else 1.0
    alive = (traits["arrival"] <= max(day, 0)).astype(np.float64)
    return alive * sale * concept_scale(cfg.shifts, traits, day)



def simulate_intent(cfg: GenerateConfig, rng: np.random.Generator, trans: np.ndarray,
                    traits: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hidden state and purchases per (user, day); also the state entering day 0."""
    beta = traits["beta"]
    n, d = len(beta), cfg.days
    cum = np.cumsum(trans, axis=2)
    idx = np.arange(n)
    state = np.zeros(n, dtype=np.int64)
    for _ in range(BURN_IN_DAYS):  # burn-in: no events, no purchases recorded
        state = (rng.random(n)[:, None] >= cum[idx, state][:, :-1]).sum(axis=1)
        bought = rng.random(n) < HAZARD[state] * beta * purchase_scale(cfg, traits, -1)
        state = np.where(bought, 0, state)
    entering = state.copy()
    z = np.zeros((n, d), dtype=np.int8)
    buy = np.zeros((n, d), dtype=bool)
    for day in range(d):
        state = (rng.random(n)[:, None] >= cum[idx, state][:, :-1]).sum(axis=1)
        bought = rng.random(n) < np.minimum(HAZARD[state] * beta * purchase_scale(cfg, traits, day), 1.0)
        z[:, day], buy[:, day] = state, bought
        state = np.where(bought, 0, state)
    return z, buy, entering

